"""Our own byte-level BPE: trained where the corpus is (Ray), tiktoken-exact, fast in Python.

``BPETokenizer`` (bpe.py) encodes and decodes; ``train_tokenizer`` / ``train_from_files``
(train.py) train one; ``save_tokenizer`` / ``load_tokenizer`` (files.py) write and read a
tokenizer directory; ``DocumentEncoder`` (encoder.py) turns documents into token arrays; step.py
is a run's tokenize step (``tokenize:`` in a config, ``thresher tokenize``); cli.py holds the
``thresher tokenize`` and ``thresher tokenizer`` commands.

Imports go one way: bpe.py imports no other module of this package but pretokenize.py (and
batchmerge.py when it first merges); the file formats, training, the encoder and the step import
it. This file does not import step.py, which imports the token-shard format (thresher.shards),
which imports ``token_dtype`` from bpe.py.
"""

from thresher.tokenize.bpe import BPETokenizer, token_dtype
from thresher.tokenize.files import fingerprint, load_tokenizer, save_tokenizer
from thresher.tokenize.pretokenize import CL100K_PATTERN, ENDOFTEXT
from thresher.tokenize.train import train_from_files, train_tokenizer

__all__ = [
    "BPETokenizer",
    "CL100K_PATTERN",
    "ENDOFTEXT",
    "fingerprint",
    "load_tokenizer",
    "save_tokenizer",
    "token_dtype",
    "train_from_files",
    "train_tokenizer",
]
