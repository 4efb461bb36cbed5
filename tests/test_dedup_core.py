"""Dedup building blocks on real text: datasketch-equal signatures, shingles, connected
components against a union-find reference, exact dedup, the persistent index, configs."""

from __future__ import annotations

import csv
import gzip
import random

import numpy as np
import pyarrow as pa
import pytest

from thresher.config import ConfigError, from_dict
from thresher.dedup import ExactDedup, ExactDedupConfig, MinHashDedup, MinHashDedupConfig
from thresher.dedup import components as cc
from thresher.dedup.engine import EngineSettings, run_engine
from thresher.dedup.executor import LocalExecutor
from thresher.dedup.signatures import MinHasher
from thresher.dedup.stages import exact_doc_table, minhash_doc_table, normalize_url
from thresher.dedup.text import normalize, shingle_batch
from thresher.document import Document

SHARED = {}


@pytest.fixture(autouse=True)
def _shared(shared_data):
    SHARED["path"] = shared_data


def shared_path(*parts):
    return SHARED["path"](*parts)


def _sentences(lang: str) -> list[str]:
    path = shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _paragraphs(lang: str, size: int = 12) -> list[str]:
    s = _sentences(lang)
    return [" ".join(s[i : i + size]) for i in range(0, len(s) - size + 1, size)]


def _reference_shingles(text: str, n: int = 5) -> list[bytes]:
    words = normalize(text).split()
    if len(words) < n:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)]


def test_shingles_match_word_ngrams_across_scripts():
    texts = _paragraphs("en")[:20] + _paragraphs("hi")[:10] + _paragraphs("ru")[:10]
    texts += [
        "",
        "  !!  ",
        "two words",
        "Ünïcode ÉTÉ — «quotes» and ‘curly’ marks here",
        "x" * 90 + " a b c d",
    ]
    batch = shingle_batch(texts)
    for i, text in enumerate(texts):
        assert batch.doc_shingles(i) == _reference_shingles(text)


@pytest.mark.parametrize("num_perm,seed", [(112, 1), (128, 42), (16, 7)])
def test_signatures_equal_datasketch_update_batch(num_perm, seed):
    from datasketch import MinHash

    texts = _paragraphs("en")[:40] + _paragraphs("de")[:20] + _paragraphs("zh")[:5] + _paragraphs("ar")[:5]
    texts += ["", "short text", "a" * 200 + " long words beyond one sha1 block " + "b" * 70]
    sig = MinHasher(num_perm, seed).signatures(texts)
    for text, row in zip(texts, sig, strict=True):
        reference = MinHash(num_perm=num_perm, seed=seed)
        reference.update_batch(_reference_shingles(text))
        assert np.array_equal(reference.hashvalues, row), text[:60]


def _union_find_components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]


@pytest.mark.parametrize("partitions", [1, 4])
def test_star_contraction_matches_union_find(partitions):
    from thresher.dedup.engine import _components

    rng = random.Random(partitions)
    n = 3000
    edges = [(rng.randrange(n), rng.randrange(n)) for _ in range(2200)]
    edges += [(i, i + 1) for i in range(100, 400)]  # a long chain: many contraction steps
    nodes = np.array(rng.sample(range(1, 1 << 62), n), dtype=np.uint64)  # hash-like node ids
    order = np.argsort(nodes)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # union-find by node value order, so roots are the smallest nodes
    expected = _union_find_components(n, [(rank[a], rank[b]) for a, b in edges if a != b])
    pairs = [(min(nodes[a], nodes[b]), max(nodes[a], nodes[b])) for a, b in edges if a != b]
    u = np.array([p[0] for p in pairs], dtype=np.uint64)
    v = np.array([p[1] for p in pairs], dtype=np.uint64)
    chunks = [cc.edges_table(u[i : i + 500], v[i : i + 500]) for i in range(0, len(u), 500)]
    star = pa_concat(_components(LocalExecutor(partitions), chunks, 64))
    root_of = dict(zip(star.column("v").to_pylist(), star.column("u").to_pylist(), strict=True))
    for i in range(n):
        got = root_of.get(int(nodes[i]), int(nodes[i]))
        assert got == int(nodes[order[expected[rank[i]]]])


def pa_concat(tables):
    import pyarrow as pa

    return pa.concat_tables(tables)


def test_engine_partitions_do_not_change_decisions():
    paragraphs = [p for lang in ("en", "de", "fr", "es") for p in _paragraphs(lang)][:300]
    rng = random.Random(3)
    planted = 0
    rows = {"id": [], "text": [], "shard": []}
    for i, p in enumerate(paragraphs):
        rows["id"].append(f"p{i}")
        rows["text"].append(p)
        rows["shard"].append(f"s{i % 4}")
        if i % 3 == 0:
            words = p.split()
            words[rng.randrange(len(words))] = "edited"
            planted += 1
            rows["id"].append(f"v{i}")
            rows["text"].append(" ".join(words))
            rows["shard"].append(f"s{(i + 1) % 4}")
    import pyarrow as pa

    table = pa.table(rows)
    table = table.append_column("pos", pa.array(range(table.num_rows), pa.int64()))
    table = table.append_column("row", pa.array(range(table.num_rows), pa.int64()))
    config = MinHashDedupConfig()
    tables = [minhash_doc_table(table.slice(i, 100), config, None) for i in range(0, table.num_rows, 100)]
    results = []
    for verify, partitions, chunk in (
        (None, 1, 1 << 18),
        (None, 3, 500),
        (0.8, 1, 1 << 18),
        (0.8, 3, 500),
        (0.8, 8, 1 << 18),
        (0.8, 1, 700),
    ):
        settings = EngineSettings(
            reason="minhash_duplicate", verify_threshold=verify, group_chunk_pairs=chunk
        )
        res = run_engine(tables, settings, LocalExecutor(partitions))
        results.append(sorted(tuple(r.values()) for t in res.decisions for r in t.to_pylist()))
    assert results[0] == results[1]
    assert results[2] == results[3] == results[4] == results[5]
    assert planted == 100 and len(results[0]) >= 97 and len(results[2]) >= 97  # one-word edits


def test_verification_with_more_partitions_than_edges():
    """Most partitions see no candidate edge at all; their empty pieces must not disturb
    the one that verifies the single copy."""
    import pyarrow as pa

    paragraphs = _paragraphs("en")[:50]
    table = pa.table(
        {"id": [f"p{i:02d}" for i in range(50)] + ["z"], "text": paragraphs + [paragraphs[3] + " footer"]}
    )
    table = table.append_column("shard", pa.array([""] * 51)).append_column("pos", pa.array(range(51)))
    table = table.append_column("row", pa.array(range(51)))
    tables = [minhash_doc_table(table.slice(i, 10), MinHashDedupConfig(), None) for i in range(0, 51, 10)]
    for partitions in (1, 16):
        settings = EngineSettings(reason="minhash_duplicate", verify_threshold=0.8)
        res = run_engine(tables, settings, LocalExecutor(partitions))
        assert [(r["id"], r["detail"]) for t in res.decisions for r in t.to_pylist()] == [("z", "p03")]


def _union_find_drops(ids: list[str], edges) -> dict[str, str]:
    """Dropped id -> kept id: all but the smallest id of each component of ``edges``."""
    index = {x: i for i, x in enumerate(sorted(ids))}
    order = sorted(ids)
    roots = _union_find_components(len(ids), [(index[a], index[b]) for a, b in edges])
    return {x: order[roots[index[x]]] for x in ids if roots[index[x]] != index[x]}


def test_verification_keeps_exactly_the_pairs_datasketch_estimates_at_threshold():
    """Paragraphs and copies with 1-8 words changed, so datasketch's Jaccard estimates
    straddle 0.8: the verified decisions are the components of the candidate pairs (sharing a
    band) whose full 32-bit datasketch signatures agree on >= 80% of values."""
    from datasketch import MinHash

    from thresher.dedup.signatures import LshParams, band_keys

    rng = random.Random(11)
    texts = {}
    for i, p in enumerate(_paragraphs("en")[:150]):
        texts[f"p{i:03d}"] = p
        words = p.split()
        for _ in range(1 + i % 8):
            words[rng.randrange(len(words))] = rng.choice(["edited", "changed", "x"])
        texts[f"v{i:03d}"] = " ".join(words)
    ids = sorted(texts)
    sigs = {}
    for i in ids:
        m = MinHash(num_perm=112, seed=1)
        m.update_batch(_reference_shingles(texts[i]))
        sigs[i] = m
    keys = band_keys(np.stack([sigs[i].hashvalues.astype(np.uint32) for i in ids]), LshParams(14, 8))
    candidates = {
        (a, b)
        for x, a in enumerate(ids)
        for y, b in enumerate(ids[x + 1 :], start=x + 1)
        if np.intersect1d(keys[x], keys[y]).size
    }
    accepted = [(a, b) for a, b in candidates if sigs[a].jaccard(sigs[b]) >= 0.8]
    assert len(accepted) >= 40 and len(candidates) - len(accepted) >= 15  # both sides exercised

    docs = [Document(id=i, text=texts[i]) for i in ids]
    stage = MinHashDedup(MinHashDedupConfig())
    stage.run_local(docs)
    assert {d.id: d.drop.detail for d in docs if d.drop} == _union_find_drops(ids, accepted)
    extra = stage.extra_stats()
    assert extra["candidate_edges"] == len(candidates) and extra["verified_edges"] == len(accepted)

    unverified = [Document(id=i, text=texts[i]) for i in ids]
    MinHashDedup(MinHashDedupConfig(verify=False)).run_local(unverified)
    assert {d.id: d.drop.detail for d in unverified if d.drop} == _union_find_drops(ids, candidates)


def test_candidate_edges_all_pairs_then_star_and_chain():
    from thresher.dedup.engine import candidate_edges

    keys = np.array([5] * 3 + [7] + [9] * 20, dtype=np.uint64)
    nodes = np.array([10, 11, 12, 3] + list(range(100, 120)), dtype=np.uint64)
    u, v = candidate_edges(keys, nodes, all_pairs=True, pair_group_max=16)
    small = {(10, 11), (10, 12), (11, 12)}
    big = {(100, n) for n in range(101, 120)} | {(n, n + 1) for n in range(100, 119)}
    assert set(zip(u.tolist(), v.tolist(), strict=True)) == small | big
    u, v = candidate_edges(keys, nodes, all_pairs=False, pair_group_max=16)
    assert set(zip(u.tolist(), v.tolist(), strict=True)) == {(10, 11), (10, 12)} | {
        (100, n) for n in range(101, 120)
    }


def test_exact_dedup_normalised_text_and_url():
    paragraphs = _paragraphs("fr")[:50]
    docs = [
        Document(id=f"a{i:02d}", text=p, url=f"https://example.org/{i}") for i, p in enumerate(paragraphs)
    ]
    docs.append(Document(id="b00", text=paragraphs[4].upper() + " !!", url="https://other.org/x"))
    docs.append(Document(id="b01", text="  " + paragraphs[9].replace(" ", "\n  "), url="https://other.org/y"))
    docs.append(Document(id="b02", text="Different text entirely.", url="HTTPS://Example.org/7/#top"))
    stage = ExactDedup()
    stage.run_local(docs)
    dropped = {d.id: d.drop.detail for d in docs if d.drop}
    assert dropped == {"b00": "a04", "b01": "a09"}
    assert stage.stats.dropped["exact_duplicate"] == 2 and stage.stats.kept == 51

    docs = [Document(id=d.id, text=d.text or paragraphs[0], url=d.url) for d in docs[:50]]
    docs.append(Document(id="b02", text="Different text entirely.", url="HTTPS://Example.org/7/#top"))
    with_url = ExactDedup(ExactDedupConfig(url=True))
    with_url.run_local(docs)
    assert {d.id: d.drop.detail for d in docs if d.drop} == {"b02": "a07"}
    assert normalize_url("HTTP://Example.org:80/a/?q=1#frag") == "http://example.org/a?q=1"


def test_keep_policies():
    base = _paragraphs("en")[5]
    docs = [
        Document(id="c", text=base, scores={"quality": 0.2}),
        Document(id="a", text=base + " tail", scores={"quality": 0.9}),
        Document(id="b", text=base + " a longer tail here", scores={}),
    ]

    def kept(**kw):
        fresh = [Document(id=d.id, text=d.text, scores=dict(d.scores)) for d in docs]
        MinHashDedup(MinHashDedupConfig(**kw)).run_local(fresh)
        return [d.id for d in fresh if d.drop is None]

    assert kept() == ["c"]  # first in the run (by shard, then position), whatever the ids
    assert kept(keep="longest") == ["b"]
    assert kept(keep="score", score_key="quality") == ["a"]


def test_a_score_with_no_float_ranks_like_a_missing_one():
    """Readers refuse such scores, but a Document built in Python may carry any number: 10**400
    has no float and ended the whole stage with OverflowError. It ranks like a missing score, as
    an infinite or NaN one does, and the document with a real score is kept."""
    text = _paragraphs("en")[5]

    def kept(scores: list[dict]) -> list[str]:
        docs = [Document(id=f"d{i}", text=text, scores=s) for i, s in enumerate(scores)]
        ExactDedup(ExactDedupConfig(keep="score", score_key="quality")).run_local(docs)
        return [d.id for d in docs if d.drop is None]

    odd = [
        {"quality": 10**400},
        {"quality": -(10**400)},
        {"quality": float("inf")},
        {"quality": float("nan")},
    ]
    assert kept([*odd, {"quality": 0.1}]) == ["d4"]
    assert kept(odd) == ["d0"]  # all rank as missing: the first in the run is kept
    # a scores column nested past the JSON decoder's recursion limit is malformed too
    deep = {
        "id": ["d"],
        "text": [text],
        "shard": [""],
        "pos": [0],
        "row": [0],
        "scores": ["[" * 10**5 + "]" * 10**5],
    }
    assert exact_doc_table(pa.table(deep), False, "quality").column("score").to_pylist() == [None]


def test_persistent_index_drops_documents_seen_in_an_earlier_run(tmp_path):
    old = _paragraphs("es") + _paragraphs("it")
    new = _paragraphs("pt") + _paragraphs("nl")
    first = MinHashDedup(MinHashDedupConfig(index_output=str(tmp_path / "run1")))
    first.run_local([Document(id=f"old{i}", text=t) for i, t in enumerate(old)])
    assert first.stats.dropped == {}

    rng = random.Random(1)
    docs = [Document(id=f"new{i}", text=t) for i, t in enumerate(new)]
    repeats = {}
    for i in range(0, len(old), 8):  # recrawled pages: the old text with a changed word and a footer
        words = old[i].split()
        words[rng.randrange(len(words))] = "recrawl"
        docs.append(Document(id=f"again{i}", text=" ".join(words) + " Cookie settings"))
        repeats[f"again{i}"] = f"old{i}"
    unverified = [Document(id=d.id, text=d.text) for d in docs]  # dropping clears a document's text
    second = MinHashDedup(MinHashDedupConfig(against=str(tmp_path / "run1")))
    second.run_local(docs)
    dropped = {d.id: d.drop.detail for d in docs if d.drop}
    assert dropped == repeats
    assert second.extra_stats()["clusters_matching_index"] == len(repeats)

    assert second.result.stats["candidate_edges"] >= len(repeats)

    # The partitioned path, with key sub-ranges as small as 64 pairs: the same decisions.
    from dataclasses import replace

    from thresher.dedup.stages import _documents_table

    fresh = [Document(id=d.id, text=t) for d, t in zip(docs, [u.text for u in unverified], strict=True)]
    tables = [
        second.doc_table(_documents_table(fresh[i : i + 50], list(range(i, min(i + 50, len(fresh))))))
        for i in range(0, len(fresh), 50)
    ]
    settings = replace(second.settings(), group_chunk_pairs=64)
    result = run_engine(tables, settings, LocalExecutor(4))
    assert {r["id"]: r["detail"] for t in result.decisions for r in t.to_pylist()} == repeats

    with pytest.raises(ValueError, match="other settings"):
        MinHashDedup(MinHashDedupConfig(against=str(tmp_path / "run1"), bands=10, rows=10)).run_local(
            docs[:1]
        )
    # An index without signatures cannot verify; one with them serves unverified runs too.
    MinHashDedup(MinHashDedupConfig(verify=False, index_output=str(tmp_path / "plain"))).run_local(
        [Document(id="x", text=old[0])]
    )
    with pytest.raises(ValueError, match="signatures"):
        MinHashDedup(MinHashDedupConfig(against=str(tmp_path / "plain"))).run_local(docs[:1])
    MinHashDedup(MinHashDedupConfig(verify=False, against=str(tmp_path / "run1"))).run_local(unverified)
    assert {d.id: d.drop.detail for d in unverified if d.drop} == repeats
    with pytest.raises(ValueError, match="already holds an index"):
        MinHashDedup(MinHashDedupConfig(index_output=str(tmp_path / "run1"))).run_local(docs[:1])


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="bands"):
        from_dict(MinHashDedupConfig, {"bands": 20, "rows": 10}, "stages[3].minhash_dedup")
    with pytest.raises(ConfigError, match="threshold"):
        from_dict(MinHashDedupConfig, {"threshold": 1.5}, "stages[3].minhash_dedup")
    config = from_dict(MinHashDedupConfig, {"threshold": 0.8, "against": ["a", "b"]}, "x")
    assert config.lsh().bands * config.lsh().rows <= 112 and config.against_list() == ["a", "b"]


def _clough_stevenson():
    root = shared_path("neardup-clough-stevenson")
    with open(root / "file_information.csv", encoding="utf-8") as f:
        labels = {r["File"]: (r["Task"], r["Category"]) for r in csv.DictReader(f)}
    texts = {}
    for name in labels:
        raw = (root / "texts" / name).read_bytes()
        try:
            texts[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            texts[name] = raw.decode("cp1252")
    return labels, texts


def _jaccard(a: str, b: str) -> float:
    x, y = set(_reference_shingles(a)), set(_reference_shingles(b))
    return len(x & y) / len(x | y) if x | y else 0.0


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_clough_stevenson_copies_found_and_independent_answers_kept(threshold):
    labels, texts = _clough_stevenson()
    source = {task: name for name, (task, cat) in labels.items() if cat == "orig"}
    docs = [Document(id=name, text=texts[name]) for name in sorted(labels)]
    # Sources sort first ("orig_*" < answers would not), so keep the source via the score.
    for d in docs:
        d.scores = {"is_source": 1.0 if labels[d.id][1] == "orig" else 0.0}
    config = MinHashDedupConfig(threshold=threshold, keep="score", score_key="is_source")
    MinHashDedup(config).run_local(docs)
    dropped = {d.id for d in docs if d.drop}
    similarity = {n: _jaccard(texts[n], texts[source[t]]) for n, (t, c) in labels.items() if c != "orig"}
    bar = 0.8 if threshold is None else threshold
    for name, (_, cat) in labels.items():
        if cat == "non":
            assert name not in dropped, name
        if cat in ("cut", "light") and similarity[name] >= bar + 0.1:
            assert name in dropped, (name, similarity[name])
    copies = [n for n, (_, c) in labels.items() if c in ("cut", "light") and similarity[n] >= bar + 0.1]
    assert copies  # the check above is not vacuous
