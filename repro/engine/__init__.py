"""Training engine: R replicas (seeds x one hyperparameter grid) in one compiled program.

Entry point: `train_and_evaluate(cfg, workdir)` (repro/engine/pipeline.py: the run's stages,
each in a module of its own). Outputs: OUTPUTS.md.
"""

from repro.engine.pipeline import train_and_evaluate
from repro.engine.replicas import ReplicaPlan, expand_replicas
from repro.engine.summary import build_summary
from repro.engine.tasks import TASKS, Task, get_task

__all__ = [
    "TASKS",
    "ReplicaPlan",
    "Task",
    "build_summary",
    "expand_replicas",
    "get_task",
    "train_and_evaluate",
]
