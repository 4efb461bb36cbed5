"""Our own byte-level BPE: trained where the corpus is (Ray), tiktoken-exact, fast in Python.

``BPETokenizer`` encodes and decodes; ``train_tokenizer`` / ``train_from_files`` train one;
``DocumentEncoder`` (stage.py) turns documents into token arrays for the pipeline.
"""

from thresher.tokenize.bpe import BPETokenizer, token_dtype
from thresher.tokenize.pretokenize import CL100K_PATTERN, ENDOFTEXT
from thresher.tokenize.train import train_from_files, train_tokenizer

__all__ = [
    "BPETokenizer",
    "CL100K_PATTERN",
    "ENDOFTEXT",
    "token_dtype",
    "train_from_files",
    "train_tokenizer",
]
