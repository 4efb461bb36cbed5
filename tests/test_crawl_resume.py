"""A crawl killed with SIGKILL resumes from its WARC files without refetching archived pages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from thresher.crawlers.localsite import LocalSite
from thresher.crawlers.warc import iter_stored_responses

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"
ALL_PAGES = 1 + sum(1 for _ in DEMO.glob("faq/**/*.html"))  # index + every FAQ page


def crawl_command(site: LocalSite, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "thresher.cli",
        "crawl",
        site.url("/"),
        "--output",
        str(out),
        "--allow-private",
        "--set",
        "autothrottle=false",
        "--set",
        "download_delay=0.12",
        "--set",
        "concurrent_per_host=1",
        "--set",
        "warc_max_bytes=20000",
        "--set",
        "log_level=WARNING",
    ]


def archived(warc_dir: Path) -> Counter:
    pages: Counter = Counter()
    for path in warc_dir.glob("*.warc.gz"):
        pages.update(r.url for r in iter_stored_responses(path) if r.status == 200)
    return pages


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    root = Path(__file__).resolve().parents[1]
    with LocalSite(DEMO) as site:
        proc = subprocess.Popen(crawl_command(site, tmp_path), cwd=root, start_new_session=True)
        deadline = time.time() + 60
        while len(list((tmp_path / "warc").glob("*.warc.gz"))) < 3:
            assert proc.poll() is None, "crawl finished before it could be interrupted"
            assert time.time() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its partition process, like a crash
        proc.wait()
        in_closed_files = archived(tmp_path / "warc")
        left_open = list((tmp_path / "warc").glob("*.open"))
        assert 0 < len(in_closed_files) < ALL_PAGES
        restart = time.time()
        subprocess.run(crawl_command(site, tmp_path), cwd=root, check=True, timeout=120)
        refetched = {site.url(h.path) for h in site.hits if h.time >= restart} & set(in_closed_files)
    assert refetched == set()
    final = archived(tmp_path / "warc")
    assert len(final) == ALL_PAGES and max(final.values()) == 1  # each page once across both runs
    assert not list((tmp_path / "warc").glob("*.open"))
    assert all(not p.exists() for p in left_open)  # salvaged (renamed) or removed
