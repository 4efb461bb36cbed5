"""HTML → text extraction."""

from thresher.extract.stage import ExtractConfig, ExtractStage, extract_text

__all__ = ["ExtractConfig", "ExtractStage", "extract_text"]
