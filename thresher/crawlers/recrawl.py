"""Recrawl: fetch a finished job's pages again, conditionally, and archive only what changed.

``thresher crawl --output DIR --recrawl`` starts a *pass* over the job: every URL the job knows
(its seeds and link journals) is fetched again, the archived ones with ``If-None-Match`` /
``If-Modified-Since`` from their last capture. A 304, or a 200 whose payload digest is the last
capture's, is written as a ``revisit`` record (warc.py); a changed page as a new response.

What a pass needs of each URL's last capture (ETag, Last-Modified, payload digest, record id and
date) is read from the job's own WARC files when the pass starts, into ``DIR/state/captures.sqlite``
(one row per URL, keyed by its 64-bit ``url_key``), which the partitions look up request by
request. Deriving it from the WARC files keeps no second record of the crawl that could drift
from them; the scan reads headers only, as the resume scan does.

``DIR/state/recrawl.json`` holds the pass's start (a WARC-Date): captures since then are the
pass's, so a pass that is killed resumes like any crawl when ``--recrawl`` is given again, and
a pass that finished makes the next ``--recrawl`` start a new one. Schedules are the caller's:
run ``--recrawl`` from cron or Airflow.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from thresher.crawlers.scope import url_key
from thresher.crawlers.warc import Capture, iter_response_records, warc_date

logger = logging.getLogger(__name__)

INDEX_NAME = "captures.sqlite"
PASS_NAME = "recrawl.json"
_BATCH = 10_000


def _signed(key: int) -> int:
    """sqlite integers are signed 64-bit."""
    return key - (1 << 64) if key >= 1 << 63 else key


def index_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "state" / INDEX_NAME


def build_index(warc_dir: Path, path: Path) -> int:
    """Write the last capture of every URL with a 2xx response (or a revisit) in ``warc_dir``
    to the sqlite file ``path``; returns the number of URLs. A revisit keeps the record it refers
    to, and the validators of the capture before it when its own response sent none."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.execute(
        "CREATE TABLE captures (key INTEGER PRIMARY KEY, url TEXT, record_id TEXT, date TEXT, "
        "digest TEXT, etag TEXT, last_modified TEXT, seen TEXT)"
    )
    upsert = (
        "INSERT INTO captures VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
        "url = excluded.url, record_id = excluded.record_id, date = excluded.date, "
        "digest = excluded.digest, seen = excluded.seen, "
        "etag = CASE WHEN ?9 THEN coalesce(excluded.etag, etag) ELSE excluded.etag END, "
        "last_modified = CASE WHEN ?9 THEN coalesce(excluded.last_modified, last_modified) "
        "ELSE excluded.last_modified END WHERE excluded.seen > captures.seen"
    )
    rows = []
    for warc in sorted(warc_dir.glob("*.warc.gz")):
        try:
            for record in iter_response_records(warc):
                row = _row(record)
                if row is not None:
                    rows.append(row)
                if len(rows) >= _BATCH:
                    db.executemany(upsert, rows)
                    rows.clear()
        except Exception as exc:  # a damaged file: what was read of it still counts
            logger.warning("reading %s for the recrawl index stopped early: %s", warc, exc)
    db.executemany(upsert, rows)
    (count,) = db.execute("SELECT count(*) FROM captures").fetchone()
    db.commit()
    db.close()
    tmp.replace(path)
    return count


def _row(record) -> tuple | None:
    from fastwarc.warc import WarcRecordType

    headers = record.headers
    url = headers.get("WARC-Target-URI")
    digest = headers.get("WARC-Payload-Digest")
    http = record.http_headers
    if not url or not digest or http is None:
        return None
    date = headers.get("WARC-Date") or ""
    revisit = record.record_type == WarcRecordType.revisit
    if revisit:
        record_id, payload_date = headers.get("WARC-Refers-To"), headers.get("WARC-Refers-To-Date") or date
        if not record_id:
            return None
    elif 200 <= (http.status_code or 0) < 300:
        record_id, payload_date = headers.get("WARC-Record-ID"), date
    else:
        return None
    etag, modified = http.get("ETag"), http.get("Last-Modified")
    return (_signed(url_key(url)), url, record_id, payload_date, digest, etag, modified, date, revisit)


class CaptureIndex:
    """Read-only lookups in a job's capture index, one partition process each."""

    def __init__(self, path: str | Path):
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def get(self, url: str) -> Capture | None:
        row = self._db.execute(
            "SELECT url, record_id, date, digest, etag, last_modified FROM captures WHERE key = ?",
            (_signed(url_key(url)),),
        ).fetchone()
        return Capture(*row) if row is not None else None

    def close(self) -> None:
        self._db.close()


def begin_pass(out_dir: str | Path) -> str:
    """The WARC-Date since which captures belong to the current recrawl pass: the unfinished
    pass's, else a new pass's, whose capture index is built now."""
    state_dir = Path(out_dir) / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / PASS_NAME
    if marker.exists():
        try:
            current = json.loads(marker.read_text(encoding="utf-8"))
            if not current.get("finished") and index_path(out_dir).exists():
                logger.info("recrawl: resuming the pass begun %s", current["since"])
                return str(current["since"])
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("recrawl: %s unreadable (%s): starting a new pass", marker, exc)
    since = warc_date()
    urls = build_index(Path(out_dir) / "warc", index_path(out_dir))
    marker.write_text(json.dumps({"since": since, "finished": False, "urls": urls}), encoding="utf-8")
    logger.info("recrawl: new pass from %s over %d archived URLs", since, urls)
    return since


def end_pass(out_dir: str | Path) -> None:
    marker = Path(out_dir) / "state" / PASS_NAME
    current = json.loads(marker.read_text(encoding="utf-8"))
    current["finished"] = True
    marker.write_text(json.dumps(current), encoding="utf-8")


def previous_seeds(out_dir: str | Path) -> list[str]:
    """The seeds of the job's latest run (from its partition specs), for ``--recrawl`` without
    seeds on the command line; [] when there is none."""
    specs = sorted((Path(out_dir) / "state").glob("spec-*.json"), key=lambda p: p.stat().st_mtime)
    for spec in reversed(specs):
        try:
            seeds = json.loads(spec.read_text(encoding="utf-8"))["config"]["seeds"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(seeds, list) and seeds:
            return [s for s in seeds if isinstance(s, str)]
    return []
