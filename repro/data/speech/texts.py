"""Transcripts for the synthetic speech corpus, drawn deterministically from a numpy Generator.

``transcript(rng)`` is, with probability ``digit_fraction`` (default 0.3), a digit string and
otherwise a sentence:

- digit strings: 1-7 digits (uniform count, uniform digits), each spoken as a word, zero as
  "oh" with probability 0.3 and else "zero" ("four oh nine two");
- sentences: one of the patterns of ``_PATTERNS`` (declarative with a transitive or
  intransitive verb in present or past tense, negation and copula with contractions such as
  "don't", "it's", "there's", questions, "let's" / "i'll" requests), filled from a vocabulary
  of about 300 common words (``vocabulary()``) with subject-verb agreement; 3 to 11 words.

At 130-200 words per minute that is about 0.5-4 s of speech. Every transcript passes
``check_transcript`` (lower case a-z, apostrophe, single spaces).
"""

from __future__ import annotations

import numpy as np

from repro.data.speech.vocabulary import check_transcript

DIGIT_FRACTION = 0.3
MAX_DIGITS = 7
OH_PROBABILITY = 0.3
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

DET_SG = ("the", "a", "this", "that", "every", "my", "your", "our", "her", "his", "their")
DET_PL = ("the", "some", "these", "those", "many", "my", "our", "their", "your")
INDEFINITE_PL = ("some", "many")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
ADJECTIVES = (
    "big", "small", "old", "new", "red", "blue", "green", "black", "white", "brown", "little",
    "young", "happy", "quiet", "loud", "warm", "cold", "dark", "long", "short",
    "quick", "slow", "good", "clean",
)  # fmt: skip
PERSON_ADJECTIVES = ("happy", "tired", "ready", "late", "busy", "sure", "hungry", "sorry", "here")
NOUNS = (  # (singular, plural)
    ("dog", "dogs"), ("cat", "cats"), ("car", "cars"), ("house", "houses"),
    ("child", "children"), ("man", "men"), ("woman", "women"), ("book", "books"),
    ("tree", "trees"), ("river", "rivers"), ("city", "cities"), ("box", "boxes"),
    ("bird", "birds"), ("letter", "letters"), ("door", "doors"), ("window", "windows"),
    ("table", "tables"), ("chair", "chairs"), ("friend", "friends"), ("teacher", "teachers"),
    ("doctor", "doctors"), ("train", "trains"), ("boat", "boats"), ("road", "roads"),
    ("garden", "gardens"), ("apple", "apples"), ("phone", "phones"), ("key", "keys"),
    ("cup", "cups"), ("horse", "horses"), ("student", "students"), ("song", "songs"),
    ("story", "stories"), ("bag", "bags"), ("street", "streets"), ("shop", "shops"),
)  # fmt: skip
TRANSITIVE = (  # (base, third person singular, past)
    ("see", "sees", "saw"), ("find", "finds", "found"), ("take", "takes", "took"),
    ("like", "likes", "liked"), ("want", "wants", "wanted"), ("carry", "carries", "carried"),
    ("open", "opens", "opened"), ("watch", "watches", "watched"), ("paint", "paints", "painted"),
    ("follow", "follows", "followed"), ("help", "helps", "helped"), ("need", "needs", "needed"),
    ("bring", "brings", "brought"), ("move", "moves", "moved"), ("sell", "sells", "sold"),
    ("buy", "buys", "bought"), ("clean", "cleans", "cleaned"), ("draw", "draws", "drew"),
    ("read", "reads", "read"), ("keep", "keeps", "kept"),
)  # fmt: skip
INTRANSITIVE = (
    ("sleep", "sleeps", "slept"), ("run", "runs", "ran"), ("wait", "waits", "waited"),
    ("sit", "sits", "sat"), ("stand", "stands", "stood"), ("sing", "sings", "sang"),
    ("walk", "walks", "walked"), ("stay", "stays", "stayed"), ("work", "works", "worked"),
    ("play", "plays", "played"), ("swim", "swims", "swam"), ("fall", "falls", "fell"),
)  # fmt: skip
PREPOSITIONS = ("in", "on", "under", "near", "behind", "across", "over", "by", "with", "from",
                "at", "into", "beside", "along", "past")  # fmt: skip
# (subject, object, takes the third person singular verb form)
PRONOUNS = (("i", "me", False), ("you", "you", False), ("we", "us", False),
            ("they", "them", False), ("he", "him", True), ("she", "her", True),
            ("it", "it", True))  # fmt: skip
PRESENT_TIMES = ("every day", "today", "now", "again", "at night", "in the morning", "sometimes")
PAST_TIMES = ("yesterday", "last night", "again", "this morning", "last week")
BE_CONTRACTED = {"i": "i'm", "you": "you're", "we": "we're", "they": "they're",
                 "he": "he's", "she": "she's", "it": "it's"}  # fmt: skip
# Words the patterns below spell out themselves.
FUNCTION_WORDS = ("oh", "an", "very", "not", "there", "there's", "are", "aren't", "is", "isn't",
                  "was", "were", "that's", "where", "what's", "did", "do", "can", "let's",
                  "i'll", "we'll", "please", "tomorrow", "later")  # fmt: skip
NEGATIONS = {False: ("don't", "didn't", "can't", "won't"), True: ("doesn't", "didn't", "can't")}


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _maybe(rng: np.random.Generator, probability: float, words: list[str]) -> list[str]:
    return words if rng.random() < probability else []


def _noun_phrase(
    rng: np.random.Generator, plural: bool | None = None, indefinite: bool = False
) -> tuple[list[str], bool]:
    """[determiner or number] [adjective] noun, and whether it is plural; ``indefinite``: only
    "a" / "an" / "some" / "many" / numbers as determiners (after "there's", "there are")."""
    plural = bool(rng.random() < 0.4) if plural is None else plural
    singular, plural_form = _pick(rng, NOUNS)
    if plural:
        determiners = INDEFINITE_PL if indefinite else DET_PL
        first = _pick(rng, NUMBERS if rng.random() < 0.3 else determiners)
    else:
        first = "a" if indefinite else _pick(rng, DET_SG)
    words = [*_maybe(rng, 0.4, [_pick(rng, ADJECTIVES)]), plural_form if plural else singular]
    if first == "a" and words[0][0] in "aeiou":
        first = "an"
    return [first, *words], plural


def _subject(rng: np.random.Generator) -> tuple[list[str], bool]:
    """A pronoun or a noun phrase, and whether the verb takes the third person singular."""
    if rng.random() < 0.4:
        subject, _, third = _pick(rng, PRONOUNS)
        return [subject], third
    words, plural = _noun_phrase(rng)
    return words, not plural


def _object(rng: np.random.Generator) -> list[str]:
    return [_pick(rng, PRONOUNS)[1]] if rng.random() < 0.2 else _noun_phrase(rng)[0]


def _prepositional(rng: np.random.Generator, probability: float) -> list[str]:
    return _maybe(rng, probability, [_pick(rng, PREPOSITIONS), *_noun_phrase(rng)[0]])


def _verb_clause(rng: np.random.Generator) -> list[str]:
    """subject verb [object] [prepositional phrase] [time]: present (agreeing) or past."""
    subject, third = _subject(rng)
    transitive = rng.random() < 0.6
    verb = _pick(rng, TRANSITIVE if transitive else INTRANSITIVE)
    past = rng.random() < 0.4
    form = verb[2] if past else verb[1 if third else 0]
    tail = _object(rng) if transitive else []
    tail += _prepositional(rng, 0.3 if transitive else 0.7)
    tail += _maybe(rng, 0.25, [_pick(rng, PAST_TIMES if past else PRESENT_TIMES)])
    return [*subject, form, *tail]


def _negation(rng: np.random.Generator) -> list[str]:
    """pronoun don't / doesn't / didn't / can't / won't verb [object] [time]."""
    subject, _, third = _pick(rng, PRONOUNS)
    if rng.random() < 0.5:
        verb, tail = _pick(rng, TRANSITIVE)[0], _object(rng)
    else:
        verb, tail = _pick(rng, INTRANSITIVE)[0], _prepositional(rng, 0.5)
    return [subject, _pick(rng, NEGATIONS[third]), verb, *tail]


def _copula(rng: np.random.Generator) -> list[str]:
    """it's / there's / i'm ... sentences with a form of "be"."""
    choice = int(rng.integers(5))
    if choice == 0:
        adjective = [*_maybe(rng, 0.3, ["very"]), _pick(rng, ADJECTIVES)]
        return ["it's", *adjective, *_prepositional(rng, 0.3)]
    if choice == 1:
        noun, plural = _noun_phrase(rng, indefinite=True)
        return ["there are" if plural else "there's", *noun, *_prepositional(rng, 1.0)]
    if choice == 2:
        subject = _pick(rng, PRONOUNS)[0]
        return [BE_CONTRACTED[subject], *_maybe(rng, 0.3, ["not"]), _pick(rng, PERSON_ADJECTIVES)]
    if choice == 3:
        return ["that's", _pick(rng, ("my", "your", "our", "her", "his")), _pick(rng, NOUNS)[0]]
    noun, plural = _noun_phrase(rng)
    verb = _pick(rng, ("are", "aren't", "were") if plural else ("is", "isn't", "was"))
    return [*noun, verb, _pick(rng, ADJECTIVES)]


def _question(rng: np.random.Generator) -> list[str]:
    """where is / did you / can we / what's questions (no punctuation)."""
    choice = int(rng.integers(4))
    if choice == 0:
        return ["where is", *_noun_phrase(rng, plural=False)[0]]
    if choice == 1:
        aux, subject = _pick(rng, ("did", "do", "can")), _pick(rng, ("you", "we", "they"))
        return [aux, subject, _pick(rng, TRANSITIVE)[0], *_object(rng)]
    if choice == 2:
        return ["can we", _pick(rng, INTRANSITIVE)[0], *_prepositional(rng, 1.0)]
    return ["what's", _pick(rng, PREPOSITIONS), *_noun_phrase(rng, plural=False)[0]]


def _request(rng: np.random.Generator) -> list[str]:
    """let's / i'll / please + verb + object [time]."""
    lead = _pick(rng, ("let's", "i'll", "please", "we'll"))
    time = _maybe(rng, 0.3, [_pick(rng, ("now", "tomorrow", "later", "today"))])
    return [lead, _pick(rng, TRANSITIVE)[0], *_object(rng), *time]


# (pattern, weight): declarative sentences dominate, as in read speech.
_PATTERNS = ((_verb_clause, 0.45), (_negation, 0.15), (_copula, 0.2), (_question, 0.1),
             (_request, 0.1))  # fmt: skip


def digit_string(rng: np.random.Generator) -> str:
    """1 to ``MAX_DIGITS`` digits as words; zero is "oh" with probability ``OH_PROBABILITY``."""
    digits = rng.integers(10, size=int(rng.integers(1, MAX_DIGITS + 1)))
    words = ["oh" if d == 0 and rng.random() < OH_PROBABILITY else DIGITS[d] for d in digits]
    return " ".join(words)


def sentence(rng: np.random.Generator) -> str:
    """A sentence of one of the weighted ``_PATTERNS``."""
    weights = np.array([w for _, w in _PATTERNS])
    pattern = _PATTERNS[int(rng.choice(len(_PATTERNS), p=weights / weights.sum()))][0]
    return " ".join(pattern(rng))


def transcript(rng: np.random.Generator, digit_fraction: float = DIGIT_FRACTION) -> str:
    """A digit string with probability ``digit_fraction``, else a sentence; normalized and
    checked by ``check_transcript``."""
    text = digit_string(rng) if rng.random() < digit_fraction else sentence(rng)
    return check_transcript(text)


def vocabulary() -> set[str]:
    """Every word the generators can produce (about 300)."""
    groups = [DIGITS, DET_SG, DET_PL, NUMBERS, ADJECTIVES, PERSON_ADJECTIVES, PREPOSITIONS]
    groups += [PRESENT_TIMES, PAST_TIMES, tuple(BE_CONTRACTED.values()), FUNCTION_WORDS]
    groups += [sum(NOUNS, ()), sum(TRANSITIVE, ()), sum(INTRANSITIVE, ())]
    groups += [sum(((s, o) for s, o, _ in PRONOUNS), ()), sum(NEGATIONS.values(), ())]
    return {word for group in groups for phrase in group for word in phrase.split()}
