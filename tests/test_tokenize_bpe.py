"""BPETokenizer encoding: tiktoken-exact on real multilingual text and edge cases, lossless round
trips, HF tokenizer.json export, save/load, the bounded cache and the document encoder."""

from __future__ import annotations

import gzip
import json
import pickle
import random
import unicodedata

import numpy as np
import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import shared_path
from thresher.tokenize import ENDOFTEXT, BPETokenizer, token_dtype, train_tokenizer
from thresher.tokenize import bpe as bpe_module
from thresher.tokenize.batchmerge import PairRanks
from thresher.tokenize.bpe import merge_piece
from thresher.tokenize.encoder import DocumentEncoder
from thresher.tokenize.files import fingerprint, load_tokenizer, save_tokenizer

LANGS = ["en", "de", "fr", "ru", "zh", "ja", "ko", "ar", "hi", "th", "el", "he", "ta", "vi", "tr", "yo"]


def sentences(lang: str, n: int | None = None) -> list[str]:
    path = shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz")
    lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
    return lines[:n] if n else lines


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    """A 3,000-id tokenizer trained on 16 languages' real sentences."""
    corpus = [s for lang in LANGS for s in sentences(lang, 400)]
    return train_tokenizer(corpus, 3000)


@pytest.fixture(scope="module")
def tiktok(tok):
    return tiktoken.Encoding(
        "thresher-test",
        pat_str=tok.pattern,
        mergeable_ranks=tok.mergeable_ranks(),
        special_tokens=tok.special_tokens,
    )


def all_languages_text() -> list[str]:
    root = shared_path("lid-lingua-testdata", "sentences")
    return [s for path in sorted(root.glob("*.txt.gz")) for s in sentences(path.name.split(".")[0], 60)]


EDGE_CASES = [
    "",
    " ",
    "a",
    "Hello, world! I'm here, you're there, it's DONE'S and we'LL see.",
    "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇩🇪🇫🇷 flags, 🧑🏿‍🚀 astronaut, ❤️‍🔥",
    "中文字符测试：北京是中国的首都。日本語のテキスト、カタカナ。한국어 텍스트입니다.",
    "e\u0301 combining acute, a\u0308\u0304 stacked, Z̴̡̛a̸l̵g̶o̷ text, क्षत्रिय, ñ vs n\u0303",
    "tabs\t\tand\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u2029para\u0085nel",
    " " * 1000 + "x" + "\n" * 300 + "  \t \r\n\r\n" + " " * 17,
    "trailing spaces   ",
    "\n\n\n",
    "1234567890 123 4567 3.14159 1,000,000 ١٢٣٤ ४५६ Ⅻ ½",
    "x" * 5000 + " " + "ab" * 3000,  # pieces longer than the fast paths handle
    "$$$ ... !!! ??? --- === >>> <<< ''' \"\"\" ``` ***",
    f"before{ENDOFTEXT}after {ENDOFTEXT}{ENDOFTEXT} <|endoftext| <|endoftext|>x",
    "mixed English und Deutsch et français と日本語 и русский",
]


def random_byte_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))).decode("utf-8", "replace")
        for _ in range(n)
    ]


def test_matches_tiktoken_on_all_lingua_languages(tok, tiktok):
    texts = all_languages_text()
    assert len(texts) > 4000
    assert tok.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)
    # one by one (the per-piece path) as well as batched (the vectorised path)
    fresh = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
    assert [fresh.encode_ordinary(t) for t in texts[::7]] == [tiktok.encode_ordinary(t) for t in texts[::7]]


def test_matches_tiktoken_on_extracted_pages(tok, tiktok):
    root = shared_path("extraction-htmltotext-leogao")
    pages = [p.read_text(encoding="utf-8") for p in sorted(root.glob("*/text/*"))]
    assert len(pages) >= 20
    assert tok.encode_ordinary_batch(pages) == tiktok.encode_ordinary_batch(pages)


def test_matches_tiktoken_on_edge_cases(tok, tiktok):
    for text in EDGE_CASES:
        assert tok.encode(text) == tiktok.encode(text, allowed_special="all"), text[:40]
        assert tok.encode_ordinary(text) == tiktok.encode_ordinary(text), text[:40]
    texts = random_byte_texts(300)
    assert tok.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)


def test_matches_tiktoken_on_every_assigned_code_point(tok, tiktok):
    """Every code point Python's Unicode database knows (the regex module's tables are newer than
    those of tiktoken's Rust engine, so characters assigned since may split differently)."""
    rng = random.Random(1)
    points = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    glue = [" ", "  ", "\n", "\t", "a", "1", "'s", "\u00a0", "\r\n", "é"]
    texts = [
        "".join(rng.choice(points) if rng.random() < 0.6 else rng.choice(glue) for _ in range(300))
        for _ in range(200)
    ]
    assert tok.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)


def test_lone_surrogates_are_replaced_like_tiktoken(tok, tiktok):
    text = "ok \ud800 then \udfff and a pair \ud83d\ude00 end"
    assert tok.encode_ordinary(text) == tiktok.encode_ordinary(text)
    assert tok.decode(tok.encode_ordinary(text)) == "ok \ufffd then \ufffd and a pair 😀 end"
    assert tok.encode_ordinary("after it, ok") == tiktok.encode_ordinary(
        "after it, ok"
    )  # nothing left behind


def new_pieces(tok, ranks, step: int) -> list[bytes]:
    """The distinct pieces of every ``step``-th text that are no token: what the batch merger gets."""
    words = sorted({w for t in all_languages_text()[::step] for w in tok._pretokenizer.findall(t)})
    return [b for b in map(str.encode, words) if b not in ranks and len(b) <= 256]


def test_compiled_merging_equals_tiktokens_own(tok, tiktok):
    """The pair table holds every split of every token into two tokens; the compiled merger gives
    tiktoken's ids for single pieces, and so does the heap merger (for long pieces)."""
    ranks = tok.mergeable_ranks()
    splits = {
        (ranks[t[:c]], ranks[t[c:]], ranks[t])
        for t in ranks
        for c in range(1, len(t))
        if t[:c] in ranks and t[c:] in ranks
    }
    assert len(splits) > len(ranks) - 256  # every merged token splits at least once
    assert set(zip(*(a.tolist() for a in PairRanks._pairs(ranks)), strict=True)) == splits
    pieces = new_pieces(tok, ranks, 5)
    assert len(pieces) > 1000
    merged = [np.frombuffer(p, tok.dtype).tolist() for p in PairRanks(ranks).merge_pieces(pieces, tok.dtype)]
    assert merged == [tiktok._encode_single_piece(p) for p in pieces]
    assert merged[::10] == [merge_piece(p, ranks) for p in pieces[::10]]


def test_ids_above_16_bits_use_wide_pair_keys(tok):
    """Ranks past 65,535 widen the keys of the pair table: the same merges as tiktoken."""
    ranks = {t: (r if r < 256 else r + 70_000) for t, r in tok.mergeable_ranks().items()}
    pairs = PairRanks(ranks)
    assert pairs._bits == 17
    wide = BPETokenizer(ranks, tok.pattern, {ENDOFTEXT: 100_000})
    wide_tiktoken = tiktoken.Encoding("wide", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
    pieces = new_pieces(tok, ranks, 7)
    merged = [np.frombuffer(p, np.uint32).tolist() for p in pairs.merge_pieces(pieces, np.dtype(np.uint32))]
    assert merged == [wide_tiktoken._encode_single_piece(p) for p in pieces]
    texts = all_languages_text()[::5]
    assert wide.encode_ordinary_batch(texts) == wide_tiktoken.encode_ordinary_batch(texts)


def test_a_failed_batch_leaves_no_placeholders(tok, tiktok):
    """New pieces are cached as empty placeholders until filled; a batch that fails part-way (here
    on a document that is no text) must not leave any behind to give empty ids later."""
    fresh = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
    text = " ".join(f"zq{i}vx" for i in range(40))
    with pytest.raises((TypeError, AttributeError)):
        fresh.encode_ordinary_batch([text, None])
    assert not any(ids == b"" for ids in dict.values(fresh._cache))
    assert fresh.encode_ordinary_batch([text]) == [tiktok.encode_ordinary(text)]


def test_pickled_tokenizer_keeps_its_cache(tok, tiktok):
    """Ray ships tokenizers pickled: the copy keeps the cached pieces, and its cache still inserts
    placeholders for new ones (a defaultdict)."""
    warm = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
    texts = all_languages_text()[:40]
    warm.encode_ordinary_batch(texts)
    copy = pickle.loads(pickle.dumps(warm))
    assert dict(copy._cache) == dict(warm._cache) and len(copy._cache) > len(copy._base_cache)
    more = all_languages_text()[40:80]
    assert copy.encode_ordinary_batch(more) == tiktok.encode_ordinary_batch(more)
    assert copy.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)


def test_long_pieces_use_the_heap_path_and_agree(tok, tiktok):
    rng = random.Random(2)
    alphabet = "abcdefghij" + "äöüß" + "日本"
    for n in (bpe_module.LONG_PIECE + 1, 3000):
        word = "".join(rng.choice(alphabet) for _ in range(n))
        ids = merge_piece(word.encode("utf-8"), tok.mergeable_ranks())
        assert ids == tiktok.encode_ordinary(word)
        assert tok.decode(ids) == word


def test_special_tokens(tok, tiktok):
    eot = tok.eot_id
    text = f"a{ENDOFTEXT}b"
    assert eot in tok.encode(text)
    assert eot not in tok.encode_ordinary(text)
    assert tok.encode(text, allowed_special=()) == tok.encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch([text, "x"]) == [tok.encode(text), tok.encode("x")]


def test_decode_handles_cut_multibyte_characters(tok, tiktok):
    ids = tok.encode_ordinary("日本語")
    assert tok.decode_bytes(ids) == "日本語".encode()
    for cut in range(1, len(ids)):
        assert tok.decode(ids[:cut]) == tiktok.decode(ids[:cut])
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([tok.vocab_size + 5])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode_ordinary(text)) == text
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), max_size=40))
def test_batch_equals_single(tok, texts):
    assert tok.encode_ordinary_batch(texts) == [tok.encode_ordinary(t) for t in texts]


def test_save_load_and_tiktoken_file(tok, tmp_path):
    from tiktoken.load import load_tiktoken_bpe

    save_tokenizer(tok, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.mergeable_ranks() == tok.mergeable_ranks()
    assert loaded.special_tokens == tok.special_tokens and loaded.pattern == tok.pattern
    assert fingerprint(loaded) == fingerprint(tok)
    assert load_tiktoken_bpe(str(tmp_path / "tok" / "tokenizer.tiktoken")) == tok.mergeable_ranks()
    config = json.loads((tmp_path / "tok" / "thresher.json").read_text())
    assert config["vocab_size"] == 3000 and config["eot_id"] == tok.eot_id and config["dtype"] == "uint16"
    # a tampered ranks file is refused rather than silently encoding differently
    path = tmp_path / "tok" / "tokenizer.tiktoken"
    lines = path.read_bytes().splitlines()
    lines[300], lines[301] = lines[301].split()[0] + b" 300", lines[300].split()[0] + b" 301"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(tmp_path / "tok")


def test_hf_tokenizer_json_gives_the_same_ids(tok, tmp_path):
    from tokenizers import Tokenizer

    save_tokenizer(tok, tmp_path / "tok")
    hf = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    texts = all_languages_text()[::3] + EDGE_CASES + random_byte_texts(100, seed=3)
    for text in texts:
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text), text[:40]
    assert hf.token_to_id(ENDOFTEXT) == tok.eot_id


def test_cache_stays_bounded_and_results_do_not_change(tok):
    small = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens, cache_size=200)
    base = len(small._cache)
    texts = all_languages_text()[:1500]
    out, resets = [], 0
    for i in range(0, len(texts), 10):
        before = len(small._cache)
        out += small.encode_ordinary_batch(texts[i : i + 10])
        assert len(small._cache) <= base + 200
        resets += len(small._cache) < before
    assert resets >= 5
    assert out == tok.encode_ordinary_batch(texts)


def test_a_full_cache_starts_again_from_the_vocabulary(tok, tiktok):
    gen = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens, cache_size=40)
    piece = " Zqxjvkw"
    filler = " ".join("qzv" + a + b for a in "abcdefgh" for b in "ijklmnop")
    gen.encode_ordinary(piece)
    assert dict.__contains__(gen._cache, piece)
    gen.encode_ordinary(filler)  # > 40 new pieces: the cache starts again
    assert dict(gen._cache) == gen._base_cache
    merged: list[bytes] = []
    encode_new = gen._encode_new
    gen._encode_new = lambda pieces: merged.extend(pieces) or encode_new(pieces)
    assert gen.encode_ordinary(piece) == tiktok.encode_ordinary(piece)
    assert merged == [piece.encode()] and dict.__contains__(gen._cache, piece)


def test_constructor_validation():
    ranks = {bytes([i]): i for i in range(256)}
    with pytest.raises(ValueError, match="single bytes"):
        BPETokenizer({k: v for k, v in ranks.items() if v != 65})
    with pytest.raises(ValueError, match="collide"):
        BPETokenizer(ranks, special_tokens={ENDOFTEXT: 3})
    plain = BPETokenizer(ranks, special_tokens=())
    with pytest.raises(ValueError, match="no <|endoftext|>"):
        _ = plain.eot_id
    assert plain.encode_ordinary("héllo") == list("héllo".encode())


def test_token_dtype():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    assert token_dtype(200_000) == np.uint32
    with pytest.raises(ValueError, match="positive"):
        token_dtype(0)


def test_document_encoder(tok, tmp_path):
    texts = sentences("de", 50) + ["lone \ud800 surrogate", f"quoted {ENDOFTEXT} inside", ""]
    encoder = DocumentEncoder(tok, batch_size=16)
    arrays = encoder.encode(texts)
    assert all(a.dtype == np.uint16 for a in arrays)
    assert [a.tolist() for a in arrays] == [tok.encode_ordinary(t) + [tok.eot_id] for t in texts]
    assert arrays[-2].tolist().count(tok.eot_id) == 1  # the quoted name stays text
    assert encoder.stats.documents == len(texts) and encoder.stats.tokens == sum(map(len, arrays))
    tokens, offsets = encoder.encode_flat(texts[:5])
    assert offsets[-1] == len(tokens)
    assert tokens[offsets[2] : offsets[3]].tolist() == arrays[2].tolist()
    save_tokenizer(tok, tmp_path / "tok")
    assert DocumentEncoder(tmp_path / "tok").encode(texts[:3])[1].tolist() == arrays[1].tolist()
    with pytest.raises(TypeError, match="document 1"):
        encoder.encode(["ok", None])


def test_warm_cache_matches_tiktoken(tok, tiktok):
    """Second pass: every piece now comes from the cache (packed ids, no merging)."""
    warm = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
    texts = all_languages_text()[::3] + EDGE_CASES + random_byte_texts(100, seed=5)
    first = warm.encode_ordinary_batch(texts)
    cached = len(warm._cache)
    assert warm.encode_ordinary_batch(texts) == first == tiktok.encode_ordinary_batch(texts)
    assert len(warm._cache) == cached  # nothing new on the second pass
    assert [warm.encode_ordinary(t) for t in texts[::11]] == [tiktok.encode_ordinary(t) for t in texts[::11]]


def test_repeated_new_pieces_in_one_batch(tok, tiktok):
    """A new piece several times in one text and across texts: each gap is filled in order."""
    rare = ["zqxjv", "Qwfpgj", "ßßßẞ", "ǅǆǄ", "ꙮꙮ", "ᚠᚢᚦ"]
    for words in (rare[:1], rare):
        texts = [" ".join(words * 3) + " plain text " + words[0], "no new pieces here", words[-1] * 4]
        fresh = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
        assert fresh.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)
    many = [" ".join(f"{w}{i}x{w}" for w in rare for i in range(8)) for _ in range(3)]
    long = "ab" * bpe_module.LONG_PIECE  # one piece for the heap among the batch's new pieces
    fresh = BPETokenizer(tok.mergeable_ranks(), tok.pattern, tok.special_tokens)
    assert fresh.encode_ordinary_batch([*many, long]) == tiktok.encode_ordinary_batch([*many, long])
    assert not dict.__contains__(fresh._cache, long)  # too long to be worth caching
    assert dict.__contains__(fresh._cache, fresh._pretokenizer.findall(many[0])[-1])


def test_arrays_match_lists_and_append_the_end_id(tok):
    texts = all_languages_text()[:50] + ["", "x"]
    lists = tok.encode_ordinary_batch(texts)
    arrays = tok.encode_ordinary_arrays(texts)
    assert all(a.dtype == tok.dtype for a in arrays)
    assert [a.tolist() for a in arrays] == lists
    ended = tok.encode_ordinary_arrays(texts, end_id=tok.eot_id)
    assert [a.tolist() for a in ended] == [ids + [tok.eot_id] for ids in lists]
    ended[0][0] = 7  # writable: callers may edit their arrays in place
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.encode_ordinary_arrays(["x"], end_id=tok.vocab_size)


def test_uint32_ids_are_packed_as_uint32(tok, tiktok):
    wide = BPETokenizer(tok.mergeable_ranks(), tok.pattern, {ENDOFTEXT: 70_000})
    assert wide.dtype == np.uint32
    texts = all_languages_text()[::9] + EDGE_CASES
    assert wide.encode_ordinary_batch(texts) == tiktok.encode_ordinary_batch(texts)
    a, b = tiktok.encode_ordinary("a"), tiktok.encode_ordinary("b")
    assert wide.encode(f"a{ENDOFTEXT}b") == a + [70_000] + b
    ended = wide.encode_ordinary_arrays(["héllo"], end_id=70_000)[0]
    assert ended.dtype == np.uint32 and ended.tolist() == tok.encode_ordinary("héllo") + [70_000]


def test_pattern_with_empty_matches_round_trips(tok):
    """A custom pattern may match the empty string: such pieces give no ids."""
    odd = BPETokenizer(tok.mergeable_ranks(), r"\p{L}*|[^\p{L}]", tok.special_tokens)
    words = [f"zq{a}{b}x, " * 2 for a in "abcdef" for b in "ghijkl"]  # enough for the batched path
    texts = ["a, b; c.", "日本語 テキスト!", "", "  "] * 10 + words
    assert "" in odd._pretokenizer.findall(texts[0])
    assert [odd.decode(ids) for ids in odd.encode_ordinary_batch(texts)] == texts
