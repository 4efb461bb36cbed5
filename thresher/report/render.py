"""``OUTPUT/report.html``: one self-contained page (inline CSS, charts as base64 PNG) that says what
a run did — where documents went, what was kept, how fast each stage ran.

Every number in a table cell carries its raw value in ``data-value`` (and its column in
``data-field``), so scripts and tests can read the page without parsing formatted text. A section
whose input is missing says so; a section that fails to render says why and the rest of the page
is still written.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from thresher.io import Store, write_text_atomic
from thresher.report import plots
from thresher.report.collect import MAX_SCORE_ROWS, RunFacts, collect
from thresher.run.layout import REPORT, RunLayout

logger = logging.getLogger(__name__)

MAX_LANGUAGE_BARS = 30
MAX_RULE_BARS = 40
MAX_HISTOGRAMS = 48

esc = html.escape


# --------------------------------------------------------------------------- small pieces


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 120:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _fmt_rate(r: float | None) -> str:
    return "—" if r is None else f"{r:,.1f}"


def _pct(part: int, whole: int) -> str:
    return "—" if whole <= 0 else f"{100.0 * part / whole:.1f}%"


def _num(field: str, value: int | float | None, text: str | None = None) -> str:
    if value is None:
        return f'<td class="num" data-field="{field}">—</td>'
    raw = str(value) if isinstance(value, int) else repr(round(float(value), 6))
    shown = text if text is not None else (_fmt_int(value) if isinstance(value, int) else f"{value:,.3f}")
    return f'<td class="num" data-field="{field}" data-value="{raw}">{esc(shown)}</td>'


def _txt(field: str, text: str) -> str:
    return f'<td data-field="{field}">{esc(text)}</td>'


def _table(table_id: str, headers: Iterable[str], rows: Iterable[str], numeric_from: int = 1) -> str:
    head = "".join(
        f'<th class="{"num" if i >= numeric_from else ""}">{esc(h)}</th>' for i, h in enumerate(headers)
    )
    return f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _none(text: str) -> str:
    return f'<p class="none">{esc(text)}</p>'


def _figure_card(card_id: str, value: int | float, text: str, label: str) -> str:
    return (
        f'<div class="card" id="{esc(card_id)}" data-value="{value}">'
        f'<div class="value">{esc(text)}</div><div class="label">{esc(label)}</div></div>'
    )


# --------------------------------------------------------------------------- sections


def section_figures(facts: RunFacts) -> str:
    read_in = facts.stages[0].docs_in if facts.stages else 0
    rate = read_in / facts.seconds if facts.seconds > 0 else 0.0
    cards = [
        _figure_card("run-documents", facts.documents, _fmt_int(facts.documents), "documents kept"),
        _figure_card("run-records", read_in, _fmt_int(read_in), "records read"),
        _figure_card(
            "run-kept-share",
            round(facts.documents / read_in, 6) if read_in else 0,
            _pct(facts.documents, read_in),
            "kept of records read",
        ),
        _figure_card("run-inputs", len(facts.inputs), _fmt_int(len(facts.inputs)), "input files"),
        _figure_card("run-shards", facts.shards, _fmt_int(facts.shards), "output shards"),
        _figure_card("run-seconds", facts.seconds, _fmt_seconds(facts.seconds), "wall time"),
        _figure_card("run-rate", round(rate, 3), f"{rate:,.1f}/s", "records per second (wall)"),
    ]
    inputs = "".join(f"<li>{esc(p)}</li>" for p in facts.inputs[:1000])
    more = f"<li>… and {len(facts.inputs) - 1000:,} more</li>" if len(facts.inputs) > 1000 else ""
    listing = (
        f'<details><summary>{len(facts.inputs):,} input file(s)</summary><ul class="paths">{inputs}{more}</ul></details>'
        if facts.inputs
        else _none("No input files recorded.")
    )
    return f'<div class="cards">{"".join(cards)}</div>{listing}'


def section_funnel(facts: RunFacts) -> str:
    if not facts.stages:
        return _none("No stages recorded in stats.json.")
    labels = [s.label for s in facts.stages]
    chart = _img(
        plots.funnel(
            labels,
            [s.kept for s in facts.stages],
            [s.n_dropped for s in facts.stages],
            [s.n_errors for s in facts.stages],
        ),
        "documents per stage",
    )
    rows = [
        f'<tr data-stage="{esc(s.label)}">{_txt("stage", s.label)}{_num("in", s.docs_in)}{_num("kept", s.kept)}'
        f"{_num('dropped', s.n_dropped)}{_num('errors', s.n_errors)}"
        f'<td class="num">{_pct(s.kept, s.docs_in)}</td></tr>'
        for s in facts.stages
    ]
    table = _table("funnel", ["stage", "in", "kept", "dropped", "errors", "kept %"], rows)
    rules = [
        (s, reason, kind, n)
        for s in facts.stages
        for kind, counts in (("dropped", s.dropped), ("error", s.errors))
        for reason, n in counts.items()
    ]
    rules.sort(key=lambda r: -r[3])
    if rules:
        shown = rules[:MAX_RULE_BARS]
        rule_chart = _img(
            plots.rule_bars(
                [f"{s.label} · {reason}" for s, reason, _, _ in shown],
                [n for *_, n in shown],
                [kind == "error" for _, _, kind, _ in shown],
            ),
            "documents removed per rule",
        )
        rule_rows = [
            f'<tr data-stage="{esc(s.label)}" data-rule="{esc(reason)}" data-kind="{kind}">'
            f"{_txt('stage', s.label)}{_txt('rule', reason)}{_txt('kind', kind)}{_num('documents', n)}"
            f'<td class="num">{_pct(n, s.docs_in)}</td></tr>'
            for s, reason, kind, n in rules
        ]
        drops = (
            "<h3>Drops per rule</h3>"
            '<p class="hint">Amber: a filter decided to drop; red: an error (undecodable, timeout, exception).</p>'
            + rule_chart
            + _table(
                "drops", ["stage", "rule", "kind", "documents", "of stage input"], rule_rows, numeric_from=3
            )
        )
    else:
        drops = "<h3>Drops per rule</h3>" + _none("No document was dropped.")
    extra_rows = [
        f'<tr data-stage="{esc(s.label)}" data-counter="{esc(str(k))}">{_txt("stage", s.label)}{_txt("counter", str(k))}'
        f"{_num('value', v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _txt('value', str(v))}</tr>"
        for s in facts.stages
        for k, v in s.extra.items()
    ]
    extra = (
        "<h3>Stage counters</h3>"
        + _table("stage-counters", ["stage", "counter", "value"], extra_rows, numeric_from=2)
        if extra_rows
        else ""
    )
    return chart + table + drops + extra


def section_throughput(facts: RunFacts) -> str:
    timed = [s for s in facts.stages if s.docs_per_second is not None]
    rows = [
        f'<tr data-stage="{esc(s.label)}">{_txt("stage", s.label)}{_num("in", s.docs_in)}'
        f"{_num('seconds', s.seconds, _fmt_seconds(s.seconds))}"
        f"{_num('docs_per_second', s.docs_per_second, _fmt_rate(s.docs_per_second))}</tr>"
        for s in facts.stages
    ]
    note = (
        '<p class="hint">Stage time is summed over every worker that ran the stage, so documents per second is '
        f"the rate of one worker; the whole run took {esc(_fmt_seconds(facts.seconds))} of wall time.</p>"
    )
    chart = (
        _img(
            plots.throughput([s.label for s in timed], [s.docs_per_second for s in timed]),
            "throughput per stage",
        )
        if timed
        else _none("No stage recorded its time.")
    )
    return note + chart + _table("throughput", ["stage", "in", "stage time", "documents/s"], rows)


def section_languages(facts: RunFacts) -> str:
    if not facts.has_documents:
        return _none("No kept documents could be read (OUTPUT/documents is empty, missing or unreadable).")
    counts = facts.languages
    if not counts or set(counts) == {"(none)"}:
        return _none("The kept documents carry no language (the run has no language stage).")
    total = sum(counts.values())
    ranked = counts.most_common()
    shown = ranked[:MAX_LANGUAGE_BARS]
    rest = sum(n for _, n in ranked[MAX_LANGUAGE_BARS:])
    labels = [lang for lang, _ in shown] + (["other"] if rest else [])
    values = [n for _, n in shown] + ([rest] if rest else [])
    chart = _img(plots.categories(labels, values, "language", "kept documents"), "language distribution")
    rows = [
        f'<tr data-language="{esc(lang)}">{_txt("language", lang)}{_num("documents", n)}'
        f'<td class="num">{_pct(n, total)}</td></tr>'
        for lang, n in ranked
    ]
    return chart + _table("languages", ["language", "documents", "share"], rows)


def _histogram_grid(items: list[tuple[str, np.ndarray, str]], colour: str, xlabel: str) -> str:
    panels = []
    for title, values, panel_id in items[:MAX_HISTOGRAMS]:
        caption = f"n={len(values):,} · min {values.min():.4g} · median {np.median(values):.4g} · max {values.max():.4g}"
        panels.append(
            f'<figure id="{esc(panel_id)}" data-count="{len(values)}">'
            f"{_img(plots.histogram(values, title, xlabel, colour), title)}"
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    more = _none(f"{len(items) - MAX_HISTOGRAMS} more not shown.") if len(items) > MAX_HISTOGRAMS else ""
    return f'<div class="grid">{"".join(panels)}</div>{more}'


def section_scores(facts: RunFacts) -> str:
    parts = ["<h3>Scores of kept documents</h3>"]
    if facts.scores:
        sampled = (
            f"every {facts.kept_rows // max(facts.score_rows, 1):,}th of {facts.kept_rows:,} kept documents"
            if facts.kept_rows > MAX_SCORE_ROWS
            else f"all {facts.kept_rows:,} kept documents"
        )
        parts.append(f'<p class="hint">Scores the stages recorded, from {esc(sampled)}.</p>')
        parts.append(
            _histogram_grid([(k, v, f"score-{k}") for k, v in facts.scores.items()], plots.KEPT, "score")
        )
    else:
        parts.append(_none("The kept documents carry no scores."))
    parts.append("<h3>Measured values of dropped documents, per rule</h3>")
    if facts.dropped_values:
        parts.append(
            '<p class="hint">The value each rule measured on the documents it removed: compare with the '
            "kept documents' scores above to see where the threshold cuts.</p>"
        )
        items = [
            (f"{stage} · {reason}", v, f"dropped-{stage}-{reason}")
            for (stage, reason), v in facts.dropped_values.items()
        ]
        parts.append(_histogram_grid(items, plots.DROPPED, "measured value"))
    elif not facts.has_dropped:
        parts.append(_none("No dropped documents were written (output.write_dropped is off)."))
    else:
        parts.append(_none("No dropped document has a measured value."))
    return "".join(parts)


def section_dedup(facts: RunFacts) -> str:
    blocks = []
    for label, extra in facts.stage_extra.items():
        hist = extra.get("cluster_size_histogram")
        if not isinstance(hist, dict):
            continue
        figures = "".join(
            _figure_card(f"dedup-{label}-{key}", extra[key], _fmt_int(int(extra[key])), name)
            for key, name in (("clusters", "duplicate clusters"), ("removed", "documents removed"))
            if isinstance(extra.get(key), (int, float))
        )
        items = [(str(k), int(v)) for k, v in hist.items()]
        chart = (
            _img(
                plots.categories(
                    [k for k, _ in items],
                    [v for _, v in items],
                    "cluster size (documents)",
                    "clusters",
                    log_y=max(v for _, v in items) > 50 * max(1, min(v for _, v in items)),
                ),
                f"cluster sizes of {label}",
            )
            if items
            else _none("No duplicate clusters.")
        )
        rows = [f'<tr data-size="{esc(k)}">{_txt("size", k)}{_num("clusters", v)}</tr>' for k, v in items]
        blocks.append(
            f'<h3>{esc(label)}</h3><div class="cards">{figures}</div>{chart}'
            + (_table(f"clusters-{label}", ["cluster size", "clusters"], rows) if rows else "")
        )
    return "".join(blocks) if blocks else _none("The run has no deduplication stage.")


def section_tokens(facts: RunFacts) -> str:
    if facts.tokens is None:
        return _none("No tokens/manifest.json in this output (the run did not tokenize).")
    if not facts.tokens:
        return _none("tokens/manifest.json lists no shards.")
    shards = facts.tokens
    by_split: dict[str, list[int]] = {}
    for s in shards:
        by_split.setdefault(s.split, []).append(s.tokens)
    cards = "".join(
        _figure_card(f"tokens-{split}", sum(t), _fmt_int(sum(t)), f"{split} tokens in {len(t):,} shard(s)")
        for split, t in sorted(by_split.items())
    )
    chart = _img(
        plots.token_shards([s.name for s in shards], [s.tokens for s in shards], [s.split for s in shards]),
        "tokens per shard",
    )
    rows = [
        f'<tr data-shard="{esc(s.name)}">{_txt("shard", s.name)}{_txt("split", s.split)}{_num("tokens", s.tokens)}'
        f"{_num('rows', s.rows)}</tr>"
        for s in shards
    ]
    table = _table("token-shards", ["shard", "split", "tokens", "documents"], rows, numeric_from=2)
    return f'<div class="cards">{cards}</div>{chart}<details><summary>{len(shards):,} shard(s)</summary>{table}</details>'


def section_config(facts: RunFacts) -> str:
    problems = (
        "<h3>Problems while reading the output</h3><ul>"
        + "".join(f"<li>{esc(p)}</li>" for p in facts.problems)
        + "</ul>"
        if facts.problems
        else ""
    )
    config = json.dumps(facts.config, indent=2, ensure_ascii=False, default=str)
    return f"{problems}<details><summary>configuration of the run</summary><pre>{esc(config)}</pre></details>"


SECTIONS: list[tuple[str, str, Callable[[RunFacts], str]]] = [
    ("figures", "Run", section_figures),
    ("funnel-section", "Funnel: documents per stage", section_funnel),
    ("throughput-section", "Throughput per stage", section_throughput),
    ("languages-section", "Languages of kept documents", section_languages),
    ("scores-section", "Filter scores", section_scores),
    ("dedup-section", "Deduplication: cluster sizes", section_dedup),
    ("tokens-section", "Tokens per shard", section_tokens),
    ("config-section", "Configuration", section_config),
]

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;
  background:#f6f7f9;margin:0}
main{max-width:1160px;margin:0 auto;padding:24px 28px 60px}
header{background:#1d2330;color:#fff;padding:20px 28px}
header h1{margin:0;font-size:24px;font-weight:600}
header p{margin:4px 0 0;color:#c5cbd8;font-size:13px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 22px;margin:18px 0}
h2{font-size:19px;margin:0 0 10px}
h3{font-size:16px;margin:18px 0 8px}
img{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;margin:10px 0;font-size:14px;min-width:50%}
th,td{padding:4px 12px;border-bottom:1px solid #e4e7ec;text-align:left}
th{background:#eef1f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 12px}
.card{border:1px solid #dde1e8;border-radius:6px;padding:10px 16px;min-width:130px;background:#fbfcfd}
.card .value{font-size:22px;font-weight:600}
.card .label{font-size:12px;color:#5b6475}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
figure{margin:0;border:1px solid #e4e7ec;border-radius:6px;padding:6px}
figcaption{font-size:12px;color:#5b6475}
.none{color:#6b7385;font-style:italic}
.hint{color:#5b6475;font-size:13px}
.paths{font-family:ui-monospace,monospace;font-size:12px}
pre{background:#f3f5f8;padding:10px;overflow:auto;font-size:12px}
.failed{color:#c62828}
"""


def render_html(facts: RunFacts) -> str:
    body = []
    for section_id, title, build in SECTIONS:
        try:
            content = build(facts)
        except Exception as exc:  # one broken section must not cost the whole report
            logger.warning("report: section %r failed: %r", title, exc, exc_info=True)
            content = f'<p class="failed">This section could not be rendered: {esc(repr(exc))}</p>'
        body.append(f'<section id="{section_id}"><h2>{esc(title)}</h2>{content}</section>')
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Thresher run report: {esc(facts.name)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>Thresher run report: {esc(facts.name)}</h1>"
        f"<p>{esc(str(facts.output))} · generated {generated}</p></header>"
        f"<main>{''.join(body)}</main></body></html>\n"
    )


def write_report(output_dir: str | os.PathLike) -> Path | str:
    """Write ``OUTPUT/report.html`` for a finished run (a local directory or a URI) and return its
    path (its URI on an object store).

    Raises :class:`~thresher.report.collect.ReportError` when the directory has no readable
    ``stats.json``; anything else that is missing or broken is noted in the page instead."""
    store = Store.from_uri(output_dir)
    facts = collect(store.local_path() or store.uri)
    page = render_html(facts)
    if store.is_local:
        target = RunLayout(store.local_path()).report
        write_text_atomic(target, page)
    else:  # an object store: one PUT of the whole page
        target = store.write_text(REPORT, page)
    logger.info("report: %s", target)
    return target
