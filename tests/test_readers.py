"""Readers account for every record of real WARC files, including broken ones."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.readers import expand_inputs
from thresher.readers.records import read_jsonl, read_parquet
from thresher.readers.warc import read_warc

DOC_RECORDS = {"response", "resource", "revisit", "conversion"}


def _warcio_document_records(path: Path) -> int | None:
    """Independent count of document-like records, or None when warcio cannot read the file."""
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    try:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type in DOC_RECORDS:
                    n += 1
    except Exception:
        return None
    return n


def test_every_document_record_is_accounted_for():
    root = shared_path("warc-samples")
    checked = 0
    for path in sorted(root.rglob("*.warc*")):
        docs = list(read_warc(str(path)))
        expected = _warcio_document_records(path)
        if expected is not None:
            assert len([d for d in docs if not d.id.endswith("-corrupt")]) == expected, path.name
            checked += 1
        for d in docs:  # nothing is silently empty: kept pages have a payload, the rest a reason
            assert (d.drop is None and (d.html or d.text)) or (d.drop and d.drop.reason), (path.name, d.id)
            # none of these files has bytes between records, whatever its gzip layout, or a
            # block that runs into the next record
            assert not (d.drop and d.drop.reason == "unreadable_record"), (path.name, d.drop.detail)
            assert "overrun_bytes" not in d.metadata and "+" not in d.source.rsplit("@", 1)[1], d.source
    assert checked >= 18


def test_revisits_and_non_html_are_dropped_with_reasons():
    docs = list(read_warc(str(shared_path("warc-samples", "pywb-iana-2014-with-revisits.warc.gz"))))
    reasons = Counter(d.drop.reason for d in docs if d.drop)
    assert reasons["revisit"] == 123
    assert reasons["non_html"] > 0
    kept = [d for d in docs if d.drop is None]
    assert kept and all(d.html.lstrip()[:1] == b"<" for d in kept)


def test_euc_jp_pages_decode_to_japanese():
    from thresher.extract.charset import decode_html

    docs = [
        d
        for d in read_warc(str(shared_path("warc-samples", "resiliparse-clueweb09-ja-quirk.warc.gz")))
        if d.drop is None
    ]
    assert len(docs) == 29  # WARC/0.18 and a Content-Encoding header over a decoded body
    text, encoding, how = decode_html(docs[0].html, docs[0].content_type)
    assert encoding == "euc_jp" and how == "header"
    assert "ブリーフケース" in text


def test_wet_conversion_records_are_text_documents():
    docs = list(read_warc(str(shared_path("warc-samples", "whirlwind-cc-main-2024-22.warc.wet.gz"))))
    assert len(docs) == 1 and docs[0].drop is None
    assert "Escopete" in docs[0].text and docs[0].html is None


def test_wget_angle_bracket_uris_are_cleaned():
    docs = [
        d
        for d in read_warc(str(shared_path("warc-samples", "dolma-wget-sample-0000.warc.gz")))
        if d.drop is None
    ]
    assert docs and all(d.url.startswith("http") and not d.url.endswith(">") for d in docs)


def test_corrupt_gzip_is_counted_not_raised(tmp_path):
    src = shared_path("warc-samples", "resiliparse-cc-main-2020-34-excerpt.warc.gz").read_bytes()
    broken = tmp_path / "broken.warc.gz"
    cut = len(src) // 2
    broken.write_bytes(src[:cut] + b"\x00garbage" * 100 + src[cut + 5000 :])
    docs = list(read_warc(str(broken)))
    errors = [d for d in docs if d.drop and d.drop.kind == "error"]
    assert errors and errors[-1].drop.reason == "corrupt_warc"
    assert 0 < sum(d.drop is None for d in docs) < 16


def test_a_file_without_warc_records_is_an_error_not_an_empty_input(tmp_path):
    """fastwarc skips bytes that are not a record, so a real page saved under a WARC name (or an
    empty file) would read as no documents at all, with nothing in the stats to say why."""
    page = next(iter(sorted(shared_path("extraction-trafilatura-eval", "html").glob("*.html.gz"))))
    named_warc = tmp_path / "page.warc.gz"
    named_warc.write_bytes(page.read_bytes())  # gzip of an HTML page: valid gzip, no WARC inside
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    for path in (named_warc, empty):
        docs = list(read_warc(str(path)))
        assert [(d.drop.reason, d.drop.kind) for d in docs] == [("not_warc", "error")], path.name
        assert docs[0].source == f"{path}@0"
    # a real WAT file has records but no documents: that is no error
    wat = list(read_warc(str(shared_path("warc-samples", "whirlwind-cc-main-2024-22.warc.wat.gz"))))
    assert wat == []


def _records(raw: bytes) -> list[bytes]:
    """The records of an uncompressed WARC, cut at their version lines."""
    starts = [m.start() for m in re.finditer(rb"(?m)^WARC/1\.[01]\r\n", raw)]
    return [raw[a:b] for a, b in zip(starts, [*starts[1:], len(raw)], strict=True)]


@pytest.mark.parametrize("layout", ["plain", "gzip per record"])
def test_a_record_with_a_damaged_header_is_counted_not_skipped(tmp_path, layout):
    """fastwarc steps over a record whose version line is damaged, looking for the next one: the
    page in it would be lost without a trace. The reader finds the bytes it stepped over."""
    source = shared_path("warc-samples", "dolma-wget-sample-0000.warc.gz")
    records = _records(gzip.decompress(source.read_bytes()))
    assert len(records) == 48
    victim = next(i for i, r in enumerate(records) if b"WARC-Type: response" in r[:400] and i > 10)
    records[victim] = b"WARX" + records[victim][4:]
    damaged = tmp_path / ("damaged.warc" if layout == "plain" else "damaged.warc.gz")
    damaged.write_bytes(b"".join(records) if layout == "plain" else b"".join(map(gzip.compress, records)))

    clean = list(read_warc(str(source)))
    docs = list(read_warc(str(damaged)))
    errors = [d for d in docs if d.drop and d.drop.reason == "unreadable_record"]
    assert len(errors) == 1 and errors[0].drop.kind == "error"
    assert "damaged response record" in errors[0].drop.detail
    assert len(docs) == len(clean)  # one page fewer, one error more
    lost = {d.url for d in clean} - {d.url for d in docs}
    assert len(lost) == 1 and lost.pop().encode() in records[victim][:1000]


def test_a_damaged_first_record_is_counted(tmp_path):
    records = _records(
        gzip.decompress(shared_path("warc-samples", "dolma-wget-sample-0000.warc.gz").read_bytes())
    )
    records[0] = b"WARC/X" + records[0][6:]  # the warcinfo record
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(b"".join(map(gzip.compress, records)))
    errors = [d for d in read_warc(str(damaged)) if d.drop and d.drop.kind == "error"]
    assert [(e.drop.reason, e.source) for e in errors] == [("unreadable_record", f"{damaged}@0")]
    assert "damaged warcinfo record" in errors[0].drop.detail


@pytest.mark.parametrize("wrong", ["half", "100 bytes more"])
def test_a_wrong_content_length_leaves_counted_bytes(tmp_path, wrong):
    """Too short, fastwarc reads part of the block and skips the rest; too long, it reads into the
    next record and skips the rest of that one. Either way the skipped bytes are reported."""
    source = shared_path("warc-samples", "dolma-wget-sample-0001.warc.gz")
    records = _records(gzip.decompress(source.read_bytes()))
    victim = next(i for i, r in enumerate(records) if b"WARC-Type: response" in r[:400])
    length = int(re.search(rb"Content-Length: (\d+)", records[victim]).group(1))
    told = length // 2 if wrong == "half" else length + 100
    records[victim] = records[victim].replace(b"Content-Length: %d" % length, b"Content-Length: %d" % told, 1)
    broken = tmp_path / "broken.warc"
    broken.write_bytes(b"".join(records))
    docs = list(read_warc(str(broken)))
    errors = [d for d in docs if d.drop and d.drop.kind == "error"]
    assert [e.drop.reason for e in errors] == ["unreadable_record"]
    unread = length - told if wrong == "half" else len(records[victim + 1]) - 100
    assert abs(errors[0].drop.value - unread) <= 8  # give or take the record's trailing line breaks
    if wrong == "100 bytes more":  # the page is cut where the next record starts: its own bytes only
        at = sum(map(len, records[:victim]))
        page = next(d for d in docs if d.source == f"{broken}@{at}")
        clean = next(d for d in read_warc(str(source)) if d.id == page.id)
        assert page.html == clean.html and page.metadata["overrun_bytes"] == 100


@pytest.mark.parametrize(("victim_type", "swallowed"), [("request", 1), ("response", 2)])
def test_records_inside_a_too_long_block_are_read(tmp_path, victim_type, swallowed):
    """A Content-Length too long by exactly the size of the records after it makes fastwarc read
    them as part of the block, and no byte is left between records to report: the page of a
    swallowed response would be lost without a trace. It is read from inside the block."""
    source = shared_path("warc-samples", "dolma-wget-sample-0001.warc.gz")
    records = _records(gzip.decompress(source.read_bytes()))
    victim = next(i for i, r in enumerate(records) if f"WARC-Type: {victim_type}".encode() in r[:400])
    length = int(re.search(rb"Content-Length: (\d+)", records[victim]).group(1))
    told = length + sum(map(len, records[victim + 1 : victim + 1 + swallowed]))
    records[victim] = records[victim].replace(b"Content-Length: %d" % length, b"Content-Length: %d" % told, 1)
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(b"".join(map(gzip.compress, records)))

    clean = {d.id: d for d in read_warc(str(source))}
    docs = list(read_warc(str(broken)))
    assert sorted(d.id for d in docs) == sorted(clean)  # nothing lost, nothing twice, no error
    inside = [d for d in docs if "+" in d.source.rsplit("@", 1)[1]]
    assert len(inside) == 1 and inside[0].url is not None
    for d in docs:
        assert (d.html, d.drop) == (clean[d.id].html, clean[d.id].drop), d.url


def test_jsonl_and_parquet_keep_ids_and_count_bad_lines(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"id": "a1", "text": "hello world", "url": "http://x/", "lang_hint": "en"}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"id": "a2", "text": ""}) + "\n")
    docs = list(read_jsonl(str(path)))
    assert [d.id for d in docs][0] == "a1" and docs[0].metadata == {"lang_hint": "en"}
    assert [d.drop.reason for d in docs[1:]] == ["bad_json", "no_text"]
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one", "two"]}), tmp_path / "d.parquet")
    assert [d.id for d in read_parquet(str(tmp_path / "d.parquet"))] == ["x", "y"]


def test_expand_inputs_globs_dirs_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.warc.gz").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("")
    (tmp_path / "y.jsonl").write_text("")
    assert expand_inputs([str(tmp_path / "a")]) == [str(tmp_path / "a" / "x.warc.gz")]
    assert len(expand_inputs([str(tmp_path / "*.jsonl"), str(tmp_path / "a")])) == 2
    from thresher.readers.inputs import InputError

    with pytest.raises(InputError, match="input not found"):
        expand_inputs([str(tmp_path / "missing.warc.gz")])
