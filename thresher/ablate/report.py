"""An ablation's report: ``report.json`` (every figure) and ``report.html`` (tables and plots).

The page is built from the run report's pieces (its CSS, tables whose numeric cells carry
``data-value``, PNG charts drawn without pyplot and embedded as base64), so it reads like the
run report and stands alone: one file, no network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from thresher.io import write_json_atomic, write_text_atomic
from thresher.report.plots import _figure, _png
from thresher.report.render import CSS, _img, _num, _table, _txt

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
COLOURS = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#9e9d24")

esc = html.escape


def loss_bars(models: Sequence[str], sources: Sequence[str], losses: np.ndarray) -> bytes:
    """Reference loss per source (groups) and model (bars); ``losses[m, s]``."""
    fig, ax = _figure(min(12.0, 3.0 + 1.2 * len(sources) * max(1, len(models)) / 2), 3.8)
    x = np.arange(len(sources))
    width = 0.8 / max(1, len(models))
    for i, name in enumerate(models):
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width,
            losses[i],
            width,
            label=name,
            color=COLOURS[i % len(COLOURS)],
        )
    ax.set_xticks(
        x, sources, rotation=30 if len(sources) > 3 else 0, ha="right" if len(sources) > 3 else "center"
    )
    ax.set_ylabel("validation loss (nats/token)")
    low, high = float(np.nanmin(losses)), float(np.nanmax(losses))
    ax.set_ylim(max(0.0, low - 0.25 * (high - low + 0.1)), high + 0.1 * (high - low + 0.1))
    ax.legend(frameon=False)
    return _png(fig)


def loss_curves(models: Sequence[str], curves: Sequence[Sequence[float]]) -> bytes:
    """Training loss per step (a running mean over 5% of the steps smooths batch noise)."""
    fig, ax = _figure(8, 3.6)
    for i, (name, losses) in enumerate(zip(models, curves, strict=True)):
        y = np.asarray(losses, dtype=float)
        k = max(1, len(y) // 20)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(y) + 1), smooth, label=name, color=COLOURS[i % len(COLOURS)])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(frameon=False)
    return _png(fig)


def _models_table(report: dict[str, Any]) -> str:
    rows = []
    for m in report["models"]:
        t, e = m["train"], m["eval"]["all"]
        rows.append(
            "<tr>"
            + _txt("name", m["name"])
            + _num("loss", e["loss"], f"{e['loss']:.4f}")
            + _num("bits_per_byte", e["bits_per_byte"], f"{e['bits_per_byte']:.4f}")
            + _num("train_loss", t["train_loss"], f"{t['train_loss']:.4f}")
            + _num("tokens_seen", t["tokens_seen"])
            + _num("training_tokens", m["training_tokens"])
            + _num("documents_used", m["documents_used"])
            + _num("documents_in_run", m["documents_in_run"])
            + _num("epochs", t["epochs"], f"{t['epochs']:.2f}")
            + _num("steps", t["steps"])
            + _num("seconds", t["seconds"], f"{t['seconds']:.1f} s")
            + _txt("device", t["device"])
            + _num("reference_urls_in_training", m["reference_urls_in_training"])
            + "</tr>"
        )
    headers = [
        "run",
        "reference loss",
        "bits/byte",
        "train loss (last 10%)",
        "tokens seen",
        "training tokens",
        "documents used",
        "documents in run",
        "epochs",
        "steps",
        "wall time",
        "device",
        "reference URLs in training",
    ]
    return _table("models", headers, rows)


def _sources_table(report: dict[str, Any]) -> str:
    names = [m["name"] for m in report["models"]]
    rows = []
    for source, facts in report["reference"]["sources"].items():
        cells = [
            _txt("source", source),
            _num("documents", facts["documents"]),
            _num("tokens", facts["tokens"]),
        ]
        cells += [
            _num(
                f"loss:{n}",
                m["eval"]["sources"][source]["loss"],
                f"{m['eval']['sources'][source]['loss']:.4f}",
            )
            for n, m in zip(names, report["models"], strict=True)
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _table("sources", ["source", "documents", "tokens", *(f"loss: {n}" for n in names)], rows)


def render_html(report: dict[str, Any]) -> str:
    names = [m["name"] for m in report["models"]]
    sources = list(report["reference"]["sources"])
    losses = np.array([[m["eval"]["sources"][s]["loss"] for s in sources] for m in report["models"]])
    all_losses = np.array([[m["eval"]["all"]["loss"]] for m in report["models"]])
    ref = report["reference"]
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(ref["skipped"].items())) or "none"
    cfg = report["config"]
    summary = (
        f"<p>{len(names)} runs, each trained on {report['token_budget']:,} tokens with one tokenizer "
        f"(vocabulary {report['tokenizer']['vocab_size']:,}, trained on {report['tokenizer']['sample_documents']:,} "
        f"documents of all runs); the same GPT for each (width {cfg['model']['dim']}, depth "
        f"{cfg['model']['layers']}, context {cfg['model']['seq_len']}, {cfg['train']['steps']} steps of "
        f"{cfg['train']['batch_size']} sequences, seed {cfg['train']['seed']}), evaluated on "
        f"{ref['documents']:,} reference documents from {esc(ref['path'])} (skipped: {esc(skipped)}).</p>"
    )
    sections = [
        (
            "summary",
            "Reference loss",
            summary
            + _models_table(report)
            + _img(loss_bars(names, ["all sources"], all_losses), "reference loss per run"),
        ),
        (
            "sources",
            "Loss per reference source",
            _sources_table(report)
            + _img(loss_bars(names, sources, losses), "reference loss per source and run"),
        ),
        (
            "training",
            "Training",
            _img(
                loss_curves(names, [m["train"]["losses"] for m in report["models"]]), "training loss per step"
            ),
        ),
        ("config", "Settings", f"<pre>{esc(json.dumps(cfg, indent=2))}</pre>"),
    ]
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>' for sid, title, content in sections
    )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Thresher recipe ablation</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>Thresher recipe ablation: {esc(' vs '.join(names))}</h1>"
        f"<p>generated {generated}</p></header><main>{body}</main></body></html>\n"
    )


def write_report(report: dict[str, Any], output: Path) -> tuple[Path, Path]:
    json_path = write_json_atomic(output / REPORT_JSON, report, indent=2)
    html_path = write_text_atomic(output / REPORT_HTML, render_html(report))
    return json_path, html_path
