"""Sources of documents: WARC files (ours or Common Crawl's) and already-extracted Parquet/JSONL."""

from thresher.readers.inputs import expand_inputs, input_format
from thresher.readers.records import read_documents

__all__ = ["expand_inputs", "input_format", "read_documents"]
