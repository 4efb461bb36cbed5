"""A tokenizer directory on disk, readable by us, by tiktoken and by HF ``tokenizers``::

    DIR/tokenizer.tiktoken   one "base64(token bytes) id" line per ordinary token
                             (tiktoken.load.load_tiktoken_bpe reads it)
    DIR/thresher.json        format, version, split pattern, special tokens, content hash
    DIR/tokenizer.json       the same tokenizer as a HF ``tokenizers`` file (see hf.py)
    DIR/tokenizer_config.json, special_tokens_map.json
                             what ``transformers.AutoTokenizer.from_pretrained(DIR)`` needs to set
                             ``eos_token`` = ``<|endoftext|>`` (see hf.py)

Files are written under temporary names and renamed (:mod:`thresher.io`), so a directory never holds a half-written
tokenizer under the final names.

These are free functions over :class:`BPETokenizer` rather than its methods: the file formats
(this module, hf.py) depend on the tokenizer, never the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from thresher.io import Store
from thresher.tokenize.bpe import DEFAULT_CACHE_SIZE, BPETokenizer
from thresher.tokenize.hf import special_tokens_map, to_hf_json, tokenizer_config

FORMAT = "thresher.bpe"
FORMAT_VERSION = 1
RANKS_FILE = "tokenizer.tiktoken"
CONFIG_FILE = "thresher.json"
HF_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"


def fingerprint(tok: BPETokenizer) -> str:
    """sha256 over pattern, special tokens and ranks: equal for tokenizers that encode alike."""
    h = hashlib.sha256()
    h.update(tok.pattern.encode("utf-8"))
    h.update(json.dumps(sorted(tok.special_tokens.items())).encode("utf-8"))
    for token, rank in sorted(tok.mergeable_ranks().items(), key=lambda kv: kv[1]):
        h.update(b"%d %s\n" % (rank, base64.b64encode(token)))
    return h.hexdigest()


def save_tokenizer(tok: BPETokenizer, directory: str | os.PathLike) -> Path | str:
    """Write ``tokenizer.tiktoken``, the HF files (``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) and ``thresher.json`` into ``directory``."""
    out = Store.from_uri(directory)  # a local directory or a URI (s3://...): each file published atomically
    out.makedirs()
    ranks = sorted(tok.mergeable_ranks().items(), key=lambda kv: kv[1])
    out.write_bytes(RANKS_FILE, b"".join(b"%s %d\n" % (base64.b64encode(t), r) for t, r in ranks))
    out.write_bytes(HF_FILE, json.dumps(to_hf_json(tok), ensure_ascii=False).encode("utf-8"))
    out.write_bytes(
        HF_CONFIG_FILE, json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False).encode("utf-8")
    )
    out.write_bytes(HF_SPECIAL_TOKENS_FILE, json.dumps(special_tokens_map(tok), indent=2).encode("utf-8"))
    config = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "pattern": tok.pattern,
        "special_tokens": tok.special_tokens,
        "n_ranks": tok.n_ranks,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.special_tokens.get("<|endoftext|>"),
        "dtype": tok.dtype.name,
        "sha256": fingerprint(tok),
    }
    out.write_bytes(CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8"))
    return out.local_path() or out.uri


def load_tokenizer(directory: str | os.PathLike, cache_size: int = DEFAULT_CACHE_SIZE) -> BPETokenizer:
    """The tokenizer saved in ``directory``; ``ValueError`` when its files disagree with the hash
    recorded in ``thresher.json``, ``FileNotFoundError`` when it is not a tokenizer directory."""
    src = Store.from_uri(directory)  # a local directory or a URI
    config_path = src.uri_of(CONFIG_FILE)
    try:
        config = json.loads(src.read_bytes(CONFIG_FILE).decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{src.uri}: not a tokenizer directory (no {CONFIG_FILE})") from None
    if config.get("format") != FORMAT or config.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: format {config.get('format')!r} v{config.get('version')} is not readable here"
        )
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(src.read_bytes(RANKS_FILE).splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as exc:
            raise ValueError(f"{src.uri_of(RANKS_FILE)}:{n}: malformed line ({exc})") from None
    tok = BPETokenizer(ranks, config["pattern"], config["special_tokens"], cache_size=cache_size)
    if config.get("sha256") and fingerprint(tok) != config["sha256"]:
        raise ValueError(f"{src.uri}: content does not match the hash recorded in {CONFIG_FILE}")
    return tok
