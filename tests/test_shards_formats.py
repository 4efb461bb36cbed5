"""Exports of a real run (``thresher shards export FORMAT SRC DST``), each read back by its own
framework's reader: Megatron-Core's ``IndexedDataset``, MosaicML Streaming's ``StreamingDataset``,
``datasets.load_dataset("json")``; llm.c and nanoGPT files by their documented layout."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.demo_data import demo_warc_subset
from thresher.cli import main
from thresher.io import sha256_file
from thresher.shards.exports import FORMATS, export
from thresher.shards.exports.flatbin import read_llmc_header
from thresher.tokenize import load_tokenizer

PAGES = 40


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    """A finished run of 40 real demo pages: 3 documents shards, several token shards per
    documents shard (small target), a validation split of about 20%, and the config's exports."""
    tmp = tmp_path_factory.mktemp("export-run")
    warc = demo_warc_subset(tmp / "demo-40.warc.gz", PAGES)
    config = tmp / "pipeline.yaml"
    config.write_text(
        f"""
name: export-test
input: {{paths: [{warc}], docs_per_shard: 15}}
output: {{path: {tmp / "run"}}}
stages:
  - extract: {{mode: cascade}}
  - language: {{threshold: 0.3}}
  - exact_dedup: {{}}
tokenize:
  train: {{vocab_size: 600}}
  validation_fraction: 0.2
  target_tokens_per_shard: 20000
export: {{formats: [megatron, mds, jsonl], max_file_bytes: 60000}}
"""
    )
    assert main(["run", str(config), "--local"]) == 0
    return config


@pytest.fixture(scope="module")
def run_dir(run_config) -> Path:
    return run_config.parent / "run"


def token_docs(run: Path, split: str) -> list[tuple[str, list[int]]]:
    """(id, tokens) of the split's documents, read straight from ``run/tokens`` in manifest order."""
    tokens = run / "tokens"
    manifest = json.loads((tokens / "manifest.json").read_text())
    docs = []
    for shard in manifest["shards"]:
        if shard["split"] == split:
            table = pq.read_table(tokens / shard["path"], columns=["id", "tokens"])
            docs += zip(table.column("id").to_pylist(), table.column("tokens").to_pylist(), strict=True)
    return docs


def test_the_run_has_what_the_exports_must_keep(run_dir):
    """The fixture is worth testing against: both splits, several token shards per documents shard."""
    manifest = json.loads((run_dir / "tokens" / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["train"]["rows"] > 20 and totals["validation"]["rows"] >= 3
    assert totals["train"]["shards"] > len(list((run_dir / "documents").glob("*.parquet")))


def test_a_run_is_overwritten_with_its_hf_tokenizer_files(run_config, run_dir, tmp_path):
    """tokenizer/ holds tokenizer_config.json and special_tokens_map.json now, and exports/ the
    config's exports; a run given --overwrite takes them for its own (not for someone else's
    files, which it refuses) and writes them again."""
    run = copy_run(run_dir, tmp_path / "run")
    assert (run / "tokenizer" / "tokenizer_config.json").exists()
    assert (run / "tokenizer" / "special_tokens_map.json").exists()
    (run / "exports" / "megatron" / "train" / "train-00000.bin").write_bytes(b"stale")
    assert main(["run", str(run_config), "--local", "--overwrite", "--output", str(run)]) == 0
    assert (
        json.loads((run / "tokens" / "manifest.json").read_text())["totals"]
        == json.loads((run_dir / "tokens" / "manifest.json").read_text())["totals"]
    )
    exported = json.loads((run / "exports" / "megatron" / "manifest.json").read_text())["files"][0]
    assert sha256_file(run / "exports" / "megatron" / exported["path"]) == exported["sha256"]


def test_the_config_export_section_writes_the_same_exports_at_the_end_of_the_run(run_dir, tmp_path):
    """export: {formats: [...]} leaves OUTPUT/exports/FORMAT byte for byte as the command writes it
    from the finished run, and its figures in stats.json."""
    stats = json.loads((run_dir / "stats.json").read_text())
    assert sorted(stats["extra"]["export"]) == ["jsonl", "mds", "megatron"]
    for fmt in ("megatron", "mds", "jsonl"):
        in_run = json.loads((run_dir / "exports" / fmt / "manifest.json").read_text())
        later = export(fmt, run_dir, tmp_path / fmt, max_file_bytes=60_000)
        assert [(f["path"], f["sha256"]) for f in in_run["files"]] == [
            (f["path"], f["sha256"]) for f in later["files"]
        ]
        assert stats["extra"]["export"][fmt]["splits"] == in_run["splits"]


@pytest.mark.parametrize(
    ("tokenize", "formats", "message"),
    [
        (True, "[megatron, parquet]", "export.formats: unknown format 'parquet'; one of megatron"),
        (True, "[jsonl, jsonl]", "export.formats: a format is listed twice"),
        (False, "[jsonl, mds]", "export.formats: mds export tokens; add a tokenize: section"),
    ],
)
def test_export_section_errors_are_config_errors(tmp_path, capsys, tokenize, formats, message):
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"input: {{paths: [{tmp_path}]}}\noutput: {{path: {tmp_path / 'out'}}}\nstages: [extract]\n"
        + ("tokenize: {train: {vocab_size: 300}}\n" if tokenize else "")
        + f"export: {{formats: {formats}}}\n"
    )
    code, line = error_line(capsys, "run", str(config), "--local")
    assert code == 2 and line.startswith("thresher: config error: ") and message in line, line
    assert not (tmp_path / "out").exists()


def export_cli(fmt: str, src: Path, dst: Path, *args: str) -> dict:
    assert main(["shards", "export", fmt, str(src), str(dst), *args]) == 0
    return json.loads((dst / "manifest.json").read_text())


def test_megatron_reads_back_with_megatron_core(run_dir, tmp_path):
    """Each split's prefixes, read with Megatron-Core's own IndexedDataset, hold the run's documents
    in order, one per sequence; no .bin is larger than --max-file-bytes but for a longer document."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dst = tmp_path / "megatron"
    manifest = export_cli("megatron", run_dir, dst, "--max-file-bytes", "60000")
    for split in ("train", "validation"):
        bins = sorted((dst / split).glob(f"{split}-*.bin"))
        assert len(bins) > 1 or split == "validation"
        got = []
        for path in bins:
            ds = IndexedDataset(str(path.with_suffix("")))
            assert path.stat().st_size <= 60_000 or len(ds) == 1  # a document larger than a file alone
            assert ds.index.dtype == np.uint16
            assert np.array_equal(ds.document_indices, np.arange(len(ds) + 1))
            got += [ds[i].tolist() for i in range(len(ds))]
        assert got == [tokens for _, tokens in token_docs(run_dir, split)]
        assert manifest["splits"][split]["documents"] == len(got)
        assert manifest["splits"][split]["tokens"] == sum(map(len, got))
    idx = (dst / "train" / "train-00000.idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00" and idx[9:17] == (1).to_bytes(8, "little") and idx[17] == 8


def import_streaming():
    """``streaming`` imports its vision datasets (and so torchvision) on import; this venv's
    CPU-only torch has no torchvision build to match. The MDS reader needs none of it, so the
    vision subpackage is left out when torchvision cannot be imported."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules.setdefault("streaming.vision", types.ModuleType("streaming.vision"))
    import streaming

    return streaming


def test_mds_reads_back_with_streaming(run_dir, tmp_path):
    """StreamingDataset(local=DST, split=SPLIT) yields every document's id and tokens in order,
    checking each shard's sha256; shards stay under the size limit."""
    streaming = import_streaming()
    dst = tmp_path / "mds"
    manifest = export_cli("mds", run_dir, dst, "--max-file-bytes", "50000")
    for split in ("train", "validation"):
        index = json.loads((dst / split / "index.json").read_text())
        assert index["version"] == 2  # a shard over the limit holds one document larger than it
        assert all(s["raw_data"]["bytes"] <= 50_000 or s["samples"] == 1 for s in index["shards"])
        ds = streaming.StreamingDataset(
            local=str(dst), split=split, shuffle=False, batch_size=1, validate_hash="sha256"
        )
        samples = [ds[i] for i in range(len(ds))]
        assert all(s["tokens"].dtype == np.uint16 for s in samples)
        assert [(s["id"], s["tokens"].tolist()) for s in samples] == token_docs(run_dir, split)
        assert manifest["splits"][split]["documents"] == len(samples)
        del ds
    assert len(json.loads((dst / "train" / "index.json").read_text())["shards"]) > 1


def test_jsonl_loads_with_datasets_in_token_order(run_dir, tmp_path):
    """datasets.load_dataset("json") reads the export; line k is document k of the token shards,
    its text encodes to its tokens, its metadata is an object with the run's fields."""
    import datasets

    dst = tmp_path / "jsonl"
    manifest = export_cli("jsonl", run_dir, dst, "--max-file-bytes", "100000")
    assert len(list((dst / "train").glob("*.jsonl.gz"))) > 1
    loaded = datasets.load_dataset(
        "json",
        data_files={s: sorted(str(p) for p in (dst / s).glob("*.jsonl.gz")) for s in ("train", "validation")},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    for split in ("train", "validation"):
        rows = list(loaded[split])
        expected = token_docs(run_dir, split)
        assert [r["id"] for r in rows] == [doc_id for doc_id, _ in expected]
        assert [tokenizer.encode_ordinary(r["text"]) + [tokenizer.eot_id] for r in rows] == [
            t for _, t in expected
        ]
        assert manifest["splits"][split]["documents"] == len(rows)
    first = json.loads(gzip.open(dst / "train" / "train-00000.jsonl.gz", "rt", encoding="utf-8").readline())
    assert set(first) == {"id", "text", "source", "metadata"}
    meta = first["metadata"]
    assert meta["url"].startswith("http") and meta["language"] and 0 < meta["language_score"] <= 1
    assert isinstance(meta["scores"], dict) and "title" in meta and meta["source"] == first["source"]


def test_llmc_and_nanogpt_hold_each_split_as_one_stream(run_dir, tmp_path):
    for split, stem in (("train", "train"), ("validation", "val")):
        stream = np.concatenate([np.asarray(t, np.uint16) for _, t in token_docs(run_dir, split)])
        export_cli("llmc", run_dir, tmp_path / f"llmc-{split}", "--max-file-bytes", str(1024 + 2 * 30_000))
        files = sorted((tmp_path / f"llmc-{split}").glob(f"{stem}_*.bin"))
        assert len(files) == -(-stream.size // 30_000)
        parts = []
        for f in files:
            magic, version, count = read_llmc_header(f)
            assert (magic, version) == (20240520, 1) and f.stat().st_size == 1024 + 2 * count
            parts.append(np.fromfile(f, dtype="<u2", offset=1024))
        assert np.array_equal(np.concatenate(parts), stream)
    nano = tmp_path / "nanogpt"
    export_cli("nanogpt", run_dir, nano)
    for split, name in (("train", "train.bin"), ("validation", "val.bin")):
        stream = np.concatenate([np.asarray(t, np.uint16) for _, t in token_docs(run_dir, split)])
        assert np.array_equal(np.memmap(nano / name, dtype=np.uint16, mode="r"), stream)


@pytest.mark.parametrize("fmt", FORMATS)
def test_manifest_counts_and_checksums(run_dir, tmp_path, fmt):
    """Every file is listed with its sha256 and size, counts add up to the run's, and exporting
    the same run again gives the same bytes."""
    manifest = export(fmt, run_dir, tmp_path / "a", max_file_bytes=80_000)
    run_totals = json.loads((run_dir / "tokens" / "manifest.json").read_text())["totals"]
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert on_disk == listed | {"manifest.json"}
    for f in manifest["files"]:
        assert sha256_file(tmp_path / "a" / f["path"]) == f["sha256"]
    for split in ("train", "validation"):
        assert manifest["splits"][split]["documents"] == run_totals[split]["rows"]
        if fmt != "jsonl":
            assert manifest["splits"][split]["tokens"] == run_totals[split]["tokens"]
    again = export(fmt, run_dir, tmp_path / "b", max_file_bytes=80_000)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]


def copy_run(run_dir: Path, dst: Path) -> Path:
    shutil.copytree(run_dir, dst)
    return dst


def test_a_failed_export_publishes_nothing(run_dir, tmp_path):
    """A documents shard that lost its last document (a run damaged after it finished): the jsonl
    export stops at that document with one input error, after it wrote part of its files, and
    leaves neither the destination nor a temporary directory behind."""
    run = copy_run(run_dir, tmp_path / "run")
    last = sorted((run / "documents").glob("*.parquet"))[-1]
    table = pq.read_table(last)
    pq.write_table(table.slice(0, table.num_rows - 1), last)
    dst = tmp_path / "exports" / "jsonl"
    code = main(["shards", "export", "jsonl", str(run), str(dst)])
    assert code == 3
    assert list((tmp_path / "exports").iterdir()) == []


def test_destination_rules(run_dir, tmp_path, capsys):
    """A destination holding someone's files is refused and left as it was; an earlier export is
    replaced only with --overwrite; an empty directory is used."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["shards", "export", "megatron", str(run_dir), str(mine)]) == 4
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["shards", "export", "megatron", str(run_dir), str(empty)]) == 0
    capsys.readouterr()
    assert main(["shards", "export", "megatron", str(run_dir), str(empty)]) == 4
    assert "already holds an export; give --overwrite" in capsys.readouterr().err
    before = json.loads((empty / "manifest.json").read_text())
    assert (
        main(
            [
                "shards",
                "export",
                "megatron",
                str(run_dir),
                str(empty),
                "--overwrite",
                "--max-file-bytes",
                "50000",
            ]
        )
        == 0
    )
    after = json.loads((empty / "manifest.json").read_text())
    assert after["splits"]["train"]["files"] > before["splits"]["train"]["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]


def error_line(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def test_a_source_that_is_not_a_finished_run(run_dir, tmp_path, capsys):
    """One input-error line (exit 3) for each way a source is not a finished run, and no output."""
    dst = tmp_path / "out"
    code, line = error_line(capsys, "shards", "export", "mds", str(tmp_path / "nope"), str(dst))
    assert code == 3 and line.startswith(f"thresher: input error: {tmp_path / 'nope'}: no such directory")

    unfinished = copy_run(run_dir, tmp_path / "unfinished")
    (unfinished / "stats.json").unlink()
    code, line = error_line(capsys, "shards", "export", "megatron", str(unfinished), str(dst))
    assert (code, line) == (
        3,
        f"thresher: input error: {unfinished}: not a finished run (no stats.json); finish it with --resume first",
    )

    untokenized = copy_run(run_dir, tmp_path / "untokenized")
    shutil.rmtree(untokenized / "tokens")
    code, line = error_line(capsys, "shards", "export", "llmc", str(untokenized), str(dst))
    assert code == 3 and line.endswith(f"run `thresher tokenize {untokenized}` first")

    damaged = copy_run(run_dir, tmp_path / "damaged")
    shard = sorted((damaged / "tokens").glob("shard-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    shard.write_bytes(bytes(data))
    code, line = error_line(capsys, "shards", "export", "mds", str(damaged), str(dst))
    assert code == 3 and "token shards do not match the manifest: sha256 differs" in line

    tokens_only = run_dir / "tokens"
    code, line = error_line(capsys, "shards", "export", "jsonl", str(tokens_only), str(dst))
    assert code == 3 and "holds no document text" in line
    assert not dst.exists()


def test_jsonl_of_a_run_without_tokens_is_all_train(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    shutil.rmtree(run / "tokens")
    manifest = export("jsonl", run, tmp_path / "jsonl")
    ids = [
        json.loads(line)["id"]
        for f in sorted((tmp_path / "jsonl" / "train").glob("*.jsonl.gz"))
        for line in gzip.open(f, "rt", encoding="utf-8")
    ]
    documents = [
        i
        for p in sorted((run / "documents").glob("*.parquet"))
        for i in pq.read_table(p).column("id").to_pylist()
    ]
    assert ids == documents and list(manifest["splits"]) == ["train"]


@pytest.fixture(scope="module")
def wide_tokens_dir(run_dir, tmp_path_factory) -> Path:
    """The run's documents as a tokens directory of a 131,072-token vocabulary (uint32 tokens): each
    token id shifted up by 70,000, written by our shard writer with its manifest."""
    from thresher.shards.tokens import TokenShardWriter, write_manifest

    out = tmp_path_factory.mktemp("wide") / "tokens"
    shift, eot = 70_000, 131_071
    with TokenShardWriter(
        out, dtype="uint32", eot_id=eot, validation_fraction=0.2, target_tokens=50_000
    ) as writer:
        for split in ("train", "validation"):
            for doc_id, tokens in token_docs(run_dir, split):
                writer.add(doc_id, np.asarray(tokens[:-1] + [eot - shift], np.uint32) + shift)
    tokenizer = {"path": "-", "hash": "-", "vocab_size": 131_072, "eot_id": eot, "dtype": "uint32"}
    write_manifest(out, tokenizer=tokenizer, config_hash="-", validation_fraction=0.2, shards=writer.shards)
    return out


def test_uint32_tokens(wide_tokens_dir, tmp_path, capsys):
    """A vocabulary over 65,536: Megatron gets int32 (dtype code 4), MDS ndarray:uint32, llm.c its
    LLaMA-3 header (20240801, version 7); nanoGPT, which reads uint16 only, is a usage error."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    streaming = import_streaming()
    expected = {split: token_docs(wide_tokens_dir.parent, split) for split in ("train", "validation")}
    export("megatron", wide_tokens_dir, tmp_path / "megatron")
    export("mds", wide_tokens_dir, tmp_path / "mds")
    export("llmc", wide_tokens_dir, tmp_path / "llmc")
    for split, docs in expected.items():
        ds = IndexedDataset(str(tmp_path / "megatron" / split / f"{split}-00000"))
        assert ds.index.dtype == np.int32 and [ds[i].tolist() for i in range(len(ds))] == [t for _, t in docs]
        mds = streaming.StreamingDataset(
            local=str(tmp_path / "mds"), split=split, shuffle=False, batch_size=1
        )
        assert [(mds[i]["id"], mds[i]["tokens"].tolist()) for i in range(len(mds))] == docs
        assert mds[0]["tokens"].dtype == np.uint32
        del mds
    magic, version, count = read_llmc_header(tmp_path / "llmc" / "train_000000.bin")
    assert (magic, version, count) == (20240801, 7, sum(len(t) for _, t in expected["train"]))
    code, line = error_line(
        capsys, "shards", "export", "nanogpt", str(wide_tokens_dir), str(tmp_path / "nano")
    )
    assert code == 2 and "nanoGPT reads uint16 tokens" in line and not (tmp_path / "nano").exists()
