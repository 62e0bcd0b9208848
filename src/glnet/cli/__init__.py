"""The ``glnet`` command line: one module per command, each with
``add_parser(subparsers)`` and ``run(args) -> exit code``.

The CLI sits on top of the library and nothing in the library imports it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from glnet.cli import convert, evaluate, export, finetune, segment, train
from glnet.errors import GLNetError, describe_os_error

COMMANDS = (segment, evaluate, convert, export, train, finetune)
QUIET_LIBRARIES = ("tifffile", "distributed", "PIL", "numcodecs", "zarr")


class _Parser(argparse.ArgumentParser):
    """Wrong options are one line, like every other failure (argparse's
    usage block is what --help is for)."""

    def error(self, message: str):
        self.exit(2, f"glnet: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="glnet", description="GLNet segmentation of ultra-high-resolution images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; every expected failure is one line on stderr and exit
    status 2: the user's mistakes (GLNetError), and what the machine refuses
    (OSError: a full disk, no permission, a read-only file system; memory)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:  # their warnings about damaged files repeat our one line
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # zarr's writes left pending by an error
    try:
        return args.func(args)
    except GLNetError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(describe_os_error(e))
    except MemoryError:
        return _fail("out of memory: use smaller --batch-size/--size-p, a region, or a .zarr output that streams")
    except KeyboardInterrupt:
        print("glnet: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"glnet: error: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message
    # zarr's concurrent chunk writes that the error left pending are destroyed at exit, each
    # with a traceback nobody can act on: the line above said what happened
    sys.unraisablehook = lambda _: None
    return 2
