"""Runs over two processes through `jax.distributed` on localhost (repro/engine/distributed.py).

Each process starts `python -m repro.train` with 2 fake XLA CPU devices; the reference is one
process with 4. Checked through the real command line:
- replicas sharded over both processes (nothing is reduced across them): metrics, summary and
  parameters bit-identical to one process with the same 4 devices;
- each batch split over both processes' devices (`trainer.data_devices=4`, a stream of which
  each process reads only its half of every batch, assembled with
  `jax.make_array_from_process_local_data`), with gradient noise and clipping: metrics equal to
  rtol 1e-5 (gloo all-reduces the example sums in another order than XLA:CPU in one process:
  float32 rounding; measured worst relative difference 3.4e-7 over 12 epochs, the tolerance
  leaves room for other CPUs); parameters to atol 1e-5;
- the same on the resident digits set, which each process then holds only half of
  (`trainer.resident_split=auto`: 720 of 1437 examples on process 0's devices, recorded in
  summary.json), with Gaussian example weights (`noise=gaussian_fisher`) drawn for the whole
  global batch from the replica's key in the step, so the processes agree on every weight;
- only process 0 writes metrics.jsonl, summary.json and Hydra's .hydra/ (process 1's composed
  config goes to .hydra/process_1);
- a SIGKILL of process 1 makes process 0 exit non-zero within the heartbeat timeout (10 s) plus
  a margin, leaving no summary.json;
- a two-process run killed mid-training and started again, this time as the two tasks of a
  (simulated) SLURM step that JAX detects from the environment (`distributed.enabled=true`),
  resumes in the same directory to metrics and a state bit-identical to the uninterrupted
  two-process run;
- bad `distributed.*` settings and an unreachable coordinator: one line naming the setting,
  before JAX compiles anything (every rule: test_distributed_config.py);
- (slow) the default experiment on 8 fake devices equals 1 device to float32 rounding.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 12
COMMON = (
    "experiment=smoke",
    "trainer.progress=never",
    f"trainer.epochs={EPOCHS}",
    "trainer.checkpoint_min_interval_s=0",
)
ADDITIVE = ("noise=additive", "noise.eta=0.05", "trainer.clip_norm=10")
SPLIT = ("replicas.seeds=1", "trainer.data_devices=4", "data=digits_stream")
REPLICAS = (*ADDITIVE, "replicas.seeds=4")  # 4 replicas: 2 on each process's 2 devices
DATA = (*ADDITIVE, *SPLIT)
# The resident digits set split by process; example weights drawn in the step from the
# replica's key, for the whole global batch.
WEIGHTS = (
    "replicas.seeds=1",
    "trainer.data_devices=4",
    "noise=gaussian_fisher",
    "trainer.epochs=4",
)
TIMING = ("wall_time_s", "examples_per_s")
HEARTBEAT_S = 60  # a process silent this long is dead: generous on a loaded 2-core machine
KILL_HEARTBEAT_S = 10  # the fault test's: how fast a killed process is noticed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def _env(root: Path, devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REPRO_OUTPUT_ROOT=str(root / "out"),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        HYDRA_FULL_ERROR="0",
        REPRO_JAX_CACHE_DIR=str(root.parent / "jax_cache"),
    )
    return env


def _distributed(port: int, process_id: int, heartbeat_s: int) -> list[str]:
    return [
        f"distributed.coordinator_address=localhost:{port}",
        "distributed.num_processes=2",
        f"distributed.process_id={process_id}",
        f"distributed.heartbeat_timeout_s={heartbeat_s}",
        "distributed.initialization_timeout_s=60",
    ]


def slurm_job_id() -> int:
    """A SLURM job id whose coordinator port (JAX: 61440 + id % 4096) is free here."""
    for _ in range(100):
        job_id = int.from_bytes(os.urandom(2), "little") % 4096 + 4096
        with socket.socket() as sock:
            try:
                sock.bind(("localhost", 61440 + job_id % 4096))
            except OSError:
                continue
        return job_id
    raise RuntimeError("no free port in 61440..65535")


def _slurm(job_id: int, process_id: int) -> dict[str, str]:
    """What `srun` sets for task `process_id` of a two-task step on this one node."""
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(process_id),
        "SLURM_LOCALID": str(process_id),
    }


def start_pair(
    root: Path, *args: str, slurm: bool = False, heartbeat_s: int = HEARTBEAT_S
) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one run (2 devices each), output to root/process_<i>.log; with
    `slurm`, they find each other as two SLURM tasks do (distributed.enabled=true alone)."""
    port, job_id = free_port(), slurm_job_id()
    procs = []
    for i in (0, 1):
        log = open(root / f"process_{i}.log", "ab")  # noqa: SIM115  (closed by the child's exit)
        env = _env(root, 2)
        if slurm:
            env.update(_slurm(job_id, i))
            group = ["distributed.enabled=true", f"distributed.heartbeat_timeout_s={heartbeat_s}"]
        else:
            group = _distributed(port, i, heartbeat_s)
        cmd = [sys.executable, "-m", "repro.train", *args, *group]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log))
    return procs


def run_pair(root: Path, *args: str, timeout: float = 300, slurm: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    procs = start_pair(root, *args, slurm=slurm)
    codes = [p.wait(timeout=timeout) for p in procs]
    logs = [(root / f"process_{i}.log").read_text()[-2000:] for i in (0, 1)]
    assert codes == [0, 0], logs
    return run_dir(root)


def run_single(root: Path, *args: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "repro.train", *args]
    result = subprocess.run(
        cmd, cwd=REPO, env=_env(root, 4), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir(root)


def run_dir(root: Path) -> Path:
    (job,) = (root / "out" / "runs" / "smoke").iterdir()
    return job


def records(job: Path) -> list[dict]:
    lines = (job / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines if x]


def _latest_step(job: Path) -> Path:
    return max((job / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))


def state_digest(job: Path) -> str:
    """The SHA-256 of the whole final train state (params, optimizer state, keys) that the
    run stored with its last checkpoint."""
    return json.loads((_latest_step(job) / "meta" / "metadata").read_text())["state_sha256"]


def final_params(job: Path) -> list[np.ndarray]:
    """The last checkpoint's parameters, restored onto this process's one device (the run
    saved them sharded over 4 devices of 1 or 2 processes)."""
    import jax
    import orbax.checkpoint as ocp

    path = _latest_step(job) / "state"
    checkpointer = ocp.StandardCheckpointer()
    tree = checkpointer.metadata(path)
    tree = getattr(getattr(tree, "item_metadata", tree), "tree", tree)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        tree,
        is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
    )
    restored = checkpointer.restore(path, abstract)
    checkpointer.close()
    return [np.asarray(x) for x in jax.tree.leaves(restored["replicas"]["params"])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("multiprocess")
    return {
        "replicas_1": run_single(base / "replicas_1", *COMMON, *REPLICAS),
        "replicas_2": run_pair(base / "replicas_2", *COMMON, *REPLICAS),
        "data_1": run_single(base / "data_1", *COMMON, *DATA),
        "data_2": run_pair(base / "data_2", *COMMON, *DATA),
        "weights_1": run_single(base / "weights_1", *COMMON, *WEIGHTS),
        "weights_2": run_pair(base / "weights_2", *COMMON, *WEIGHTS),
    }


def test_replicas_over_two_processes_are_bit_identical_to_one(runs: dict[str, Path]) -> None:
    one, two = runs["replicas_1"], runs["replicas_2"]
    assert one.name == two.name  # distributed.* stays out of the run's identity
    assert records(two) == records(one)
    assert [r["epoch"] for r in records(two)] == list(range(1, EPOCHS + 1))
    got, want = (json.loads((j / "summary.json").read_text()) for j in (two, one))
    assert got["replicas"] == want["replicas"]
    assert got["metadata"]["processes"] == {
        "process_id": 0,
        "num_processes": 2,
        "local_devices": 2,
        "global_devices": 4,
    }
    assert want["metadata"]["processes"]["num_processes"] == 1
    assert got["metadata"]["mesh"] == want["metadata"]["mesh"] == {"replicas": 4}
    assert state_digest(two) == state_digest(one)
    for a, b in zip(final_params(two), final_params(one), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", ["data", "weights"])
def test_batch_split_over_two_processes_equals_one(runs: dict[str, Path], case: str) -> None:
    one, two = records(runs[f"{case}_1"]), records(runs[f"{case}_2"])
    assert [r["epoch"] for r in two] == [r["epoch"] for r in one]
    for got, want in zip(two, one, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert two[-1]["test_accuracy"][0] > 0.5  # it did learn
    for a, b in zip(final_params(runs[f"{case}_2"]), final_params(runs[f"{case}_1"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_resident_set_is_split_by_process(runs: dict[str, Path]) -> None:
    two, one = (
        json.loads((runs[k] / "summary.json").read_text()) for k in ("weights_2", "weights_1")
    )
    assert two["metadata"]["data"]["resident_split"] == {
        "data_devices": 4,
        "train_examples": 1437,
        "train_examples_this_process": 720,  # 1437 padded to 1440: 360 per device
    }
    assert "resident_split" not in one["metadata"]["data"]  # one process: whole (auto)


def test_only_process_zero_writes_the_run_files(runs: dict[str, Path]) -> None:
    job = runs["replicas_2"]
    assert (job / ".hydra" / "config.yaml").is_file()
    process_1 = (job / ".hydra" / "process_1" / "overrides.yaml").read_text()
    assert "distributed.process_id=1" in process_1
    assert "distributed.process_id=0" in (job / ".hydra" / "overrides.yaml").read_text()
    log_1 = (job.parents[3] / "process_1.log").read_text()
    assert "final test_accuracy" in log_1  # both processes end with the same report
    lines = (job / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == EPOCHS  # one writer: no record twice


def _wait_for(path_glob: Path, pattern: str, count: int, procs: list, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        found = [p for p in path_glob.glob(pattern) if not p.name.endswith("tmp")]
        if len(found) >= count:
            return True
        time.sleep(0.05)
    return False


def test_killing_one_process_stops_the_other_quickly(tmp_path: Path) -> None:
    args = (*COMMON, *REPLICAS, "trainer.epochs=400")
    procs = start_pair(tmp_path, *args, heartbeat_s=KILL_HEARTBEAT_S)
    runs_dir = tmp_path / "out" / "runs" / "smoke"
    try:
        assert _wait_for(runs_dir, "*/checkpoints/[0-9]*", 1, procs, 240), "no checkpoint"
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = procs[0].wait(timeout=KILL_HEARTBEAT_S + 60)
        took = time.monotonic() - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert code != 0
    assert took < KILL_HEARTBEAT_S + 30, took
    assert "another task died" in (tmp_path / "process_0.log").read_text()  # JAX's message
    (job,) = runs_dir.iterdir()
    assert not (job / "summary.json").exists()


def test_killed_two_process_run_resumes_bit_identically(
    tmp_path: Path, runs: dict[str, Path]
) -> None:
    procs = start_pair(tmp_path, *COMMON, *REPLICAS)
    runs_dir = tmp_path / "out" / "runs" / "smoke"
    try:
        reached = _wait_for(runs_dir, "*/checkpoints/[0-9]*", 2, procs, 240)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
    finally:
        for proc in procs:
            proc.wait(timeout=60)
    assert reached, "the run finished before it could be killed"
    job = run_dir(tmp_path)
    assert not (job / "summary.json").exists()
    # Resumed as SLURM tasks: the group found from the environment, the same run directory.
    resumed = run_pair(tmp_path, *COMMON, *REPLICAS, slurm=True)
    assert "resumed from step" in (tmp_path / "process_0.log").read_text()
    assert records(resumed) == records(runs["replicas_2"])
    assert state_digest(resumed) == state_digest(runs["replicas_2"])
    got = json.loads((resumed / "summary.json").read_text())
    assert got["metadata"]["resumed_from_step"] is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["distributed.num_processes=2", "distributed.process_id=2"],
            "distributed.num_processes is set but distributed.coordinator_address is not",
        ),
        (
            [
                "distributed.coordinator_address=localhost:1",
                "distributed.num_processes=2",
                "distributed.process_id=2",
            ],
            "distributed.process_id must be in [0, 1] for distributed.num_processes=2, got 2",
        ),
        (["+distributed.bogus=1"], "distributed.bogus is not a setting"),
    ],
)
def test_bad_distributed_settings_are_one_line_errors(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cmd = [sys.executable, "-m", "repro.train", "experiment=smoke", *overrides]
    result = subprocess.run(
        cmd, cwd=REPO, env=_env(tmp_path, 1), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert message in lines[0]


def test_unreachable_coordinator_fails_within_its_timeout(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there
    cmd = [
        sys.executable,
        "-m",
        "repro.train",
        "experiment=smoke",
        f"distributed.coordinator_address=localhost:{port}",
        "distributed.num_processes=2",
        "distributed.process_id=1",
        "distributed.initialization_timeout_s=3",
    ]
    start = time.monotonic()
    result = subprocess.run(
        cmd, cwd=REPO, env=_env(tmp_path, 1), capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - start
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: distributed.coordinator_address=localhost:{port}: no coordinator answered "
            "within distributed.initialization_timeout_s=3 s"
        )
    )
    assert took < 60


@pytest.mark.slow  # two demo runs, ~40 s on 2 cores: pytest -m slow
def test_default_experiment_on_8_devices_equals_1(tmp_path: Path) -> None:
    """The demo (8 replicas of a deep MLP with a noise grid), 3 epochs, each replica on its own
    fake device vs all on one: the same numbers up to float32 rounding (XLA:CPU blocks the
    matmuls of 1 and of 8 replicas differently). Measured worst relative difference 2.1e-7."""
    finals = []
    for devices in (1, 8):
        root = tmp_path / f"d{devices}"
        root.mkdir()
        cmd = [sys.executable, "-m", "repro.train", "trainer.epochs=3", "trainer.progress=never"]
        result = subprocess.run(
            cmd, cwd=REPO, env=_env(root, devices), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (job,) = (root / "out" / "runs" / "demo").iterdir()
        summary = json.loads((job / "summary.json").read_text())
        assert summary["metadata"]["mesh"] == ({"replicas": 8} if devices == 8 else {})
        finals.append(records(job))
    for got, want in zip(*finals, strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)
