"""Deduplication: exact (normalised text, optionally URL) and MinHash LSH near-duplicates,
clustered with bounded memory per process on Ray, with a persistent index across runs."""

from thresher.dedup.stages import ExactDedup, ExactDedupConfig, MinHashDedup, MinHashDedupConfig

__all__ = ["ExactDedup", "ExactDedupConfig", "MinHashDedup", "MinHashDedupConfig"]
