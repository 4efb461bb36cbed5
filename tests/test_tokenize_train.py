"""BPE training: the incremental merge learner against a recount-everything reference, determinism,
Ray counting with 1 vs 2 workers, bad input, the CLI, and compression against HF's BpeTrainer."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from itertools import pairwise

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import shared_path
from thresher.tokenize import CL100K_PATTERN, ENDOFTEXT, load_tokenizer, train_from_files, train_tokenizer
from thresher.tokenize.merges import learn_merges
from thresher.tokenize.pretokenize import count_pretokens, word_bytes
from thresher.tokenize.train import CountStats, count_files, iter_texts


def sentences(lang: str, n: int | None = None) -> list[str]:
    path = shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz")
    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
    return lines[:n] if n else lines


def word_counts(texts: list[str]) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for word, n in count_pretokens(texts).items():
        out[word_bytes(word)] = out.get(word_bytes(word), 0) + n
    return out


def reference_merges(counts: dict[bytes, int], n_tokens: int) -> list[bytes]:
    """Textbook BPE: recount every pair before each merge; highest count, then smallest
    (left id, right id); merge left to right within each word."""
    tokens = [bytes([i]) for i in range(256)]
    ids = {t: i for i, t in enumerate(tokens)}
    words = {tuple(w): c for w, c in counts.items() if len(w) > 1}
    while len(tokens) < n_tokens:
        pairs: Counter = Counter()
        for w, c in words.items():
            for pair in pairwise(w):
                pairs[pair] += c
        if not pairs:
            break
        (a, b), best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best < 2:
            break
        merged = tokens[a] + tokens[b]
        if merged not in ids:
            ids[merged] = len(tokens)
            tokens.append(merged)
        new = ids[merged]
        rewritten: dict[tuple, int] = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            rewritten[tuple(out)] = rewritten.get(tuple(out), 0) + c
        words = rewritten
    return tokens


def test_incremental_merges_equal_recounting_reference():
    texts = sentences("en", 80) + sentences("de", 80) + sentences("ru", 30) + sentences("zh", 15)
    texts += ["aaaaaaa bbbb aaaa " * 3, "          x", "ababab abab"]  # overlapping identical pairs
    counts = word_counts(texts)
    assert learn_merges(counts, 256 + 220) == reference_merges(counts, 256 + 220)


def test_merge_of_pair_whose_bytes_already_are_a_token_reuses_the_id():
    # "ab" + "c" and "a" + "bc" both make b"abc": one id, and the vocabulary still grows to size
    counts = {b"abc": 10, b"xbc": 9, b"abd": 8, b"bcz": 7}
    tokens = learn_merges(counts, 256 + 8)
    assert len(tokens) == len(set(tokens))
    assert tokens == reference_merges(counts, 256 + 8)


def test_training_is_deterministic_and_sized():
    texts = [s for lang in ("en", "fr", "ja", "ar") for s in sentences(lang, 300)]
    a = train_tokenizer(texts, 1200)
    b = train_tokenizer(list(reversed(texts)), 1200)
    assert a.mergeable_ranks() == b.mergeable_ranks()
    assert a.vocab_size == 1200 and a.n_ranks == 1199 and a.eot_id == 1199
    two = train_tokenizer(texts, 1200, special_tokens=[ENDOFTEXT, "<|pad|>"])
    assert two.vocab_size == 1200 and two.special_tokens == {ENDOFTEXT: 1198, "<|pad|>": 1199}


def test_special_tokens_in_training_text_are_not_learned():
    texts = [f"word{ENDOFTEXT}word {ENDOFTEXT}"] * 50
    tok = train_tokenizer(texts, 300)
    assert not any(b"<|" in t or b"|>" in t for t in tok.mergeable_ranks())


def _write_shards(tmp_path, texts: list[str], n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"docs-{i}.parquet"
        pq.write_table(pa.table({"id": [str(j) for j in range(len(texts[i::n]))], "text": texts[i::n]}), path)
        paths.append(str(path))
    return paths


def test_ray_counting_one_or_two_workers_gives_the_same_merges(ray_session, tmp_path):
    texts = [s for lang in ("en", "de", "zh", "hi") for s in sentences(lang, 150)]
    paths = _write_shards(tmp_path, texts, 4)
    one, stats_one = train_from_files(paths, 800, use_ray=True, num_tasks=1)
    two, stats_two = train_from_files(paths, 800, use_ray=True, num_tasks=2)
    local, _ = train_from_files(paths, 800, use_ray=False)
    assert one.mergeable_ranks() == two.mergeable_ranks() == local.mergeable_ranks()
    assert stats_one.documents == stats_two.documents == len(texts)
    assert one.mergeable_ranks() == train_tokenizer(texts, 800).mergeable_ranks()


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [
        json.dumps({"text": "good text here"}),
        "{not json",
        json.dumps({"text": None}),
        json.dumps({"other": "x"}),
        json.dumps({"text": 5}),
        json.dumps(["a list"]),
        "",
        json.dumps({"text": "more"}),
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    stats = CountStats()
    assert list(iter_texts(str(path), "text", stats)) == ["good text here", "more"]
    assert stats.documents == 2 and stats.skipped == Counter({"no_text": 4, "bad_json": 1})
    counts, _ = count_files([str(path)], "text", CL100K_PATTERN, [ENDOFTEXT])
    assert counts[" text"] == 1
    with pytest.raises(ValueError, match="no column 'body'"):
        list(iter_texts(_write_shards(tmp_path, ["x"], 1)[0], "body", stats))


def test_cli_train_and_encode(tmp_path, capsys):
    from thresher.cli import main

    texts = sentences("en", 400) + sentences("it", 400)
    data = tmp_path / "docs.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    out_dir = tmp_path / "tok"
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path),
                "--vocab-size",
                "700",
                "--output",
                str(out_dir),
                "--no-ray",
            ]
        )
        == 0
    )
    tok = load_tokenizer(out_dir)
    assert tok.vocab_size == 700 and tok.mergeable_ranks() == train_tokenizer(texts, 700).mergeable_ranks()
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(out_dir), f"The city{ENDOFTEXT}"]) == 0
    printed = capsys.readouterr().out.split()
    assert [int(x) for x in printed] == tok.encode(f"The city{ENDOFTEXT}") and int(printed[-1]) == tok.eot_id
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "missing"), "x"]) == 3
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path / "nothing*"),
                "--vocab-size",
                "300",
                "--output",
                str(out_dir),
                "--no-ray",
            ]
        )
        == 3
    )


def _hf_bytes_per_token(train: list[str], held_out: list[str], vocab_size: int, pattern: str) -> float:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern.replace("{1,3}+", "{1,3}")), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator(train, trainer)
    n = sum(len(e.ids) for e in hf.encode_batch(held_out, add_special_tokens=False))
    return sum(len(t.encode()) for t in held_out) / n


@pytest.mark.slow
def test_compression_within_one_percent_of_hf_bpe_trainer():
    root = shared_path("lid-lingua-testdata", "sentences")
    langs = sorted(p.name.split(".")[0] for p in root.glob("*.txt.gz"))
    train, held_out = [], []
    for lang in langs:
        lines = sentences(lang)
        train += lines[: int(len(lines) * 0.8)]
        held_out += lines[int(len(lines) * 0.8) :]
    pages = [
        p.read_text(encoding="utf-8")
        for p in sorted(shared_path("extraction-htmltotext-leogao").glob("*/text/*"))
    ]
    train += pages[1::2]
    held_out += pages[::2]
    ours = train_tokenizer(train, 8192)
    ours_bpt = sum(len(t.encode()) for t in held_out) / sum(map(len, ours.encode_ordinary_batch(held_out)))
    hf_bpt = _hf_bytes_per_token(train, held_out, 8192, ours.pattern)
    assert abs(ours_bpt - hf_bpt) / hf_bpt < 0.01, (ours_bpt, hf_bpt)
