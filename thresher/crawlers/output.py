"""A crawl job on object storage: ``thresher crawl --output s3://bucket/job`` (or any fsspec URI).

The job's store holds what a resumed job needs, wherever it runs::

    OUTPUT/warc/NAME.warc.gz            committed WARC files, each one whole object
    OUTPUT/state/archived/NAME.json     NAME's commit record: the responses it holds
    OUTPUT/state/journal-TAG-NNNNN.tsv  the URLs a partition discovered (frontier.py), in segments
    OUTPUT/crawl-stats.json             summary of the latest run

A partition writes its WARC file to a local staging directory (a temporary directory of its
process) and, when the file closes, publishes it in three steps (:class:`WarcCommitter`):

1. the lines its link journal gained since the last upload, as the journal's next segment (an
   upload is what is new, not the whole journal again): links are journaled before the page
   that holds them is archived (frontier.py), so every page of the file has its links on the
   store before 2;
2. the WARC file, one PUT (or one completed multipart upload): on the store it is complete or
   it is not there at all, never partial;
3. the file's commit record, read by a resume instead of the WARC file itself (a resume reads a
   few KB per file, not the crawl's gigabytes).

Exactly once, whatever the moment of a SIGKILL: killed before 2, the file is not on the store and
its pages (in the staging directory, lost with the process or the machine) are fetched again by
the next run, once; killed between 2 and 3, the next run finds a WARC file without a record,
reads it and writes the record (:meth:`StoreOutput.salvage`), so its pages are never fetched
again; after 3 nothing is left to do. The WARC file is the truth, the record its index.

What the partitions of one run share while they run (budget, hand-overs, liveness; partition.py)
and their specs, work lists and stats stay in a local scratch directory of the runner: none of
it is needed by a resume. Credentials come from the backend's standard chain (thresher/io.py);
nothing here writes one.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from thresher.crawlers.warc import StoredResponse, iter_stored_responses, serial_after
from thresher.io import StorageConfig, Store, scrub_secrets

logger = logging.getLogger(__name__)

WARC_DIR = "warc"
RECORD_DIR = "state/archived"
STATS_NAME = "crawl-stats.json"


def record_key(warc_name: str) -> str:
    return f"{RECORD_DIR}/{warc_name}.json"


def journal_key(tag: str) -> str:
    return f"state/journal-{tag}.tsv"


def _names(store: Store, rel: str) -> list[str]:
    try:
        return store.ls(rel)
    except FileNotFoundError:
        return []


def commit_record(path: Path) -> dict:
    """What a resume needs of a WARC file: every response and revisit record's URL, status,
    date and kind (as ``iter_stored_responses`` reads them), and the file's size."""
    responses = []
    try:
        for r in iter_stored_responses(path):
            responses.append([r.url, r.status, r.date, r.revisit])
    except Exception as exc:  # a damaged file (not one of ours): what was read still counts
        logger.warning("reading %s stopped early: %s", path.name, exc)
    return {"warc": path.name, "bytes": path.stat().st_size, "responses": responses}


class WarcCommitter:
    """In a partition process: publishes each closed WARC file on the job's store (the module's
    steps 1-3), then removes its staged copy. A failed upload (after the store's retries) is not
    fatal to the crawl: the file stays staged and is tried again when the next file closes and at
    the end; what is still not uploaded then is reported by :meth:`close`."""

    def __init__(
        self, store: Store, journal: Path | None, journal_key: str, flush_journal: Callable[[], None]
    ):
        self.store = store
        self.journal = journal
        self.journal_key = journal_key
        self.flush_journal = flush_journal
        self.pending: list[Path] = []
        self._journal_offset = 0
        self._segment = 1

    def __call__(self, path: Path) -> str:
        self.pending.append(path)
        self._drain()
        return self.store.uri_of(f"{WARC_DIR}/{path.name}")

    def publish_journal(self) -> None:
        """Upload the journal's lines written since the last upload as its next segment,
        ``journal-TAG-NNNNN.tsv`` (every write is whole lines, and it is flushed first)."""
        self.flush_journal()
        if self.journal is None or not self.journal.exists():
            return
        with open(self.journal, "rb") as fh:
            fh.seek(self._journal_offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        if not end:
            return
        self.store.write_bytes(f"{self.journal_key[: -len('.tsv')]}-{self._segment:05d}.tsv", data[:end])
        self._journal_offset += end
        self._segment += 1

    def _drain(self) -> bool:
        try:
            if self.pending:
                self.publish_journal()
            while self.pending:
                path = self.pending[0]
                record = commit_record(path)
                self.store.upload(path, f"{WARC_DIR}/{path.name}")
                self.store.write_json(record_key(path.name), record)
                path.unlink()
                self.pending.pop(0)
                logger.info(
                    "committed %s (%d records)",
                    self.store.uri_of(f"{WARC_DIR}/{path.name}"),
                    len(record["responses"]),
                )
            return True
        except Exception as exc:
            logger.error(
                "uploading %s to %s failed, kept in %s and tried again later: %s",
                self.pending[0].name if self.pending else "the journal",
                self.store.uri,
                self.pending[0].parent if self.pending else "",
                scrub_secrets(f"{type(exc).__name__}: {exc}"),
            )
            return False

    def close(self) -> list[str]:
        """Publish what is left and the final journal; the staged files that could not be
        uploaded (empty when all went well)."""
        ok = self._drain()
        if ok:
            try:
                self.publish_journal()
            except Exception as exc:
                logger.error(
                    "uploading the journal to %s failed: %s", self.store.uri, scrub_secrets(str(exc))
                )
        return [str(p) for p in self.pending]


class PartitionOutput:
    """A partition's side of a job on a store: its staging directory, the serial its files
    continue from, and the committer the WARC writer calls."""

    def __init__(
        self,
        output_uri: str,
        journal: Path | None,
        journal_key: str,
        flush_journal: Callable[[], None],
        storage: dict | None = None,
    ):
        self.store = Store.from_uri(output_uri, StorageConfig(**storage) if storage else None)
        self.staging = Path(tempfile.mkdtemp(prefix="thresher-crawl-staging-"))
        self.committer = WarcCommitter(self.store, journal, journal_key, flush_journal)

    def first_serial(self, prefix: str, partition: int) -> int:
        """Past every file of the partition on the store (committed or with a record)."""
        names = _names(self.store, WARC_DIR) + [n[: -len(".json")] for n in _names(self.store, RECORD_DIR)]
        return serial_after(names, prefix, partition)

    def close(self) -> list[str]:
        """After the writer closed: the files that could not be uploaded (kept staged), or []
        with the staging directory removed."""
        failed = self.committer.close()
        if not failed:
            shutil.rmtree(self.staging, ignore_errors=True)
        else:
            logger.error(
                "%d WARC files were not uploaded to %s and are kept: %s",
                len(failed),
                self.store.uri,
                " ".join(failed),
            )
        return failed


class StoreOutput:
    """The runner's side of a job on a store: salvage, resume scan, journals, summary."""

    def __init__(self, store: Store):
        self.store = store
        self.scratch = Path(tempfile.mkdtemp(prefix="thresher-crawl-"))
        self.state_dir = self.scratch / "state"
        self.state_dir.mkdir()

    @property
    def uri(self) -> str:
        return self.store.uri

    def warc_names(self) -> list[str]:
        return sorted(n for n in _names(self.store, WARC_DIR) if n.endswith(".warc.gz"))

    def salvage(self) -> list[str]:
        """Write the commit record of every WARC file that has none (a partition killed after
        its upload, before its record); returns their URIs. Such a file is whole (one PUT)."""
        recorded = {n[: -len(".json")] for n in _names(self.store, RECORD_DIR)}
        adopted = []
        for name in self.warc_names():
            if name in recorded:
                continue
            local = self.scratch / name
            self.store.download(f"{WARC_DIR}/{name}", local)
            self.store.write_json(record_key(name), commit_record(local))
            local.unlink()
            adopted.append(self.store.uri_of(f"{WARC_DIR}/{name}"))
            logger.info("%s had no commit record (killed after its upload): recorded", name)
        return adopted

    def responses(self) -> Iterator[StoredResponse]:
        """Every response of the committed WARC files, from their records (read
        ``storage.max_concurrency`` at a time: a job has thousands of files)."""
        from concurrent.futures import ThreadPoolExecutor

        def read(name: str) -> dict:
            try:
                return self.store.read_json(record_key(name))
            except FileNotFoundError:
                logger.warning("%s has no commit record; its pages count as not archived", name)
                return {}

        with ThreadPoolExecutor(self.store.config.max_concurrency) as pool:
            for record in pool.map(read, self.warc_names()):
                for url, status, date, revisit in record.get("responses", []):
                    yield StoredResponse(url, int(status), date, bool(revisit))

    def journals(self) -> list[Path]:
        """The store's journal segments, downloaded to the scratch directory (several at once)."""
        from concurrent.futures import ThreadPoolExecutor

        folder = self.scratch / "journals"
        names = [n for n in _names(self.store, "state") if n.startswith("journal-") and n.endswith(".tsv")]
        with ThreadPoolExecutor(self.store.config.max_concurrency) as pool:
            return list(pool.map(lambda n: self.store.download(f"state/{n}", folder / n), sorted(names)))

    def taken_run_ids(self) -> set[str]:
        """Run tags of the journals already on the store (a new run's id must differ)."""
        return {
            n[len("journal-") :].split("-of", 1)[0]
            for n in _names(self.store, "state")
            if n.startswith("journal-")
        }

    def write_summary(self, summary: dict) -> None:
        self.store.write_text(STATS_NAME, json.dumps(summary, indent=2, sort_keys=True))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
