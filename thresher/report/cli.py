"""``thresher report OUTPUT``: (re)write a run's report.html, e.g. after a run on a cluster."""

from __future__ import annotations

import argparse
import logging
import webbrowser

logger = logging.getLogger(__name__)


def cmd_report(args: argparse.Namespace) -> int:
    from thresher.report import write_report

    path = write_report(args.output)  # not a run's output: ReportError, one line and exit 3
    print(path)
    if args.open and not isinstance(path, str) and not webbrowser.open(path.resolve().as_uri()):
        logger.warning("no browser to open %s", path)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write OUTPUT/report.html: funnel, drops per rule, languages, score histograms, throughput",
        description="Write the HTML report of a finished run from its stats.json and Parquet outputs.",
    )
    p.add_argument(
        "output",
        metavar="OUTPUT",
        help="the output directory of a run (holds stats.json), or its URI (s3://...)",
    )
    p.add_argument("--open", action="store_true", help="open the report in a web browser")
    p.set_defaults(func=cmd_report)
