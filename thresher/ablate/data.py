"""The candidate datasets of an ablation, made comparable: one tokenizer, one token budget.

Each candidate is a finished run (a directory with ``stats.json`` and ``documents/``) or a
pipeline config that is run first. Its documents are put in a seeded hash order of their ids,
so "the first N tokens" of a run is a uniform sample of it rather than its first input file.
The shared tokenizer is trained on an equal share of text from every run (a tokenizer trained on
one run alone would favour it), and each run is encoded and cut to the same number of training
tokens (the last document is shortened and ends with ``<|endoftext|>``), so the models differ
only in what their tokens say.

Encoded runs are held in memory (2 bytes a token with a vocabulary up to 65,536): ablations are
for runs of up to some hundred million tokens, the scale of the models they train.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from thresher.errors import InputProblem
from thresher.shards.tokens import TokenShardWriter, write_manifest
from thresher.tokenize import BPETokenizer, fingerprint, train_tokenizer

logger = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class Candidate:
    """One dataset under comparison: a name for the report and the run directory holding it."""

    name: str
    run_dir: Path

    def document_files(self) -> list[Path]:
        return sorted(p for p in (self.run_dir / "documents").glob("*.parquet") if not p.name.startswith("."))

    def fingerprint(self) -> str:
        """Names and sizes of the documents files: changes when the run is rewritten."""
        h = hashlib.sha256()
        for p in self.document_files():
            h.update(f"{p.name}:{p.stat().st_size}\n".encode())
        return h.hexdigest()[:16]


@dataclass
class RunDocuments:
    """A run's documents in seeded hash order (``ids``, ``texts``, ``urls`` aligned)."""

    ids: list[str]
    texts: list[str]
    urls: list[str | None]


def _unique_name(stem: str, taken: set[str]) -> str:
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    taken.add(name)
    return name


def check_finished_run(path: Path) -> None:
    """A clear input error for a directory that is not a finished run."""
    if not path.is_dir():
        raise InputProblem(f"{path}: not a run directory (or a pipeline config .yaml)")
    if not (path / "stats.json").is_file():
        raise InputProblem(
            f"{path}: not a finished run (no stats.json); finish it with `thresher run --resume`"
        )
    if not any((path / "documents").glob("*.parquet")):
        raise InputProblem(f"{path}: the run kept no documents (documents/ is empty)")


def run_config(config_path: Path, run_dir: Path, *, local: bool, resume: bool) -> None:
    """Run a pipeline config into ``run_dir`` (its ``tokenize:`` section is skipped: the ablation
    tokenizes with its own shared tokenizer). With ``resume`` a finished run there is reused."""
    from thresher.config import load_config
    from thresher.run import run_pipeline  # the engine's one public entry point

    if resume and (run_dir / "stats.json").is_file():
        logger.info("ablate: %s already ran into %s", config_path, run_dir)
        return
    cfg = load_config(config_path)
    cfg.output.path = str(run_dir)
    cfg.tokenize = None
    if not cfg.input.paths:
        raise InputProblem(f"{config_path}: input.paths is empty; a config to ablate must name its inputs")
    logger.info("ablate: running %s into %s", config_path, run_dir)
    run_pipeline(cfg, local=local, resume=resume and run_dir.exists())


def check_specs(specs: list[str]) -> None:
    """At least two candidates, each a finished run or an existing config: checked before the
    ablation writes anything."""
    if len(specs) < 2:
        raise InputProblem(f"an ablation compares at least two runs; got {len(specs)}")
    for spec in specs:
        path = Path(spec)
        if path.suffix.lower() in CONFIG_SUFFIXES:
            if not path.is_file():
                raise InputProblem(f"{path}: config not found")
        else:
            check_finished_run(path)


def resolve_candidates(specs: list[str], runs_dir: Path, *, local: bool, resume: bool) -> list[Candidate]:
    """Candidates for run directories and configs (configs are run into ``runs_dir/NAME``)."""
    check_specs(specs)
    taken: set[str] = set()
    out = []
    for spec in specs:
        path = Path(spec)
        if path.suffix.lower() in CONFIG_SUFFIXES:
            name = _unique_name(path.stem, taken)
            run_dir = runs_dir / name
            run_config(path, run_dir, local=local, resume=resume)
        else:
            name = _unique_name(path.resolve().name or "run", taken)
            run_dir = path
        check_finished_run(run_dir)
        out.append(Candidate(name, run_dir.resolve()))
    return out


def order_key(seed: int, doc_id: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def read_run_documents(candidate: Candidate, seed: int) -> RunDocuments:
    """Every document of the run with text, in seeded hash order of the ids."""
    rows: list[tuple[int, str, str, str | None]] = []
    for path in candidate.document_files():
        table = pq.read_table(path, columns=["id", "text", "url"])
        for doc_id, text, url in zip(
            *(table.column(c).to_pylist() for c in ("id", "text", "url")), strict=True
        ):
            if isinstance(text, str) and text.strip():
                rows.append((order_key(seed, doc_id), doc_id, text, url))
    if not rows:
        raise InputProblem(f"{candidate.run_dir}: no document with text")
    rows.sort(key=lambda r: (r[0], r[1]))
    return RunDocuments([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


def tokenizer_sample(runs: list[RunDocuments], sample_bytes: int) -> list[str]:
    """An equal share of ``sample_bytes`` from each run, documents in the runs' hash order (a
    run with less text than its share gives all of it)."""
    share = sample_bytes // len(runs)
    texts: list[str] = []
    for docs in runs:
        used = 0
        for text in docs.texts:
            if used >= share:
                break
            texts.append(text)
            used += len(text.encode("utf-8", "surrogatepass"))
    return texts


def train_shared_tokenizer(
    runs: list[RunDocuments], vocab_size: int, sample_bytes: int, min_frequency: int
) -> tuple[BPETokenizer, int]:
    """The tokenizer every candidate is encoded with, and how many documents it was trained on."""
    texts = tokenizer_sample(runs, sample_bytes)
    logger.info(
        "ablate: training the shared tokenizer (vocabulary %d) on %d documents", vocab_size, len(texts)
    )
    return train_tokenizer(texts, vocab_size, min_frequency=min_frequency), len(texts)


def cut_to_budget(
    ids: list[str], arrays: list[np.ndarray], budget: int, eot_id: int
) -> tuple[list[str], list[np.ndarray]]:
    """The leading documents holding exactly ``budget`` tokens; the last one is shortened and ends
    with ``<|endoftext|>`` like every other."""
    out_ids, out_arrays, total = [], [], 0
    for doc_id, arr in zip(ids, arrays, strict=True):
        if total >= budget:
            break
        room = budget - total
        if arr.size > room:
            arr = arr[:room].copy()
            arr[-1] = eot_id
        out_ids.append(doc_id)
        out_arrays.append(arr)
        total += arr.size
    if total < budget:
        raise InputProblem(f"only {total} tokens for a budget of {budget}")
    return out_ids, out_arrays


def write_tokens(
    tokens_dir: Path,
    ids: list[str],
    arrays: list[np.ndarray],
    tokenizer: BPETokenizer,
    tokenizer_dir: Path,
    config_hash: str,
) -> dict[str, Any]:
    """Token shards (train split only: evaluation is on the reference texts) and their manifest."""
    tokens_dir.mkdir(parents=True, exist_ok=True)
    with TokenShardWriter(tokens_dir, dtype=tokenizer.dtype, eot_id=tokenizer.eot_id) as writer:
        writer.add_batch(ids, arrays)
    return write_manifest(
        tokens_dir,
        tokenizer={
            "path": str(tokenizer_dir),
            "hash": fingerprint(tokenizer),
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "dtype": tokenizer.dtype.name,
        },
        config_hash=config_hash,
        validation_fraction=0.0,
        shards=writer.shards,
    )
