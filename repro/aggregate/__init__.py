"""Aggregate Hydra run / multirun directories into one tidy table.

Usage::

    python -m repro.aggregate outputs/multirun/neelakantan2015 [more dirs...]
        [--out results.csv] [--group-by name optimizer.learning_rate]
        [--metric final.test_accuracy] [--mode max|min] [--max-rows 40]

A *job dir* is any directory holding ``summary.json`` or ``.hydra/overrides.yaml`` (the engine
writes the first only when the run finished; Hydra writes the second at job start). The given
paths are searched recursively; the search does not descend into a job dir (checkpoints live
there). Jobs without a finished ``summary.json`` are reported as *unfinished* and never enter
the table.

The tidy table has one row per (job, replica) with columns

- ``job``, ``name`` (``summary["experiment"]``, i.e. the config key ``name``), ``replica``,
  ``seed``;
- one column per replica grid hyperparameter (``summary["replicas"][i]["hparams"]``, e.g.
  ``optimizer.learning_rate``);
- one column per Hydra override key (``optimizer=noisy_sgd`` -> column ``optimizer``); a key
  that clashes with a fixed column or a grid hyperparameter gets the prefix ``override.``;
- ``diverged``, ``diverged_step``, then ``final.<metric>`` and ``best.<metric>`` for every
  metric the summary holds (the engine writes a non-finite value as null: NaN here);
- ``epochs`` (summary), ``wall_time_s`` and ``git_commit`` (summary metadata).

The grouped view reports, per group, ``n`` (rows with a finite metric), ``mean``, ``std``
(sample standard deviation, ddof = 1, so NaN for n = 1), ``best`` (max, or min for losses and
errors) and ``n_diverged``.
"""

from repro.aggregate.cli import build_parser, main
from repro.aggregate.jobs import (
    CONFIG_FILES,
    METRICS_FILE,
    OVERRIDES_FILE,
    SUMMARY_FILE,
    JobRecord,
    RunCollection,
    find_job_dirs,
    is_job_dir,
    load_job,
    load_runs,
    parse_override_value,
    parse_overrides,
    read_metrics,
)
from repro.aggregate.markdown import markdown_table, unfinished_table
from repro.aggregate.table import (
    DEFAULT_METRIC,
    FIXED_COLUMNS,
    OVERRIDE_PREFIX,
    STATUS_COLUMNS,
    TRAILING_COLUMNS,
    group_summary,
    lower_is_better,
    replicas_frame,
    resolve_metric,
)

__all__ = [
    "CONFIG_FILES",
    "DEFAULT_METRIC",
    "FIXED_COLUMNS",
    "METRICS_FILE",
    "OVERRIDES_FILE",
    "OVERRIDE_PREFIX",
    "STATUS_COLUMNS",
    "SUMMARY_FILE",
    "TRAILING_COLUMNS",
    "JobRecord",
    "RunCollection",
    "build_parser",
    "find_job_dirs",
    "group_summary",
    "is_job_dir",
    "load_job",
    "load_runs",
    "lower_is_better",
    "main",
    "markdown_table",
    "parse_override_value",
    "parse_overrides",
    "read_metrics",
    "replicas_frame",
    "resolve_metric",
    "unfinished_table",
]
