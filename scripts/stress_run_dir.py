"""Stress test of a run directory: N copies of one command, random SIGKILLs, then check.

    python scripts/stress_run_dir.py [--copies 3] [--rounds 10] [--seed 0] [--epochs 30]

Each round starts `--copies` copies of the same `python -m repro.train ...` command on one
run directory (staggered by up to a second), SIGKILLs a random subset of them once the run
has recorded 0-2 more epochs plus a random delay of up to `--max-wait` seconds (so kills
land in start-up, training, evaluation and checkpoint writes), and the rest after another
such delay (so no process outlives its round). A copy
that ends on its own must either finish (exit 0) or be refused with exactly one
`error: ... is in use by another run (pid P ...` line naming a live copy (exit 2); anything
else fails the round. After every round, `metrics.jsonl` must hold epochs 1..k exactly once
and there is at most one `summary.json`. Finally the command runs once to completion, and
its metrics (timing fields aside) and summary must equal those of an uninterrupted
reference run of the same command: bit-identical.

Seeded (`--seed`): the kill schedule is repeatable, the moments it hits are not (they
depend on the machine's load). It is a benchmark-like script, not a test: minutes of wall
time. Prints one line per round and a final verdict; exit code 0 iff every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("wall_time_s", "examples_per_s")
BUSY = re.compile(r"^error: .* is in use by another run \(pid (\d+) on ")


def command(epochs: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "repro.train",
        "experiment=smoke",
        "noise=additive",
        "trainer.clip_norm=10",
        "trainer.progress=never",
        f"trainer.epochs={epochs}",
        "trainer.checkpoint_min_interval_s=0",
        *extra,
    ]


def environment(root: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REPRO_OUTPUT_ROOT=str(root / "out"),
        REPRO_JAX_CACHE_DIR=str(cache),
        JAX_PLATFORMS="cpu",
        HYDRA_FULL_ERROR="0",
    )
    return env


def job_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "out").rglob(".hydra"))


def records(job: Path) -> list[dict]:
    path = job / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    complete = lines[:-1]  # the part after the last newline is a torn (or no) line
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS} for x in complete]


@dataclass
class Tally:
    started: int = 0
    killed: int = 0
    refused: int = 0
    finished: int = 0
    resumed: int = 0
    failures: list[str] = field(default_factory=list)


def check_exit(proc: subprocess.Popen, log: Path, live_pids: set[int], tally: Tally) -> None:
    """A copy that ended on its own: finished, or refused in one line naming a live copy."""
    stderr = log.with_suffix(".err").read_text()
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    if proc.returncode == 0:
        tally.finished += 1
    elif proc.returncode == 2 and len(errors) == 1 and "Traceback" not in stderr:
        match = BUSY.match(errors[0])
        if match and int(match.group(1)) in live_pids:
            tally.refused += 1
            return
        tally.failures.append(f"{log.name}: refused with an unexpected line: {errors[0]}")
    else:
        tally.failures.append(f"{log.name}: exit {proc.returncode}: {stderr[-500:]}")


def run_round(
    index: int,
    cmd: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    rng: np.random.Generator,
    logs: Path,
) -> Tally:
    tally = Tally()
    procs: list[tuple[subprocess.Popen, Path]] = []
    for copy in range(args.copies):
        log = logs / f"round{index:02d}-copy{copy}"
        with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
            procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err), log))
        tally.started += 1
        time.sleep(rng.uniform(0, 1))
    pids = {p.pid for p, _ in procs}
    victims = {
        int(i) for i in rng.choice(len(procs), rng.integers(1, len(procs) + 1), replace=False)
    }
    # The first kill: once the run has recorded 0-2 more epochs (so that kills land in
    # start-up, training, evaluation and checkpoint writes alike), then up to one epoch later.
    wait_records(run_root(env), int(rng.integers(0, 3)), procs)
    deadline = time.monotonic() + rng.uniform(0, args.max_wait)
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs):
        time.sleep(0.02)
    for i, (proc, _) in enumerate(procs):
        if i in victims and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.killed += 1
    deadline = time.monotonic() + rng.uniform(0, args.max_wait)
    while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs):
        time.sleep(0.02)
    for proc, _ in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.killed += 1
    for proc, log in procs:
        proc.wait()
        tally.resumed += "resumed from step" in log.with_suffix(".out").read_text()
        if proc.returncode != -signal.SIGKILL:
            check_exit(proc, log, pids, tally)
    return tally


def run_root(env: dict[str, str]) -> Path:
    return Path(env["REPRO_OUTPUT_ROOT"]).parent


def wait_records(root: Path, more: int, procs: list, timeout: float = 300.0) -> None:
    """Until the run in `root` has `more` records than now (or no copy is left)."""

    def count() -> int:
        return sum(len(records(job)) for job in job_dirs(root))

    target, deadline = count() + more, time.monotonic() + timeout
    while count() < target and time.monotonic() < deadline:
        if all(p.poll() is not None for p, _ in procs):
            return
        time.sleep(0.05)


def check_run_dir(root: Path) -> str | None:
    """What is wrong with the stressed run directory between rounds, or None."""
    jobs = job_dirs(root)
    if len(jobs) > 1:
        return f"{len(jobs)} run directories: {jobs}"
    if not jobs:
        return None
    epochs = [r["epoch"] for r in records(jobs[0])]
    if epochs != list(range(1, len(epochs) + 1)):
        return f"metrics.jsonl epochs {epochs}"
    if len(list((root / "out").rglob("summary.json"))) > 1:
        return "more than one summary.json"
    return None


def compare(stressed: Path, reference: Path, epochs: int) -> list[str]:
    problems = []
    (job,), (ref_job,) = job_dirs(stressed), job_dirs(reference)
    got, want = records(job), records(ref_job)
    if [r["epoch"] for r in got] != list(range(1, epochs + 1)):
        problems.append(f"metrics epochs {[r['epoch'] for r in got]}")
    if got != want:
        problems.append("metrics differ from the uninterrupted run")
    summaries = list((stressed / "out").rglob("summary.json"))
    if len(summaries) != 1:
        problems.append(f"{len(summaries)} summary.json files")
    else:
        s, r = (json.loads(p.read_text()) for p in (summaries[0], ref_job / "summary.json"))
        for key in ("objective", "replicas", "aggregate", "aggregate_by_grid", "status"):
            if s.get(key) != r.get(key):
                problems.append(f"summary {key} differs from the uninterrupted run")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-wait", type=float, default=3.0, help="seconds (about an epoch)")
    parser.add_argument("--root", type=Path, default=None, help="default: a temp directory")
    parser.add_argument("overrides", nargs="*", help="extra key=value for the command")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="stress_run_dir_"))
    cache, logs = root / "jax_cache", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = command(args.epochs, args.overrides)
    print("command:", " ".join(cmd[1:]), f"\nroot: {root}", flush=True)
    rng = np.random.default_rng(args.seed)
    start = time.monotonic()
    ref = subprocess.run(
        cmd, cwd=REPO, env=environment(root / "reference", cache), capture_output=True, text=True
    )
    if ref.returncode != 0:
        print(f"reference run failed: {ref.stderr[-2000:]}")
        return 1
    total, survived = Tally(), 0
    env = environment(root / "stressed", cache)
    for index in range(args.rounds):
        tally = run_round(index, cmd, env, args, rng, logs)
        problem = check_run_dir(root / "stressed")
        total.failures.extend(tally.failures + ([problem] if problem else []))
        for name in ("started", "killed", "refused", "finished", "resumed"):
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        broken = tally.failures + ([problem] if problem else [])
        if not broken and survived == index:  # rounds survived before the first failure
            survived += 1
        recorded = [len(records(j)) for j in job_dirs(root / "stressed")]
        print(
            f"round {index + 1}: {tally.started} started, {tally.killed} killed, "
            f"{tally.refused} refused, {tally.finished} finished, {tally.resumed} resumed; "
            f"epochs recorded {recorded}; {'; '.join(broken) if broken else 'ok'}",
            flush=True,
        )
    final = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if final.returncode != 0:
        total.failures.append(f"final run: exit {final.returncode}: {final.stderr[-1000:]}")
    else:
        total.failures.extend(compare(root / "stressed", root / "reference", args.epochs))
    verdict = "PASSED" if not total.failures else "FAILED"
    print(
        f"{verdict}: survived {survived}/{args.rounds} rounds of {args.copies} copies "
        f"({total.started} started, {total.killed} SIGKILLed, {total.refused} refused in one "
        f"line, {total.finished} finished, {total.resumed} resumed); final run "
        f"{'bit-identical to' if not total.failures else 'checked against'} the uninterrupted "
        f"run ({args.epochs} epochs), one summary.json; {time.monotonic() - start:.0f} s",
        flush=True,
    )
    for failure in total.failures:
        print("  -", failure)
    return 0 if not total.failures else 1


if __name__ == "__main__":
    sys.exit(main())
