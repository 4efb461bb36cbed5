"""Opt-out signals for AI training: what a site says about using its pages, read cheaply.

One place reads them, for the crawler (before a page is archived) and for the ``optout``
pipeline stage (on archived pages, Common Crawl's included). No Scrapy here: the stage imports
this module without loading the crawler.

The signals, by the name they are counted and recorded under (:data:`SIGNALS`, in that order):

* ``robots_ai``: robots.txt has a group for one of the AI-crawler tokens (:data:`DEFAULT_AI_TOKENS`,
  ``ai_tokens`` in the crawl config) that disallows the URL. Only a group naming the token
  counts, not ``User-agent: *``: a site that lets every crawler in but keeps GPTBot out has said
  something about AI training, one that disallows a path for everybody has not (and that path is
  refused to us anyway). Checked in robots.py before the page is requested.
* ``tdmrep_json``: the first rule of the host's ``/.well-known/tdmrep.json`` (TDM Reservation
  Protocol, W3C Community Group final report) whose ``location`` matches the path has
  ``"tdm-reservation": 1``. Checked before the page is requested.
* ``tdm_header``: the response has ``tdm-reservation: 1``.
* ``tdm_meta``: the page has ``<meta name="tdm-reservation" content="1">``.
* ``noai``, ``noimageai``, ``noindex``: an ``X-Robots-Tag`` header or a ``<meta name="robots">``
  (or ``name=`` our own token or an AI token) holds that value (``none`` counts as ``noindex``).

TDMRep names an order among its techniques; here a reservation by any of them counts (a ``0`` in
one does not lift a ``1`` in another): a crawler that honours opt-outs errs on the side of the
opt-out. ``nofollow`` is not an opt-out: it only stops link following.

Not covered: ``ai.txt``, C2PA/IPTC metadata in images, licence texts on the page, a reservation
in an EPUB or PDF, meta tags written by scripts, and meta tags after ``<body`` (robots meta
belongs in the head) or past the first :data:`MAX_HEAD_BYTES` of the page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_AI_TOKENS = [
    "GPTBot",
    "ChatGPT-User",
    "CCBot",
    "Google-Extended",
    "anthropic-ai",
    "ClaudeBot",
    "Claude-Web",
    "Applebot-Extended",
    "cohere-ai",
    "Bytespider",
    "PerplexityBot",
    "meta-externalagent",
    "Amazonbot",
    "Diffbot",
    "omgili",
    "ImagesiftBot",
]
"""Crawler tokens that sites name in robots.txt to keep AI-training (and AI-answer) crawlers out
(the operators' published user agents, 2023-2025). A group for any of them disallowing a path
is read as "no AI training use of this path", whoever crawls."""

SIGNALS = ("robots_ai", "tdmrep_json", "tdm_header", "tdm_meta", "noai", "noimageai", "noindex")
"""Every opt-out signal, in the order a page's first one is counted under."""

MAX_HEAD_BYTES = 256 * 1024
"""Meta tags are looked for in this much of the page at most (and only before ``<body``)."""
MAX_TDMREP_BYTES = 1024 * 1024
"""A larger tdmrep.json is not read (counted as ``tdmrep.too_large``)."""
MAX_TDMREP_RULES = 10_000
MAX_PATTERN_CHARS = 2048

_RESERVING = {"noai": "noai", "noimageai": "noimageai", "noindex": "noindex", "none": "noindex"}
_COLON_DIRECTIVES = {"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"}
_BODY = re.compile(rb"<body[\s>/]", re.I)
_META = re.compile(rb"<meta\s[^>]*>", re.I)
_ATTR = re.compile(rb"""([a-zA-Z_:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")


def validate_signals(names: Iterable[str], where: str) -> None:
    """Raise ValueError naming the first entry of ``names`` that is no signal."""
    for i, name in enumerate(names):
        if name not in SIGNALS:
            raise ValueError(f"{where}[{i}]: {name!r} is no opt-out signal (known: {', '.join(SIGNALS)})")


@dataclass(frozen=True)
class PageSignals:
    noindex: bool
    nofollow: bool
    reasons: tuple[str, ...]
    """The enabled opt-out signals the page carries, in :data:`SIGNALS` order."""


class SignalReader:
    """Reads a response's opt-out signals; built once per crawl or stage (the token sets)."""

    def __init__(
        self,
        own_token: str,
        ai_tokens: Iterable[str] = DEFAULT_AI_TOKENS,
        signals: Iterable[str] = SIGNALS,
        max_head_bytes: int = MAX_HEAD_BYTES,
    ):
        self.own = {"robots", own_token.lower()}
        self.ai = {t.lower() for t in ai_tokens} - self.own
        self.signals = frozenset(signals)
        self.max_head_bytes = max_head_bytes

    def read(
        self, x_robots_tags: Iterable[str], tdm_reservation: str | None, html: bytes | None
    ) -> PageSignals:
        """Signals of one response: its ``X-Robots-Tag`` values, its ``tdm-reservation`` header
        (or None) and its (decoded) body, if it is HTML."""
        own: set[str] = set()
        ai: set[str] = set()
        for value in x_robots_tags:
            self._robots_value(value, own, ai, scope=None)
        found = set()
        if (tdm_reservation or "").strip() == "1":
            found.add("tdm_header")
        if html:
            for name, content in meta_tags(html, self.max_head_bytes):
                if name == "tdm-reservation":
                    if content.strip() == "1":
                        found.add("tdm_meta")
                elif name in self.own or name in self.ai:
                    self._robots_value(content, own, ai, scope=name)
        found.update(_RESERVING[d] for d in (own | ai) if d in _RESERVING)
        reasons = tuple(s for s in SIGNALS if s in found and s in self.signals)
        return PageSignals(
            noindex="noindex" in own or "none" in own,
            nofollow="nofollow" in own or "none" in own,
            reasons=reasons,
        )

    def _robots_value(self, value: str, own: set[str], ai: set[str], scope: str | None) -> None:
        """Directives of one X-Robots-Tag value or meta content. ``googlebot: noindex, nofollow``
        scopes what follows to one crawler: ours and the AI tokens are heeded, others ignored."""
        for piece in value.lower().split(","):
            name, colon, rest = piece.partition(":")
            if colon and name.strip() not in _COLON_DIRECTIVES:
                scope, piece = name.strip(), rest
            target = own if scope is None or scope in self.own else ai if scope in self.ai else None
            if target is not None:
                target.update(d.split(":", 1)[0] for d in piece.split())


def meta_tags(html: bytes, max_bytes: int = MAX_HEAD_BYTES) -> list[tuple[str, str]]:
    """(name, content) of the ``<meta name=... content=...>`` tags of the page's head, names in
    lower case. Linear in the bytes looked at: comments are cut with find(), not a regex."""
    head = html[:max_bytes]
    body = _BODY.search(head)
    if body is not None:
        head = head[: body.start()]
    if b"<!--" in head:
        head = _without_comments(head)
    out = []
    for tag in _META.finditer(head):
        attrs = {}
        for m in _ATTR.finditer(tag.group()):
            value = (
                m.group(2) if m.group(2) is not None else m.group(3) if m.group(3) is not None else m.group(4)
            )
            attrs.setdefault(m.group(1).lower(), value)
        name, content = attrs.get(b"name"), attrs.get(b"content")
        if name and content is not None:
            out.append((name.decode("latin-1").strip().lower(), content.decode("latin-1")))
    return out


def _without_comments(data: bytes) -> bytes:
    parts, pos = [], 0
    while (start := data.find(b"<!--", pos)) >= 0:
        parts.append(data[pos:start])
        end = data.find(b"-->", start + 4)
        if end < 0:
            return b"".join(parts)
        pos = end + 3
    parts.append(data[pos:])
    return b"".join(parts)


# ---------------------------------------------------------------------- robots.txt


def robots_groups(body: bytes) -> set[str]:
    """The user-agent names that have a group in a robots.txt body, in lower case."""
    names = set()
    for line in body[: 512 * 1024].decode("utf-8", "replace").splitlines():
        key, colon, value = line.split("#", 1)[0].partition(":")
        if colon and key.strip().lower() == "user-agent":
            names.add(value.strip().lower())
    return names


# ---------------------------------------------------------------------- TDMRep tdmrep.json


@dataclass(frozen=True)
class TdmRule:
    location: str
    reserved: bool
    policy: str | None = None

    def matches(self, path: str) -> bool:
        return path_matches(self.location, path)


class TdmRepError(ValueError):
    """A tdmrep.json that is no list of rules (its host then has no rules)."""


def parse_tdmrep(body: bytes) -> list[TdmRule]:
    """The rules of a tdmrep.json body: a JSON array of ``{"location": PATTERN,
    "tdm-reservation": 0|1, "tdm-policy": URL}``. Entries without a location or a 0/1
    reservation are skipped (with a log line); a body that is no array raises TdmRepError."""
    if len(body) > MAX_TDMREP_BYTES:
        raise TdmRepError(f"{len(body)} bytes (more than {MAX_TDMREP_BYTES})")
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TdmRepError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise TdmRepError(f"a JSON {type(data).__name__}, not an array of rules")
    rules, skipped = [], 0
    for entry in data[:MAX_TDMREP_RULES]:
        location = entry.get("location") if isinstance(entry, dict) else None
        reservation = entry.get("tdm-reservation") if isinstance(entry, dict) else None
        if isinstance(reservation, str) and reservation.strip() in ("0", "1"):
            reservation = int(reservation)
        if not isinstance(location, str) or len(location) > MAX_PATTERN_CHARS or reservation not in (0, 1):
            skipped += 1
            continue
        if isinstance(reservation, bool):
            reservation = int(reservation)
        if not location.startswith(("/", "*")):
            location = "/" + location
        policy = entry.get("tdm-policy")
        rules.append(TdmRule(location, reservation == 1, policy if isinstance(policy, str) else None))
    if skipped:
        logger.info("tdmrep.json: %d entries without a location or a 0/1 tdm-reservation skipped", skipped)
    return rules


def tdm_rule_for(rules: list[TdmRule], path: str) -> TdmRule | None:
    """The rule that applies to ``path`` (path and query): the first one that matches."""
    return next((rule for rule in rules if rule.matches(path)), None)


def path_matches(pattern: str, path: str) -> bool:
    """robots.txt-style path patterns (``*`` any run of characters, a final ``$`` the end),
    matched segment by segment with str.find: linear, where a translated regex can backtrack
    exponentially on ``*a*a*a*...``."""
    anchored = pattern.endswith("$")
    if anchored:
        pattern = pattern[:-1]
    first, *rest = pattern.split("*")
    if not path.startswith(first):
        return False
    if not rest:
        return not anchored or len(path) == len(first)
    pos = len(first)
    *middle, last = rest
    for segment in middle:
        found = path.find(segment, pos)
        if found < 0:
            return False
        pos = found + len(segment)
    if anchored:
        return len(path) - len(last) >= pos and path.endswith(last)
    return path.find(last, pos) >= 0
