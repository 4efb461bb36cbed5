"""Thresher: web pages in, LLM pretraining data out.

The library is organised one subpackage per stage (``crawlers``, ``extract``, ``filters``,
``dedup``, ``tokenize``, ``shards``). Every stage is a plain Python object that can be used
without Ray; :mod:`thresher.run` runs them as a pipeline, on Ray Data or in-process.
"""

from thresher.document import Document, Drop
from thresher.stage import Stage, StageStats

__all__ = ["Document", "Drop", "Stage", "StageStats"]
__version__ = "0.1.0"
