"""Token shards (Parquet + manifest) and the streaming, exactly resumable loaders that read them.

* :mod:`thresher.shards.tokens` writes ``OUTPUT/tokens/*.parquet`` and ``manifest.json``.
* :mod:`thresher.shards.stream` plans epochs and packs documents into windows, framework-neutral.
* :mod:`thresher.shards.torch` and :mod:`thresher.shards.jax` wrap it for each framework.
* :mod:`thresher.shards.exports` exports a run for Megatron, MosaicML Streaming, JSONL readers,
  llm.c and nanoGPT.
"""
