"""Host-fed training and evaluation: data sets that stream from the host (repro.data.streaming).

Training. A stream never lives on the device. The steps of a run are cut into pieces of at
most `rows` (= `trainer.stream_chunk_steps`) consecutive steps, never across a chunk end of
`epoch.chunk_stops` (progress updates, mid-epoch checkpoints). A background thread reads the
stream from the run's position -- epoch ``step // S``, step ``step % S`` of it, S = steps per
epoch, so a resumed run reads exactly the batches an uninterrupted one would -- stacks each
piece's batches into ``[rows, B, ...]`` numpy arrays (short pieces padded with rows that are
never read) and puts them on the device(s), `prefetch` pieces ahead. The main thread
dispatches one compiled call per piece: a `lax.while_loop` from ``state.step`` to the piece's
end, step t taking row ``t - start`` (same vmapped replica step as the resident path, batch
shared by all replicas; the traced bounds let one program serve every piece length). JAX
dispatch is asynchronous, so while the device runs piece i the thread prepares piece i+1 and
the main thread has already queued it; at most `in_flight` pieces are queued (each call
returns a small token the loop waits on), which bounds device memory held by pending pieces.
`prefetch=0` turns both off (no thread, each piece finished before the next is read): the
serial baseline that scripts/benchmark_streaming.py measures the overlap against.
With data parallelism (`trainer.data_devices`, sharding.py) the thread puts each piece with
its example axis sharded over the "data" devices, and each step's row is constrained alike.

Evaluation of a streamed test set: the program of evaluation.py over host batches padded to
B and stacked `rows` at a time (padding examples carry mask 0; padding rows are skipped, the
loop's bound is the number of real batches), vmapped over replicas, sums carried from call to
call; metric = sums / number of real examples on the host -- bit-identical to the resident
evaluation of the same batches (evaluation.py says why).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from repro.data.streaming import Batch, BatchStream
from repro.engine.epoch import chunk_stops, make_step_all
from repro.engine.evaluation import EvalSumsFn, metric_means, zero_sums
from repro.engine.steps import ReplicaModel
from repro.engine.train_state import ReplicaState, TrainState

Put = Callable[[Batch], Any]  # numpy batch dict -> the same on the device(s)
StreamChunkFn = Callable[
    [TrainState, Mapping[str, jax.Array], Mapping[str, jax.Array], int],
    tuple[TrainState, jax.Array],
]


class Prefetcher:
    """Iterate `iterable` on a background thread, at most `depth` items ahead.

    An exception of the producer is raised in the consumer at the item where it happened;
    `close` (or leaving the `with` block) stops the producer at its next item.
    """

    _ITEM, _DONE, _ERROR = range(3)

    def __init__(self, iterable: Iterable[Any], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iterable,), daemon=True)
        self._thread.start()

    def _put(self, message: tuple[int, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, iterable: Iterable[Any]) -> None:
        try:
            for item in iterable:
                if not self._put((self._ITEM, item)):
                    return
            self._put((self._DONE, None))
        except BaseException as error:  # handed to the consumer, raised there
            self._put((self._ERROR, error))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        kind, value = self._queue.get()
        if kind == self._DONE:
            self._queue.put((kind, value))  # stay exhausted
            raise StopIteration
        if kind == self._ERROR:
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stack_batches(
    batches: Sequence[Batch], rows: int, batch_size: int, *, mask: bool = False
) -> Batch:
    """``{k: [rows, batch_size, ...]}`` from up to `rows` batches, zero-padded; with `mask`,
    also float32 ``"mask"`` [rows, batch_size] (1 = real example). Without it, every batch
    must be full (training steps have a fixed batch size)."""
    first = batches[0]
    out = {k: np.zeros((rows, batch_size, *v.shape[1:]), v.dtype) for k, v in first.items()}
    if mask:
        out["mask"] = np.zeros((rows, batch_size), np.float32)
    for i, batch in enumerate(batches):
        n = len(batch["x"])
        if n != batch_size and not (mask and n < batch_size):
            raise RuntimeError(f"the stream gave a batch of {n} examples, expected {batch_size}")
        for key in first:
            out[key][i, :n] = batch[key]
        if mask:
            out["mask"][i, :n] = 1.0
    return out


def piece_bounds(
    start: int, total_steps: int, steps_per_epoch: int, chunks: int, rows: int
) -> Iterator[tuple[int, int]]:
    """(first step, end step) of the pieces from global step `start` to `total_steps`."""
    step = start
    while step < total_steps:
        for stop in chunk_stops(step // steps_per_epoch, steps_per_epoch, chunks):
            while step < stop:
                end = min(stop, step + rows)
                yield step, end
                step = end


def host_pieces(
    stream: BatchStream,
    bounds: Iterable[tuple[int, int]],
    rows: int,
    put: Put,
    part: tuple[int, int] | None = None,
) -> Iterator[tuple[int, int, Any]]:
    """(start, stop, stacked batches on the device) of each piece, read from `stream` at the
    position of `start`; consecutive pieces of an epoch share one pass over the stream. With
    `part` (lo, hi), only examples lo..hi-1 of each batch are read: this process's share of a
    batch split over processes, which `put` assembles into the global batch."""
    steps_per_epoch = stream.steps_per_epoch
    reads = {} if part is None else {"part": part}
    batch_size = stream.batch_size if part is None else part[1] - part[0]
    batches: Any = None
    expected = -1
    for start, stop in bounds:
        epoch, within = divmod(start, steps_per_epoch)
        if start != expected or batches is None:
            if batches is not None and hasattr(batches, "close"):
                batches.close()  # e.g. a TFDS pipeline of the previous epoch
            batches = iter(stream.epoch_batches(epoch, within, **reads))
        rows_of_piece = []
        for step in range(start, stop):
            try:
                rows_of_piece.append(next(batches))
            except StopIteration:
                raise RuntimeError(
                    f"the stream ended at step {step % steps_per_epoch} of epoch {epoch}, "
                    f"before its steps_per_epoch={steps_per_epoch}"
                ) from None
        expected = stop if stop % steps_per_epoch else -1
        yield start, stop, put(stack_batches(rows_of_piece, rows, batch_size))


def make_stream_chunk_fn(
    program: ReplicaModel, batch_sharding: jax.sharding.Sharding | None = None
) -> StreamChunkFn:
    """jit((state, hparams, batches [rows, B, ...], stop) -> (state at `stop`, token)): steps
    ``state.step .. stop-1`` taking rows ``0 .. stop-1-state.step``; the token (a copy of the
    step) is an output the caller may wait on after `state` is donated to the next call;
    `batch_sharding` (data parallelism) constrains each step's batch as in epoch.py."""
    step_all = make_step_all(program)

    def run_piece(
        state: TrainState,
        hparams: Mapping[str, jax.Array],
        batches: Mapping[str, jax.Array],
        stop: jax.Array,
    ) -> tuple[TrainState, jax.Array]:
        start = state.step

        def body(st: TrainState) -> TrainState:
            batch = {k: v[st.step - start] for k, v in batches.items()}
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            return step_all(st, hparams, batch)

        state = jax.lax.while_loop(lambda st: st.step < stop, body, state)
        return state, state.step + 0

    return jax.jit(run_piece, donate_argnums=0)


class StreamFeed:
    """Training steps fed from a stream (module docstring); same `advance` as ResidentFeed."""

    def __init__(
        self,
        program: ReplicaModel,
        stream: BatchStream,
        *,
        total_steps: int,
        chunks_per_epoch: int,
        rows: int,
        put: Put,
        prefetch: int = 2,
        in_flight: int = 2,
        batch_sharding: jax.sharding.Sharding | None = None,
        part: tuple[int, int] | None = None,
    ) -> None:
        self.stream, self.part = stream, part
        self.chunk_fn = make_stream_chunk_fn(program, batch_sharding)
        self.total_steps, self.chunks, self.rows = total_steps, chunks_per_epoch, rows
        self.put, self.prefetch, self.in_flight = put, prefetch, in_flight
        self._pieces: Iterator[tuple[int, int, Any]] | None = None
        self._next = -1
        self._tokens: collections.deque[jax.Array] = collections.deque()

    def _open(self, start: int) -> None:
        self.close()
        bounds = piece_bounds(
            start, self.total_steps, self.stream.steps_per_epoch, self.chunks, self.rows
        )
        pieces = host_pieces(self.stream, bounds, self.rows, self.put, self.part)
        self._pieces = Prefetcher(pieces, self.prefetch) if self.prefetch else pieces
        self._next = start

    def advance(
        self, state: TrainState, hparams: Mapping[str, jax.Array], start: int, stop: int
    ) -> TrainState:
        """Run steps `start` .. `stop` - 1 (returns once they are queued on the device)."""
        if self._pieces is None or self._next != start:
            self._open(start)
        assert self._pieces is not None
        while self._next < stop:
            first, end, batches = next(self._pieces)
            if first != self._next or end > stop:
                raise RuntimeError(f"piece [{first}, {end}) does not fit steps [{start}, {stop})")
            state, token = self.chunk_fn(state, hparams, batches, end)
            self._tokens.append(token)
            while len(self._tokens) > (self.in_flight if self.prefetch else 0):
                self._tokens.popleft().block_until_ready()
            self._next = end
        return state

    def close(self) -> None:
        if self._pieces is not None:
            self._pieces.close()  # type: ignore[attr-defined]  # Prefetcher or generator
            self._pieces = None
        self._tokens.clear()


class StreamEvaluator:
    """Metrics of all replicas on an evaluation stream: (replicas) -> {name: [R]}."""

    def __init__(
        self,
        program: ReplicaModel,
        sums_fn: EvalSumsFn,
        stream: BatchStream,
        *,
        rows: int,
        put: Put,
        prefetch: int = 2,
    ) -> None:
        self.program, self.sums_fn, self.stream, self.rows = program, sums_fn, stream, rows
        self.put, self.prefetch = put, prefetch

    def _pieces(self) -> Iterator[tuple[Any, int, int]]:
        pending: list[Batch] = []
        for batch in self.stream.epoch_batches(0):
            pending.append(batch)
            if len(pending) == self.rows:
                yield self._stacked(pending)
                pending = []
        if pending:
            yield self._stacked(pending)

    def _stacked(self, batches: list[Batch]) -> tuple[Any, int, int]:
        """(stacked batches on the device, number of batches, number of real examples)."""
        count = sum(len(b["x"]) for b in batches)
        data = stack_batches(batches, self.rows, self.stream.batch_size, mask=True)
        return self.put(data), len(batches), count

    def __call__(self, replicas: ReplicaState) -> dict[str, np.ndarray]:
        sums = zero_sums(self.program, replicas)
        count = 0
        with Prefetcher(self._pieces(), self.prefetch) as pieces:
            for data, num_batches, n in pieces:
                sums = self.sums_fn(replicas, data, num_batches, sums)
                count += n
        return metric_means(sums, count)


def stream_sample(stream: BatchStream, num_examples: int) -> Batch:
    """The first `num_examples` examples of epoch 0 (model initialisation, diagnostics hooks
    and `trainer.eval_train_examples` of a streamed run)."""
    parts: list[Batch] = []
    have = 0
    for batch in stream.epoch_batches(0):
        parts.append(batch)
        have += len(batch["x"])
        if have >= num_examples:
            break
    return {k: np.concatenate([p[k] for p in parts])[:num_examples] for k in parts[0]}
