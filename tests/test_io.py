"""thresher.io: a published file is one writer's complete version, a failed write leaves nothing."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.io import (
    TEMP_NAME,
    atomic_open,
    atomic_path,
    copy_file_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)

CHUNK = 64 * 1024
CHUNKS = 16


def _stream_version(dest: str, version: int) -> None:
    """Write 1 MiB of one byte value in chunks with pauses, so concurrent writers overlap in time."""
    with atomic_open(dest) as f:
        for _ in range(CHUNKS):
            f.write(bytes([version]) * CHUNK)
            f.flush()
            time.sleep(0.002)


def _assert_one_complete_version(dest: Path, versions: range) -> None:
    data = dest.read_bytes()
    assert len(data) == CHUNK * CHUNKS
    assert data[0] in versions
    assert data == bytes([data[0]]) * len(data), "the published file mixes two writers' bytes"
    assert [p.name for p in dest.parent.iterdir()] == [dest.name], "a temporary file was left behind"


def test_two_open_writers_of_one_destination_get_different_temporaries(tmp_path):
    dest = tmp_path / "stats.json"
    with atomic_path(dest) as first, atomic_path(dest) as second:
        assert first != second
        assert first.parent == second.parent == tmp_path
        assert TEMP_NAME.match(first.name) and TEMP_NAME.match(second.name)
        first.write_text("first")
        second.write_text("second")
    # the inner block (second) publishes first, then the outer one replaces it
    assert dest.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_threads_writing_one_destination_never_interleave(tmp_path):
    dest = tmp_path / "part.bin"
    errors: list[BaseException] = []

    def write(version: int) -> None:
        try:
            _stream_version(str(dest), version)
        except BaseException as e:  # a thread's exception would otherwise be lost
            errors.append(e)

    threads = [threading.Thread(target=write, args=(v,)) for v in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _assert_one_complete_version(dest, range(8))


def test_processes_writing_one_destination_never_interleave(tmp_path):
    dest = tmp_path / "part.bin"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_stream_version, args=(str(dest), v)) for v in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 4
    _assert_one_complete_version(dest, range(4))


def test_a_failed_write_leaves_no_temporary_and_no_partial_destination(tmp_path):
    dest = tmp_path / "tokens.bin"
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_open(dest) as f:
        f.write(b"half a file")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_version(tmp_path):
    dest = tmp_path / "manifest.json"
    write_json_atomic(dest, {"version": 1})
    with pytest.raises(ValueError), atomic_path(dest) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise ValueError("sha256 does not match")
    assert json.loads(dest.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_failed_parquet_write_leaves_nothing(tmp_path):
    dest = tmp_path / "documents" / "part-00000.parquet"
    table = pa.table({"x": [1, 2, 3]})
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises for an unknown codec
        write_parquet_atomic(table, dest, compression="no-such-codec")
    assert list(dest.parent.iterdir()) == []


def test_the_destination_directory_is_created(tmp_path):
    dest = tmp_path / "a" / "b" / "report.html"
    write_text_atomic(dest, "<p>ok</p>\n")
    assert dest.read_text(encoding="utf-8") == "<p>ok</p>\n"
    write_bytes_atomic(tmp_path / "c" / "x.bin", b"\x00\x01")
    assert (tmp_path / "c" / "x.bin").read_bytes() == b"\x00\x01"


def test_json_is_written_with_the_given_options_and_a_final_newline(tmp_path):
    dest = write_json_atomic(
        tmp_path / "s.json", {"b": "é", "a": 1}, indent=2, sort_keys=True, ensure_ascii=False
    )
    assert dest.read_text(encoding="utf-8") == '{\n  "a": 1,\n  "b": "é"\n}\n'


@pytest.mark.parametrize(
    ("compression", "stored"),
    [("zstd", "ZSTD"), ("snappy", "SNAPPY"), ("none", "UNCOMPRESSED"), (None, "UNCOMPRESSED")],
)
def test_parquet_round_trips_with_the_chosen_compression(tmp_path, compression, stored):
    table = pa.table({"id": ["a", "b", "c"], "text": ["x" * 100, "y", "z"]})
    dest = write_parquet_atomic(
        table, tmp_path / "out" / "part.parquet", compression=compression, row_group_size=2
    )
    assert pq.read_table(dest).equals(table)
    meta = pq.ParquetFile(dest).metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).column(0).compression == stored
    assert [p.name for p in dest.parent.iterdir()] == ["part.parquet"]


def test_copy_file_atomic_copies_the_bytes(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 10)
    dest = copy_file_atomic(src, tmp_path / "models" / "lid.176.ftz")
    assert dest.read_bytes() == src.read_bytes()


def test_atomic_open_refuses_modes_that_do_not_write_a_new_file(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "ab"):
        pass


def _wheel_with_lists(path: Path, lists_dir: Path, damage: str | None = None) -> Path:
    import zipfile

    from thresher.filters.lists import FILES

    with zipfile.ZipFile(path, "w") as zf:
        for name in FILES:
            data = (lists_dir / name).read_bytes()
            if name == damage:
                data = data[: len(data) // 2]  # a truncated download
            zf.writestr(f"datatrove/assets/{name}", data)
    return path


@pytest.fixture
def url_lists_dir() -> Path:
    from thresher.filters.lists import LISTS_DIR, _verified

    if not _verified(LISTS_DIR):
        pytest.skip("FineWeb URL-filter lists not fetched (thresher filters fetch-lists)")
    return LISTS_DIR


def test_url_lists_from_a_wheel_are_checked_then_published(tmp_path, url_lists_dir):
    from thresher.filters.lists import FILES, _copy_from_wheel, _verified

    wheel = _wheel_with_lists(tmp_path / "datatrove.whl", url_lists_dir)
    dest = tmp_path / "lists"
    dest.mkdir()
    _copy_from_wheel(wheel, dest)
    assert _verified(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)


def test_a_url_list_that_fails_its_checksum_is_never_published(tmp_path, url_lists_dir):
    from thresher.filters.lists import ListsNotFound, _copy_from_wheel

    wheel = _wheel_with_lists(tmp_path / "datatrove.whl", url_lists_dir, damage="banned_subwords.txt")
    dest = tmp_path / "lists"
    dest.mkdir()
    with pytest.raises(ListsNotFound, match="banned_subwords.txt: sha256"):
        _copy_from_wheel(wheel, dest)
    names = {p.name for p in dest.iterdir()}
    assert "banned_subwords.txt" not in names
    assert not [n for n in names if TEMP_NAME.match(n)], "the damaged file's temporary was left behind"
