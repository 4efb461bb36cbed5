"""The stage interface: documents in, documents out, counters.

A stage never raises on bad input. Each document it is given ends up in exactly one of three
places — kept, dropped with a reason, or counted as an error of some kind — and
:class:`StageStats` checks that the three add up.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar

from thresher.document import Document, Drop

logger = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """A stage's counters do not add up: documents were lost or invented."""


@dataclass
class StageStats:
    name: str
    docs_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    extra: Counter = field(default_factory=Counter)

    def record(self, drop: Drop | None) -> None:
        self.docs_in += 1
        if drop is None:
            self.kept += 1
        elif drop.kind == "error":
            self.errors[drop.reason] += 1
        else:
            self.dropped[drop.reason] += 1

    def merge(self, other: StageStats) -> None:
        self.docs_in += other.docs_in
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.errors.update(other.errors)
        self.extra.update(other.extra)
        self.seconds += other.seconds

    def check(self) -> None:
        accounted = self.kept + sum(self.dropped.values()) + sum(self.errors.values())
        if accounted != self.docs_in:
            raise AccountingError(
                f"stage {self.name!r}: {self.docs_in} documents in but kept {self.kept} + "
                f"dropped {sum(self.dropped.values())} + errors {sum(self.errors.values())} = {accounted}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "in": self.docs_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "errors": dict(sorted(self.errors.items())),
            "seconds": round(self.seconds, 3),
        }
        if self.extra:
            out["extra"] = dict(sorted(self.extra.items()))
        return out

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> StageStats:
        return cls(
            name=name,
            docs_in=d["in"],
            kept=d["kept"],
            dropped=Counter(d.get("dropped", {})),
            errors=Counter(d.get("errors", {})),
            seconds=d.get("seconds", 0.0),
            extra=Counter(d.get("extra", {})),
        )


class StageBase:
    """What every stage has, per-document (:class:`Stage`) or dataset (:class:`DatasetStage`):
    a ``name`` (as written in configs), ``Config`` (its typed configuration dataclass), its
    counters (``stats``), :meth:`preflight` and :meth:`close`.

    The runner builds every stage of a run once on the driver and calls :meth:`preflight` before
    any data moves, so a stage that cannot work stops the run with one line, not hours later.
    """

    name: ClassVar[str] = "stage"
    Config: ClassVar[type] = type(None)

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.default_config()
        self.stats = StageStats(self.name)

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config() if cls.Config is not type(None) else None

    def preflight(self) -> None:
        """Raise now, with a clear message, if the stage cannot work at all (a model file missing,
        a list unreadable, a dedup index that does not match). Read-only: it runs before the
        run has decided to write anything. Called once on the driver for every stage before any
        data moves; a per-document stage also calls it on each worker when it is built, so such
        problems never turn into one error per document."""

    def close(self) -> None:
        """Release resources (models, pools). Called once when a worker, or the driver's
        preflight, is done with the stage."""


class Stage(StageBase):
    """Base class of the per-document stages.

    Subclasses implement :meth:`process` (one document → the same document, possibly changed, or a
    :class:`Drop`) or, when batching pays (fastText, tokenizers), :meth:`process_batch`.
    """

    name: ClassVar[str] = "stage"
    batch_size: ClassVar[int] = 256

    def process(self, doc: Document) -> Document | Drop:
        raise NotImplementedError

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        return [self._safe_process(doc) for doc in docs]

    def _safe_process(self, doc: Document) -> Document | Drop:
        try:
            if type(self).process is Stage.process:  # a batch-only stage: a batch of one
                return self.process_batch([doc])[0]
            return self.process(doc)
        except Exception as exc:  # a bad document must never stop the run
            logger.warning("%s: error on %s (%s): %r", self.name, doc.id, doc.source, exc)
            return Drop(f"exception:{type(exc).__name__}", kind="error", detail=str(exc)[:500])

    def apply(self, docs: list[Document]) -> list[Document]:
        """Run the stage over a batch, in place: live documents are processed, documents dropped by
        an earlier stage pass through untouched. Returns the same list, in the same order."""
        live = [d for d in docs if d.drop is None]
        if not live:
            return docs
        start = time.perf_counter()
        try:
            results = self.process_batch(live)
        except Exception as exc:
            logger.warning("%s: batch failed, retrying document by document: %r", self.name, exc)
            results = [self._safe_process(d) for d in live]
        self.stats.seconds += time.perf_counter() - start
        for doc, result in zip(live, results, strict=True):
            if isinstance(result, Drop):
                result.stage = result.stage or self.name
                doc.mark_dropped(result)
                self.stats.record(result)
            else:
                self.stats.record(None)
        return docs

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Plain-Python use: yields the documents this stage keeps (and earlier drops, untouched)."""
        it = iter(docs)
        while batch := list(islice(it, self.batch_size)):
            yield from self.apply(batch)


class DatasetStage(StageBase):
    """Base class of the stages that must see the whole dataset before deciding (dedup).

    Such a stage does not rewrite documents: it returns *decisions*, one row per document to drop,
    with the columns of :data:`DECISION_SCHEMA`. The runner runs the per-document stages before it,
    materialises their output as shards, calls :meth:`run_ray` on those shards' documents, and then
    applies the decisions shard by shard (each shard only reads its own decisions), so no step
    needs every id in one process.

    A document is named by its place in the run, never by its id (ids are data: two documents
    may come with the same one): ``shard``, ``pos`` (its position in the shard) and ``row`` (its
    ordinal in the stage's whole input, in (shard, pos) order). Decisions carry (shard, pos);
    "first" means the smallest (shard, pos), on Ray and in-process alike.

    ``run_batches`` is the in-process equivalent of ``run_ray`` (``--local``); ``run_local``
    works on a list of documents (their positions in the list are their places), for tests and
    plain-Python use.
    """

    name: ClassVar[str] = "dataset_stage"

    def run_local(self, docs: list[Document]) -> list[Document]:
        """Mark the dropped documents in place (``doc.mark_dropped``) and count them in ``self.stats``."""
        raise NotImplementedError

    def run_batches(self, tables: list) -> list:
        """In-process ``run_ray``: Arrow tables with the columns ``run_ray``'s dataset has → tables
        of decisions (DECISION_SCHEMA)."""
        raise NotImplementedError

    def run_ray(self, ds: Any, workdir: str) -> Any:
        """``ds``: a ray.data.Dataset with at least columns ``id``, ``text``, ``shard``, ``pos``,
        ``row`` (and ``scores``, ``url``) of the live documents. ``workdir``: a scratch directory for
        this stage (persistent indexes, intermediate files). Returns a ray.data.Dataset with
        DECISION_SCHEMA."""
        raise NotImplementedError

    def extra_stats(self) -> dict[str, Any]:
        """Stage-specific figures for stats.json (clusters, histogram, ...), read after run_ray/run_local."""
        return {}


def _decision_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),  # for messages and checks; never the key
            pa.field("shard", pa.string()),
            pa.field("pos", pa.int64()),  # the document's position in its shard: what a decision applies to
            pa.field("kind", pa.string()),  # "dropped", "error", or "rename" (detail: the new id)
            pa.field("reason", pa.string()),  # e.g. "exact_duplicate", "minhash_duplicate"
            pa.field("value", pa.float64()),
            pa.field("detail", pa.string()),  # e.g. the id of the kept document
        ]
    )


DECISION_SCHEMA = _decision_schema()
