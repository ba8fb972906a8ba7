"""Training engine: R replicas (seeds x one hyperparameter grid) in one compiled program.

Entry point: `train_and_evaluate(cfg, workdir)` (repro/engine/loop.py). Outputs: OUTPUTS.md.
"""

from repro.engine.loop import train_and_evaluate
from repro.engine.replicas import ReplicaPlan, expand_replicas
from repro.engine.tasks import TASKS, Task, get_task

__all__ = ["TASKS", "ReplicaPlan", "Task", "expand_replicas", "get_task", "train_and_evaluate"]
