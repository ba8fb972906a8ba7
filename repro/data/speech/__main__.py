"""``python -m repro.data.speech``: build or verify the synthetic speech corpus.

    python -m repro.data.speech build --out DIR --hours H [--seed S] [--workers W] [--force]
    python -m repro.data.speech verify DIR

Exit codes: 0 done; 1 ``verify`` found problems (one per line on stdout); 2 bad input (one
``error:`` line on stderr naming the option and what is allowed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.data.speech.corpus import SPLITS, build_corpus, verify_corpus
from repro.errors import ConfigError

PROG = "python -m repro.data.speech"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=PROG, description="Synthetic espeak-ng speech corpus.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    build = commands.add_parser("build", help="synthesize a corpus into --out")
    build.add_argument("--out", required=True, help="output directory (created)")
    build.add_argument("--hours", required=True, type=float, help="hours of training audio")
    build.add_argument("--seed", type=int, default=0, help="seed of everything random (>= 0)")
    build.add_argument("--workers", type=int, default=1, help="processes (result unchanged)")
    build.add_argument("--force", action="store_true", help="replace a non-empty --out")
    verify = commands.add_parser("verify", help="check a built corpus's files and checksums")
    verify.add_argument("dir", help="the corpus directory")
    return parser


def _build(args: argparse.Namespace) -> int:
    info = build_corpus(args.out, args.hours, args.seed, args.workers, args.force, progress=None)
    splits = info["splits"]
    counts = ", ".join(f"{split} {splits[split]['utterances']}" for split in SPLITS)
    total = sum(splits[split]["utterances"] for split in SPLITS)
    hours = sum(splits[split]["hours"] for split in SPLITS)
    print(
        f"built {total} utterances ({counts}), {hours:.3f} h of audio, "
        f"in {info['build_wall_time_s']:.1f} s -> {info['arguments']['out']}"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    if not Path(args.dir).is_dir():
        raise ConfigError(f"verify: {args.dir} is not a directory")
    problems = verify_corpus(args.dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{PROG} verify: {len(problems)} problems in {args.dir}", file=sys.stderr)
        return 1
    print(f"ok: {args.dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _build(args) if args.command == "build" else _verify(args)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
