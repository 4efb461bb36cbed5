"""``thresher crawl --output s3://...``: the crawl's WARC files and resume journal on S3.

A real S3 API server (moto over HTTP, tests/s3.py; the endpoint in ``AWS_ENDPOINT_URL``, dummy
keys in the standard variables, nothing of ours patched) and the crawler's local web
(localsite.py, whose access log shows every fetch). The WARC files on S3 are read back with our
own reader (warc.py) after a download with boto3, bypassing the crawler's code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.s3 import DUMMY_ENV
from thresher.crawlers.localsite import LocalSite
from thresher.crawlers.warc import iter_response_records, iter_stored_responses

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-site"
ALL_PAGES = 1 + sum(1 for _ in DEMO.glob("faq/**/*.html"))  # index + every FAQ page


def crawl_command(site: LocalSite, output: str, delay: float = 0.0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "thresher.cli",
        "crawl",
        site.url("/"),
        "--output",
        output,
        "--allow-private",
        "--set",
        "autothrottle=false",
        "--set",
        f"download_delay={delay}",
        "--set",
        "concurrent_per_host=1",
        "--set",
        "warc_max_bytes=20000",
        "--set",
        "log_level=INFO",
    ]


def crawl(site: LocalSite, output: str, tmpdir: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The crawl CLI; ``tmpdir``: its TMPDIR (where its scratch and staging directories go)."""
    env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir is not None else None
    return subprocess.run(
        crawl_command(site, output, **kwargs), cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def bucket_objects(s3_server, uri: str) -> dict[str, int]:
    """{key below the prefix: size}, listed with boto3 (not our code)."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    client = s3_server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) + 1 :]] = obj["Size"]
    return out


def download_warcs(s3_server, uri: str, dest: Path) -> list[Path]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in bucket_objects(s3_server, uri):
        if key.startswith("warc/"):
            path = dest / key.split("/", 1)[1]
            s3_server.client().download_file(bucket, f"{prefix}/{key}", str(path))
            paths.append(path)
    return sorted(paths)


def pages(warcs: list[Path]) -> Counter:
    found: Counter = Counter()
    for path in warcs:
        found.update(r.url for r in iter_stored_responses(path) if r.status == 200)
    return found


def payloads(warcs: list[Path]) -> dict[str, str]:
    """{URL: payload digest} of every 200 response."""
    out = {}
    for path in warcs:
        for record in iter_response_records(path):
            if record.http_headers.status_code == 200:
                out[record.headers["WARC-Target-URI"]] = record.headers["WARC-Payload-Digest"]
    return out


def all_objects_text(s3_server, uri: str) -> str:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    client = s3_server.client()
    texts = []
    for key in bucket_objects(s3_server, uri):
        body = client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()
        if key.endswith(".gz"):
            import gzip

            body = gzip.decompress(body)
        texts.append(body.decode("utf-8", errors="replace"))
    return "\n".join(texts)


def secrets() -> list[str]:
    return [
        DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
        os.environ["AWS_ENDPOINT_URL"],
    ]


def page_hits(site: LocalSite, since: float = 0.0) -> Counter:
    """Pages served (200, robots.txt aside) from ``since`` on, by URL."""
    return Counter(
        site.url(h.path) for h in site.hits if h.time >= since and h.status == 200 and h.path != "/robots.txt"
    )


def test_crawl_to_s3_writes_what_a_local_crawl_writes(s3_server, s3_bucket, tmp_path):
    out = f"{s3_bucket}/crawl"
    with LocalSite(DEMO) as site:
        local = crawl(site, str(tmp_path / "local"))
        assert local.returncode == 0, local.stderr
        (tmp_path / "tmp").mkdir()
        remote = crawl(site, out, tmp_path / "tmp")
        assert remote.returncode == 0, remote.stderr
    assert not list((tmp_path / "tmp").iterdir())  # staging and scratch removed
    assert not (ROOT / "s3:").exists()  # not a local directory named after the URI
    objects = bucket_objects(s3_server, out)
    warc_keys = [k for k in objects if k.startswith("warc/")]
    assert len(warc_keys) > 3 and all(k.endswith(".warc.gz") for k in warc_keys)
    assert "crawl-stats.json" in objects
    segments = sorted(k for k in objects if k.startswith("state/journal-"))
    bucket, _, prefix = out[len("s3://") :].partition("/")
    lines = [
        line
        for key in segments
        for line in s3_server.client()
        .get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"]
        .read()
        .splitlines()
    ]
    assert len(segments) > 1 and len(lines) == len(set(lines)) > ALL_PAGES / 2  # what is new, each time
    assert {f"state/archived/{k[5:]}.json" for k in warc_keys} <= set(objects)  # a record per file
    assert not [k for k in objects if ".thresher-probe-" in k or k.endswith(".open")]
    warcs = download_warcs(s3_server, out, tmp_path / "from-s3")
    local_warcs = sorted((tmp_path / "local" / "warc").glob("*.warc.gz"))
    assert len(pages(warcs)) == ALL_PAGES and max(pages(warcs).values()) == 1
    assert payloads(warcs) == payloads(local_warcs)
    written = all_objects_text(s3_server, out) + remote.stdout + remote.stderr
    assert not [s for s in secrets() if s in written]


def _kill_after_commits(site: LocalSite, s3_server, out: str, files: int, scratch: Path) -> set[str]:
    """Start a slow crawl, SIGKILL it (the CLI and its partition) once ``files`` WARC files are
    on S3; returns the pages those held, as they were at that moment."""
    proc = subprocess.Popen(
        crawl_command(site, out, delay=0.12),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while sum(k.startswith("warc/") for k in bucket_objects(s3_server, out)) < files:
        assert proc.poll() is None, "the crawl finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return set(pages(download_warcs(s3_server, out, scratch)))


def test_crawl_killed_midway_resumes_on_s3_exactly_once(s3_server, s3_bucket, tmp_path):
    out = f"{s3_bucket}/crawl"
    with LocalSite(DEMO) as site:
        committed = _kill_after_commits(site, s3_server, out, 3, tmp_path / "killed")
        assert 0 < len(committed) < ALL_PAGES
        first_run = page_hits(site)
        restart = time.time()
        resumed = crawl(site, out)
        assert resumed.returncode == 0, resumed.stderr
        second_run = page_hits(site, restart)
    assert not set(second_run) & committed  # a committed page is never fetched again
    fetched_twice = set(first_run) & set(second_run)  # the killed run's pages in flight
    warcs = download_warcs(s3_server, out, tmp_path / "final")
    final = pages(warcs)
    assert len(final) == ALL_PAGES and max(final.values()) == 1  # each page once across both runs
    assert all(final[url] == 1 for url in fetched_twice)
    objects = bucket_objects(s3_server, out)
    assert not [k for k in objects if k.endswith(".open")]
    for path in warcs:  # whole files: every record reads to its end, and each has its record
        assert list(iter_stored_responses(path)) and f"state/archived/{path.name}.json" in objects


def test_kill_between_upload_and_record_and_before_upload(s3_server, s3_bucket, tmp_path):
    """The two SIGKILL windows, made by hand on a finished job: a WARC file uploaded whose commit
    record was never written (its pages are recovered from it, never fetched again), and the
    last file never uploaded (its pages are fetched again, once)."""
    out = f"{s3_bucket}/crawl"
    bucket, _, prefix = out[len("s3://") :].partition("/")
    client = s3_server.client()
    with LocalSite(DEMO) as site:
        assert crawl(site, out).returncode == 0
        warcs = download_warcs(s3_server, out, tmp_path / "first")
        unrecorded, lost = warcs[1], warcs[-1]
        client.delete_object(Bucket=bucket, Key=f"{prefix}/state/archived/{unrecorded.name}.json")
        client.delete_object(Bucket=bucket, Key=f"{prefix}/state/archived/{lost.name}.json")
        client.delete_object(Bucket=bucket, Key=f"{prefix}/warc/{lost.name}")
        client.delete_object(Bucket=bucket, Key=f"{prefix}/crawl-stats.json")
        restart = time.time()
        resumed = crawl(site, out)
        assert resumed.returncode == 0, resumed.stderr
        refetched = page_hits(site, restart)
    assert set(refetched) == set(pages([lost])) and max(refetched.values()) == 1
    objects = bucket_objects(s3_server, out)
    assert f"state/archived/{unrecorded.name}.json" in objects  # recovered from the file
    final = pages(download_warcs(s3_server, out, tmp_path / "final"))
    assert len(final) == ALL_PAGES and max(final.values()) == 1


def test_missing_bucket_is_one_line_and_writes_nothing(s3_server, tmp_path):
    with LocalSite(DEMO) as site:
        result = crawl(site, "s3://no-such-bucket-thresher-crawl/crawl")
        assert not site.hits  # nothing fetched
    lines = [line for line in result.stderr.splitlines() if line.startswith("thresher:")]
    assert result.returncode == 4  # an output error (thresher/errors.py)
    assert not (ROOT / "s3:").exists()
    assert len(lines) == 1 and "the bucket does not exist" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not [s for s in secrets() if s in result.stderr + result.stdout]
    names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert "no-such-bucket-thresher-crawl" not in names


def test_two_partitions_commit_to_one_store(s3_server, s3_bucket, tmp_path):
    """--partitions 2 (two processes) on two sites that hash to different partitions: each
    partition uploads its own WARC files and journal, and every page of both sites is there once."""
    from thresher.crawlers.frontier import partition_of
    from thresher.crawlers.scope import netloc_of

    out = f"{s3_bucket}/crawl"
    sites = [LocalSite(DEMO).start()]
    try:
        while True:  # a second site on a port whose host:port hashes to the other partition
            other = LocalSite(DEMO).start()
            if partition_of(netloc_of(other.url()), 2) != partition_of(netloc_of(sites[0].url()), 2):
                sites.append(other)
                break
            other.stop()
        command = crawl_command(sites[0], out) + ["--partitions", "2"]
        command.insert(command.index("crawl") + 1, sites[1].url("/"))
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
    finally:
        for site in sites:
            site.stop()
    objects = bucket_objects(s3_server, out)
    journals = {k.split("-of2-")[1][:4] for k in objects if k.startswith("state/journal-")}
    assert journals == {"p000", "p001"}
    warcs = download_warcs(s3_server, out, tmp_path / "final")
    assert {"-p000-", "-p001-"} <= {p.name[len("thresher") : len("thresher") + 6] for p in warcs}
    final = pages(warcs)
    assert len(final) == 2 * ALL_PAGES and max(final.values()) == 1


@pytest.mark.slow
def test_store_refusing_writes_midway_keeps_the_files_and_a_resume_finishes(
    s3_server, s3_bucket, s3_env, tmp_path
):
    """The store starts answering 403 to every write after some files are committed: the crawl
    ends with a failure (one thresher: line, non-zero exit), the files it could not upload are
    kept in its staging directory and named in its log; once writes are allowed again, a resume
    fetches their pages again, once, and the job holds every page once."""
    from tests.s3faults import FaultPlan, FaultProxy

    out = f"{s3_bucket}/crawl"
    (tmp_path / "tmp").mkdir()
    with FaultProxy((s3_server.host, s3_server.port), FaultPlan()) as proxy, LocalSite(DEMO) as site:
        s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
        proc = subprocess.Popen(
            crawl_command(site, out, delay=0.12),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 90
        while sum(k.startswith("warc/") for k in bucket_objects(s3_server, out)) < 2:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proxy.plan.deny_writes = True
        stdout, stderr = proc.communicate(timeout=180)
        committed = set(pages(download_warcs(s3_server, out, tmp_path / "committed")))
        assert proc.returncode != 0
        lines = [line for line in stderr.splitlines() if line.startswith("thresher:")]
        assert len(lines) == 1, stderr
        kept = sorted((tmp_path / "tmp").glob("thresher-crawl-staging-*/*.warc.gz"))
        assert kept and all(p.name in stderr for p in kept)
        in_kept = set(pages(kept))
        assert len(committed) + len(in_kept) == ALL_PAGES and not committed & in_kept
        proxy.plan.deny_writes = False
        restart = time.time()
        resumed = crawl(site, out)
        assert resumed.returncode == 0, resumed.stderr
        refetched = page_hits(site, restart)
    assert set(refetched) == in_kept and max(refetched.values()) == 1
    final = pages(download_warcs(s3_server, out, tmp_path / "final"))
    assert len(final) == ALL_PAGES and max(final.values()) == 1
    assert not [s for s in secrets() if s in stderr + stdout]


def test_recrawl_on_a_uri_is_refused_in_one_line(s3_server, s3_bucket):
    with LocalSite(DEMO) as site:
        result = subprocess.run(
            crawl_command(site, f"{s3_bucket}/crawl") + ["--recrawl"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert not site.hits
    lines = [line for line in result.stderr.splitlines() if line.startswith("thresher:")]
    assert result.returncode == 2 and len(lines) == 1 and "--recrawl needs a local --output" in lines[0]
    assert not bucket_objects(s3_server, f"{s3_bucket}/crawl")


@pytest.mark.slow
def test_storage_section_sets_the_retries_of_the_crawls_store(s3_server, s3_bucket, s3_env, tmp_path):
    """The config's storage: section reaches the partitions' store: on an S3 that answers a fifth
    of its requests with 500, with retries: 0 uploads fail (logged; the files are kept and tried
    again) and nothing crashes; with the default retries no upload fails and every page is there
    once. A bad value is a config error naming the key."""
    from tests.s3faults import FaultPlan, FaultProxy

    out = f"{s3_bucket}/crawl"
    no_retries, bad = tmp_path / "no-retries.yaml", tmp_path / "bad.yaml"
    no_retries.write_text("crawl:\n  max_depth: 5\nstorage:\n  retries: 0\n", encoding="utf-8")
    bad.write_text("crawl:\n  max_depth: 5\nstorage:\n  retries: -1\n", encoding="utf-8")
    plan = FaultPlan(seed=3, error500=0.2)
    with LocalSite(DEMO) as site:
        rejected = subprocess.run(
            crawl_command(site, out) + ["--config", str(bad)], cwd=ROOT, capture_output=True, text=True
        )
        assert rejected.returncode == 2 and "storage.retries" in rejected.stderr
        with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
            s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
            failed = subprocess.run(
                crawl_command(site, f"{s3_bucket}/no-retries") + ["--config", str(no_retries)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
        assert "ERROR thresher.crawlers.output: uploading" in failed.stderr  # not retried
        assert 'runner.py", line' not in failed.stderr  # no traceback from the driver
        with FaultProxy((s3_server.host, s3_server.port), plan) as proxy:
            s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
            flaky = crawl(site, out)
            assert flaky.returncode == 0, flaky.stderr
            assert proxy.counts["error500"] > 5 and "ERROR thresher.crawlers.output" not in flaky.stderr
    final = pages(download_warcs(s3_server, out, tmp_path / "final"))
    assert len(final) == ALL_PAGES and max(final.values()) == 1
