"""NovoGrad study, memory: optimizer-state bytes and a compiled step's memory, per optimizer.

For each model of the study (the MLP and the small CNN of ``conf/experiment/novograd2019/``)
and each optimizer cell, with the cell's own config (hyperparameters, batch scaling):

* ``state_bytes``: bytes of the optimizer state, from the state pytree's shapes
  (:func:`repro.engine.memory.optimizer_state_bytes`), and its ratio to Adam's;
* ``step``: XLA's memory analysis of one compiled training step at ``--batch-size``
  (:func:`repro.engine.memory.train_step_memory`): arguments (parameters, state, batch),
  temporaries, peak.

    python -m repro.figures.novograd2019_memory [--out PATH] [--batch-size B] [overrides...]

writes ``memory.json`` (default ``$REPRO_OUTPUT_ROOT/multirun/novograd2019/memory.json``,
beside the sweep's runs, where ``python -m repro.figures novograd2019`` reads it). Nothing
is trained: shapes only, a few seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from repro.engine.experiment import build_network
from repro.engine.memory import optimizer_state_bytes, train_step_memory, tree_bytes
from repro.engine.optimizers import UpdateRule
from repro.errors import ConfigError
from repro.figures.files import write_json
from repro.figures.identity import composed_config
from repro.run_identity import result_overrides
from repro.run_metadata import collect, now_iso

FILE_NAME = "memory.json"
SWEEP = "novograd2019"
MODELS = {"mlp": (784,), "cnn": (28, 28, 1)}  # model -> input shape of one example
OPTIMIZERS = ("novograd", "momentum", "adam", "adamw", "lamb", "lars")
REFERENCE = "adam"
BATCH_SIZE = 512  # the robustness study's batch
NUM_CLASSES = 10


def problem_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that change the measurement: result-changing ``model.*`` and
    ``optimizer.*`` ones (data and trainer settings do not enter the state's size)."""
    changed = result_overrides(overrides)
    return [o for o in changed if o.lstrip("+~").split(".")[0] in ("model", "optimizer")]


def default_path() -> Path:
    root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
    return root / "multirun" / SWEEP / FILE_NAME


def measure_cell(
    model: str, optimizer: str, batch_size: int, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Parameter, state and step bytes of cell ``<model>_<optimizer>`` at ``batch_size``."""
    option = f"experiment={SWEEP}/{model}_{optimizer}"
    config = composed_config([option, f"trainer.batch_size={batch_size}", *overrides])
    network = build_network(config["model"], NUM_CLASSES)
    shape = MODELS[model]
    params = jax.eval_shape(
        lambda: network.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)["params"]
    )
    rule = UpdateRule(config["optimizer"], config["noise"], None, 1, 1, batch_size=batch_size)
    tx = rule.transformation({}, jax.random.key(0))
    step = train_step_memory(network, tx, params, batch_size, shape)
    return {
        "experiment": option,
        "optimizer_target": config["optimizer"]["_target_"],
        "num_params": sum(int(x.size) for x in jax.tree.leaves(params)),
        "num_tensors": len(jax.tree.leaves(params)),
        "param_bytes": tree_bytes(params),
        "state_bytes": optimizer_state_bytes(tx, params),
        "step": step.as_dict(),
    }


def measure(
    batch_size: int = BATCH_SIZE,
    overrides: Sequence[str] = (),
    models: Sequence[str] = tuple(MODELS),
) -> dict[str, Any]:
    """memory.json's payload: every model x optimizer, ratios to Adam's state and peak."""
    overrides = problem_overrides(overrides)
    measured: dict[str, Any] = {}
    for model in models:
        cells = {opt: measure_cell(model, opt, batch_size, overrides) for opt in OPTIMIZERS}
        reference = cells[REFERENCE]
        for cell in cells.values():
            cell["state_ratio_to_adam"] = cell["state_bytes"] / reference["state_bytes"]
            cell["peak_ratio_to_adam"] = cell["step"]["peak"] / reference["step"]["peak"]
        measured[model] = cells
    return {
        "what": "optimizer-state bytes (shapes of tx.init(params)) and XLA's memory analysis "
        f"of one compiled train step at batch {batch_size}",
        "batch_size": batch_size,
        "overrides": overrides,
        "backend": jax.default_backend(),
        "models": measured,
        "metadata": collect() | {"end_time": now_iso()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.figures.novograd2019_memory",
        description="Measure optimizer-state and train-step memory for the NovoGrad study.",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default {default_path()}")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), help=f"among {list(MODELS)} (default all)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (model.*, optimizer.*)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        print(f"error: --models must be among {list(MODELS)}, got {unknown}", file=sys.stderr)
        return 2
    try:
        payload = measure(args.batch_size, args.overrides, args.models)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or default_path()
    write_json(out, payload)
    for model, cells in payload["models"].items():
        for opt, cell in cells.items():
            state, peak = cell["state_bytes"], cell["step"]["peak"]
            print(
                f"{model:4s} {opt:9s} state {state:>9,d} B ({cell['state_ratio_to_adam']:.3f} x "
                f"Adam), step peak {peak:>10,d} B ({cell['peak_ratio_to_adam']:.3f} x Adam)"
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
