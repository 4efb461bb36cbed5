"""``thresher ablate``: the whole loop, from candidate runs to the report.

Layout of an ablation's output directory::

    OUTPUT/ablation.json        what was asked (runs, reference, every setting); a --resume must match
    OUTPUT/runs/NAME/           runs made from configs given instead of run directories
    OUTPUT/work/tokenizer/      the shared tokenizer
    OUTPUT/work/tokens/NAME/    each candidate's training tokens at the common budget (+ manifest)
    OUTPUT/work/prepared.json   written once the tokenizer and every tokens directory are complete
    OUTPUT/work/models/NAME/    checkpoint.pt while training; model.pt and result.json after
    OUTPUT/report.json          losses per model and reference source, tokens seen, wall time, device
    OUTPUT/report.html          the same as tables and plots, one self-contained page

Every step is resumable: with ``--resume`` finished runs, prepared tokens and trained models are
reused, and a model killed mid-training continues from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thresher.ablate.config import AblationConfig
from thresher.ablate.data import (
    Candidate,
    RunDocuments,
    check_specs,
    cut_to_budget,
    read_run_documents,
    resolve_candidates,
    train_shared_tokenizer,
    write_tokens,
)
from thresher.ablate.reference import ReferenceSet, eval_sources, read_reference
from thresher.ablate.train import CheckpointMismatch, evaluate, reproducible, train_model
from thresher.errors import InputProblem, OutputProblem
from thresher.io import write_json_atomic
from thresher.tokenize import BPETokenizer, fingerprint, load_tokenizer, save_tokenizer
from thresher.tokenize.encoder import DocumentEncoder

logger = logging.getLogger(__name__)

FORMAT = "thresher.ablation"
FORMAT_VERSION = 1
SETTINGS = "ablation.json"
PREPARED = "prepared.json"


@dataclass
class Prepared:
    """The shared tokenizer, the common budget and each candidate's tokens directory."""

    tokenizer: BPETokenizer
    tokenizer_dir: Path
    budget: int
    sample_documents: int
    candidates: dict[str, dict[str, Any]]


def check_output(output: Path, resume: bool) -> None:
    """Never mix an ablation into a directory holding anything else, nor start one over a
    finished or interrupted one unless told ``--resume``."""
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputProblem(f"{output} is a file, not a directory")
    entries = [p.name for p in output.iterdir()]
    if not entries:
        return
    if SETTINGS in entries:
        if not resume:
            raise OutputProblem(
                f"{output} holds an ablation; --resume to continue it, or choose another --output"
            )
        return
    raise OutputProblem(f"{output} is not empty and holds no ablation; choose an empty or new --output")


def _settings(specs: list[str], reference: str, group_by: str, cfg: AblationConfig) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "runs": [str(Path(s).resolve()) for s in specs],
        "reference": str(Path(reference).resolve()),
        "group_by": group_by,
        "config": cfg.to_dict(),
        "config_hash": cfg.training_hash(),
    }


def _check_settings(path: Path, wanted: dict[str, Any]) -> None:
    saved = json.loads(path.read_text(encoding="utf-8"))
    keys = ("runs", "reference", "group_by", "config_hash")
    differ = [k for k in keys if saved.get(k) != wanted[k]]
    if differ:
        raise CheckpointMismatch(
            f"{path}: this ablation was started with other {', '.join(differ)}; "
            "give the same runs, reference and settings, or another --output"
        )


def prepare(
    candidates: list[Candidate], cfg: AblationConfig, work: Path, resume: bool, reference_urls: set[str]
) -> Prepared:
    """Train the shared tokenizer and write every candidate's tokens at the common budget (or
    reuse them, with ``resume``, when they were made from the same runs and settings). Counts
    the reference URLs each run holds as documents: a held-out text that is not."""
    marker = work / PREPARED
    fingerprints = {c.name: c.fingerprint() for c in candidates}
    wanted = {"config_hash": cfg.training_hash(), "fingerprints": fingerprints}
    tokenizer_dir = work / "tokenizer"
    if resume and marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in wanted} != wanted:
            raise CheckpointMismatch(
                f"{marker}: the runs changed since their tokens were prepared; use another --output"
            )
        tokenizer = load_tokenizer(tokenizer_dir)
        if fingerprint(tokenizer) != saved["tokenizer_hash"]:
            raise CheckpointMismatch(f"{tokenizer_dir}: the tokenizer changed on disk since it was prepared")
        logger.info("ablate: reusing the prepared tokenizer and tokens")
        return Prepared(
            tokenizer, tokenizer_dir, saved["budget"], saved["sample_documents"], saved["candidates"]
        )

    seed = cfg.train.seed
    docs: dict[str, RunDocuments] = {c.name: read_run_documents(c, seed) for c in candidates}
    d = cfg.data
    tokenizer, sample_documents = train_shared_tokenizer(
        list(docs.values()), d.vocab_size, d.tokenizer_sample_bytes, d.min_frequency
    )
    save_tokenizer(tokenizer, tokenizer_dir)
    encoder = DocumentEncoder(tokenizer)
    encoded = {name: encoder.encode(run.texts) for name, run in docs.items()}
    totals = {name: sum(a.size for a in arrays) for name, arrays in encoded.items()}
    budget = d.token_budget or min(totals.values())
    short = {name: n for name, n in totals.items() if n < budget}
    if short:
        raise InputProblem(f"token budget {budget} is more than these runs hold: {short}")
    info: dict[str, dict[str, Any]] = {}
    for c in candidates:
        ids, arrays = cut_to_budget(docs[c.name].ids, encoded[c.name], budget, tokenizer.eot_id)
        tokens_dir = work / "tokens" / c.name
        write_tokens(tokens_dir, ids, arrays, tokenizer, tokenizer_dir, cfg.training_hash())
        info[c.name] = {
            "run_dir": str(c.run_dir),
            "tokens_dir": str(tokens_dir.relative_to(work)),  # relative: the ablation may be moved
            "documents_in_run": len(docs[c.name].ids),
            "tokens_in_run": totals[c.name],
            "documents_used": len(ids),
            "reference_urls_in_training": len(reference_urls.intersection(u for u in docs[c.name].urls if u)),
        }
        logger.info(
            "ablate: %s: %d of %d documents, %d tokens", c.name, len(ids), len(docs[c.name].ids), budget
        )
    write_json_atomic(
        marker,
        {
            **wanted,
            "tokenizer_hash": fingerprint(tokenizer),
            "budget": budget,
            "sample_documents": sample_documents,
            "candidates": info,
        },
    )
    return Prepared(tokenizer, tokenizer_dir, budget, sample_documents, info)


def _overall(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    nats = sum(s["nats"] for s in per_source.values())
    tokens = sum(s["tokens"] for s in per_source.values())
    size = sum(s["bytes"] for s in per_source.values())
    return {
        "loss": nats / tokens,
        "bits_per_byte": nats / math.log(2) / size,
        "tokens": tokens,
        "bytes": size,
        "documents": sum(s["documents"] for s in per_source.values()),
    }


def run_ablation(
    specs: list[str],
    reference: str | Path,
    output: str | Path,
    cfg: AblationConfig,
    *,
    resume: bool = False,
    local: bool = True,
    group_by: str = "file",
    on_checkpoint: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Run the ablation into ``output`` and return its report (also written there).

    ``local`` runs configs given in ``specs`` without Ray; ``on_checkpoint(name, step)`` is
    called after each training checkpoint."""
    started = time.perf_counter()
    output = Path(output)
    check_specs(specs)
    check_output(output, resume)
    settings = _settings(specs, str(reference), group_by, cfg)
    settings_path = output / SETTINGS
    if settings_path.is_file():
        _check_settings(settings_path, settings)
    else:
        write_json_atomic(settings_path, settings)
    candidates = resolve_candidates(specs, output / "runs", local=local, resume=resume)
    ref: ReferenceSet = read_reference(reference, group_by)
    work = output / "work"
    prep = prepare(candidates, cfg, work, resume, ref.urls())
    sources = eval_sources(ref, DocumentEncoder(prep.tokenizer), cfg.model.seq_len)
    models = []
    for c in candidates:
        facts = prep.candidates[c.name]
        callback = (lambda step, name=c.name: on_checkpoint(name, step)) if on_checkpoint else None
        model, result = train_model(
            work / facts["tokens_dir"],
            prep.tokenizer.vocab_size,
            cfg,
            work / "models" / c.name,
            on_checkpoint=callback,
        )
        with reproducible(cfg):
            per_source = evaluate(model, sources, cfg.device)
        overlap = facts["reference_urls_in_training"]
        if overlap:
            logger.warning("ablate: %d reference URLs are documents of %s: not held out", overlap, c.name)
        models.append(
            {
                "name": c.name,
                "run_dir": facts["run_dir"],
                "documents_in_run": facts["documents_in_run"],
                "tokens_in_run": facts["tokens_in_run"],
                "documents_used": facts["documents_used"],
                "training_tokens": prep.budget,
                "reference_urls_in_training": overlap,
                "train": result.to_dict(),
                "eval": {"all": _overall(per_source), "sources": per_source},
            }
        )
        logger.info("ablate: %s reference loss %.4f", c.name, models[-1]["eval"]["all"]["loss"])
    report = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "config_hash": cfg.training_hash(),
        "reference": {
            "path": settings["reference"],
            "group_by": group_by,
            "documents": len(ref.texts),
            "skipped": dict(ref.skipped),
            "sources": {
                s.name: {"documents": s.documents, "tokens": s.tokens, "bytes": s.bytes} for s in sources
            },
        },
        "tokenizer": {
            "path": str(prep.tokenizer_dir),
            "vocab_size": prep.tokenizer.vocab_size,
            "hash": fingerprint(prep.tokenizer),
            "sample_documents": prep.sample_documents,
        },
        "token_budget": prep.budget,
        "models": models,
        "seconds": round(time.perf_counter() - started, 3),
    }
    from thresher.ablate.report import write_report

    write_report(report, output)
    return report
