"""``thresher quality train`` (a fastText quality classifier) and ``thresher filters fetch-lists``."""

from __future__ import annotations

import argparse
import json
import logging

from thresher.errors import InputProblem

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    quality = subparsers.add_parser("quality", help="learned quality classifier")
    qsub = quality.add_subparsers(dest="quality_command", metavar="SUBCOMMAND")
    train = qsub.add_parser(
        "train",
        help="train a fastText quality classifier (DCLM recipe: word bigrams, balanced classes)",
        description="Sources are Parquet (column --text-field), JSON Lines (field --text-field), "
        "plain text (one example per line), or folders of those.",
    )
    train.add_argument("--positive", nargs="+", required=True, metavar="SRC", help="examples of wanted text")
    train.add_argument(
        "--negative", nargs="+", required=True, metavar="SRC", help="examples of unwanted text"
    )
    train.add_argument("--output", required=True, metavar="MODEL", help="where to write the model (.bin)")
    train.add_argument("--text-field", default="text")
    train.add_argument("--word-ngrams", type=int, default=2)
    train.add_argument("--epoch", type=int, default=5)
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--dim", type=int, default=100)
    train.add_argument("--valid-fraction", type=float, default=0.1, help="held out to report accuracy")
    train.add_argument("--max-per-class", type=int, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=2)
    train.set_defaults(func=_train)
    quality.set_defaults(func=lambda args: quality.print_help() or 2)

    filters = subparsers.add_parser("filters", help="filter data files")
    fsub = filters.add_subparsers(dest="filters_command", metavar="SUBCOMMAND")
    fetch = fsub.add_parser(
        "fetch-lists", help="fetch FineWeb's URL-filter lists (from the datatrove wheel on PyPI)"
    )
    fetch.add_argument("--dest", default=None, help="folder to put them in (default: the user cache)")
    fetch.set_defaults(func=_fetch_lists)
    filters.set_defaults(func=lambda args: filters.print_help() or 2)


def _train(args: argparse.Namespace) -> int:
    from thresher.filters.classifier import TrainParams, read_texts, train_classifier

    try:
        positives = [t for src in args.positive for t in read_texts(src, args.text_field)]
        negatives = [t for src in args.negative for t in read_texts(src, args.text_field)]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise InputProblem(f"cannot read the training sources: {exc}") from exc
    params = TrainParams(
        word_ngrams=args.word_ngrams,
        epoch=args.epoch,
        lr=args.lr,
        dim=args.dim,
        valid_fraction=args.valid_fraction,
        max_per_class=args.max_per_class,
        seed=args.seed,
        threads=args.threads,
    )
    try:
        report = train_classifier(positives, negatives, args.output, params)
    except ValueError as exc:  # too few texts in a class
        raise InputProblem(str(exc)) from exc
    logger.info("model written to %s: %s", args.output, json.dumps(report.to_dict()))
    return 0


def _fetch_lists(args: argparse.Namespace) -> int:
    from thresher.filters.lists import fetch_fineweb_lists

    lists = fetch_fineweb_lists(args.dest)
    logger.info("FineWeb URL-filter lists in %s", lists.blocklist.parent)
    return 0
