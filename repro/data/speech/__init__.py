"""Speech data: the character vocabulary, an espeak-ng synthesizer, transcript generators and
an offline synthetic corpus (``python -m repro.data.speech build --out DIR --hours H``).

This package's modules import neither JAX nor TensorFlow: the corpus build forks a process per
utterance (``tts``), which a multithreaded JAX runtime in the same process warns against.
"""

from repro.data.speech.corpus import (
    ACCENTS,
    MANIFEST_KEYS,
    SAMPLE_RATE,
    SPLITS,
    VARIANTS,
    RenderedUtterance,
    UtteranceSpec,
    build_corpus,
    make_item,
    pink_noise,
    plan_utterance,
    render_utterance,
    scaled_noise,
    verify_corpus,
    voice_splits,
    wav_bytes,
    white_noise,
)
from repro.data.speech.texts import digit_string, sentence, transcript, vocabulary
from repro.data.speech.tts import EspeakSynthesizer
from repro.data.speech.vocabulary import (
    BLANK_ID,
    LABELS,
    NUM_LABELS,
    SPACE_ID,
    TranscriptError,
    check_transcript,
    decode,
    encode,
    normalize,
)

__all__ = [
    "ACCENTS",
    "BLANK_ID",
    "LABELS",
    "MANIFEST_KEYS",
    "NUM_LABELS",
    "SAMPLE_RATE",
    "SPACE_ID",
    "SPLITS",
    "VARIANTS",
    "EspeakSynthesizer",
    "RenderedUtterance",
    "TranscriptError",
    "UtteranceSpec",
    "build_corpus",
    "check_transcript",
    "decode",
    "digit_string",
    "encode",
    "make_item",
    "normalize",
    "pink_noise",
    "plan_utterance",
    "render_utterance",
    "scaled_noise",
    "sentence",
    "transcript",
    "verify_corpus",
    "vocabulary",
    "voice_splits",
    "wav_bytes",
    "white_noise",
]
