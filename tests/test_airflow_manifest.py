"""OUTPUT/manifest.json, the last step of the Airflow DAG: every file checked, written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.document import Document, Drop, dropped_table, kept_table
from thresher.orchestration.manifest import ManifestError, build_manifest, main, write_manifest
from thresher.shards.tokens import TokenShardWriter
from thresher.shards.tokens import write_manifest as write_tokens_manifest

TEXTS = [
    "Debian is a free operating system for your computer.",
    "Le projet Debian est une association d'individus.",
    "Das Debian-Projekt ist eine Vereinigung von Einzelpersonen.",
    "El proyecto Debian es una asociación de personas.",
    "Debian のパッケージ管理システムは dpkg です。",
]


def make_run_output(root: Path, shard_sizes=(3, 2), stats_documents=None) -> Path:
    """The layout `thresher run` leaves: documents/, dropped/, stats.json."""
    n = 0
    for shard, size in enumerate(shard_sizes):
        docs = [
            Document(id=f"d{n + i}", text=TEXTS[(n + i) % len(TEXTS)], url=f"https://example.org/{n + i}")
            for i in range(size)
        ]
        gone = Document(id=f"x{shard}", text="short")
        gone.mark_dropped(Drop("too_short", stage="02-gopher"))
        n += size
        (root / "documents").mkdir(parents=True, exist_ok=True)
        (root / "dropped").mkdir(parents=True, exist_ok=True)
        pq.write_table(kept_table(docs), root / "documents" / f"00000-{shard:05d}.parquet")
        pq.write_table(dropped_table([gone]), root / "dropped" / f"00000-{shard:05d}.parquet")
    stats = {
        "name": "test",
        "documents": n if stats_documents is None else stats_documents,
        "shards": len(shard_sizes),
    }
    (root / "stats.json").write_text(json.dumps(stats))
    return root


def make_tokens(root: Path) -> Path:
    tokens = root / "tokens"
    rng = np.random.default_rng(0)
    with TokenShardWriter(tokens, dtype="uint16", eot_id=0, target_tokens=40) as writer:
        for i in range(6):
            ids = rng.integers(1, 1000, size=15, dtype=np.uint16)
            writer.add(f"d{i}", np.append(ids, np.uint16(0)))  # each document ends with <|endoftext|>
    infos = writer.shards
    write_tokens_manifest(
        tokens,
        tokenizer={"path": "tokenizer", "hash": "0" * 16, "vocab_size": 1000, "eot_id": 0, "dtype": "uint16"},
        config_hash="test",
        validation_fraction=0.0,
        shards=infos,
    )
    return tokens


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_lists_every_file_with_rows_and_checksums(tmp_path):
    out = make_run_output(tmp_path / "run")
    tokens = make_tokens(out)
    (out / "documents" / ".00000-00009.parquet.tmp1").write_bytes(b"half written")  # a write in progress

    path = write_manifest(out, {"run_id": "manual__1"})

    manifest = json.loads(path.read_text())
    assert path == out / "manifest.json"
    assert manifest["format"] == "thresher.run-manifest" and manifest["run"] == {"run_id": "manual__1"}
    assert [d["path"] for d in manifest["documents"]] == [
        "documents/00000-00000.parquet",
        "documents/00000-00001.parquet",
    ]
    assert [d["rows"] for d in manifest["documents"]] == [3, 2]
    for entry in manifest["documents"] + manifest["dropped"] + [manifest["stats"]]:
        file = out / entry["path"]
        assert entry["sha256"] == sha256(file) and entry["bytes"] == file.stat().st_size
    assert manifest["totals"]["documents"] == 5 and manifest["totals"]["document_shards"] == 2
    assert manifest["stats"]["documents"] == 5
    assert manifest["tokens"]["sha256"] == sha256(tokens / "manifest.json")
    assert manifest["tokens"]["totals"]["train"]["rows"] == 6
    assert "crawl" not in manifest and "tokenizer" not in manifest
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_manifest_refuses_documents_that_disagree_with_stats(tmp_path):
    out = make_run_output(tmp_path / "run", stats_documents=6)
    with pytest.raises(ManifestError, match="5 rows in 2 shards but stats.json says 6"):
        write_manifest(out)
    assert not (out / "manifest.json").exists()
    assert main([str(out)]) == 2


def test_manifest_names_a_truncated_document_shard(tmp_path):
    out = make_run_output(tmp_path / "run")
    shard = out / "documents" / "00000-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(ManifestError, match="00000-00001.parquet: not a readable Parquet file"):
        build_manifest(out)


def test_manifest_detects_a_token_shard_changed_after_its_manifest(tmp_path):
    out = make_run_output(tmp_path / "run")
    tokens = make_tokens(out)
    shard = sorted(tokens.glob("shard-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=f"sha256 differs from manifest: .*{shard.name}"):
        build_manifest(out)


def test_manifest_needs_a_finished_run_and_well_formed_meta(tmp_path, capsys):
    (tmp_path / "documents").mkdir()
    assert main([str(tmp_path)]) == 2
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(SystemExit) as exc:
        main([str(make_run_output(tmp_path / "run")), "--meta", "novalue"])
    assert exc.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "run" / "manifest.json").exists()
