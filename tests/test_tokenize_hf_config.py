"""A saved tokenizer directory loads with ``transformers.AutoTokenizer`` with its special tokens set
and gives our ids, on real sentences in many scripts."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import shared_path
from thresher.tokenize import save_tokenizer, train_tokenizer
from thresher.tokenize.files import HF_CONFIG_FILE, HF_SPECIAL_TOKENS_FILE

LANGUAGES = ("en", "de", "ru", "el", "ar", "hi", "zh", "ja", "ko", "th", "vi", "tr")


def sentences(lang: str, start: int, n: int) -> list[str]:
    path = shared_path("lid-lingua-testdata", "sentences", f"{lang}.txt.gz")
    return gzip.open(path, "rt", encoding="utf-8").read().splitlines()[start : start + n]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Our BPE trained on real sentences of twelve languages, saved; and held-out sentences."""
    corpus = [s for lang in LANGUAGES for s in sentences(lang, 0, 150)]
    held_out = [s for lang in LANGUAGES for s in sentences(lang, 150, 25)]
    tok = train_tokenizer(corpus, 1200)
    directory = save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer")
    return tok, directory, held_out


def test_auto_tokenizer_loads_with_eos_and_gives_our_ids(saved):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok, directory, held_out = saved
    hf = AutoTokenizer.from_pretrained(str(directory))
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert hf.eos_token == "<|endoftext|>" and hf.eos_token_id == tok.eot_id
    assert hf.bos_token is None and hf.pad_token is None
    assert len(hf) == tok.vocab_size
    for text in held_out:
        ids = hf(text)["input_ids"]  # the defaults a trainer uses: no BOS/EOS added
        assert ids == tok.encode_ordinary(text), text
        assert hf.decode(ids) == text
    document = held_out[0] + "<|endoftext|>" + held_out[-1]
    assert hf(document)["input_ids"] == tok.encode(document)
    assert hf.decode(tok.encode(document)) == document


def test_files_beside_tokenizer_json(saved):
    _, directory, _ = saved
    config = json.loads((directory / HF_CONFIG_FILE).read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["eos_token"] == "<|endoftext|>" and config["clean_up_tokenization_spaces"] is False
    assert json.loads((directory / HF_SPECIAL_TOKENS_FILE).read_text()) == {"eos_token": "<|endoftext|>"}
    assert sorted(p.name for p in directory.iterdir()) == [
        "special_tokens_map.json",
        "thresher.json",
        "tokenizer.json",
        "tokenizer.tiktoken",
        "tokenizer_config.json",
    ]
