"""What a run reports: :class:`RunResult` (the summary table, ``stats.json``) and the accounting
checks every run passes before it says it is done."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.stage import AccountingError, StageStats


@dataclass
class RunResult:
    output: Path
    stages: dict[str, StageStats] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    shards: int = 0
    documents: int = 0
    seconds: float = 0.0
    resumed_files: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"{'stage':<22}{'in':>9}{'kept':>9}{'dropped':>9}{'errors':>8}  top reasons"]
        for label in self.order:
            s = self.stages[label]
            reasons = (s.dropped + s.errors).most_common(3)
            top = ", ".join(f"{r} {n}" for r, n in reasons)
            lines.append(
                f"{label:<22}{s.docs_in:>9}{s.kept:>9}{sum(s.dropped.values()):>9}{sum(s.errors.values()):>8}  {top}"
            )
        return lines

    def add_shard_records(self, records: list[dict]) -> None:
        """Sum the counters of compacted shards (their completion records) into the stages'."""
        for record in records:
            for label, d in record["stats"].items():
                self.stages.setdefault(label, StageStats(label)).merge(StageStats.from_dict(label, d))
        for label in self.order:
            self.stages.setdefault(label, StageStats(label))
        for label, extra in self.extra.items():
            if label in self.stages and not self.stages[label].seconds:
                self.stages[label].seconds = extra.get("seconds", 0.0)

    def stats_json(self, name: str, inputs: list[str], config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "output": str(self.output),
            "inputs": inputs,
            "shards": self.shards,
            "documents": self.documents,
            "seconds": round(self.seconds, 3),
            "resumed_files": self.resumed_files,
            "stages": {label: self.stages[label].to_dict() for label in self.order},
            "order": self.order,
            "extra": self.extra,
            "config": config,
        }


def check_accounting(order: list[str], stages: dict[str, StageStats]) -> None:
    """Each stage adds up, and each stage saw exactly what the previous one kept."""
    previous = None
    for label in order:
        s = stages[label]
        s.check()
        if previous is not None and s.docs_in != previous.kept:
            raise AccountingError(
                f"stage {label!r} received {s.docs_in} documents but {previous.name!r} kept {previous.kept}"
            )
        previous = s


def check_decisions_applied(label: str, stats: StageStats, extra: dict[str, Any]) -> None:
    """A dataset stage's documents dropped, counted shard by shard, are the ones it decided to
    drop (``removed``): each decision dropped exactly one document."""
    dropped = sum(stats.dropped.values()) + sum(stats.errors.values())
    if "removed" in extra and dropped != extra["removed"]:
        raise AccountingError(
            f"stage {label!r} decided to drop {extra['removed']} documents but {dropped} were dropped"
        )
