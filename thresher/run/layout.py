"""Where a run keeps everything: :class:`RunLayout` names every path a run reads or writes.

No other module spells out a run's paths, so the layout of an output directory can be read in
one place (the README's Outputs table is this file), and the file system under it can change in
one place: every path is a :class:`pathlib.PurePath` under ``root``, and the layout's ``store``
(:class:`thresher.io.Store`: a local directory, ``s3://bucket/prefix``, any fsspec URI) is where
they live. The engine reads and writes only through the layout's I/O methods (:meth:`RunLayout.write_json`,
:meth:`RunLayout.exists`, ...), which turn a path into the store's key, so the same code writes a
local directory (temporary + rename, as before) and an object store (one PUT per file, no rename).
On an object store ``root`` is the relative ``PurePosixPath(".")``: a path there is a key.

Everything lives under the output directory, so on a cluster every node finds it on the storage
they share::

    OUTPUT/documents/SHARD.parquet           the kept documents of the last phase
    OUTPUT/dropped/SHARD[.phaseN].parquet    one row per removed document, per phase
    OUTPUT/stats.json, report.html           the run's figures and its report
    OUTPUT/tokens/, tokenizer/               the tokenize step's output
    OUTPUT/exports/FORMAT/                   the export step's output (megatron, mds, jsonl, ...)
    OUTPUT/_progress/run.json                what the run is (inputs, config): --resume checks it
    OUTPUT/_progress/phaseN.done             phase N finished
    OUTPUT/_progress/phaseN/SHARD.json       a compacted shard and its counters
    OUTPUT/_progress/phaseN-files/FILE.json  the shards of an input file read to its end
    OUTPUT/_progress/extra-LABEL.json        a dataset stage's own figures
    OUTPUT/_progress/STEP.done               a run step (tokenize) finished, with its figures
    OUTPUT/_work/partsN/SHARD/FIRST-ROWSofTOTAL.parquet   the pieces of a shard in flight
    OUTPUT/_work/partsN/SHARD.claim                       the shard is being compacted
    OUTPUT/_work/phaseN/documents/SHARD.parquet           an earlier phase's documents
    OUTPUT/_work/decisions-LABEL/SHARD.parquet            a dataset stage's decisions
    OUTPUT/_work/stage-LABEL/                             a dataset stage's scratch space

A shard is named ``FILE-CHUNK`` (:func:`shard_name`): the input file's index in the sorted input
list and the chunk of ``input.docs_per_shard`` documents within it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

from thresher.io import Store

if TYPE_CHECKING:
    import pyarrow as pa

DOCUMENTS = "documents"
DROPPED = "dropped"
TOKENS = "tokens"
TOKENIZER = "tokenizer"
EXPORTS = "exports"
STATS = "stats.json"
REPORT = "report.html"
PROGRESS = "_progress"
WORK = "_work"
PARQUET = ".parquet"


def shard_name(file_index: int, chunk: int) -> str:
    return f"{file_index:05d}-{chunk:05d}"


def file_prefix(file_index: int) -> str:
    """What the names of an input file's shards start with."""
    return f"{file_index:05d}-"


def part_name(first: int, rows: int, total: int) -> str:
    """A part names the rows it holds, so compaction knows from the names alone when a shard is whole."""
    return f"{first:07d}-{rows}of{total}{PARQUET}"


def part_rows(name: str) -> tuple[int, int]:
    """(rows in the part, rows of its shard) from a :func:`part_name`."""
    rows, _, total = name.split("-", 1)[1].removesuffix(PARQUET).partition("of")
    return int(rows), int(total)


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run whose output directory is ``root`` (absolute on a local disk, ``.``
    on an object store) in ``store``. Picklable: the store's client is made again in a worker."""

    root: PurePath
    store: Store = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.store is None:
            object.__setattr__(self, "store", Store.from_uri(Path(self.root)))

    @classmethod
    def at(cls, output: str | Path | Store, storage: Any = None) -> RunLayout:
        """The layout of an output given as a local path (relative to where the command runs,
        like any CLI's), a URI (``s3://bucket/prefix``) or a :class:`Store`; ``storage`` is the
        config's :class:`~thresher.io.StorageConfig`."""
        store = (
            output
            if isinstance(output, Store)
            else Store.from_uri(output if "://" in str(output) else Path(output).absolute(), storage)
        )
        if store.is_local:
            root = Path(store.root).absolute()
            return cls(root, Store.from_uri(root, store.config))
        return cls(PurePosixPath("."), store)

    @property
    def is_local(self) -> bool:
        return self.store.is_local

    @property
    def uri(self) -> str:
        """The output as a user names it: a local path or ``scheme://bucket/prefix``."""
        return self.store.uri

    # ------------------------------------------------------------- I/O on the store

    def key(self, path: PurePath | str) -> str:
        """``path`` (one of this layout's) as a key relative to the store's root."""
        path = PurePath(path)
        if self.is_local and path.is_absolute():
            path = Path(path).relative_to(self.root)
        return path.as_posix().removeprefix("./").strip("/") if str(path) != "." else ""

    def path_of(self, key: str) -> PurePath:
        return self.root / key if key else self.root

    def uri_of(self, path: PurePath | str) -> str:
        """What a message calls ``path``: a local path or a URI."""
        return self.store.uri_of(self.key(path))

    def exists(self, path: PurePath | str) -> bool:
        return self.store.exists(self.key(path))

    def read_json(self, path: PurePath | str) -> Any:
        return self.store.read_json(self.key(path))

    def write_json(self, path: PurePath | str, obj: Any, **json_kwargs: Any) -> None:
        self.store.write_json(self.key(path), obj, **json_kwargs)

    def write_parquet(self, path: PurePath | str, table: pa.Table, compression: str | None = "zstd") -> None:
        self.store.write_parquet(self.key(path), table, compression=compression)

    def read_table(self, path: PurePath | str, columns: list[str] | None = None) -> pa.Table:
        """A Parquet file of the run (read whole on an object store, which is retried as a whole)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.read_table(self.path_of(self.key(path)), columns=columns)
        data = self.store.read_bytes(self.key(path))
        return pq.read_table(pa.BufferReader(data), columns=columns)

    def parquet_rows(self, path: PurePath | str) -> int:
        """Rows of a Parquet file of the run, from its footer."""
        import pyarrow.parquet as pq

        if self.is_local:
            return pq.ParquetFile(self.path_of(self.key(path))).metadata.num_rows
        with self.store.open_input(self.key(path)) as f:
            return pq.ParquetFile(f).metadata.num_rows

    def rm(self, path: PurePath | str, *, recursive: bool = False) -> None:
        self.store.rm(self.key(path), recursive=recursive)

    def names(self, directory: PurePath | str) -> list[str]:
        """Names of the entries directly below ``directory``, sorted ([] when it is not there)."""
        try:
            return self.store.ls(self.key(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def files(self, directory: PurePath | str, suffix: str = "") -> list[PurePath]:
        """The files directly below ``directory`` whose names end with ``suffix``, sorted."""
        base = self.key(directory)
        found = [k for k in self.store.find(base) if "/" not in k[len(base) :].strip("/")]
        return sorted(self.path_of(k) for k in found if k.endswith(suffix))

    def makedirs(self, path: PurePath | str) -> None:
        self.store.makedirs(self.key(path))

    # ------------------------------------------------------------- the dataset

    @property
    def documents_dir(self) -> PurePath:
        return self.root / DOCUMENTS

    def document_files(self) -> list[PurePath]:
        return self.files(self.documents_dir, PARQUET)

    @property
    def dropped_dir(self) -> PurePath:
        return self.root / DROPPED

    @property
    def stats(self) -> PurePath:
        return self.root / STATS

    @property
    def report(self) -> PurePath:
        return self.root / REPORT

    @property
    def tokens_dir(self) -> PurePath:
        return self.root / TOKENS

    @property
    def tokens_manifest(self) -> PurePath:
        return self.tokens_dir / "manifest.json"

    @property
    def tokenizer_dir(self) -> PurePath:
        return self.root / TOKENIZER

    def export_dir(self, fmt: str) -> PurePath:
        return self.root / EXPORTS / fmt

    # ------------------------------------------------------------- progress records (--resume)

    @property
    def progress(self) -> PurePath:
        return self.root / PROGRESS

    @property
    def run_record(self) -> PurePath:
        """The run's fingerprint (inputs and config)."""
        return self.progress / "run.json"

    def phase_done(self, phase: int) -> PurePath:
        return self.progress / f"phase{phase}.done"

    def step_done(self, step: str) -> PurePath:
        return self.progress / f"{step}.done"

    def stage_extra(self, label: str) -> PurePath:
        return self.progress / f"extra-{label}.json"

    # ------------------------------------------------------------- work in flight

    @property
    def work(self) -> PurePath:
        return self.root / WORK

    def decisions_dir(self, label: str) -> PurePath:
        return self.work / f"decisions-{label}"

    def decisions(self, label: str, shard: str) -> PurePath:
        """A dataset stage's decisions for one shard of its input."""
        return self.decisions_dir(label) / f"{shard}{PARQUET}"

    def stage_work(self, label: str) -> PurePath:
        """Scratch space of a dataset stage (its intermediate files)."""
        return self.work / f"stage-{label}"

    def phase(self, index: int, *, last: bool, write_dropped: bool, compression: str = "zstd") -> PhaseLayout:
        return PhaseLayout(self, index, last, write_dropped, compression)


@dataclass(frozen=True)
class PhaseLayout:
    """The paths of one phase. Small and picklable: Ray ships it to the workers that write parts."""

    run: RunLayout
    index: int
    last: bool
    write_dropped: bool
    compression: str = "zstd"
    """Codec of the documents and dropped files (``output.compression``)."""

    @property
    def out(self) -> PurePath:
        """Where the phase's documents go: the dataset for the last phase, the work area before."""
        return self.run.root if self.last else self.run.work / f"phase{self.index}"

    def documents(self, shard: str) -> PurePath:
        return self.out / DOCUMENTS / f"{shard}{PARQUET}"

    def document_files(self) -> list[PurePath]:
        return self.run.files(self.out / DOCUMENTS, PARQUET)

    def dropped(self, shard: str) -> PurePath | None:
        if not self.write_dropped:
            return None
        suffix = "" if self.index == 0 else f".phase{self.index}"
        return self.run.dropped_dir / f"{shard}{suffix}{PARQUET}"

    @property
    def parts(self) -> PurePath:
        return self.run.work / f"parts{self.index}"

    def shard_parts(self, shard: str) -> PurePath:
        return self.parts / shard

    def part(self, shard: str, first: int, rows: int, total: int) -> PurePath:
        return self.shard_parts(shard) / part_name(first, rows, total)

    def claim(self, shard: str) -> PurePath:
        """Created by the one worker that compacts the shard (kept until the phase is redone)."""
        return self.parts / f"{shard}.claim"

    @property
    def shard_records(self) -> PurePath:
        return self.run.progress / f"phase{self.index}"

    def shard_record(self, shard: str) -> PurePath:
        """A compacted shard's counters: its completion record."""
        return self.shard_records / f"{shard}.json"

    @property
    def file_records(self) -> PurePath:
        return self.run.progress / f"phase{self.index}-files"

    def file_record(self, file_index: int) -> PurePath:
        """The shards of an input file read to its end."""
        return self.file_records / f"{file_index:05d}.json"

    def make_dirs(self) -> None:
        for d in (self.parts, self.out / DOCUMENTS, self.shard_records, self.file_records):
            self.run.makedirs(d)
        if self.write_dropped:
            self.run.makedirs(self.run.dropped_dir)

    def clear(self) -> None:
        """Forget the phase's progress (a phase after a dataset stage is redone whole)."""
        for d in (self.shard_records, self.parts, self.file_records):
            self.run.rm(d, recursive=True)
