"""The synthetic speech corpus (``python -m repro.data.speech``): real espeak-ng builds of a few
seconds of audio through the command line and the API, checked file by file."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from repro.data.speech import (
    ACCENTS,
    MANIFEST_KEYS,
    SPLITS,
    VARIANTS,
    EspeakSynthesizer,
    build_corpus,
    check_transcript,
    pink_noise,
    plan_utterance,
    render_utterance,
    scaled_noise,
    transcript,
    verify_corpus,
    vocabulary,
    voice_splits,
    white_noise,
)
from repro.data.speech import __main__ as cli
from repro.data.speech import corpus as corpus_module
from repro.data.speech import texts as texts_module

REPO_ROOT = Path(__file__).resolve().parents[2]
HOURS = 0.005  # 18 s of training audio: about 10 + 5 + 5 utterances, under a second to build
# Measured on a 1-hour build (2390 utterances): |measured - stated SNR| <= 3.3e-4 dB (int16
# rounding); speech seconds / (words * 60 / rate_wpm) in [0.57, 1.47]; wav RMS >= 0.036.
SNR_TOLERANCE_DB = 0.01
SPEECH_RATIO_BOUNDS = (0.4, 2.0)
MIN_RMS = 0.02


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "repro.data.speech", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def read_manifest(root: Path, split: str) -> list[dict]:
    return [
        json.loads(line) for line in (root / f"manifest_{split}.jsonl").read_text().splitlines()
    ]


def all_rows(root: Path) -> list[tuple[str, dict]]:
    return [(split, row) for split in SPLITS for row in read_manifest(root, split)]


def corpus_files(root: Path) -> dict[str, bytes]:
    """Every file's bytes but corpus.json's (it records the wall time and the command)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "corpus.json")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def stable_info(root: Path) -> dict:
    info = json.loads((root / "corpus.json").read_text())
    for key in ("build_wall_time_s", "command", "arguments"):
        info.pop(key)
    return info


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A corpus built by the real command line with one worker, and the finished process."""
    out = tmp_path_factory.mktemp("speech") / "corpus"
    result = run_cli("build", "--out", str(out), "--hours", str(HOURS))
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def corpus_dir(built) -> Path:
    return built[0]


# ------------------------------------------------------------------------- the build


def test_build_prints_one_summary_line_and_writes_the_layout(built):
    root, result = built
    assert result.stdout.count("\n") == 1
    assert re.fullmatch(r"built \d+ utterances \(train \d+, validation \d+, test \d+\), .*\n",
                        result.stdout)  # fmt: skip
    names = {p.name for p in root.iterdir()}
    assert names == {"corpus.json", *SPLITS, *(f"manifest_{s}.jsonl" for s in SPLITS)}
    assert not root.with_name("corpus.partial").exists()


def test_corpus_json_records_the_build(corpus_dir):
    info = json.loads((corpus_dir / "corpus.json").read_text())
    assert info["format_version"] == 1 and info["seed"] == 0
    assert info["arguments"]["hours"] == HOURS and "--hours 0.005" in info["command"]
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?.*", info["espeak_ng_version"])
    assert info["espeakng_loader_version"] and info["build_wall_time_s"] > 0
    assert info["sample_rate"] == 16000 and info["engine_sample_rate"] == 22050
    assert info["text_mix"] == {"digits": 0.3, "sentences": 0.7}
    assert info["noise"]["snr_db"] == [30.0, 20.0, 10.0]
    for split in SPLITS:
        split_info, rows = info["splits"][split], read_manifest(corpus_dir, split)
        assert split_info["utterances"] == len(rows) >= 5
        manifest = (corpus_dir / f"manifest_{split}.jsonl").read_bytes()
        assert split_info["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
        assert split_info["hours"] == pytest.approx(sum(r["duration"] for r in rows) / 3600)
    assert info["splits"]["train"]["hours"] >= HOURS
    # the next utterance would have been too many: the count is the smallest that reaches HOURS
    train = read_manifest(corpus_dir, "train")
    assert sum(r["duration"] for r in train[:-1]) < 3600 * HOURS


def test_manifest_rows(corpus_dir):
    for split, row in all_rows(corpus_dir):
        assert tuple(row) == MANIFEST_KEYS
        assert row["audio_filepath"] == f"{split}/{row['id']}.wav"
        assert check_transcript(row["text"]) == row["text"]
        assert row["accent"] in ACCENTS and row["variant"] in VARIANTS
        assert 130 <= row["rate_wpm"] <= 200 and 30 <= row["pitch"] <= 70
        assert (row["noise"] is None) == (row["snr_db"] is None)
        assert row["noise"] in (None, "white", "pink") and row["snr_db"] in (None, 10, 20, 30)
        data = (corpus_dir / row["audio_filepath"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]


def test_wav_files_are_16khz_mono_int16_of_the_stated_duration(corpus_dir):
    for _, row in all_rows(corpus_dir):
        info = sf.info(corpus_dir / row["audio_filepath"])
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "WAV", "PCM_16", 16000, 1,
        )  # fmt: skip
        assert info.frames == round(row["duration"] * 16000)


def test_speech_is_not_silence_and_lasts_as_long_as_its_words(corpus_dir):
    voices = voice_splits(0)
    for split, row in all_rows(corpus_dir):
        audio, _ = sf.read(corpus_dir / row["audio_filepath"])
        assert np.sqrt(np.mean(audio**2)) > MIN_RMS
        assert np.max(np.abs(audio)) == pytest.approx(10 ** (-1 / 20), abs=1e-4)  # -1 dBFS
        index = int(row["id"].rsplit("-", 1)[1])
        pads = plan_utterance(0, split, index, voices[split]).pad_samples
        speech_s = row["duration"] - sum(pads) / 16000
        expected_s = len(row["text"].split()) * 60 / row["rate_wpm"]
        assert SPEECH_RATIO_BOUNDS[0] < speech_s / expected_s < SPEECH_RATIO_BOUNDS[1], row


def test_splits_have_disjoint_recorded_voices(corpus_dir):
    info = json.loads((corpus_dir / "corpus.json").read_text())
    voices = {split: {tuple(v) for v in info["splits"][split]["voices"]} for split in SPLITS}
    assert [len(voices[s]) for s in SPLITS] == [122, 15, 15]
    assert set.union(*voices.values()) == {(a, v) for a in ACCENTS for v in VARIANTS}
    assert not voices["train"] & voices["validation"]
    assert not voices["train"] & voices["test"]
    assert not voices["validation"] & voices["test"]
    for split, row in all_rows(corpus_dir):
        assert (row["accent"], row["variant"]) in voices[split]


def test_voice_splits_depend_on_the_seed_only():
    assert voice_splits(3) == voice_splits(3)
    assert voice_splits(3) != voice_splits(4)


# --------------------------------------------------------------------------- verify


def test_verify_passes_then_fails_on_a_flipped_byte(corpus_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus_dir, copy)
    result = run_cli("verify", str(copy))
    assert (result.returncode, result.stdout) == (0, f"ok: {copy}\n")
    wav = copy / "validation" / "validation-000002.wav"
    data = bytearray(wav.read_bytes())
    data[1000] ^= 0x01
    wav.write_bytes(bytes(data))
    result = run_cli("verify", str(copy))
    assert result.returncode == 1
    assert result.stdout == "validation/validation-000002.wav: sha256 mismatch\n"


def test_verify_reports_missing_and_altered_files(corpus_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus_dir, copy)
    (copy / "test" / "test-000000.wav").unlink()
    with open(copy / "manifest_train.jsonl", "a") as manifest:
        manifest.write("\n")  # any change to a manifest shows in its sha256
    problems = verify_corpus(copy)
    assert "test/test-000000.wav: missing" in problems
    assert "manifest_train.jsonl: sha256 differs from corpus.json's" in problems
    n_train = len(read_manifest(corpus_dir, "train"))
    assert f"manifest_train.jsonl: {n_train + 1} lines, corpus.json says {n_train}" in problems
    assert f"manifest_train.jsonl line {n_train + 1}: not a JSON object" in problems
    (copy / "corpus.json").unlink()
    assert verify_corpus(copy) == [
        f"{copy / 'corpus.json'}: cannot read ([Errno 2] No such file or directory: "
        f"'{copy / 'corpus.json'}')"
    ]


# ---------------------------------------------------------------------- determinism


def test_same_arguments_give_identical_files_whatever_the_workers(corpus_dir, tmp_path):
    expected = corpus_files(corpus_dir)
    assert len(expected) == 3 + sum(len(read_manifest(corpus_dir, s)) for s in SPLITS)
    again = tmp_path / "again"
    build_corpus(again, HOURS, seed=0, workers=1)
    assert corpus_files(again) == expected
    two_workers = tmp_path / "two_workers"
    result = run_cli("build", "--out", str(two_workers), "--hours", str(HOURS), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert corpus_files(two_workers) == expected
    assert stable_info(again) == stable_info(two_workers) == stable_info(corpus_dir)


def test_another_seed_gives_other_utterances():
    voices = voice_splits(0)["train"]
    first = [plan_utterance(0, "train", i, voices) for i in range(20)]
    assert first == [plan_utterance(0, "train", i, voices) for i in range(20)]
    assert [u.text for u in first] != [
        plan_utterance(1, "train", i, voices).text for i in range(20)
    ]


# ---------------------------------------------------------------------------- noise


def test_noisy_files_have_their_stated_snr(corpus_dir):
    """The file minus its clean component (re-rendered) is the noise: its SNR is snr_db."""
    voices, synthesizer = voice_splits(0), EspeakSynthesizer()
    noisy = [(split, row) for split, row in all_rows(corpus_dir) if row["noise"] is not None]
    assert {row["noise"] for _, row in noisy} == {"white", "pink"}
    for split, row in noisy[:6]:
        spec = plan_utterance(0, split, int(row["id"].rsplit("-", 1)[1]), voices[split])
        assert (spec.noise, spec.snr_db, spec.text) == (row["noise"], row["snr_db"], row["text"])
        rendered = render_utterance(spec, synthesizer)
        pcm, _ = sf.read(corpus_dir / row["audio_filepath"], dtype="int16")
        np.testing.assert_array_equal(pcm, rendered.pcm)
        residual = pcm / 32767 - rendered.clean
        measured = 10 * np.log10(np.sum(rendered.clean**2) / np.sum(residual**2))
        assert measured == pytest.approx(row["snr_db"], abs=SNR_TOLERANCE_DB)


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_scaled_noise_has_the_exact_snr_and_is_seeded(kind):
    clean = 0.3 * np.sin(np.linspace(0, 200 * np.pi, 16000)) * np.hanning(16000)
    noise = scaled_noise(clean, 10.0, kind, np.random.default_rng(5))
    assert 10 * np.log10(np.sum(clean**2) / np.sum(noise**2)) == pytest.approx(10.0, abs=1e-9)
    np.testing.assert_array_equal(noise, scaled_noise(clean, 10.0, kind, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="noise kind must be one of"):
        scaled_noise(clean, 10.0, "brown", np.random.default_rng(5))


@pytest.mark.parametrize(("maker", "slope"), [(white_noise, 0.0), (pink_noise, -1.0)])
def test_noise_power_spectrum_slope(maker, slope):
    """log power vs log frequency: 0 for white noise, -1 for pink (1/f) noise."""
    n = 2**16
    x = maker(n, np.random.default_rng(0))
    assert np.mean(x**2) == pytest.approx(1.0, rel=0.02)
    power = np.abs(np.fft.rfft(x)[1:]) ** 2
    bands = np.array_split(np.arange(1, len(power) + 1), 64)  # average: a smooth spectrum
    log_f = np.log([band.mean() for band in bands])
    log_p = np.log([power[band - 1].mean() for band in bands])
    assert np.polyfit(log_f, log_p, 1)[0] == pytest.approx(slope, abs=0.1)


# ------------------------------------------------------------------------ bad input


def run_main(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--hours", "0"], "--hours"),
        (["--hours", "-1"], "--hours"),
        (["--hours", "nan"], "--hours"),
        (["--hours", "many"], "--hours"),
        (["--hours", "1", "--workers", "0"], "--workers"),
        (["--hours", "1", "--workers", "1.5"], "--workers"),
        (["--hours", "1", "--seed", "-3"], "--seed"),
    ],
)
def test_bad_options_are_one_line_exit_2(args, option, tmp_path, capsys):
    code, err = run_main(["build", "--out", str(tmp_path / "x"), *args], capsys)
    assert code == 2 and err.count("\n") == 1 and option in err and "Traceback" not in err
    assert err.startswith("python -m repro.data.speech: error: ")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_existing_or_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, err = run_main(["build", "--out", str(full), "--hours", "0.001"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--out" in err and "--force" in err
    assert (full / "keep.txt").read_text() == "mine"
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    for out in (not_a_dir, not_a_dir / "corpus"):  # a file; below a file: cannot be created
        code, err = run_main(["build", "--out", str(out), "--hours", "0.001"], capsys)
        assert code == 2 and err.count("\n") == 1 and "--out" in err, err
    code, err = run_main(["verify", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and err.count("\n") == 1 and "not a directory" in err


def test_bad_input_through_the_real_command_line(tmp_path):
    result = run_cli("build", "--out", str(tmp_path / "corpus"), "--hours", "-2")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "python -m repro.data.speech: error: --hours must be a number of training hours > 0, "
        "got -2.0\n"
    )


def test_force_replaces_a_non_empty_out(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "old.txt").write_text("old")
    info = build_corpus(out, 0.001, force=True)
    assert not (out / "old.txt").exists() and (out / "corpus.json").is_file()
    assert info["splits"]["train"]["utterances"] == 5  # at least MIN_UTTERANCES
    assert verify_corpus(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # nothing left aside


def test_a_failed_build_leaves_no_complete_looking_out(tmp_path, monkeypatch):
    calls = collections.Counter()
    render_job = corpus_module._render_job

    def failing(job):
        calls["n"] += 1
        if calls["n"] > 7:  # in the middle of the train split
            raise RuntimeError("killed")
        return render_job(job)

    monkeypatch.setattr(corpus_module, "_render_job", failing)
    out = tmp_path / "corpus"
    with pytest.raises(RuntimeError, match="killed"):
        build_corpus(out, HOURS)
    assert not out.exists()
    partial = tmp_path / "corpus.partial"
    assert (partial / ".building").exists() and not (partial / "corpus.json").exists()
    monkeypatch.setattr(corpus_module, "_render_job", render_job)
    build_corpus(out, 0.001)  # a new build replaces the leftovers
    assert not partial.exists() and verify_corpus(out) == []


# ---------------------------------------------------------------------- synthesizer


@pytest.fixture(scope="module")
def synthesizer() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def test_synthesizer_rate_version_and_speech(synthesizer):
    assert synthesizer.sample_rate == 22050
    assert re.fullmatch(r"\d+\.\d+\.\d+", synthesizer.version)
    assert set(ACCENTS) <= set(synthesizer.languages())
    assert set(VARIANTS) <= set(synthesizer.variants())
    short = synthesizer.synthesize("one two three", "en-US", "m3", 160, 50)
    long = synthesizer.synthesize("one two three four five six seven eight nine", "en-US", "m3")
    fast = synthesizer.synthesize("one two three four five six seven eight nine", "en-US", "m3",
                                  rate_wpm=300)  # fmt: skip
    assert short.dtype == np.int16 and short.ndim == 1
    assert np.sqrt(np.mean(short.astype(np.float64) ** 2)) > 500  # not silence (full scale 32767)
    assert 0.6 < len(short) / 22050 < 2.5
    assert len(long) > 2 * len(short) and len(fast) < 0.75 * len(long)


def test_synthesis_does_not_depend_on_earlier_calls(synthesizer):
    args = ("it's a quiet road", "en-GB-scotland", "klatt", 170, 40)
    first = synthesizer.synthesize(*args, seed=9)
    synthesizer.synthesize("something else entirely", "en-029", "f5", 190, 70, seed=1)
    np.testing.assert_array_equal(synthesizer.synthesize(*args, seed=9), first)


def test_unknown_voice_or_variant_is_a_clear_value_error(synthesizer):
    with pytest.raises(ValueError, match=r"unknown espeak-ng voice 'en-XX'.*'en-US'"):
        synthesizer.synthesize("hello", "en-XX")
    with pytest.raises(ValueError, match=r"unknown espeak-ng voice variant 'm99'.*m3"):
        synthesizer.synthesize("hello", "en-US", "m99")
    with pytest.raises(ValueError, match=r"pitch must be in \[0, 100\], got 120"):
        synthesizer.synthesize("hello", "en-US", "m1", pitch=120)


# ---------------------------------------------------------------------------- texts


def test_transcripts_are_valid_deterministic_and_mixed():
    drawn = [transcript(np.random.default_rng(7)) for _ in range(3)]
    assert drawn[0] == drawn[1] == drawn[2]
    rng = np.random.default_rng(0)
    sample = [transcript(rng) for _ in range(4000)]
    words = vocabulary()
    assert 150 <= len(words) <= 300
    digit_words = set(texts_module.DIGITS) | {"oh"}
    digits = [t for t in sample if set(t.split()) <= digit_words]
    assert len(digits) / len(sample) == pytest.approx(0.3, abs=0.03)
    assert {len(t.split()) for t in digits} == set(range(1, 8))
    assert any("oh" in t.split() for t in digits) and any("zero" in t.split() for t in digits)
    used = collections.Counter(w for t in sample for w in t.split())
    assert set(used) <= words and {"don't", "it's"} <= set(used)
    for text in sample:
        assert check_transcript(text) == text
    sentence_lengths = [len(t.split()) for t in sample if t not in digits]
    assert min(sentence_lengths) >= 2 and max(sentence_lengths) <= 13
