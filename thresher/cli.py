"""The ``thresher`` command line.

Each area contributes its own subcommands through a ``register(subparsers)`` function in its
``cli`` module (``thresher/<area>/cli.py``); this file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "thresher.commands",  # run, models
    "thresher.report.cli",  # report
    "thresher.crawlers.cli",  # crawl
    "thresher.filters.cli",  # quality train
    "thresher.dedup.cli",  # dedup
    "thresher.tokenize.cli",  # tokenize, tokenizer train / encode
    "thresher.shards.cli",  # shards export
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thresher",
        description="Turn web pages into LLM pretraining data: crawl, extract, filter, dedup, tokenize, shard.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the area has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
