"""A smaller copy of the bundled demo WARC, for tests about where and how a run happens rather
than about what the full demo produces."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_WARC = ROOT / "examples" / "demo.warc.gz"


def demo_warc_subset(path: Path, responses: int) -> Path:
    """The first ``responses`` response records of the demo WARC (real pages, several languages)."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    with open(DEMO_WARC, "rb") as src, open(path, "wb") as dst:
        writer, kept = WARCWriter(dst, gzip=True), 0
        for record in ArchiveIterator(src):
            if record.rec_type == "response" and kept < responses:
                writer.write_record(record)
                kept += 1
    return path
