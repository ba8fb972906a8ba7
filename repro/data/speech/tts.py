"""A small ctypes binding of espeak-ng (the copy bundled by the ``espeakng-loader`` package).

``EspeakSynthesizer().synthesize(text, voice, variant, rate_wpm, pitch)`` returns the waveform
as int16 samples [n] at the engine's native rate (``sample_rate``, 22050 Hz for this build).

A voice is a language file of ``espeak-ng-data/lang`` ("en-US", "en-GB-scotland", ...) plus an
optional variant of ``espeak-ng-data/voices/!v`` ("m3", "f2", "klatt", ...), i.e. espeak's
voice name ``"en-US+m3"``. Parameters: ``rate_wpm`` in [80, 450] words per minute, ``pitch``
in [0, 100] (the base pitch; 50 is the voice's own).

Reproducibility. espeak-ng keeps synthesis state across calls (wave phase, flutter index,
Klatt filter memories, ...) that neither a new voice nor ``espeak_Terminate`` +
``espeak_Initialize`` resets: measured here, the same call gives different samples (and a
different length) after other calls. So each utterance is synthesized in a child process
forked from a process where the engine was initialized but never used, with both of its
random generators (its own, for breath noise, and libc's ``rand``) seeded from ``seed``: the
samples then depend only on the arguments, whatever was synthesized before or in which process.
Where ``os.fork`` does not exist (Windows) it synthesizes in-process, without that guarantee.

The library has global state (one voice, one callback): an ``EspeakSynthesizer`` is not
thread-safe, and the engine is initialized once per process (instances share it).
Multiprocessing workers each make their own.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH = 1, 2, 3
# Volume 60 of espeak's 0-200: at the default 100 the klatt4/klatt5 variants clip at 32767.
_VOLUME_LEVEL = 60
RATE_RANGE: tuple[int, int] = (80, 450)
PITCH_RANGE: tuple[int, int] = (0, 100)

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
# Samples of the utterance being synthesized; the callback appends, synthesize() collects.
_chunks: list[np.ndarray] = []


@_SYNTH_CALLBACK
def _collect(wav, n_samples, _events):
    if n_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0  # 0: continue synthesis


class _Engine:
    """The process's initialized library: its handle, sample rate, version and data path."""

    def __init__(self) -> None:
        import espeakng_loader  # the bundled libespeak-ng.so and espeak-ng-data

        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed ({self.sample_rate}) with {self.data_path}"
            )
        lib.espeak_SetSynthCallback(_collect)
        self.version = lib.espeak_Info(None).decode()
        self.lib = lib
        self.libc = ctypes.CDLL(None)  # the process's libc: espeak's Klatt noise uses rand()
        lang = self.data_path / "lang"
        self.languages = sorted(p.name for p in lang.rglob("*") if p.is_file())
        self.variants = sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir())


@functools.cache
def _engine(pid: int) -> _Engine:
    # Keyed by pid: a forked process must not reuse a parent's engine that has synthesized.
    del pid
    return _Engine()


class EspeakSynthesizer:
    """espeak-ng text-to-speech: ``synthesize`` -> int16 [n] at ``sample_rate`` Hz (module
    docstring: voices, parameter ranges, reproducibility; not thread-safe)."""

    def __init__(self) -> None:
        self._engine = _engine(os.getpid())

    @property
    def sample_rate(self) -> int:
        """The engine's native sample rate in Hz (22050)."""
        return self._engine.sample_rate

    @property
    def version(self) -> str:
        """espeak-ng's version string (``espeak_Info``), e.g. "1.52.0"."""
        return self._engine.version

    def languages(self) -> list[str]:
        """Names of the language files (the ``voice`` argument), e.g. "en-US"."""
        return list(self._engine.languages)

    def variants(self) -> list[str]:
        """Names of the voice variants (the ``variant`` argument), e.g. "m3", "klatt"."""
        return list(self._engine.variants)

    def synthesize(
        self,
        text: str,
        voice: str = "en-US",
        variant: str | None = None,
        rate_wpm: int = 175,
        pitch: int = 50,
        seed: int = 0,
    ) -> np.ndarray:
        """Speech of ``text``: int16 [n] at ``sample_rate``; ValueError for an unknown voice or
        variant or a parameter out of range; ``seed`` (>= 0) seeds the engine's noise."""
        name = self._voice_name(voice, variant)
        _check_range("rate_wpm", rate_wpm, RATE_RANGE)
        _check_range("pitch", pitch, PITCH_RANGE)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        job = (name, text, int(rate_wpm), int(pitch), seed % 2**31)
        if hasattr(os, "fork"):
            return _in_forked_child(self._engine, job)
        return _synthesize_here(self._engine, *job)

    def _voice_name(self, voice: str, variant: str | None) -> str:
        # espeak ignores an unknown variant silently ("en-US+nosuch" is plain en-US): check here.
        if voice.lower() not in {name.lower() for name in self.languages()}:
            english = [name for name in self.languages() if name.lower().startswith("en")]
            raise ValueError(f"unknown espeak-ng voice {voice!r} (English voices: {english})")
        if variant is None:
            return voice
        if variant not in self.variants():
            known = ", ".join(self.variants())
            raise ValueError(f"unknown espeak-ng voice variant {variant!r} (known: {known})")
        return f"{voice}+{variant}"


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")


def _synthesize_here(
    engine: _Engine, name: str, text: str, rate_wpm: int, pitch: int, seed: int
) -> np.ndarray:
    """One synthesis in this process; the parameters follow the voice (which resets them)."""
    lib = engine.lib
    status = lib.espeak_SetVoiceByName(name.encode())
    if status != 0:
        raise ValueError(f"espeak-ng cannot load voice {name!r} (status {status})")
    for parameter, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_VOLUME, _VOLUME_LEVEL)):
        lib.espeak_SetParameter(parameter, value, 0)
    lib.espeak_ng_SetRandSeed(seed)
    engine.libc.srand(seed)
    _chunks.clear()
    data = text.encode("utf-8")
    status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if status != 0:
        raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
    samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
    _chunks.clear()
    return samples.astype(np.int16, copy=False)


def _in_forked_child(engine: _Engine, job: tuple) -> np.ndarray:
    """``_synthesize_here(engine, *job)`` in a forked child (this process's engine stays
    unused). The child sends one status byte (0 ok, 1 error) then the int16 samples or the
    error message through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code, never flush its buffers
        os.close(read_fd)
        try:
            try:
                payload = b"\0" + _synthesize_here(engine, *job).tobytes()
            except BaseException as exc:  # reported to the parent, which raises it
                payload = b"\1" + f"{type(exc).__name__}: {exc}".encode()
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    if not payload or os.waitstatus_to_exitcode(wait_status) != 0:
        raise RuntimeError(f"espeak-ng child process failed (wait status {wait_status})")
    if payload[:1] == b"\1":
        message = payload[1:].decode(errors="replace")
        raise (ValueError if message.startswith("ValueError") else RuntimeError)(message)
    return np.frombuffer(payload[1:], np.int16).copy()
