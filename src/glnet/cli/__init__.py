"""The ``glnet`` command line: one module per command, each with
``add_parser(subparsers)`` and ``run(args) -> exit code``.

The CLI sits on top of the library and nothing in the library imports it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from glnet.cli import convert, evaluate, export, finetune, segment, train
from glnet.errors import GLNetError

COMMANDS = (segment, evaluate, convert, export, train, finetune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glnet", description="GLNet segmentation of ultra-high-resolution images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except GLNetError as e:
        print(f"glnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glnet: interrupted", file=sys.stderr)
        return 130
