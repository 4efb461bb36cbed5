"""Documents from already-extracted text: Parquet and JSONL (``id``, ``text``, optional ``url``,
``metadata`` and anything else, which lands in metadata). Ids are kept as given.

Every JSONL line and Parquet row yields exactly one document, kept or dropped with a reason. The
fields are checked here, at the boundary, because a value of the wrong type would otherwise
crash the run much later (in Arrow, in ``json.dumps``, in a dedup ranking) and end it for every
other document. What happens to each field:

- ``id`` (required): a string. A number, bool or date is written as its string (``7`` → ``"7"``),
  bytes are decoded as UTF-8. Null or missing: error ``missing_id``.
- ``text``: a string. Null, missing or blank: dropped ``no_text``.
- ``url``, ``warc_date``, ``language``: a string or null, converted like ``id``.
- ``language_score``: a finite number in float32 range; a string that reads as one (``"0.93"``)
  is converted.
- ``metadata``: an object, or a string holding a JSON object. Anything else (a list, a number, a
  string that is not a JSON object) is kept as ``{"metadata": value}``. Values that JSON cannot
  hold (Parquet dates, decimals, bytes) become strings.
- ``scores``: an object of finite numbers (numeric strings are converted), or a string holding
  one; null or ``""`` is ``{}``. Scores decide which duplicate survives (dedup ``keep: score``),
  so one that is not a number (``"{oops"``, a list, ``"high"``, NaN, a 400-digit integer past
  float range) is not guessed at: the record is an error.
- any other field goes to metadata: strings, numbers and bools as they are, anything else as
  its string.
- a value of a type none of these rules converts (an ``id`` that is a list, a ``text`` that is a
  number, metadata nested deeper than ``MAX_DEPTH``): error ``bad_field``, its detail naming the
  field and the type.
- lone surrogates (``"\\ud800"`` is valid JSON, but no UTF-8, which Parquet needs): each is
  replaced by U+FFFD in every string of the record, keys included, and the record is kept.
  Parquet strings that are not valid UTF-8 are decoded the same way, with U+FFFD.
- a JSONL line that is not a JSON object (or nests deeper than Python can parse): error
  ``bad_json``; a line longer than ``MAX_LINE_CHARS``: error ``line_too_long``, read past in
  pieces, never held whole.
"""

from __future__ import annotations

import datetime
import decimal
import gzip
import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

from thresher.document import Document, Drop
from thresher.readers.inputs import input_format

logger = logging.getLogger(__name__)

STAGE = "read"
MAX_LINE_CHARS = 1 << 24
"""16 Mi characters: a JSONL line longer than this is an error, not a document (or a dead run)."""
MAX_DEPTH = 32
"""How deep metadata may nest: deeper would make ``json.dumps`` run out of stack later."""
_FLOAT32_MAX = 3.4028234663852886e38
_KNOWN = {"id", "text", "url", "warc_date", "language", "language_score", "source", "metadata", "scores"}
_SCALARS = (str, int, float, bool, decimal.Decimal, datetime.date, datetime.time, datetime.timedelta)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _BadField(ValueError):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _string(value: Any, field: str) -> str | None:
    """A string field's value: strings as they are, other scalars as their string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, _SCALARS):
        return str(value)
    raise _BadField(field, f"expected a string, got {_type_name(value)}")


def _number(value: Any, field: str, limit: float = math.inf) -> float:
    """A finite number no larger than ``limit`` in size, or a string that reads as one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal, str)):
        raise _BadField(field, f"expected a number, got {_type_name(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _BadField(field, f"not a number within float range: {str(value)[:40]!r}") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise _BadField(field, f"not a finite number within range: {str(value)[:40]!r}")
    return number


def _plain(value: Any, field: str, depth: int = 0) -> Any:
    """``value`` with only what JSON holds (dict with string keys, list, str, number, bool, None)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        raise _BadField(field, f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        return {str(k): _plain(v, field, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, field, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_object(value: str) -> Any:
    """A string field that may hold JSON; the parsed value, or the string if it is not JSON."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = _json_object(value) if value else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        value = {"metadata": value}
    return _plain(value, "metadata")


def _scores(value: Any) -> dict[str, float]:
    if isinstance(value, str):
        if not value:
            return {}
        value = _json_object(value)
        if isinstance(value, str):
            raise _BadField("scores", f"not JSON: {value[:40]!r}")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadField("scores", f"expected an object, got {_type_name(value)}")
    return {str(k): _number(v, f"scores.{k}") for k, v in value.items()}


def _without_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with every lone surrogate in its strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _error(source: str, index: int, reason: str, detail: str, value: float | None = None) -> Document:
    doc = Document(id=f"{source}#{index}", source=f"{source}#{index}")
    doc.mark_dropped(Drop(reason, kind="error", value=value, detail=detail[:300], stage=STAGE))
    return doc


def _row_to_document(row: dict[str, Any], source: str, index: int) -> Document:
    try:
        raw_id = _string(row.get("id"), "id")
    except _BadField as exc:
        return _error(source, index, "bad_field", str(exc))
    doc = Document(id=raw_id if raw_id is not None else f"{source}#{index}", source=f"{source}#{index}")
    if raw_id is None:
        doc.mark_dropped(Drop("missing_id", kind="error", stage=STAGE))
        return doc
    try:
        _fill(doc, row)
    except _BadField as exc:
        doc.mark_dropped(Drop("bad_field", kind="error", detail=str(exc)[:300], stage=STAGE))
    return doc


def _fill(doc: Document, row: dict[str, Any]) -> None:
    doc.url = _string(row.get("url"), "url")
    doc.warc_date = _string(row.get("warc_date"), "warc_date")
    doc.language = _string(row.get("language"), "language")
    score = row.get("language_score")
    doc.language_score = None if score is None else _number(score, "language_score", _FLOAT32_MAX)
    doc.metadata = _metadata(row.get("metadata"))
    doc.scores = _scores(row.get("scores"))
    for key, value in row.items():
        if key not in _KNOWN and value is not None:
            doc.metadata[str(key)] = value if isinstance(value, (str, int, float, bool)) else str(value)
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise _BadField("text", f"expected a string, got {_type_name(text)}")
    if not text or not text.strip():
        doc.mark_dropped(Drop("no_text", stage=STAGE))
    else:
        doc.text = text


def _batch_rows(batch) -> list[dict[str, Any]]:
    """A record batch's rows; string columns that are not valid UTF-8 are decoded with U+FFFD."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        import pyarrow as pa

        columns = {}
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                raw = column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
                columns[name] = [None if v is None else v.decode("utf-8", "replace") for v in raw.to_pylist()]
            else:
                columns[name] = column.to_pylist()
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def read_parquet(path: str, batch_size: int = 1024) -> Iterator[Document]:
    import fsspec
    import pyarrow.parquet as pq

    index = 0
    try:
        with fsspec.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=batch_size):
                for row in _batch_rows(batch):
                    yield _row_to_document(row, path, index)
                    index += 1
    except Exception as exc:
        logger.warning("%s: unreadable after row %d: %r", path, index, exc)
        doc = Document(id=f"{path}#corrupt@{index}", source=f"{path}#{index}")
        doc.mark_dropped(Drop("corrupt_file", kind="error", detail=str(exc)[:300], stage=STAGE))
        yield doc


def _lines(f) -> Iterator[tuple[str | None, int]]:
    """The lines of a text file, each with its length; a line longer than ``MAX_LINE_CHARS`` comes
    as None and its length, read in pieces of that size and not kept."""
    while True:
        line = f.readline(MAX_LINE_CHARS)
        if not line:
            return
        if len(line) < MAX_LINE_CHARS or line.endswith("\n"):
            yield line, len(line)
            continue
        size = len(line)
        while line and not line.endswith("\n"):
            line = f.readline(MAX_LINE_CHARS)
            size += len(line)
        yield None, size


def _parse_line(line: str) -> dict[str, Any]:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("a JSONL line must be an object")
    if "\\u" in line and _SURROGATE_ESCAPE.search(line):  # only escapes make lone surrogates
        row = _without_surrogates(row)
    return row


def read_jsonl(path: str) -> Iterator[Document]:
    import fsspec

    compression = "infer"
    index = 0
    try:
        with fsspec.open(path, "rt", encoding="utf-8", errors="replace", compression=compression) as f:
            for index, (line, size) in enumerate(_lines(f)):
                if line is None:
                    logger.warning("%s: line %d is %d characters long: skipped", path, index + 1, size)
                    yield _error(path, index, "line_too_long", f"more than {MAX_LINE_CHARS} characters", size)
                    continue
                if not line.strip():
                    continue
                try:
                    row = _parse_line(line)
                except (ValueError, RecursionError) as exc:
                    yield _error(path, index, "bad_json", str(exc)[:200])
                    continue
                yield _row_to_document(row, path, index)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        logger.warning("%s: unreadable after line %d: %r", path, index, exc)
        doc = Document(id=f"{path}#corrupt@{index}", source=f"{path}#{index}")
        doc.mark_dropped(Drop("corrupt_file", kind="error", detail=str(exc)[:300], stage=STAGE))
        yield doc


def read_documents(path: str, fmt: str = "auto", warc_config=None) -> Iterator[Document]:
    """Documents of one input file, whatever its format."""
    fmt = input_format(path, fmt)
    if fmt == "warc":
        from thresher.readers.warc import read_warc

        return read_warc(path, warc_config)
    if fmt == "parquet":
        return read_parquet(path)
    return read_jsonl(path)
