"""Does every core count? The same pages, the same stages: ``--local`` (one process) against the
embedded Ray on every core of this machine, in one run.

Input: the 1,171 real pages of ``bench/e2e.py`` as ``--copies`` WARC files (default 5, 5,855
pages; each record a fresh WARC-Record-ID). Two recipes: ``extract`` (cascade, English) +
``language``, and the whole FineWeb recipe (``pipeline/configs/fineweb.yaml``; its URL-filter
lists come from ``thresher filters fetch-lists``, the recipe is skipped when they are absent).
Printed: pages/s of each, and Ray's rate over the single process's (the goal is ≥ 1.8× on two
cores); and the CPU-seconds per 1,000 pages of the whole process tree (driver, Ray's daemons and
workers, extraction children; sampled from /proc by ``bench.recipe.TreeSampler``), whose ratio is
Ray's efficiency: on a machine shared with other work the wall ratio measures the neighbours as
much as Ray, the CPU per page does not. Ray is started before the clock (its start is not
per-page work); its workers' imports and model loading are inside it, as in a run.

    python bench/scaling.py            # both recipes, 5 copies
    python bench/scaling.py --quick    # extract+language on 2 copies of 300 pages

The two-node figure of issue #22 (2 nodes ≥ 1.7× one node) is not measured here yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import CACHE, SHARED, build_large_warc, count_pages  # noqa: E402
from bench.peers import warc_copies  # noqa: E402
from bench.recipe import TreeSampler  # noqa: E402

logger = logging.getLogger("bench.scaling")

EXTRACT_LANGUAGE = [
    {"extract": {"mode": "cascade", "languages": ["en"]}},
    {"language": {"languages": ["en"], "threshold": 0.65}},
]


def recipes(include_fineweb: bool) -> dict[str, dict]:
    """Name → the config's dict (input and output are filled in per run)."""
    out = {"extract+language": {"stages": EXTRACT_LANGUAGE, "input": {"docs_per_shard": 2000}}}
    if include_fineweb:
        from thresher.config import read_yaml
        from thresher.filters.lists import ListsNotFound, fineweb_url_lists

        try:
            fineweb_url_lists()
        except ListsNotFound as exc:
            logger.warning("FineWeb recipe skipped: %s", exc)
        else:
            data = read_yaml(ROOT / "pipeline" / "configs" / "fineweb.yaml")
            out["fineweb"] = {"stages": data["stages"], "input": dict(data.get("input") or {})}
    return out


@contextmanager
def cpu_of_tree(result: dict, interval: float = 0.25):
    """CPU seconds of this process and of its descendants (Ray's daemons and workers, the
    extraction children) while the block runs, sampled from /proc, into ``result["cpu"]``. On a
    machine shared with other work the wall ratio is noisy; CPU per page is not."""
    sampler, stop = TreeSampler(), threading.Event()
    sampler.sample()
    before, own = dict(sampler.last), time.process_time()

    def poll() -> None:
        while not stop.wait(interval):
            sampler.sample()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sampler.sample()
        tree = sum(cpu - before.get(key, 0.0) for key, cpu in sampler.last.items())
        result["cpu"] = tree + time.process_time() - own


def run_once(recipe: dict, inputs: list[Path], out: Path, local: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (whole process tree) and documents kept for one run."""
    from thresher.config import parse_config
    from thresher.run import run_pipeline

    data = {
        "input": {**recipe["input"], "paths": [str(p) for p in inputs]},
        "output": {"path": str(out), "write_dropped": False},
        "ray": {"progress": False},
        "stages": recipe["stages"],
    }
    cfg = parse_config(data, base_dir=ROOT / "pipeline" / "configs")
    cpu: dict = {}
    with cpu_of_tree(cpu):
        start = time.perf_counter()
        result = run_pipeline(cfg, local=local, overwrite=True)
        wall = time.perf_counter() - start
    return wall, cpu["cpu"], result.documents


def build_inputs(copies: int, limit: int | None) -> tuple[list[Path], int]:
    large = CACHE / "extraction-pages.warc.gz"
    if not large.exists():
        if not (SHARED / "extraction-scrapinghub-aeb").exists():
            raise SystemExit(f"the real pages are not in {SHARED} (set THRESHER_SHARED_DATA)")
        build_large_warc(large)
    dest = CACHE / f"scaling-{copies}x{limit or 'all'}"
    paths = sorted(dest.glob("copy-*.warc.gz")) if dest.exists() else []
    if len(paths) != copies:
        paths = warc_copies(large, dest, copies, limit)
    return paths, sum(count_pages(p) for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=5, help="copies of the 1,171 pages, one WARC file each")
    parser.add_argument("--limit", type=int, default=None, help="pages per copy (default: all)")
    parser.add_argument("--quick", action="store_true", help="extract+language only, 2 copies of 300 pages")
    parser.add_argument("--skip-fineweb", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, the best is printed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    copies, limit = (2, 300) if args.quick else (args.copies, args.limit)
    inputs, pages = build_inputs(copies, limit)
    cores = os.cpu_count() or 1

    from thresher.raycontext import init_ray

    init_ray(None, progress=False, quiet=True)  # started before the clock, as a cluster would be
    rows = []
    for name, recipe in recipes(not (args.quick or args.skip_fineweb)).items():
        with tempfile.TemporaryDirectory() as tmp:
            best: dict[str, tuple[float, float, int]] = {}
            for _ in range(args.repeats):
                for mode in ("local", "ray"):
                    run = run_once(recipe, inputs, Path(tmp) / mode, local=mode == "local")
                    if mode not in best or run[0] < best[mode][0]:
                        best[mode] = run
        rows.append((name, best["local"], best["ray"]))
    load = os.getloadavg()
    print(
        f"\n{pages} pages in {len(inputs)} WARC files; machine: {cores} cores; "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        "wall: pages/s of the run; CPU: CPU-s per 1,000 pages of the whole process tree; "
        "efficiency: local CPU per page over Ray's\n"
    )
    print(
        f"{'recipe':<18}{'local s':>9}{'pages/s':>9}{'ray s':>8}{'pages/s':>9}{'ratio':>7}"
        f"{'CPU local':>11}{'CPU ray':>9}{'effic.':>8}  kept (local/ray)"
    )
    for name, (t_local, c_local, k_local), (t_ray, c_ray, k_ray) in rows:
        print(
            f"{name:<18}{t_local:>9.1f}{pages / t_local:>9.1f}{t_ray:>8.1f}{pages / t_ray:>9.1f}"
            f"{t_local / t_ray:>6.2f}x{1000 * c_local / pages:>11.1f}{1000 * c_ray / pages:>9.1f}"
            f"{c_local / c_ray:>8.2f}  {k_local}/{k_ray}"
        )
    print(
        f"\ngoal: Ray on {cores} cores ≥ {0.9 * cores:.1f}x the single process (wall, on an idle machine), "
        "i.e. efficiency ≥ 0.90"
    )


if __name__ == "__main__":
    main()
