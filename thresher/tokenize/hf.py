"""Export to a HF ``tokenizers`` ``tokenizer.json`` that encodes exactly as we do.

HF's BPE applies *merges* (pair → rank) where tiktoken, and we, look up the rank of the
concatenation of any two adjacent parts. The two agree when the merge list holds, for every token,
each split of it into two tokens, ordered by the rank of the token they make: the lowest-ranked
adjacent pair is then the same pair either way. ``ignore_merges`` makes HF emit a pre-token that is
itself a token directly, as tiktoken does. Token strings use GPT-2's byte → printable-character
map (``ByteLevel``), and the split pattern is HF's ``Split`` pre-tokenizer with the same regex.

``transformers`` needs two more files to load the directory with its special tokens set
(:func:`tokenizer_config`, :func:`special_tokens_map`): without them ``AutoTokenizer`` loads the
vocabulary but ``eos_token`` is ``None``, so a trainer cannot end or pack documents.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from thresher.tokenize.bpe import BPETokenizer


@cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte → character map: printable Latin-1 bytes map to themselves, the
    others to code points from 256 up, so every token is a printable string without spaces."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_POSSESSIVE_INTERVAL = re.compile(
    r"(\\[pP]\{[^}]*\}|\\[pP]\w|\\.|\[(?:\\.|[^\]\\])*\]|[^\\()\[\]{}|])(\{\d+(?:,\d*)?\})\+"
)


def hf_pattern(pattern: str) -> str:
    """The split pattern in Oniguruma's dialect (HF's regex engine). Oniguruma reads ``X{1,3}+`` as
    "``X{1,3}``, one or more times" rather than as a possessive interval, so those become atomic
    groups ``(?>X{1,3})``, which mean what the possessive form means elsewhere."""
    return _POSSESSIVE_INTERVAL.sub(r"(?>\1\2)", pattern)


def _as_text(token: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in token)


def hf_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of every token into two tokens, by the rank of the token, then split point."""
    merges = []
    for token in sorted(ranks, key=ranks.__getitem__):
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((left, right))
    return merges


EOS = "<|endoftext|>"


def _added_token(name: str) -> dict[str, Any]:
    """A special token as HF files describe it: matched as is, never split or normalized."""
    return {
        "content": name,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def special_tokens_map(tok: BPETokenizer) -> dict[str, Any]:
    """``special_tokens_map.json``: ``<|endoftext|>`` is the end-of-sequence token (as in GPT-2 and
    tiktoken's encodings); any other special token is an additional one."""
    out: dict[str, Any] = {}
    if EOS in tok.special_tokens:
        out["eos_token"] = EOS
    others = sorted((name for name in tok.special_tokens if name != EOS), key=tok.special_tokens.__getitem__)
    if others:
        out["additional_special_tokens"] = others
    return out


def tokenizer_config(tok: BPETokenizer) -> dict[str, Any]:
    """``tokenizer_config.json`` for ``transformers.AutoTokenizer``: the generic fast tokenizer over
    ``tokenizer.json``, the special tokens, and nothing that changes ids or text: no BOS/EOS added
    by ``__call__`` (documents get ``<|endoftext|>`` where we append it), no clean-up of spaces when
    decoding (a byte-level BPE decodes to the exact text)."""
    added = {
        str(i): _added_token(name) for name, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        **special_tokens_map(tok),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 30,
    }


def to_hf_json(tok: BPETokenizer) -> dict[str, Any]:
    ranks = tok.mergeable_ranks()
    vocab = {_as_text(token): rank for token, rank in ranks.items()}
    merges = [[_as_text(a), _as_text(b)] for a, b in hf_merges(ranks)]
    added = [
        {"id": i, **_added_token(name)}
        for name, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": hf_pattern(tok.pattern)},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,
        },
    }
