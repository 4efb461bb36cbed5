"""Where a run keeps everything: :class:`RunLayout` names every path a run reads or writes.

No other module spells out a run's paths, so the layout of an output directory can be read in
one place (the README's Outputs table is this file), and the file system under it can change in
one place: today every path is a :class:`pathlib.Path` under ``root``; the object-storage issue
(#18) puts a filesystem object next to ``root`` and keeps these methods.

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

from dataclasses import dataclass
from pathlib import Path

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
    """The paths of the run whose output directory is ``root`` (absolute)."""

    root: Path

    @classmethod
    def at(cls, output: str | Path) -> RunLayout:
        # Relative output paths are relative to where the command runs, like any CLI's.
        return cls(Path(output).absolute())

    # ------------------------------------------------------------- the dataset

    @property
    def documents_dir(self) -> Path:
        return self.root / DOCUMENTS

    def document_files(self) -> list[Path]:
        return sorted(self.documents_dir.glob("*" + PARQUET))

    @property
    def dropped_dir(self) -> Path:
        return self.root / DROPPED

    @property
    def stats(self) -> Path:
        return self.root / STATS

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def tokens_dir(self) -> Path:
        return self.root / TOKENS

    @property
    def tokens_manifest(self) -> Path:
        return self.tokens_dir / "manifest.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER

    def export_dir(self, fmt: str) -> Path:
        return self.root / EXPORTS / fmt

    # ------------------------------------------------------------- progress records (--resume)

    @property
    def progress(self) -> Path:
        return self.root / PROGRESS

    @property
    def run_record(self) -> Path:
        """The run's fingerprint (inputs and config)."""
        return self.progress / "run.json"

    def phase_done(self, phase: int) -> Path:
        return self.progress / f"phase{phase}.done"

    def step_done(self, step: str) -> Path:
        return self.progress / f"{step}.done"

    def stage_extra(self, label: str) -> Path:
        return self.progress / f"extra-{label}.json"

    # ------------------------------------------------------------- work in flight

    @property
    def work(self) -> Path:
        return self.root / WORK

    def decisions_dir(self, label: str) -> Path:
        return self.work / f"decisions-{label}"

    def decisions(self, label: str, shard: str) -> Path:
        """A dataset stage's decisions for one shard of its input."""
        return self.decisions_dir(label) / f"{shard}{PARQUET}"

    def stage_work(self, label: str) -> Path:
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
    def out(self) -> Path:
        """Where the phase's documents go: the dataset for the last phase, the work area before."""
        return self.run.root if self.last else self.run.work / f"phase{self.index}"

    def documents(self, shard: str) -> Path:
        return self.out / DOCUMENTS / f"{shard}{PARQUET}"

    def document_files(self) -> list[Path]:
        return sorted((self.out / DOCUMENTS).glob("*" + PARQUET))

    def dropped(self, shard: str) -> Path | None:
        if not self.write_dropped:
            return None
        suffix = "" if self.index == 0 else f".phase{self.index}"
        return self.run.dropped_dir / f"{shard}{suffix}{PARQUET}"

    @property
    def parts(self) -> Path:
        return self.run.work / f"parts{self.index}"

    def shard_parts(self, shard: str) -> Path:
        return self.parts / shard

    def part(self, shard: str, first: int, rows: int, total: int) -> Path:
        return self.shard_parts(shard) / part_name(first, rows, total)

    def claim(self, shard: str) -> Path:
        """Created by the one worker that compacts the shard (kept until the phase is redone)."""
        return self.parts / f"{shard}.claim"

    @property
    def shard_records(self) -> Path:
        return self.run.progress / f"phase{self.index}"

    def shard_record(self, shard: str) -> Path:
        """A compacted shard's counters: its completion record."""
        return self.shard_records / f"{shard}.json"

    @property
    def file_records(self) -> Path:
        return self.run.progress / f"phase{self.index}-files"

    def file_record(self, file_index: int) -> Path:
        """The shards of an input file read to its end."""
        return self.file_records / f"{file_index:05d}.json"

    def make_dirs(self) -> None:
        for d in (self.parts, self.out / DOCUMENTS, self.shard_records, self.file_records):
            d.mkdir(parents=True, exist_ok=True)
        if self.write_dropped:
            self.run.dropped_dir.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Forget the phase's progress (a phase after a dataset stage is redone whole)."""
        import shutil

        for d in (self.shard_records, self.parts, self.file_records):
            shutil.rmtree(d, ignore_errors=True)
