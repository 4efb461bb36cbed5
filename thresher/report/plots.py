"""The report's charts, as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly, never
through pyplot: no global backend state, no display needed, safe at the end of a run in any process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

KEPT = "#2e7d32"
DROPPED = "#f9a825"
ERROR = "#c62828"
NEUTRAL = "#1565c0"
SPLIT_COLOURS = {"train": "#1565c0", "validation": "#ef6c00"}
DPI = 96


def _figure(width: float, height: float, constrained: bool = True) -> tuple[Figure, object]:
    """A figure with one axes; ``constrained`` fits the margins to long tick labels (costs a draw)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _bar_height(n: int) -> float:
    return min(14.0, 1.0 + 0.32 * max(n, 1))


def funnel(
    labels: Sequence[str], kept: Sequence[int], dropped: Sequence[int], errors: Sequence[int]
) -> bytes:
    """Documents per stage: what each stage kept, dropped and failed on, first stage on top."""
    fig, ax = _figure(10, _bar_height(len(labels)) + 0.6)
    y = np.arange(len(labels))
    kept_a, dropped_a, errors_a = (np.asarray(v, dtype=float) for v in (kept, dropped, errors))
    ax.barh(y, kept_a, color=KEPT, label="kept")
    ax.barh(y, dropped_a, left=kept_a, color=DROPPED, label="dropped")
    ax.barh(y, errors_a, left=kept_a + dropped_a, color=ERROR, label="errors")
    total = kept_a + dropped_a + errors_a
    for yi, t, k in zip(y, total, kept_a, strict=True):
        ax.text(t, yi, f"  {int(k):,} kept of {int(t):,}", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(total.max() if len(total) else 1, 1) * 1.3)
    ax.set_xlabel("documents")
    fig.legend(loc="outside upper right", frameon=False, ncols=3)
    return _png(fig)


def rule_bars(labels: Sequence[str], counts: Sequence[int], is_error: Sequence[bool]) -> bytes:
    """Documents removed per rule, largest first."""
    fig, ax = _figure(10, _bar_height(len(labels)))
    y = np.arange(len(labels))
    ax.barh(y, counts, color=[ERROR if e else DROPPED for e in is_error])
    for yi, c in zip(y, counts, strict=True):
        ax.text(c, yi, f"  {c:,}", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(counts, default=1), 1) * 1.15)
    ax.set_xlabel("documents removed")
    return _png(fig)


def throughput(labels: Sequence[str], docs_per_second: Sequence[float]) -> bytes:
    """Documents per second of stage time; a log axis when stages differ by orders of magnitude."""
    fig, ax = _figure(10, _bar_height(len(labels)))
    y = np.arange(len(labels))
    rates = np.asarray(docs_per_second, dtype=float)
    ax.barh(y, rates, color=NEUTRAL)
    for yi, r in zip(y, rates, strict=True):
        ax.text(r, yi, f"  {r:,.1f}/s", va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    positive = rates[rates > 0]
    if len(positive) and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
        ax.set_xlim(positive.min() / 2, positive.max() * 8)
    else:
        ax.set_xlim(0, max(rates.max() if len(rates) else 1, 1e-9) * 1.25)
    ax.set_xlabel("documents per second of stage time")
    return _png(fig)


def categories(
    labels: Sequence[str],
    counts: Sequence[int],
    xlabel: str,
    ylabel: str,
    colour: str = NEUTRAL,
    log_y: bool = False,
) -> bytes:
    """Counts of a few named categories (languages, cluster-size buckets)."""
    fig, ax = _figure(10, 3.0)
    x = np.arange(len(labels))
    ax.bar(x, counts, color=colour, width=0.6)
    pad = max(0, 8 - len(labels)) / 2  # a few categories keep the width of bars of many
    ax.set_xlim(-0.5 - pad, len(labels) - 0.5 + pad)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(
        x, labels, rotation=45 if len(labels) > 12 else 0, ha="right" if len(labels) > 12 else "center"
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y and len(counts) and max(counts) > 0:
        ax.set_yscale("log")
    return _png(fig)


def histogram(values: np.ndarray, title: str, xlabel: str, colour: str) -> bytes:
    """A small histogram panel; a constant sample gets one bar around its value."""
    fig, ax = _figure(4.6, 2.8, constrained=False)  # many panels of one shape: fixed margins
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.19, top=0.88)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:  # one value: a narrow bar in the middle of a visible range
        half = abs(lo) * 0.01 or 0.01
        ax.hist(values, bins=np.array([lo - half, lo + half]), color=colour)
        ax.set_xlim(lo - 20 * half, lo + 20 * half)
    else:
        ax.hist(values, bins=min(50, max(10, int(np.sqrt(len(values))))), color=colour)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("documents", fontsize=9)
    ax.tick_params(labelsize=8)
    return _png(fig)


def token_shards(names: Sequence[str], tokens: Sequence[int], splits: Sequence[str]) -> bytes:
    """Tokens per shard, coloured by split; a histogram once there are too many shards to name."""
    fig, ax = _figure(10, 3.6)
    if len(names) <= 60:
        x = np.arange(len(names))
        ax.bar(x, tokens, color=[SPLIT_COLOURS.get(s, NEUTRAL) for s in splits])
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("tokens")
        present = [s for s in SPLIT_COLOURS if s in set(splits)]
        if present:
            fig.legend(
                handles=[Patch(color=SPLIT_COLOURS[s], label=s) for s in present],
                frameon=False,
                loc="outside upper right",
                ncols=len(present),
            )
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    else:
        ax.hist(np.asarray(tokens, dtype=float), bins=40, color=NEUTRAL)
        ax.set_xlabel("tokens per shard")
        ax.set_ylabel("shards")
    return _png(fig)
