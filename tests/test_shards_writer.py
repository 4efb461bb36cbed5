"""Token shard writer and manifest: real text tokenized with a byte-level BPE (HF tokenizers)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.shards.sample import real_documents, small_sample_tokens, train_bpe
from thresher.shards.tokens import (
    MANIFEST_NAME,
    ShardError,
    TokenShardWriter,
    list_shard_files,
    load_manifest,
    split_of,
    verify_tokens_dir,
    write_manifest,
    write_token_shard,
)
from thresher.tokenize import token_dtype


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    """Real tokens dir, built once per session and shared by the test_shards_* modules."""
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


@pytest.fixture(scope="module")
def encoded(shared_data):
    """(ids, token arrays with EOT, eot id) for the Zyte article bodies plus one Lingua language."""
    docs = list(real_documents(shared_data("lid-lingua-testdata").parent, languages=1))
    tok = train_bpe([t for _, t in docs][::3], 512)
    eot = tok.token_to_id("<|endoftext|>")
    arrays = [np.asarray(e.ids + [eot], dtype=np.uint16) for e in tok.encode_batch([t for _, t in docs])]
    return [d for d, _ in docs], arrays, eot


TOKENIZER = {"path": "tok.json", "hash": "abc", "vocab_size": 512, "eot_id": 0, "dtype": "uint16"}


def read_back(path):
    t = pq.read_table(path)
    return t.column("id").to_pylist(), [np.asarray(x) for x in t.column("tokens").to_pylist()], t


def test_shard_roundtrip_schema_row_groups_and_metadata(tmp_path, encoded):
    ids, arrays, eot = encoded
    info = write_token_shard(
        tmp_path, "shard-00000", ids, arrays, dtype="uint16", eot_id=eot, row_group_tokens=20_000
    )
    got_ids, got_tokens, table = read_back(tmp_path / "shard-00000.parquet")
    assert got_ids == ids
    assert all(np.array_equal(a, b) for a, b in zip(got_tokens, arrays, strict=True))
    assert table.schema.field("tokens").type.value_type == "uint16"
    assert table.column("n_tokens").to_pylist() == [a.size for a in arrays]
    pf = pq.ParquetFile(tmp_path / "shard-00000.parquet")
    assert pf.metadata.row_group(0).column(1).compression == "ZSTD"
    rg_tokens = [
        sum(pf.read_row_group(i, columns=["n_tokens"]).column(0).to_pylist())
        for i in range(pf.num_row_groups)
    ]
    assert rg_tokens == info.row_group_tokens and len(rg_tokens) > 1
    assert sum(info.row_group_tokens) == info.tokens == sum(a.size for a in arrays)
    # every row group but the last reaches the target, and none overshoots by more than its last doc
    for n in info.row_group_tokens[:-1]:
        assert n >= 20_000 - max(a.size for a in arrays)
    assert info.sha256 == hashlib.sha256((tmp_path / "shard-00000.parquet").read_bytes()).hexdigest()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_rerun_skips_complete_shard_and_replaces_stale_one(tmp_path, encoded, caplog):
    ids, arrays, eot = encoded
    path = tmp_path / "shard-00000.parquet"
    first = write_token_shard(tmp_path, "shard-00000", ids[:50], arrays[:50], dtype="uint16")
    mtime = path.stat().st_mtime_ns
    again = write_token_shard(tmp_path, "shard-00000", ids[:50], arrays[:50], dtype="uint16")
    assert path.stat().st_mtime_ns == mtime and again == first
    other = write_token_shard(tmp_path, "shard-00000", ids[50:90], arrays[50:90], dtype="uint16")
    assert other.rows == 40 and other.sha256 != first.sha256
    assert read_back(path)[0] == ids[50:90]


def test_bad_input_is_rejected_without_leaving_a_file(tmp_path, encoded):
    ids, arrays, eot = encoded
    with pytest.raises(ValueError, match="do not end with"):
        write_token_shard(tmp_path, "s", ids[:3], [a[:-1] for a in arrays[:3]], dtype="uint16", eot_id=eot)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 65535\]"):
        write_token_shard(tmp_path, "s", ["a"], [np.array([70_000, eot])], dtype="uint16")
    with pytest.raises(ValueError, match="has no tokens"):
        write_token_shard(tmp_path, "s", ["a", "b"], [np.array([1, eot]), np.array([], int)], dtype="uint16")
    assert os.listdir(tmp_path) == []


def test_uint32_for_large_vocabularies(tmp_path, encoded):
    ids, arrays, _ = encoded
    assert (
        token_dtype(50_257) == "uint16"
        and token_dtype(65_536) == "uint16"
        and token_dtype(128_256) == "uint32"
    )
    big = [a.astype(np.uint32) + 100_000 for a in arrays[:5]]
    write_token_shard(tmp_path, "shard-00000", ids[:5], big, dtype="uint32")
    _, got, table = read_back(tmp_path / "shard-00000.parquet")
    assert table.schema.field("tokens").type.value_type == "uint32"
    assert all(np.array_equal(a, b) for a, b in zip(got, big, strict=True))


def test_split_is_stable_per_document():
    # the rule documented in the manifest, recomputed independently
    doc_id = "https://example.org/page#1"
    h = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big") / 2**64
    assert split_of(doc_id, h + 1e-9) == "validation" and split_of(doc_id, h - 1e-9) == "train"
    assert split_of(doc_id, 0.0) == "train"
    share = np.mean([split_of(f"doc-{i}", 0.1) == "validation" for i in range(20_000)])
    assert 0.09 < share < 0.11


def test_streaming_writer_splits_rolls_and_writes_manifest(tmp_path, encoded):
    ids, arrays, eot = encoded
    with TokenShardWriter(
        tmp_path,
        dtype="uint16",
        eot_id=eot,
        validation_fraction=0.2,
        target_tokens=30_000,
        row_group_tokens=4_096,
    ) as w:
        w.add_batch(ids, arrays)
    manifest = write_manifest(
        tmp_path, tokenizer=TOKENIZER, config_hash="c0ffee", validation_fraction=0.2, shards=w.shards
    )
    assert manifest == load_manifest(tmp_path)
    by_split = {s: [x for x in manifest["shards"] if x["split"] == s] for s in ("train", "validation")}
    assert len(by_split["train"]) > 2 and len(by_split["validation"]) >= 1
    assert all(x["path"].startswith("shard-") for x in by_split["train"])
    assert all(x["path"].startswith("val-") for x in by_split["validation"])
    seen: dict[str, str] = {}
    for entry in manifest["shards"]:
        got_ids, got_tokens, _ = read_back(tmp_path / entry["path"])
        assert entry["rows"] == len(got_ids) and entry["tokens"] == sum(t.size for t in got_tokens)
        for i in got_ids:
            assert split_of(i, 0.2) == entry["split"]
            seen[i] = entry["split"]
    assert sorted(seen) == sorted(ids)  # every document once, in exactly one split
    assert manifest["totals"]["train"]["tokens"] + manifest["totals"]["validation"]["tokens"] == sum(
        a.size for a in arrays
    )
    assert manifest["tokenizer"] == TOKENIZER and manifest["config_hash"] == "c0ffee"
    assert verify_tokens_dir(tmp_path) == []


def test_manifest_leaves_out_stray_files_and_rejects_wrong_dtype(tmp_path, encoded, caplog):
    ids, arrays, _ = encoded
    a = write_token_shard(tmp_path, "shard-a-00000", ids[:10], arrays[:10], dtype="uint16")
    write_token_shard(tmp_path, "shard-old-00000", ids[10:20], arrays[10:20], dtype="uint16")
    manifest = write_manifest(
        tmp_path, tokenizer=TOKENIZER, config_hash="x", validation_fraction=0.0, shards=[a]
    )
    assert [s["path"] for s in manifest["shards"]] == ["shard-a-00000.parquet"]
    assert "shard-old-00000.parquet" in caplog.text
    with pytest.raises(ShardError, match="shard-a-00000.parquet"):
        write_manifest(
            tmp_path,
            tokenizer={**TOKENIZER, "vocab_size": 100_000, "dtype": "uint32"},
            config_hash="x",
            validation_fraction=0.0,
            shards=[a],
        )


def test_manifest_detects_a_shard_changed_after_writing(tmp_path, encoded):
    ids, arrays, _ = encoded
    a = write_token_shard(tmp_path, "shard-00000", ids[:10], arrays[:10], dtype="uint16")
    b = write_token_shard(tmp_path, "shard-00001", ids[10:20], arrays[10:20], dtype="uint16")
    os.remove(tmp_path / b.path)
    with pytest.raises(ShardError, match="shard-00001.parquet"):
        write_manifest(tmp_path, tokenizer=TOKENIZER, config_hash="x", validation_fraction=0.0, shards=[a, b])


@pytest.mark.slow  # starts Ray (about 20 s here)
def test_parallel_ray_writers_then_one_manifest(tmp_path, encoded, ray_session):
    ids, arrays, eot = encoded
    ray = ray_session

    @ray.remote
    def write_part(part: int, part_ids, part_arrays):
        with TokenShardWriter(
            tmp_path,
            dtype="uint16",
            eot_id=eot,
            validation_fraction=0.1,
            target_tokens=25_000,
            prefix=f"w{part}",
        ) as w:
            w.add_batch(part_ids, part_arrays)
        return [s.to_dict() for s in w.shards]

    parts = [(i, ids[i::3], arrays[i::3]) for i in range(3)]
    results = ray.get([write_part.remote(*p) for p in parts])
    shards = [s for r in results for s in r]
    manifest = write_manifest(
        tmp_path, tokenizer=TOKENIZER, config_hash="x", validation_fraction=0.1, shards=shards
    )
    names = [s["path"] for s in manifest["shards"]]
    assert {n.split("-")[1] for n in names} == {"w0", "w1", "w2"}
    assert sum(s["rows"] for s in manifest["shards"]) == len(ids)
    assert [p.name for p in list_shard_files(tmp_path)] == names
    # a rerun of one worker finds its shards complete and rewrites nothing
    before = {n: (tmp_path / n).stat().st_mtime_ns for n in names}
    ray.get(write_part.remote(*parts[1]))
    assert {n: (tmp_path / n).stat().st_mtime_ns for n in names} == before


def test_sample_tokens_dir_is_consistent(tokens_dir):
    manifest = json.loads((tokens_dir / MANIFEST_NAME).read_text())
    assert manifest["totals"]["train"]["tokens"] > 300_000
    assert manifest["totals"]["validation"]["tokens"] > 20_000
    assert verify_tokens_dir(tokens_dir) == []
    tok = manifest["tokenizer"]
    assert tok["hash"] == hashlib.sha256(open(tok["path"], "rb").read()).hexdigest()


def test_verify_reports_a_changed_shard(tmp_path, tokens_dir):
    copy = tmp_path / "tokens"
    shutil.copytree(tokens_dir, copy)
    victim = copy / "shard-00001.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert verify_tokens_dir(copy) == [f"sha256 differs from manifest: {victim}"]
