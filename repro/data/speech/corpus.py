"""An offline speech corpus synthesized by espeak-ng: ``build_corpus`` writes it, ``verify_corpus``
checks it. The command line is ``python -m repro.data.speech build --out DIR --hours H``.

Layout of DIR:

    corpus.json                     what was built, how, and the manifests' sha256
    manifest_{train,validation,test}.jsonl
    {train,validation,test}/<id>.wav   16 kHz mono 16-bit PCM WAV (44-byte header)

Each manifest line is a JSON object (NeMo style), keys in this order: ``id``,
``audio_filepath`` (relative to DIR), ``duration`` (s, samples / 16000), ``text`` (normalized,
passes ``check_transcript``), ``accent``, ``variant``, ``rate_wpm``, ``pitch``, ``noise``
("white" | "pink" | null), ``snr_db`` (float | null), ``sha256`` (of the wav file's bytes).

An utterance, from its own generator ``SeedSequence(seed, spawn_key=(split, index, stream))``:

- text: ``texts.transcript`` (30 % digit strings, 70 % sentences);
- voice: an (accent, variant) of its split's voices, uniform; rate uniform in [130, 200]
  words per minute, pitch uniform in [30, 70] (integers);
- audio: espeak-ng at 22050 Hz -> ``scipy.signal.resample_poly(x, 320, 441)`` (16 kHz) ->
  zero padding of U(0.05, 0.25) s before and after = clean speech c[n];
- noise: none with probability 0.25, else white or pink (equally likely) at an SNR of 30, 20
  or 10 dB (equally likely), SNR = 10 log10(sum c^2 / sum v^2) over the whole utterance
  (padding included), exactly: v = u sqrt(mean(c^2) / (mean(u^2) 10^(SNR/10))) for unit noise u;
- level: x = g (c + v) with g such that max |x| = -1 dBFS (0.891), PCM = round(32767 x).

Voices: the 8 English accents x 19 variants (m1-m8, f1-f5, klatt, klatt2-klatt6) = 152;
validation and test each get 10 % of them (15), train the rest (122), disjoint, drawn from the
seed. Sizes: train gets utterances 0, 1, ... until its audio reaches ``hours``; validation and
test each until 10 % of that, and every split has at least 5 utterances.

Determinism: the same arguments give byte-identical wav files and manifests, for any
``workers`` (each utterance depends only on (seed, split, index); tts.py explains how the
engine is made to comply), on the same platform and library versions. ``corpus.json`` also
records the build's wall time, so it differs between builds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from repro.data.speech import texts
from repro.data.speech.tts import EspeakSynthesizer
from repro.data.speech.vocabulary import TranscriptError, check_transcript
from repro.errors import ConfigError

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SAMPLE_RATE = 16_000
ENGINE_RATE = 22_050
RESAMPLE_UP_DOWN = (320, 441)  # 22050 * 320 / 441 = 16000
PEAK_DBFS = -1.0
PCM_SCALE = 32767
ACCENTS: tuple[str, ...] = ("en", "en-US", "en-GB-scotland", "en-GB-x-rp", "en-029",
                            "en-US-nyc", "en-GB-x-gbclan", "en-GB-x-gbcwmd")  # fmt: skip
VARIANTS: tuple[str, ...] = (
    *(f"m{i}" for i in range(1, 9)), *(f"f{i}" for i in range(1, 6)),
    "klatt", *(f"klatt{i}" for i in range(2, 7)),
)  # fmt: skip
RATE_WPM = (130, 200)  # inclusive integer bounds
PITCH = (30, 70)
PAD_SECONDS = (0.05, 0.25)
CLEAN_PROBABILITY = 0.25
NOISE_KINDS: tuple[str, ...] = ("white", "pink")
SNRS_DB: tuple[float, ...] = (30.0, 20.0, 10.0)
HELDOUT_VOICE_FRACTION = 0.1  # of all voices, for validation and for test each
EVAL_FRACTION = 0.1  # of the training hours, for validation and for test each
MIN_UTTERANCES = 5
MANIFEST_KEYS: tuple[str, ...] = (
    "id", "audio_filepath", "duration", "text", "accent", "variant", "rate_wpm", "pitch",
    "noise", "snr_db", "sha256",
)  # fmt: skip
_SPLIT_KEY = {split: i for i, split in enumerate(SPLITS)}
_VOICE_KEY = 1000  # spawn_key of the voice assignment, apart from the per-split (0, 1, 2) keys
_PLAN_STREAM, _NOISE_STREAM = 0, 1
_BUILDING_MARKER = ".building"

Voice = tuple[str, str]  # (accent, variant)


# ----------------------------------------------------------------------------- planning


def _generator(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def voice_splits(seed: int) -> dict[str, tuple[Voice, ...]]:
    """Disjoint voice sets of the splits: a seeded permutation of ACCENTS x VARIANTS, its first
    ``HELDOUT_VOICE_FRACTION`` for validation, the next as many for test, the rest train."""
    voices = [(a, v) for a in ACCENTS for v in VARIANTS]
    order = _generator(seed, _VOICE_KEY).permutation(len(voices))
    held = max(1, round(HELDOUT_VOICE_FRACTION * len(voices)))
    chosen = {
        "validation": order[:held],
        "test": order[held : 2 * held],
        "train": order[2 * held :],
    }
    return {split: tuple(voices[i] for i in sorted(chosen[split])) for split in SPLITS}


@dataclasses.dataclass(frozen=True)
class UtteranceSpec:
    """Everything that determines one utterance (``plan_utterance``)."""

    seed: int
    split: str
    index: int
    text: str
    accent: str
    variant: str
    rate_wpm: int
    pitch: int
    pad_samples: tuple[int, int]  # zeros before and after the speech, at SAMPLE_RATE
    noise: str | None
    snr_db: float | None
    engine_seed: int

    @property
    def id(self) -> str:
        return f"{self.split}-{self.index:06d}"


def plan_utterance(seed: int, split: str, index: int, voices: tuple[Voice, ...]) -> UtteranceSpec:
    """The utterance ``index`` of ``split``, drawn from its own generator (module docstring)."""
    rng = _generator(seed, _SPLIT_KEY[split], index, _PLAN_STREAM)
    text = texts.transcript(rng)
    accent, variant = voices[int(rng.integers(len(voices)))]
    rate = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    pads = tuple(round(float(p) * SAMPLE_RATE) for p in rng.uniform(*PAD_SECONDS, size=2))
    noisy = rng.random() >= CLEAN_PROBABILITY
    noise = str(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]) if noisy else None
    snr = float(SNRS_DB[int(rng.integers(len(SNRS_DB)))]) if noisy else None
    engine_seed = int(rng.integers(2**31))
    return UtteranceSpec(seed, split, index, text, accent, variant, rate, pitch, pads, noise, snr,
                         engine_seed)  # fmt: skip


# ---------------------------------------------------------------------------- audio


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of N(0, 1) noise, float64."""
    return rng.standard_normal(n)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of 1/f noise: white noise with its spectrum scaled by 1/sqrt(f) (power
    proportional to 1/f), zero mean (the DC bin is removed); float64, unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(freqs[1:])
    pink = np.fft.irfft(spectrum, n)
    power = np.mean(pink**2)
    return pink / np.sqrt(power) if power > 0 else pink


def scaled_noise(
    clean: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator
) -> np.ndarray:
    """Noise v of ``kind`` ("white" | "pink") the length of ``clean`` with
    10 log10(sum clean^2 / sum v^2) = snr_db exactly (power over the whole signal)."""
    makers = {"white": white_noise, "pink": pink_noise}
    if kind not in makers:
        raise ValueError(f"noise kind must be one of {sorted(makers)}, got {kind!r}")
    unit = makers[kind](len(clean), rng)
    target_power = np.mean(np.square(clean, dtype=np.float64)) / 10.0 ** (snr_db / 10.0)
    return unit * np.sqrt(target_power / np.mean(unit**2))


def to_corpus_rate(samples: np.ndarray) -> np.ndarray:
    """int16 engine samples (22050 Hz) -> float64 at 16 kHz in [-1, 1] full scale."""
    from scipy.signal import resample_poly  # imported here: scipy.signal takes a second

    return resample_poly(samples.astype(np.float64) / PCM_SCALE, *RESAMPLE_UP_DOWN)


@dataclasses.dataclass(frozen=True)
class RenderedUtterance:
    """pcm: the int16 samples written; clean, noise: float64 in the same units
    (pcm ~= round(32767 (clean + noise))), so the file's SNR can be measured."""

    pcm: np.ndarray
    clean: np.ndarray
    noise: np.ndarray


def render_utterance(spec: UtteranceSpec, synthesizer: EspeakSynthesizer) -> RenderedUtterance:
    """Synthesize, resample, pad, add noise, peak-normalize (module docstring)."""
    speech = synthesizer.synthesize(
        spec.text, spec.accent, spec.variant, spec.rate_wpm, spec.pitch, seed=spec.engine_seed
    )
    if synthesizer.sample_rate != ENGINE_RATE or speech.size == 0:
        raise RuntimeError(f"espeak-ng gave {speech.size} samples at {synthesizer.sample_rate} Hz")
    clean = np.pad(to_corpus_rate(speech), spec.pad_samples)
    noise = np.zeros_like(clean)
    if spec.noise is not None:
        rng = _generator(spec.seed, _SPLIT_KEY[spec.split], spec.index, _NOISE_STREAM)
        noise = scaled_noise(clean, spec.snr_db, spec.noise, rng)
    gain = 10.0 ** (PEAK_DBFS / 20.0) / np.max(np.abs(clean + noise))
    clean, noise = gain * clean, gain * noise
    pcm = np.round(PCM_SCALE * (clean + noise)).astype(np.int16)
    return RenderedUtterance(pcm, clean, noise)


def wav_bytes(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM RIFF/WAVE file (44-byte header) of int16 ``pcm``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def make_item(spec: UtteranceSpec, synthesizer: EspeakSynthesizer) -> tuple[dict, bytes]:
    """The manifest row and the wav file bytes of one utterance."""
    rendered = render_utterance(spec, synthesizer)
    data = wav_bytes(rendered.pcm)
    row = {
        "id": spec.id,
        "audio_filepath": f"{spec.split}/{spec.id}.wav",
        "duration": len(rendered.pcm) / SAMPLE_RATE,
        "text": spec.text,
        "accent": spec.accent,
        "variant": spec.variant,
        "rate_wpm": spec.rate_wpm,
        "pitch": spec.pitch,
        "noise": spec.noise,
        "snr_db": spec.snr_db,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return row, data


# ------------------------------------------------------------------ parallel rendering

# The per-process state of rendering: (seed, voices of each split, synthesizer).
_state: tuple[int, dict[str, tuple[Voice, ...]], EspeakSynthesizer] | None = None


def _init_renderer(seed: int, voices: dict[str, tuple[Voice, ...]]) -> None:
    global _state
    _state = (seed, voices, EspeakSynthesizer())


def _render_job(job: tuple[str, int]) -> tuple[dict, bytes]:
    seed, voices, synthesizer = _state
    split, index = job
    return make_item(plan_utterance(seed, split, index, voices[split]), synthesizer)


def _split_items(
    split: str, target_s: float, render: Callable[[list], Iterable[tuple[dict, bytes]]]
) -> Iterator[tuple[dict, bytes]]:
    """Utterances 0, 1, ... of ``split`` (rendered in batches by ``render``) until their audio
    reaches ``target_s`` seconds and ``MIN_UTTERANCES``. Batches are sized from the mean
    duration so far; the rest of the last batch is dropped, so which utterances a split holds
    does not depend on how the work was divided."""
    count, total, mean_s = 0, 0.0, 2.0  # 2 s: a first guess of the mean duration
    while total < target_s or count < MIN_UTTERANCES:
        size = max(MIN_UTTERANCES - count, math.ceil(1.05 * (target_s - total) / mean_s), 2)
        size = min(size, 2000)  # bounded: a batch's results wait in memory
        jobs = [(split, count + i) for i in range(size)]
        for row, data in render(jobs):
            if total >= target_s and count >= MIN_UTTERANCES:
                continue  # past the end; still consumed, so no work stays queued
            yield row, data
            count, total = count + 1, total + row["duration"]
        mean_s = total / count


@contextlib.contextmanager
def _renderer(seed: int, voices: dict, workers: int) -> Iterator[Callable]:
    """A function: jobs -> their (row, wav bytes) in order; in ``workers`` spawned processes
    (fresh interpreters: nothing inherited) or, for one worker, here."""
    if workers == 1:
        _init_renderer(seed, voices)
        yield lambda jobs: map(_render_job, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_renderer, initargs=(seed, voices)) as pool:
        yield lambda jobs: pool.imap(_render_job, jobs, chunksize=4)


def _write_split(partial: Path, split: str, items: Iterable, bar) -> tuple[int, float]:
    """Write the wav files and manifest of ``split``; its utterance count and seconds."""
    count, seconds = 0, 0.0
    with open(partial / f"manifest_{split}.jsonl", "w", encoding="utf-8", newline="\n") as out:
        for row, data in items:
            (partial / row["audio_filepath"]).write_bytes(data)
            out.write(json.dumps(row) + "\n")
            count, seconds = count + 1, seconds + row["duration"]
            bar.update(row["duration"])
    return count, seconds


# ------------------------------------------------------------------ directory handling


def _check_arguments(hours: float, seed: int, workers: int) -> None:
    if not (isinstance(hours, int | float) and math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--hours must be a number of training hours > 0, got {hours!r}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise ConfigError(f"--seed must be an integer >= 0, got {seed!r}")


def _prepare_partial(out: Path, force: bool) -> Path:
    """``out.partial``, fresh, with the split folders; ConfigError for an ``out`` that is not
    a directory, is not empty (without ``force``) or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} exists and is not empty (use --force to replace it)")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        if not (partial / _BUILDING_MARKER).exists():
            raise ConfigError(f"--out: {partial} exists and is not a build in progress")
        shutil.rmtree(partial)  # a killed build's leftovers
    try:
        for split in SPLITS:
            (partial / split).mkdir(parents=True)
        (partial / _BUILDING_MARKER).touch()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror})") from None
    return partial


def _publish(partial: Path, out: Path) -> None:
    """Move the finished ``partial`` to ``out`` by renames (an old ``out`` aside, then gone)."""
    (partial / _BUILDING_MARKER).unlink()
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        os.replace(out, aside)  # replaces the empty temporary directory
    os.replace(partial, out)
    if aside is not None:
        shutil.rmtree(aside)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- build


def build_corpus(
    out_dir: str | os.PathLike[str],
    hours: float,
    seed: int = 0,
    workers: int = 1,
    force: bool = False,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Build the corpus in ``out_dir`` (module docstring) and return its ``corpus.json``.

    ``hours``: hours of training audio; ``workers``: processes (the result does not depend on
    it); ``force``: replace a non-empty ``out_dir``; ``progress``: a tqdm bar (None: only on a
    terminal). Everything is written to ``<out_dir>.partial`` first and renamed at the end, so
    a killed build never leaves a complete-looking ``out_dir``. Bad arguments: ConfigError."""
    _check_arguments(hours, seed, workers)
    out = Path(os.path.abspath(out_dir))
    partial = _prepare_partial(out, force)
    started = time.perf_counter()
    voices = voice_splits(seed)
    targets = {"train": 3600.0 * hours}
    targets |= {split: EVAL_FRACTION * targets["train"] for split in ("validation", "test")}
    counts, seconds = _render_all(partial, seed, workers, voices, targets, progress)
    info = _corpus_info(out, hours, seed, workers, force, voices, counts, seconds)
    for split in SPLITS:
        info["splits"][split]["manifest_sha256"] = _sha256_file(partial / f"manifest_{split}.jsonl")
    info["build_wall_time_s"] = round(time.perf_counter() - started, 3)
    (partial / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    _publish(partial, out)
    return info


def _render_all(partial, seed, workers, voices, targets, progress):
    """Render and write every split into ``partial``; utterance counts and seconds per split."""
    from tqdm import tqdm  # imported here: only a build shows progress

    disable = None if progress is None else not progress  # None: tqdm's "only on a terminal"
    counts, seconds = {}, {}
    with (
        tqdm(total=round(sum(targets.values())), unit="s", desc="speech", disable=disable) as bar,
        _renderer(seed, voices, workers) as render,
    ):
        for split in SPLITS:
            items = _split_items(split, targets[split], render)
            counts[split], seconds[split] = _write_split(partial, split, items, bar)
    return counts, seconds


def _corpus_info(out, hours, seed, workers, force, voices, counts, seconds) -> dict[str, Any]:
    """The content of corpus.json, less the manifests' sha256 and the wall time."""
    synthesizer = EspeakSynthesizer()
    command = f"python -m repro.data.speech build --out {out} --hours {hours} --seed {seed}"
    command += f" --workers {workers}" + (" --force" if force else "")
    split_info = {
        split: {
            "utterances": counts[split],
            "hours": seconds[split] / 3600.0,
            "manifest": f"manifest_{split}.jsonl",
            "voices": [list(voice) for voice in voices[split]],
        }
        for split in SPLITS
    }
    return {
        "format_version": FORMAT_VERSION,
        "command": command,
        "arguments": {"out": str(out), "hours": hours, "seed": seed, "workers": workers},
        "seed": seed,
        "espeak_ng_version": synthesizer.version,
        "espeakng_loader_version": metadata.version("espeakng-loader"),
        "sample_rate": SAMPLE_RATE,
        "engine_sample_rate": synthesizer.sample_rate,
        "resampling": "scipy.signal.resample_poly(x, 320, 441)",
        "sample_format": "wav, mono, 16-bit PCM",
        "peak_dbfs": PEAK_DBFS,
        "padding_s": list(PAD_SECONDS),
        "accents": list(ACCENTS),
        "variants": list(VARIANTS),
        "rate_wpm": list(RATE_WPM),
        "pitch": list(PITCH),
        "noise": {
            "clean_probability": CLEAN_PROBABILITY,
            "kinds": list(NOISE_KINDS),
            "snr_db": list(SNRS_DB),
            "snr_definition": "10 log10(sum clean^2 / sum noise^2) over the whole utterance",
        },
        "text_mix": {"digits": texts.DIGIT_FRACTION, "sentences": 1.0 - texts.DIGIT_FRACTION},
        "eval_fraction_of_train_hours": EVAL_FRACTION,
        "min_utterances_per_split": MIN_UTTERANCES,
        "splits": split_info,
    }


# ------------------------------------------------------------------------------ verify


def verify_corpus(corpus_dir: str | os.PathLike[str]) -> list[str]:
    """Problems of a built corpus (empty: none): a missing or unreadable corpus.json, manifest
    or wav file, a sha256 that does not match, a wav that is not 16 kHz mono 16-bit or whose
    length is not its ``duration``, an invalid transcript, a voice outside its split's."""
    root = Path(corpus_dir)
    try:
        info = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{root / 'corpus.json'}: cannot read ({exc})"]
    if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
        return [f"corpus.json: not a format_version {FORMAT_VERSION} corpus description"]
    problems = []
    for split in SPLITS:
        try:
            problems += _verify_split(root, split, info["splits"][split])
        except (KeyError, TypeError) as exc:
            problems.append(f"corpus.json: split {split!r} is malformed ({exc!r})")
    return problems


def _verify_split(root: Path, split: str, info: dict) -> list[str]:
    manifest = root / info["manifest"]
    if not manifest.is_file():
        return [f"{info['manifest']}: missing"]
    problems = []
    if _sha256_file(manifest) != info["manifest_sha256"]:
        problems.append(f"{info['manifest']}: sha256 differs from corpus.json's")
    lines = manifest.read_text().splitlines()
    if len(lines) != info["utterances"]:
        problems.append(
            f"{info['manifest']}: {len(lines)} lines, corpus.json says {info['utterances']}"
        )
    voices = {tuple(voice) for voice in info["voices"]}
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            problems.append(f"{info['manifest']} line {number}: not a JSON object")
            continue
        problems += _verify_row(root, row, voices)
    return problems


def _verify_row(root: Path, row: dict, voices: set[Voice]) -> list[str]:
    name = row.get("audio_filepath", "?")
    if list(row) != list(MANIFEST_KEYS):
        return [f"{name}: manifest keys {list(row)}, expected {list(MANIFEST_KEYS)}"]
    path = root / name
    if not path.is_file():
        return [f"{name}: missing"]
    data = path.read_bytes()
    problems = []
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        problems.append(f"{name}: sha256 mismatch")
    problems += _verify_wav(name, data, row["duration"])
    try:
        if check_transcript(row["text"]) != row["text"]:
            problems.append(f"{name}: text {row['text']!r} is not normalized")
    except TranscriptError as exc:
        problems.append(f"{name}: {exc}")
    if (row["accent"], row["variant"]) not in voices:
        problems.append(f"{name}: voice {row['accent']}+{row['variant']} is not its split's")
    return problems


def _verify_wav(name: str, data: bytes, duration: float) -> list[str]:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            layout = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            frames = wav.getnframes()
    except (wave.Error, EOFError) as exc:
        return [f"{name}: not a readable wav ({exc})"]
    problems = []
    if layout != (SAMPLE_RATE, 1, 2):
        problems.append(f"{name}: (rate, channels, bytes) {layout}, expected ({SAMPLE_RATE}, 1, 2)")
    if abs(frames / SAMPLE_RATE - duration) > 1e-9:
        problems.append(f"{name}: {frames} samples, manifest duration {duration} s")
    return problems
