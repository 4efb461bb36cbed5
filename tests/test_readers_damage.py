"""The WARC reader on real files damaged the ways an adversarial test damaged them (issue #20):
every intact record is still read, and the damage is counted, never a silent loss or a hang."""

from __future__ import annotations

import gzip
import io
import random
import re
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_path
from thresher.readers.warc import read_warc

DEMO = ROOT / "examples" / "demo.warc.gz"


def _records(raw: bytes) -> list[bytes]:
    """The records of an uncompressed WARC, cut at their version lines."""
    starts = [m.start() for m in re.finditer(rb"(?m)^WARC/1\.[01]\r\n", raw)]
    return [raw[a:b] for a, b in zip(starts, [*starts[1:], len(raw)], strict=True)]


def _dolma_records() -> list[bytes]:
    source = shared_path("warc-samples", "dolma-wget-sample-0000.warc.gz")
    records = _records(gzip.decompress(source.read_bytes()))
    assert len(records) == 48
    return records


def _responses(records: list[bytes]) -> list[int]:
    return [i for i, r in enumerate(records) if b"WARC-Type: response" in r[:400]]


def _write(path: Path, records: list[bytes], layout: str) -> Path:
    path.write_bytes(b"".join(records) if layout == "plain" else b"".join(map(gzip.compress, records)))
    return path


def _errors(docs):
    return [d for d in docs if d.drop and d.drop.kind == "error"]


def _by_id(docs):
    return {d.id: (d.url, d.html, d.drop and d.drop.reason) for d in docs}


@pytest.mark.parametrize("damaged_type", [b"respnse", b"response\x8d", b"response;x"])
def test_a_damaged_warc_type_is_one_counted_error(tmp_path, damaged_type):
    """fastwarc reads a record whose WARC-Type it does not know as type 'unknown': the reader used
    to pass it over like a request, and the page in it was gone without a row."""
    records = _dolma_records()
    victim = _responses(records)[6]
    url = re.search(rb"WARC-Target-URI: (\S+)", records[victim])[1].decode()
    records[victim] = records[victim].replace(b"WARC-Type: response", b"WARC-Type: " + damaged_type, 1)
    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", _dolma_records(), "gzip"))))
    docs = list(read_warc(str(_write(tmp_path / "damaged.warc.gz", records, "gzip"))))

    errors = _errors(docs)
    assert [e.drop.reason for e in errors] == ["unknown_record_type"]
    detail = errors[0].drop.detail
    assert errors[0].url == url.strip("<>") and "WARC-Type 'resp" in detail and detail.isprintable()
    assert len(docs) == len(clean)  # the page became the error row, nothing else changed
    assert {k: v for k, v in _by_id(clean).items() if k != errors[0].id} == {
        k: v for k, v in _by_id(docs).items() if k != errors[0].id
    }


@pytest.mark.parametrize("told", [10**12, 2 * 10**9, 5 * 10**7])
@pytest.mark.parametrize("layout", ["plain", "gzip per record"])
def test_a_huge_content_length_is_read_like_any_wrong_one(tmp_path, told, layout):
    """A Content-Length over the payload cap used to make one too_large error of the record and of
    every record inside the length it claims (here: the rest of the file). The block is read a
    piece at a time, cut where the next record starts, and the records inside are read."""
    records = _records(gzip.decompress(DEMO.read_bytes()))
    victim = _responses(records)[3]
    length = int(re.search(rb"Content-Length: (\d+)", records[victim])[1])
    records[victim] = records[victim].replace(b"Content-Length: %d" % length, b"Content-Length: %d" % told, 1)
    broken = _write(tmp_path / ("broken.warc" if layout == "plain" else "broken.warc.gz"), records, layout)

    clean = list(read_warc(str(DEMO)))
    docs = list(read_warc(str(broken)))
    assert _by_id(docs) == _by_id(clean)  # every page read, nothing twice, no error
    assert not _errors(docs)
    page = next(d for d in docs if "overrun_bytes" in d.metadata)
    assert page.metadata["overrun_bytes"] == told - length and page.url in records[victim][:1000].decode()
    inside = [d for d in docs if "+" in d.source.rsplit("@", 1)[1]]  # the rest of the file, from the block
    assert len(inside) == sum(b"WARC-Type: response" in r[:400] for r in records[victim + 1 :]) > 100


def _flip_middle(member: bytes) -> bytes:
    """A gzip member whose deflate bytes are damaged in the middle (a flipped run of bits)."""
    damaged = bytearray(member)
    middle = len(damaged) // 2
    for i in range(middle, middle + 8):
        damaged[i] ^= 0x55
    return bytes(damaged)


@pytest.mark.parametrize("source", ["dolma", "demo"])
def test_a_bad_gzip_member_loses_only_its_own_record(tmp_path, source):
    """fastwarc stops at the first gzip member it cannot inflate; the intact members after it were
    never read. Reading goes on at the next member, and the damaged one is one error."""
    raw = gzip.decompress(DEMO.read_bytes()) if source == "demo" else b"".join(_dolma_records())
    members = [gzip.compress(r) for r in _records(raw)]
    victim = next(i for i in _responses(_records(raw)) if len(members[i]) > 3000 and i > 10)
    url = re.search(rb"WARC-Target-URI: (\S+)", _records(raw)[victim])[1].decode().strip("<>")
    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", _records(raw), "gzip"))))
    members[victim] = _flip_middle(members[victim])
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(b"".join(members))

    docs = list(read_warc(str(damaged)))
    errors = _errors(docs)
    assert [e.drop.reason for e in errors] == ["corrupt_warc"]
    at = sum(map(len, members[:victim]))
    assert errors[0].source == f"{damaged}@{at}" and errors[0].drop.value == len(members[victim])
    assert "data error" in errors[0].drop.detail
    lost = [d for d in clean if d.url == url]
    assert len(lost) == 1
    assert {k: v for k, v in _by_id(clean).items() if k != lost[0].id} == {
        k: v for k, v in _by_id(docs).items() if k != errors[0].id
    }


def test_junk_between_gzip_members_is_one_error(tmp_path):
    records = _dolma_records()
    members = [gzip.compress(r) for r in records]
    junk = random.Random(7).randbytes(5000)
    damaged = tmp_path / "damaged.warc.gz"
    damaged.write_bytes(b"".join(members[:20]) + junk + b"".join(members[20:]))
    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", records, "gzip"))))
    docs = list(read_warc(str(damaged)))
    errors = _errors(docs)
    assert [(e.drop.reason, e.drop.value) for e in errors] == [("corrupt_warc", len(junk))]
    assert _by_id([d for d in docs if d not in errors]) == _by_id(clean)


@pytest.mark.parametrize("layout", ["gzip per record", "gzip as a whole"])
def test_leading_junk_does_not_hide_the_warc(tmp_path, layout):
    """100 KB of junk before a gzip WARC made fastwarc read it as a plain file with no record in
    it: one not_warc error and none of its records. The first record is found after the junk."""
    records = _dolma_records()
    junk = random.Random(20).randbytes(100_000)
    per_record = layout == "gzip per record"
    body = b"".join(map(gzip.compress, records)) if per_record else gzip.compress(b"".join(records))
    damaged = tmp_path / "junk.warc.gz"
    damaged.write_bytes(junk + body)

    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", records, "gzip"))))
    docs = list(read_warc(str(damaged)))
    errors = _errors(docs)
    assert [(e.drop.reason, e.source, e.drop.value) for e in errors] == [
        ("unreadable_record", f"{damaged}@0", len(junk))
    ]
    assert _by_id([d for d in docs if d not in errors]) == _by_id(clean)


@pytest.mark.parametrize("frames", ["one frame", "frame per record"])
def test_a_valid_zstd_warc_has_no_spurious_error(tmp_path, frames):
    """The gap check read a zstd file as plain bytes and reported them as an unreadable record."""
    from fastwarc.stream_io import ZstdWriter

    def zstd(data: bytes) -> bytes:
        out = io.BytesIO()
        writer = ZstdWriter(out)
        writer.write(data)
        writer.close()  # finish() alone leaves the end of the frame unwritten
        return out.getvalue()

    records = _dolma_records()
    path = tmp_path / "sample.warc.zst"
    path.write_bytes(zstd(b"".join(records)) if frames == "one frame" else b"".join(map(zstd, records)))
    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", records, "gzip"))))
    docs = list(read_warc(str(path)))
    assert not _errors(docs)
    assert _by_id(docs) == _by_id(clean)


def test_the_gap_check_inflates_a_member_in_bounded_memory(tmp_path):
    """A gzip member of 200 MB of text (200 KB compressed) between two records is bytes fastwarc
    steps over; the gap check used to inflate all of it into memory to count it."""
    records = _dolma_records()
    members = [gzip.compress(r) for r in records]
    bomb = gzip.compress(b"x" * 200_000_000, compresslevel=1)
    damaged = tmp_path / "bomb.warc.gz"
    damaged.write_bytes(b"".join(members[:20]) + bomb + b"".join(members[20:]))
    clean = list(read_warc(str(_write(tmp_path / "clean.warc.gz", records, "gzip"))))

    tracemalloc.start()
    try:
        docs = list(read_warc(str(damaged)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    errors = _errors(docs)
    assert [(e.drop.reason, e.drop.value) for e in errors] == [("unreadable_record", 200_000_000)]
    assert _by_id([d for d in docs if d not in errors]) == _by_id(clean)
    assert peak < 40_000_000, peak


def test_content_lengths_all_far_too_long_are_read_to_a_bounded_depth(tmp_path):
    """Every Content-Length of a file 10^12: each block holds the rest of the file, so the records
    nest one inside the other. They are read 32 deep, in bounded memory; the rest is one error."""
    from thresher.readers.warc import MAX_NESTING

    records = _dolma_records()
    told = [re.sub(rb"Content-Length: \d+", b"Content-Length: 1000000000000", r, count=1) for r in records]
    docs = list(read_warc(str(_write(tmp_path / "nested.warc", told, "plain"))))
    errors = _errors(docs)
    assert [e.drop.reason for e in errors] == ["unreadable_record"]
    assert f"inside {MAX_NESTING} blocks" in errors[0].drop.detail
    clean = {d.id: d for d in read_warc(str(_write(tmp_path / "clean.warc", records, "plain")))}
    read = [d for d in docs if d not in errors]
    pages = re.compile(rb"WARC-Type: (response|resource)")
    deep_enough = [r for r in records[: MAX_NESTING + 1] if pages.search(r[:400])]
    assert len(read) == len(deep_enough)
    assert all(d.html == clean[d.id].html and d.drop == clean[d.id].drop for d in read)
