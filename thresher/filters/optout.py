"""``optout``: drop documents whose site opted out of AI training.

What it looks at, per document (thresher/crawlers/optout.py reads the signals):

* the crawler's flag: a page our crawler archived although it carried opt-out signals
  (``crawl --archive-opted-out``) has them in its WARC record, which the WARC reader puts in
  ``metadata["tdm_optout"]`` / ``metadata["optout"]``: robots.txt AI-crawler groups
  (``robots_ai``), ``/.well-known/tdmrep.json`` (``tdmrep_json``) and the page signals below;
* the archived HTTP headers, which the WARC reader keeps for any WARC (Common Crawl's too):
  ``X-Robots-Tag`` (``noai``, ``noimageai``, ``noindex``/``none``) and ``tdm-reservation: 1``;
* the page's ``<meta name="robots">`` and ``<meta name="tdm-reservation">``, while the document
  still has its HTML: put the stage **before** ``extract``. After it only the two above are
  checked (the documents without HTML are counted as ``extra.no_html``).

Not covered for input the crawler did not write: robots.txt and tdmrep.json as they were when
the page was fetched (a Common Crawl WARC holds neither; CCBot obeys robots.txt groups for CCBot,
so its pages passed that one check), reservations in licences, ai.txt or image metadata, and
JSONL/Parquet input, which carries none of these unless its metadata does.

Reasons: ``optout_<signal>``, the document's first signal (crawlers/optout.py ``SIGNALS``),
with all of them in the detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thresher.crawlers.optout import (
    DEFAULT_AI_TOKENS,
    MAX_HEAD_BYTES,
    SIGNALS,
    SignalReader,
    validate_signals,
)
from thresher.dataconfig import option
from thresher.document import Document, Drop
from thresher.stage import Stage


@dataclass
class OptoutConfig:
    signals: list[str] = field(default_factory=lambda: list(SIGNALS))
    """The signals that drop a document (all by default; e.g. leave out ``noimageai`` for text)."""
    user_agent: str = "ThresherBot"
    """Our product token: ``<meta name="thresherbot">`` and ``X-Robots-Tag: thresherbot: ...``
    apply as the generic ``robots`` ones do."""
    ai_tokens: list[str] = field(default_factory=lambda: list(DEFAULT_AI_TOKENS))
    """Directives scoped to these crawlers (``X-Robots-Tag: GPTBot: noai``) count as opt-outs."""
    max_head_bytes: int = option(MAX_HEAD_BYTES, ge=1024)
    """Meta tags are looked for in this much of the HTML (and only before ``<body``)."""

    def validate(self, where: str) -> None:
        validate_signals(self.signals, f"{where}.signals")


class OptoutFilter(Stage):
    """Reasons: ``optout_robots_ai``, ``optout_tdmrep_json``, ``optout_tdm_header``,
    ``optout_tdm_meta``, ``optout_noai``, ``optout_noimageai``, ``optout_noindex``."""

    name = "optout"
    Config = OptoutConfig

    def __init__(self, config: OptoutConfig | None = None) -> None:
        super().__init__(config)
        cfg: OptoutConfig = self.config
        self.reader = SignalReader(cfg.user_agent, cfg.ai_tokens, cfg.signals, cfg.max_head_bytes)
        self.enabled = set(cfg.signals)

    def process(self, doc: Document) -> Document | Drop:
        meta = doc.metadata
        flagged = meta.get("optout") if meta.get("tdm_optout") else None
        found = [s for s in flagged if s in self.enabled] if isinstance(flagged, list) else []
        if doc.html is None:
            self.stats.extra["no_html"] += 1
        tags = meta.get("http_x_robots_tag")
        page = self.reader.read(
            tags.splitlines() if isinstance(tags, str) else [],
            meta.get("http_tdm_reservation") if isinstance(meta.get("http_tdm_reservation"), str) else None,
            doc.html,
        )
        found += [s for s in page.reasons if s not in found]
        if not found:
            return doc
        first = min(found, key=SIGNALS.index)
        return Drop(f"optout_{first}", detail=",".join(sorted(found, key=SIGNALS.index)))
