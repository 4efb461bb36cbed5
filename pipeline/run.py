"""Ray driver: ``python pipeline/run.py CONFIG.yaml [--input ...] [--output DIR] [--set k=v]``.

The same file is what ``ray submit CLUSTER.yaml pipeline/run.py -- CONFIG`` and ``ray job submit
-- python pipeline/run.py CONFIG`` run on a cluster; there it joins the cluster through
RAY_ADDRESS instead of starting its own Ray.
"""

import argparse
import logging
import sys

from thresher.commands import add_run_arguments, cmd_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return cmd_run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
