"""Hostile input to the readers (issue #20, items 8-10): real files made broken the way an attacker
or a buggy crawler would, read through the path a run takes (reader → stages → Parquet).

- a chunked body with a negative chunk size used to loop forever (and allocate without end);
- JSONL/Parquet values of the wrong type, lone surrogates, a 400-digit score and an HTTP status
  past 2^63 used to end the whole run;
- brotli and zstd bodies used to be decompressed whole before the size cap (a 1.6 KB bomb: 1 GiB).

Anything that could hang or eat the machine runs in a child process with a timeout and an
address-space limit, so a regression fails the test instead of the suite.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thresher.config import parse_config
from thresher.document import documents_to_table, dropped_table, kept_table
from thresher.readers.http import _STEP, brotli_window_bits, decode_content
from thresher.readers.records import read_jsonl, read_parquet
from thresher.readers.warc import WarcReaderConfig, read_warc
from thresher.run import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.warc.gz"
MiB = 1 << 20
CHILD_MEMORY = 3 << 30
"""Address-space limit of the child processes: a runaway reader dies with MemoryError instead of
taking the machine (and the other tests) with it. A child reading the demo peaks near 350 MB."""


# ---------------------------------------------------------------------------------------------
# the demo WARC, one record rewritten


def _records(raw: bytes) -> list[bytes]:
    """The records of an uncompressed WARC, cut at their version lines."""
    starts = [m.start() for m in re.finditer(rb"(?m)^WARC/1\.[01]\r\n", raw)]
    return [raw[a:b] for a, b in zip(starts, [*starts[1:], len(raw)], strict=True)]


DEMO_RECORDS = _records(gzip.decompress(DEMO.read_bytes()))
VICTIM = next(
    i for i, r in enumerate(DEMO_RECORDS) if b"WARC-Type: response" in r[:600] and b"text/html" in r[:2000]
)
VICTIM_ID = re.search(rb"WARC-Record-ID: <urn:uuid:([^>]+)>", DEMO_RECORDS[VICTIM]).group(1).decode()


def _http_parts(record: bytes) -> tuple[list[bytes], bytes]:
    """The HTTP head lines and body of a response record."""
    head, _, rest = record.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    http_head, _, body = rest[:length].partition(b"\r\n\r\n")
    return http_head.split(b"\r\n"), body


VICTIM_HTML = _http_parts(DEMO_RECORDS[VICTIM])[1]


def _rewritten(
    record: bytes, body: bytes, headers: tuple[bytes, ...] = (), status: bytes | None = None
) -> bytes:
    """``record`` with a new HTTP body (and extra headers, a new status), its Content-Length right
    and its digests gone (they would no longer match)."""
    lines, _ = _http_parts(record)
    if status is not None:
        lines[0] = b"HTTP/1.1 " + status + b" OK"
    lines = [ln for ln in lines if not ln.lower().startswith(b"content-length:")] + list(headers)
    block = b"\r\n".join(lines) + b"\r\n\r\n" + body
    head = record.partition(b"\r\n\r\n")[0]
    head = b"\r\n".join(
        ln for ln in head.split(b"\r\n") if not ln.startswith((b"WARC-Payload-Digest", b"WARC-Block-Digest"))
    )
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(block), head)
    return head + b"\r\n\r\n" + block + b"\r\n\r\n"


def _damaged_demo(
    tmp_path: Path, body: bytes, headers: tuple[bytes, ...] = (), status: bytes | None = None
) -> Path:
    tmp_path.mkdir(exist_ok=True)
    records = list(DEMO_RECORDS)
    records[VICTIM] = _rewritten(records[VICTIM], body, headers, status)
    path = tmp_path / "damaged.warc"
    path.write_bytes(b"".join(records))
    return path


def _summary(docs) -> dict[str, tuple]:
    """id → (drop reason, sha1 of the payload) for every document."""
    return {d.id: (d.drop.reason if d.drop else None, hashlib.sha1(d.html or b"").hexdigest()) for d in docs}


@pytest.fixture(scope="module")
def demo_summary():
    return _summary(read_warc(str(DEMO)))


def _assert_others_unchanged(summary: dict, demo_summary: dict) -> None:
    """The fix keeps every good record of the file: all but the victim read as in the original."""
    assert summary.keys() == demo_summary.keys()
    assert {k: v for k, v in summary.items() if k != VICTIM_ID} == {
        k: v for k, v in demo_summary.items() if k != VICTIM_ID
    }


def _run(inputs: list[Path], out: Path, stages: list | None = None):
    cfg = parse_config(
        {
            "input": {"paths": [str(p) for p in inputs]},
            "output": {"path": str(out)},
            "ray": {"progress": False},
            "stages": stages or [],
        }
    )
    return run_pipeline(cfg, local=True)


def _child(code: str, *args: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout on its path), with a timeout and an
    address-space limit; its last stdout line is JSON."""
    prelude = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY}, {CHILD_MEMORY}))\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", prelude + code, *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the reader did not finish within {timeout} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# item 8: a negative chunk size

_RUN_CHILD = """
import json, os
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
from thresher.config import parse_config
from thresher.run import run_pipeline
cfg = parse_config({"input": {"paths": [sys.argv[1]]}, "output": {"path": sys.argv[2]},
                    "ray": {"progress": False}, "stages": []})
result = run_pipeline(cfg, local=True)
from tests.test_readers_hostile import _summary
from thresher.readers.warc import read_warc
print(json.dumps({"stats": {k: s.to_dict() for k, s in result.stages.items()}, "docs": _summary(read_warc(sys.argv[1]))}))
"""


@pytest.mark.parametrize(
    "chunked, decoded",
    [
        # the body: not chunked at all then, whatever the header says: kept as it is
        (b"-6\r\nab" + VICTIM_HTML, b"-6\r\nab" + VICTIM_HTML),
        # a real first chunk, then a negative size: the chunks stop there
        (b"%x\r\n" % 4000 + VICTIM_HTML[:4000] + b"\r\n-6\r\n" + VICTIM_HTML[4000:], VICTIM_HTML[:4000]),
        # a size with a sign or past 16 hex digits is no size either
        (b"%x\r\n" % 4000 + VICTIM_HTML[:4000] + b"\r\n+10\r\n" + VICTIM_HTML[4000:], VICTIM_HTML[:4000]),
        (
            b"%x\r\n" % 4000 + VICTIM_HTML[:4000] + b"\r\n" + b"f" * 40 + b"\r\n" + VICTIM_HTML[4000:],
            VICTIM_HTML[:4000],
        ),
    ],
    ids=["negative-first", "negative-second", "signed", "too-long"],
)
def test_a_hostile_chunk_size_ends_the_chunks_and_the_run_finishes(tmp_path, demo_summary, chunked, decoded):
    """It looped forever (moving backwards, and with a longer body appending the body to itself
    each time: ~2 GB in 2 s), in --local and on Ray alike. The whole run goes in a child with a
    timeout, and so does the read of the file that checks every record."""
    path = _damaged_demo(tmp_path, chunked, (b"Transfer-Encoding: chunked",))
    got = _child(_RUN_CHILD, str(path), str(tmp_path / "out"), timeout=120)
    assert got["stats"]["read"]["in"] == len(demo_summary)
    docs = {k: tuple(v) for k, v in got["docs"].items()}
    assert docs[VICTIM_ID] == (None, hashlib.sha1(decoded).hexdigest())
    _assert_others_unchanged(docs, demo_summary)


# ---------------------------------------------------------------------------------------------
# item 9: values of the wrong type, surrogates, huge numbers


@pytest.fixture(scope="module")
def demo_texts() -> list[tuple[str, str]]:
    """(url, text) of real pages: the demo's first HTML payloads, as text."""
    docs = [d for d in read_warc(str(DEMO)) if d.html][:6]
    return [(d.url, d.html.decode("utf-8", "replace")[:3000]) for d in docs]


def _hostile_lines(texts: list[tuple[str, str]]) -> dict[str, str]:
    """id → JSONL line; each line has one hostile value (json.dumps writes a lone surrogate as an
    escape, ``\\ud800``, which json.loads turns back into one)."""
    (u1, t1), (u2, t2), (u3, t3), (u4, t4), (u5, t5), (u6, t6) = texts
    rows = {
        "scores-not-json": {"text": t1, "url": u1, "scores": "{not json"},
        "metadata-list": {"text": t2, "url": u2, "metadata": [1, "two"]},
        "url-number": {"text": t3, "url": 123},
        "language-score-word": {"text": t4, "language_score": "high"},
        "language-score-string": {"text": t4 + " ", "language_score": "0.5"},
        "surrogate-text": {"text": t5 + " \ud800 end"},
        "surrogate-id-\udc01": {"text": t6},
        "surrogate-key": {"text": t6 + " ", "x\udc00": "v\ud800"},
        "score-400-digits": {"text": t1 + " ", "scores": {"quality": int("9" * 400)}},
        "score-nan": {"text": t2 + " ", "scores": {"quality": float("nan")}},
        "text-number": {"text": 5},
        "metadata-too-deep": {"text": t3 + " ", "metadata": json.loads('{"a": ' * 40 + "1" + "}" * 40)},
    }
    lines = {key: json.dumps({"id": key, **row}) for key, row in rows.items()}
    lines["id-list"] = json.dumps({"id": ["x"], "text": t5})
    lines["nested-100k"] = "[" * 100_000 + "]" * 100_000
    return lines


HOSTILE_OUTCOMES = {
    # id as written: (id in the output, drop reason (None: kept), check of the kept row or the
    # start of the error's detail)
    "scores-not-json": ("scores-not-json", "bad_field", "scores: not JSON"),
    "metadata-list": ("metadata-list", None, lambda r: json.loads(r["metadata"]) == {"metadata": [1, "two"]}),
    "url-number": ("url-number", None, lambda r: r["url"] == "123"),
    "language-score-word": ("language-score-word", "bad_field", "language_score: not a number"),
    "language-score-string": ("language-score-string", None, lambda r: r["language_score"] == 0.5),
    "surrogate-text": ("surrogate-text", None, lambda r: r["text"].endswith(" \ufffd end")),
    "surrogate-id-\udc01": ("surrogate-id-\ufffd", None, None),
    "surrogate-key": ("surrogate-key", None, lambda r: json.loads(r["metadata"]) == {"x\ufffd": "v\ufffd"}),
    "score-400-digits": ("score-400-digits", "bad_field", "scores.quality: not a number within float range"),
    "score-nan": ("score-nan", "bad_field", "scores.quality: not a finite number"),
    "text-number": ("text-number", "bad_field", "text: expected a string, got int"),
    "metadata-too-deep": ("metadata-too-deep", "bad_field", "metadata: nested deeper than 32"),
}


@pytest.fixture(scope="module")
def hostile_jsonl_run(tmp_path_factory, demo_texts):
    """One run over a JSONL file of real pages with every hostile line among them."""
    root = tmp_path_factory.mktemp("hostile-jsonl")
    src = root / "docs.jsonl"
    good = [
        json.dumps({"id": f"good-{i}", "text": text, "url": url}) for i, (url, text) in enumerate(demo_texts)
    ]
    hostile = _hostile_lines(demo_texts)
    src.write_text("\n".join(good[:3] + list(hostile.values()) + good[3:]) + "\n")
    line_of = {key: 3 + i for i, key in enumerate(hostile)}
    result = _run([src], root / "out")
    return src, root / "out", result, len(good) + len(hostile), line_of


def test_a_run_over_hostile_jsonl_finishes_and_counts_every_line(hostile_jsonl_run):
    src, out, result, lines, line_of = hostile_jsonl_run
    read = result.stages["read"]
    assert read.docs_in == lines
    kept = pq.read_table(out / "documents").to_pylist()
    dropped = pq.read_table(out / "dropped").to_pylist()
    assert len(kept) + len(dropped) == lines
    assert {f"good-{i}" for i in range(6)} <= {r["id"] for r in kept}
    assert read.errors == {"bad_field": 7, "bad_json": 1}
    by_source = {r["source"]: r for r in dropped}
    assert by_source[f"{src}#{line_of['nested-100k']}"]["reason"] == "bad_json"
    id_list = by_source[f"{src}#{line_of['id-list']}"]
    assert (id_list["id"], id_list["reason"]) == (f"{src}#{line_of['id-list']}", "bad_field")
    assert id_list["detail"] == "id: expected a string, got list"


@pytest.mark.parametrize(
    "written_id", list(HOSTILE_OUTCOMES), ids=lambda s: s.encode("ascii", "backslashreplace").decode()
)
def test_each_hostile_value_is_normalised_or_a_counted_error(hostile_jsonl_run, written_id):
    out = hostile_jsonl_run[1]
    out_id, reason, check = HOSTILE_OUTCOMES[written_id]
    kept = {r["id"]: r for r in pq.read_table(out / "documents").to_pylist()}
    dropped = {r["id"]: r for r in pq.read_table(out / "dropped").to_pylist()}
    if reason is None:
        assert out_id in kept, dropped.get(out_id)
        assert check is None or check(kept[out_id]), kept[out_id]
    else:
        assert (dropped[out_id]["reason"], dropped[out_id]["kind"]) == (reason, "error")
        assert dropped[out_id]["detail"].startswith(check), dropped[out_id]["detail"]


def test_a_jsonl_line_past_the_limit_is_one_error_and_never_held_whole(tmp_path, demo_texts):
    """A JSONL line was read whole, however long (a 20 GB file without a newline: one 20 GB str)."""
    from thresher.readers.records import MAX_LINE_CHARS

    (url, text), *_ = demo_texts
    good = json.dumps({"id": "good", "text": text, "url": url})
    huge = json.dumps({"id": "huge", "text": "x" * MAX_LINE_CHARS})
    src = tmp_path / "docs.jsonl"
    src.write_text(f"{good}\n{huge}\n{good.replace('good', 'after')}\n")
    docs = list(read_jsonl(str(src)))
    assert [(d.id, d.drop and d.drop.reason) for d in docs] == [
        ("good", None),
        (f"{src}#1", "line_too_long"),
        ("after", None),
    ]
    assert docs[1].drop.value == len(huge) + 1


def test_a_400_digit_score_with_keep_score_is_a_counted_error(tmp_path, demo_texts):
    """``keep: score`` (exact/MinHash dedup) ranks duplicates by ``scores[score_key]``: a score
    past float range crashed the ranking (OverflowError), and the run with it."""
    (url, text), *_ = demo_texts
    src = tmp_path / "docs.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": text, "url": url, "scores": {"quality": 0.2}}),
                json.dumps({"id": "b", "text": text, "scores": {"quality": int("9" * 400)}}),
                json.dumps({"id": "c", "text": text, "scores": {"quality": 0.9}}),
            ]
        )
        + "\n"
    )
    result = _run([src], tmp_path / "out", [{"exact_dedup": {"keep": "score", "score_key": "quality"}}])
    assert result.stages["read"].errors == {"bad_field": 1}
    assert pq.read_table(tmp_path / "out" / "documents").column("id").to_pylist() == [
        "c"
    ]  # the best score survives


def test_an_http_status_past_int64_is_a_counted_error(tmp_path, demo_summary):
    """The status went into the dropped row's float64 ``value`` and Arrow refused it: exit 1."""
    path = _damaged_demo(tmp_path, VICTIM_HTML, status=b"9223372036854775808")
    result = _run([path], tmp_path / "out")
    assert result.stages["read"].errors == {"bad_http": 1}
    dropped = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "dropped").to_pylist()}
    assert dropped[VICTIM_ID]["reason"] == "bad_http"
    _assert_others_unchanged(_summary(read_warc(str(path))), demo_summary)


def test_parquet_strings_that_are_not_utf8_are_replaced_and_the_rows_kept(tmp_path, demo_texts):
    """A lone surrogate written into Parquet (CESU-8 ``ED A0 80``) is invalid UTF-8: Arrow refused
    the whole batch and every row after it was lost in one ``corrupt_file`` error."""
    texts = [t.encode() for _, t in demo_texts]
    texts[2] = texts[2][:100] + b"\xed\xa0\x80" + texts[2][100:]
    ids = [f"p{i}".encode() for i in range(len(texts))]
    ids[4] = b"p4\xff"
    table = pa.table({"id": pa.array(ids).view(pa.string()), "text": pa.array(texts).view(pa.string())})
    pq.write_table(table, tmp_path / "docs.parquet")
    result = _run([tmp_path / "docs.parquet"], tmp_path / "out")
    assert result.stages["read"].kept == len(texts)
    kept = {r["id"]: r["text"] for r in pq.read_table(tmp_path / "out" / "documents").to_pylist()}
    assert set(kept) == {"p0", "p1", "p2", "p3", "p4\ufffd", "p5"}
    assert "\ufffd" in kept["p2"] and kept["p0"] == demo_texts[0][1]


# ---------------------------------------------------------------------------------------------
# item 9: property tests, any JSON value of any field through the readers

FIELDS = [
    "id",
    "text",
    "url",
    "warc_date",
    "language",
    "language_score",
    "metadata",
    "scores",
    "source",
    "extra",
]
_strings = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", " ", "\ud800", "a\udfffb", "0.5", "{}", "[1]", "{not json", "NaN", "1e400", "9" * 400]
)
_numbers = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_strings, inner, max_size=4),
    max_leaves=12,
)
_rows = st.dictionaries(st.sampled_from(FIELDS) | _strings, _json, max_size=8)
_lines = st.lists(_rows | _json, min_size=1, max_size=8)


def _convertible(docs) -> None:
    """What the run does with documents: in-flight tables, and the rows written to Parquet."""
    table = documents_to_table(docs, "00000-00000")
    assert table.num_rows == len(docs)
    for part in (kept_table(docs), dropped_table(docs)):
        sink = pa.BufferOutputStream()
        pq.write_table(part, sink)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_lines)
def test_any_json_line_reads_to_exactly_one_document(lines):
    path = "memory://hostile/docs.jsonl"
    with fsspec.open(path, "wt", encoding="utf-8") as f:
        for value in lines:
            f.write(json.dumps(value) + "\n")
    docs = list(read_jsonl(path))
    assert len(docs) == len(lines)
    assert all(isinstance(d.id, str) and (d.dropped or d.text.strip()) for d in docs)
    _convertible(docs)


_ARROW_COLUMNS = [
    (pa.string(), _strings.filter(lambda s: not re.search("[\ud800-\udfff]", s))),
    (pa.large_string(), st.text(max_size=8)),
    (pa.binary(), st.binary(max_size=8)),
    (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    (pa.bool_(), st.booleans()),
    (pa.timestamp("us"), st.datetimes()),
    (pa.date32(), st.dates()),
    (pa.list_(pa.string()), st.lists(st.text(max_size=4), max_size=3)),
    (
        pa.struct([("a", pa.int64()), ("b", pa.string())]),
        st.fixed_dictionaries({"a": st.integers(0, 9), "b": st.text(max_size=4)}),
    ),
    (
        pa.map_(pa.string(), pa.int64()),
        st.lists(st.tuples(st.text(max_size=3), st.integers(0, 9)), max_size=2),
    ),
]


@st.composite
def _parquet_tables(draw):
    n = draw(st.integers(1, 5))
    columns = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        arrow_type, values = draw(st.sampled_from(_ARROW_COLUMNS))
        columns[name] = pa.array(draw(st.lists(st.none() | values, min_size=n, max_size=n)), arrow_type)
    return pa.table(columns) if columns else pa.table({"other": pa.nulls(n)})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=_parquet_tables())
def test_any_typed_parquet_column_reads_to_exactly_one_document_per_row(table):
    path = "memory://hostile/docs.parquet"
    with fsspec.open(path, "wb") as f:
        pq.write_table(table, f)
    docs = list(read_parquet(path))
    assert len(docs) == table.num_rows
    assert not any(d.drop and d.drop.reason == "corrupt_file" for d in docs)
    _convertible(docs)


# ---------------------------------------------------------------------------------------------
# item 10: decompression bombs

BOMB_SIZE = 1 << 30
WINDOW = {"br": 16 * MiB, "zstd": 8 * MiB, "gzip": 32 << 10}
"""The most memory each decoder keeps besides its output (see readers/http.py)."""
DEFAULT_CAP = WarcReaderConfig().max_payload_bytes


def _largest_brotli_window(cap: int) -> int:
    """log2 of the largest brotli window a cap lets through: 23 (8 MiB) at the default 10 MiB."""
    return max(bits for bits in range(10, 25) if (1 << bits) <= cap - _STEP)


def _zstd_module():
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        from backports import zstd
    return zstd


def _bomb(encoding: str, window_log: int = 23) -> bytes:
    """1 GiB of zeros, compressed as a stream (never held whole) with a ``window_log``-bit window
    (brotli, zstd): 0.8 KB of brotli, 32 KB of zstd, 1 MB of gzip."""
    zeros = bytes(MiB)
    if encoding == "br":
        import brotli

        c = brotli.Compressor(quality=5, lgwin=window_log)
        return b"".join(c.process(zeros) for _ in range(BOMB_SIZE // MiB)) + c.finish()
    if encoding == "zstd":
        zstd = _zstd_module()
        p = zstd.CompressionParameter
        c = zstd.ZstdCompressor(options={p.compression_level: 3, p.window_log: window_log})
        return b"".join(c.compress(zeros) for _ in range(BOMB_SIZE // MiB)) + c.flush()
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(c.compress(zeros) for _ in range(BOMB_SIZE // MiB)) + c.flush()


_BOMB_CHILD = """
import json, re
from thresher.readers.warc import WarcReaderConfig, read_warc

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\\s+(\\d+) kB", f.read()).group(1)) * 1024

path, clean, cfg = sys.argv[1], sys.argv[2], WarcReaderConfig(max_payload_bytes=int(sys.argv[3]))
for doc in read_warc(clean, cfg):  # warm up: imports, decoders, the reader's buffers for this file
    pass
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS (Linux 4.0+)
before = status("VmRSS")
docs = {}
for doc in read_warc(path, cfg):  # documents are not kept: the other pages are not what is measured
    docs[doc.id] = (doc.drop.reason if doc.drop else None, doc.drop.detail if doc.drop else None)
print(json.dumps({"rise": status("VmHWM") - before, "docs": docs}))
"""


def _rise(path: Path, clean: Path, cap: int) -> dict:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak RSS")
    return _child(_BOMB_CHILD, str(path), str(clean), str(cap))


@pytest.fixture(scope="module")
def clean_twin(tmp_path_factory):
    """The damaged file's twin, the page intact, and the peak RSS rise of reading it (per cap)."""
    clean = _damaged_demo(tmp_path_factory.mktemp("clean"), VICTIM_HTML)
    rises: dict[int, int] = {}

    def rise(cap: int) -> int:
        if cap not in rises:
            rises[cap] = _rise(clean, clean, cap)["rise"]
        return rises[cap]

    return clean, rise


def _bomb_peak(tmp_path: Path, clean_twin, encoding: str, cap: int, bomb: bytes) -> tuple[int, dict]:
    """How much the bomb adds to the reader's peak RSS, and the documents' drops.

    Measured in a fresh child (ru_maxrss would not do: Linux carries the forking parent's peak
    over exec): after its imports and a warm-up read of the clean twin, its peak (VmHWM) is reset
    to its current RSS (the baseline) and the file read; the rise of VmHWM over the baseline,
    less the same rise on the clean twin (the reader's own buffers), is what the bomb cost."""
    clean, clean_rise = clean_twin
    path = _damaged_demo(tmp_path, bomb, (b"Content-Encoding: " + encoding.encode(),))
    got = _rise(path, clean, cap)
    return got["rise"] - clean_rise(cap), got["docs"]


@pytest.fixture(scope="module")
def bombs():
    """Per (encoding, cap): brotli with the largest window the cap lets through (24 at 32 MiB,
    23 at the default), zstd with its largest allowed (23), gzip with its only one."""
    made: dict[tuple[str, int], bytes] = {}

    def bomb(encoding: str, cap: int) -> bytes:
        if (encoding, cap) not in made:
            made[encoding, cap] = _bomb(encoding, _largest_brotli_window(cap) if encoding == "br" else 23)
        return made[encoding, cap]

    return bomb


@pytest.mark.parametrize("encoding", list(WINDOW))
@pytest.mark.parametrize("cap", [32 * MiB, DEFAULT_CAP], ids=["cap-32MiB", "cap-default"])
def test_a_decompression_bomb_costs_the_cap_not_its_size(
    tmp_path, demo_summary, clean_twin, bombs, encoding, cap
):
    """brotli and zstd bodies were decompressed whole (1 GiB from 0.8 KB: 2.2 GB peak RSS) before
    the cap was checked. Now the bomb costs at most the cap, the decoder's window and the few
    copies of the compressed body the reader holds (block, body), plus 2 MiB of slack for output
    buffers and the allocator, and never more than 2 x cap: a brotli window larger than the cap
    allows is refused before decoding (the next test). Measured (Dec 2026): br 48 (lgwin 24) /
    zstd 41 / gzip 36 MiB at a 32 MiB cap, br 18 (lgwin 23) / zstd 19 / gzip 14 MiB at the
    default 10 MiB; an lgwin-24 brotli bomb took 26 MiB at the default before it was refused."""
    bomb = bombs(encoding, cap)
    rise, docs = _bomb_peak(tmp_path, clean_twin, encoding, cap, bomb)
    assert docs[VICTIM_ID][0] == "too_large"
    message = f"{rise / MiB:.1f} MiB for a {cap / MiB:.0f} MiB cap"
    assert rise <= cap + WINDOW[encoding] + 4 * len(bomb) + 2 * MiB, message
    assert rise <= 2 * cap, message
    assert {k: v[0] for k, v in docs.items() if k != VICTIM_ID} == {
        k: v[0] for k, v in demo_summary.items() if k != VICTIM_ID
    }


def test_a_brotli_stream_whose_window_passes_the_cap_is_refused_before_decoding(
    tmp_path, demo_summary, clean_twin
):
    """A 0.8 KB lgwin-24 bomb filled its 16 MiB window before the first byte came out: 26 MiB at
    the default 10 MiB cap. Its header declares that window, so it is one counted error naming
    it, and decoding never starts."""
    rise, docs = _bomb_peak(tmp_path, clean_twin, "br", DEFAULT_CAP, _bomb("br", window_log=24))
    reason, detail = docs[VICTIM_ID]
    assert reason == "content_encoding" and "lgwin 24" in detail and str(1 << 24) in detail
    assert rise <= 2 * MiB
    assert {k: v[0] for k, v in docs.items() if k != VICTIM_ID} == {
        k: v[0] for k, v in demo_summary.items() if k != VICTIM_ID
    }


def test_a_real_page_with_a_window_past_the_cap_is_an_error_until_the_cap_is_raised(tmp_path):
    """The cost of the rule: a page compressed with ``lgwin=24`` (``brotli -w 24``; the tool picks
    24 on its own only for files over 8 MiB) is refused at the default cap, however small, and
    reads again once the cap fits its window. lgwin 23, the largest the default allows, reads."""
    import brotli

    def victim(lgwin: int, cap: int):
        path = _damaged_demo(
            tmp_path / f"{lgwin}-{cap}", brotli.compress(VICTIM_HTML, lgwin=lgwin), (b"Content-Encoding: br",)
        )
        return next(
            d for d in read_warc(str(path), WarcReaderConfig(max_payload_bytes=cap)) if d.id == VICTIM_ID
        )

    refused = victim(24, DEFAULT_CAP)
    assert refused.drop.reason == "content_encoding" and "lgwin 24" in refused.drop.detail
    assert victim(24, (16 * MiB) + _STEP).html == VICTIM_HTML
    assert victim(23, DEFAULT_CAP).html == VICTIM_HTML


def test_the_brotli_window_is_read_from_the_stream_header():
    """RFC 7932 §9.1's variable-length WBITS code, checked against the real encoder for every
    window and quality (qualities 0 and 1 raise the window to at least 18), on an empty and a
    real page; large-window brotli (not in the RFC) is named and refused."""
    import brotli

    for quality in range(12):
        for lgwin in range(10, 25):
            for page in (b"", VICTIM_HTML):
                stream = brotli.compress(page, quality=quality, lgwin=lgwin)
                assert brotli_window_bits(stream) == (max(lgwin, 18) if quality <= 1 else lgwin, False)
    assert brotli_window_bits(b"") is None
    large = bytes([0b0010001, 30]) + bytes(8)  # large-window mark, a 0 bit, then WBITS = 30
    assert brotli_window_bits(large) == (30, True)
    with pytest.raises(ValueError, match="large-window"):
        decode_content(large, "br", DEFAULT_CAP)


def test_a_zstd_frame_asking_for_a_window_past_8_mib_is_refused(tmp_path, clean_twin):
    """A frame may ask for a 2 GiB window, allocated before any output: refused, as RFC 9659 asks."""
    rise, docs = _bomb_peak(tmp_path, clean_twin, "zstd", DEFAULT_CAP, _bomb("zstd", window_log=27))
    reason, detail = docs[VICTIM_ID]
    assert reason == "content_encoding" and "zstd" in detail
    assert rise <= 2 * MiB


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip", "deflate"])
def test_compressed_pages_still_decode_to_the_page(tmp_path, encoding):
    """The happy path of every decoder, on a real page: the document's payload is the page."""
    import brotli

    body = {
        "br": lambda b: brotli.compress(b),
        "zstd": lambda b: _zstd_module().compress(b),
        "gzip": gzip.compress,
        "deflate": zlib.compress,
    }[encoding](VICTIM_HTML)
    path = _damaged_demo(tmp_path, body, (b"Content-Encoding: " + encoding.encode(),))
    victim = next(d for d in read_warc(str(path)) if d.id == VICTIM_ID)
    assert victim.drop is None and victim.html == VICTIM_HTML


def test_more_content_codings_than_the_limit_are_an_error(tmp_path):
    body = VICTIM_HTML
    for _ in range(5):
        body = gzip.compress(body, compresslevel=1)
    path = _damaged_demo(tmp_path, body, (b"Content-Encoding: gzip, gzip, gzip, gzip, gzip",))
    victim = next(d for d in read_warc(str(path)) if d.id == VICTIM_ID)
    assert victim.drop.reason == "content_encoding" and "5 content codings" in victim.drop.detail
    assert decode_content(gzip.compress(VICTIM_HTML), "gzip", len(VICTIM_HTML)) == VICTIM_HTML
