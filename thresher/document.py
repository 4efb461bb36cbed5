"""The document record that flows between stages, and its Arrow/Parquet schema.

A document that a stage drops keeps flowing (without its text) so that every input can be
accounted for at the end of a run: ``in == kept + dropped + errors`` for every stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

DropKind = Literal["dropped", "error"]


@dataclass(slots=True)
class Drop:
    """Why a stage removed a document. ``kind='error'`` marks failures (corrupt input,
    timeouts, undecodable bytes) as opposed to deliberate filtering decisions."""

    reason: str
    kind: DropKind = "dropped"
    value: float | None = None
    detail: str | None = None
    stage: str | None = None


@dataclass(slots=True)
class Document:
    id: str
    text: str = ""
    url: str | None = None
    warc_date: str | None = None
    language: str | None = None
    language_score: float | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    # Raw HTTP payload and its declared content type; only present before extraction.
    html: bytes | None = None
    content_type: str | None = None
    drop: Drop | None = None

    @property
    def dropped(self) -> bool:
        return self.drop is not None

    def mark_dropped(self, drop: Drop) -> None:
        """Record the drop and release the payload: dropped documents travel as tombstones."""
        self.drop = drop
        self.text = ""
        self.html = None


DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("warc_date", pa.string()),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("source", pa.string()),
        pa.field("metadata", pa.string()),  # JSON object: title, author, date, hostname, ...
        pa.field("scores", pa.string()),  # JSON object: per-filter scores added by stages
    ]
)
"""Schema of ``OUTPUT/documents/*.parquet``."""

DROPPED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("source", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("detail", pa.string()),
    ]
)
"""Schema of ``OUTPUT/dropped/*.parquet``: one row per document a stage removed."""

# In-flight blocks carry the document columns plus the raw payload and the drop record.
FLIGHT_SCHEMA = pa.schema(
    list(DOCUMENT_SCHEMA)
    + [
        pa.field("html", pa.large_binary()),
        pa.field("content_type", pa.string()),
        pa.field("drop_stage", pa.string()),
        pa.field("drop_kind", pa.string()),
        pa.field("drop_reason", pa.string()),
        pa.field("drop_value", pa.float64()),
        pa.field("drop_detail", pa.string()),
        pa.field("shard", pa.string()),
    ]
)


def _dumps(value: dict) -> str | None:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else None


def _loads(value: str | None) -> dict:
    return json.loads(value) if value else {}


def documents_to_table(docs: list[Document], shard: str = "") -> pa.Table:
    """Documents (kept and dropped) → an in-flight Arrow table."""
    cols: dict[str, list] = {f.name: [] for f in FLIGHT_SCHEMA}
    for d in docs:
        cols["id"].append(d.id)
        cols["url"].append(d.url)
        cols["warc_date"].append(d.warc_date)
        cols["text"].append(d.text)
        cols["language"].append(d.language)
        cols["language_score"].append(d.language_score)
        cols["source"].append(d.source)
        cols["metadata"].append(_dumps(d.metadata))
        cols["scores"].append(_dumps(d.scores))
        cols["html"].append(d.html)
        cols["content_type"].append(d.content_type)
        drop = d.drop
        cols["drop_stage"].append(drop.stage if drop else None)
        cols["drop_kind"].append(drop.kind if drop else None)
        cols["drop_reason"].append(drop.reason if drop else None)
        cols["drop_value"].append(drop.value if drop else None)
        cols["drop_detail"].append(drop.detail if drop else None)
        cols["shard"].append(shard)
    return pa.table(cols, schema=FLIGHT_SCHEMA)


def table_to_documents(table: pa.Table) -> list[Document]:
    """In-flight Arrow table (or a documents Parquet table) → documents."""
    names = set(table.column_names)
    rows = table.to_pylist()
    docs = []
    for r in rows:
        drop = None
        if r.get("drop_reason"):
            drop = Drop(
                reason=r["drop_reason"],
                kind=r.get("drop_kind") or "dropped",
                value=r.get("drop_value"),
                detail=r.get("drop_detail"),
                stage=r.get("drop_stage"),
            )
        docs.append(
            Document(
                id=r["id"],
                text=r.get("text") or "",
                url=r.get("url"),
                warc_date=r.get("warc_date"),
                language=r.get("language"),
                language_score=r.get("language_score"),
                source=r.get("source") or "",
                metadata=_loads(r.get("metadata")) if "metadata" in names else {},
                scores=_loads(r.get("scores")) if "scores" in names else {},
                html=r.get("html"),
                content_type=r.get("content_type"),
                drop=drop,
            )
        )
    return docs


def kept_table(docs: list[Document]) -> pa.Table:
    """The kept documents as a table with :data:`DOCUMENT_SCHEMA` (what lands in Parquet)."""
    kept = [d for d in docs if d.drop is None]
    return pa.table(
        {
            "id": [d.id for d in kept],
            "url": [d.url for d in kept],
            "warc_date": [d.warc_date for d in kept],
            "text": [d.text for d in kept],
            "language": [d.language for d in kept],
            "language_score": [d.language_score for d in kept],
            "source": [d.source for d in kept],
            "metadata": [_dumps(d.metadata) for d in kept],
            "scores": [_dumps(d.scores) for d in kept],
        },
        schema=DOCUMENT_SCHEMA,
    )


def dropped_table(docs: list[Document]) -> pa.Table:
    dropped = [d for d in docs if d.drop is not None]
    return pa.table(
        {
            "id": [d.id for d in dropped],
            "url": [d.url for d in dropped],
            "source": [d.source for d in dropped],
            "stage": [d.drop.stage for d in dropped],
            "kind": [d.drop.kind for d in dropped],
            "reason": [d.drop.reason for d in dropped],
            "value": [d.drop.value for d in dropped],
            "detail": [d.drop.detail for d in dropped],
        },
        schema=DROPPED_SCHEMA,
    )
