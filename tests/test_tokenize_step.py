"""A run's tokenize step (thresher/tokenize/step.py) on real sentences, and the package's imports."""

from __future__ import annotations

import ast
import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.shards.tokens import load_manifest
from thresher.tokenize import fingerprint, save_tokenizer, train_tokenizer
from thresher.tokenize.step import TokenizeConfig, run_tokenize

ROOT = Path(__file__).resolve().parent.parent


def run_output(tmp: Path, texts: list[str]) -> Path:
    """A run's output directory holding only ``documents/``, as the tokenize step finds it."""
    docs = tmp / "documents"
    docs.mkdir(parents=True)
    ids = [f"doc-{i:04d}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), docs / "part-00000.parquet")
    return tmp


def encoded_rows(output: Path) -> dict[str, list[int]]:
    tokens = output / "tokens"
    rows = {}
    for shard in load_manifest(tokens)["shards"]:
        for row in pq.read_table(tokens / shard["path"], columns=["id", "tokens"]).to_pylist():
            rows[row["id"]] = row["tokens"]
    return rows


@pytest.mark.parametrize("local", [True, False], ids=["local", "ray"])
def test_a_tokenizer_retrained_into_the_same_directory_is_not_served_stale(tmp_path, local, request):
    """The encoders a process keeps between runs (a notebook, a test session, a reused Ray) are
    found by the tokenizer's content: a second run with a different tokenizer saved to the same
    directory encodes with the new one, not the encoder cached for the directory."""
    if not local:
        request.getfixturevalue("ray_session")  # one Ray for both runs, its workers reused
    path = shared_path("lid-lingua-testdata", "sentences", "de.txt.gz")
    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
    corpus, texts = lines[:900], lines[900:940]
    tok_dir = tmp_path / "tokenizer"
    a, b = train_tokenizer(corpus, 300), train_tokenizer(corpus, 600)
    expected_b = {f"doc-{i:04d}": b.encode_ordinary(t) + [b.eot_id] for i, t in enumerate(texts)}
    assert [b.encode_ordinary(t) for t in texts] != [a.encode_ordinary(t) for t in texts]
    config = TokenizeConfig(tokenizer=str(tok_dir), validation_fraction=0.0)

    save_tokenizer(a, tok_dir)
    first = run_output(tmp_path / "first", texts)
    run_tokenize(config, first, {}, local=local)
    assert encoded_rows(first)["doc-0000"] == a.encode_ordinary(texts[0]) + [a.eot_id]

    save_tokenizer(b, tok_dir)
    second = run_output(tmp_path / "second", texts)
    run_tokenize(config, second, {}, local=local)
    assert encoded_rows(second) == expected_b
    assert load_manifest(second / "tokens")["tokenizer"]["hash"] == fingerprint(b)


def test_thresher_tokenize_command(tmp_path, capsys):
    """``thresher tokenize OUTPUT`` trains a tokenizer on a finished run's documents (or takes one
    with --tokenizer) and writes OUTPUT/tokens; a directory that is no run's output exits 2."""
    from thresher.cli import main

    path = shared_path("lid-lingua-testdata", "sentences", "fr.txt.gz")
    texts = gzip.open(path, "rt", encoding="utf-8").read().splitlines()[:300]
    output = run_output(tmp_path / "run", texts)
    assert (
        main(["tokenize", str(output), "--local", "--vocab-size", "400", "--validation-fraction", "0.1"]) == 0
    )
    manifest = load_manifest(output / "tokens")
    assert manifest["tokenizer"]["vocab_size"] == 400 and manifest["tokenizer"]["dtype"] == "uint16"
    assert sum(s["rows"] for s in manifest["shards"]) == len(texts)
    assert manifest["totals"]["validation"]["rows"] > 0
    assert "token shard(s)" in capsys.readouterr().out

    again = run_output(tmp_path / "again", texts[:20])
    assert main(["tokenize", str(again), "--local", "--tokenizer", str(output / "tokenizer")]) == 0
    assert load_manifest(again / "tokens")["tokenizer"]["hash"] == manifest["tokenizer"]["hash"]
    assert main(["tokenize", str(tmp_path / "not-a-run"), "--local"]) == 3
    assert "thresher: input error: " in capsys.readouterr().err


def module_imports(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` and the modules of ``thresher`` it imports, at any level of the
    file (lazy imports inside functions make a circle too, just a later-failing one)."""
    modules = {}
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        modules[name] = {m for m in found if m.startswith("thresher.") and m != name}
    return modules


def test_tokenize_and_shards_modules_import_in_one_direction():
    """No circle among the tokenizer's and the token shards' modules (bpe.py once imported
    files.py, which imported bpe.py). A package's ``__init__`` importing its own submodules is not
    counted: Python runs it before any submodule, whatever imports what."""
    graph = {**module_imports("thresher.tokenize"), **module_imports("thresher.shards")}
    for name in graph:
        graph[name] = {m for m in graph[name] if m in graph and not name.startswith(m + ".")}

    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    circles = [c for name in sorted(graph) if (c := circle_from(name))]
    assert not circles, " / ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize(
    "module",
    ["thresher.shards.tokens", "thresher.tokenize.step", "thresher.tokenize.files", "thresher.config"],
)
def test_module_imports_alone(module):
    """Each entry point imports first in a fresh interpreter (the order that a circle breaks)."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
