"""A run's phases: which stages stream together, and each stage's label.

Per-document stages stream block by block; a dataset stage (dedup) must see every document the
stages before it kept, so it starts a new phase: the shards the previous phase wrote are its
input, and its decisions are applied while the next phase reads them. ``plan_run`` turns the
configured stages into that list of :class:`PhasePlan`, once, so the runner passes one typed
object per phase instead of a bundle of arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thresher.config import StageSpec
from thresher.registry import stage_class
from thresher.stage import DatasetStage

READ_STAGE = "read"
"""The label of the input reader's counters (the first line of the funnel)."""


@dataclass(frozen=True)
class PlannedStage:
    label: str
    """Unique in the run (a stage type may appear twice): ``NN-name``."""
    spec: StageSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def config(self):
        return self.spec.config


@dataclass
class PhasePlan:
    """Per-document stages that stream together, optionally preceded by a dataset stage."""

    index: int
    stages: list[PlannedStage] = field(default_factory=list)
    dataset_stage: PlannedStage | None = None
    last: bool = False

    @property
    def labels(self) -> list[str]:
        """The phase's stages in the order they see documents."""
        head = [self.dataset_stage.label] if self.dataset_stage else []
        return head + [s.label for s in self.stages]


def stage_label(index: int, spec: StageSpec) -> str:
    return f"{index:02d}-{spec.name}"


def plan_run(specs: list[StageSpec]) -> list[PhasePlan]:
    phases = [PhasePlan(0)]
    for number, spec in enumerate(specs, start=1):
        planned = PlannedStage(stage_label(number, spec), spec)
        if issubclass(stage_class(spec.name), DatasetStage):
            phases.append(PhasePlan(len(phases), dataset_stage=planned))
        else:
            phases[-1].stages.append(planned)
    phases[-1].last = True
    return phases


def stage_order(phases: list[PhasePlan]) -> list[str]:
    """Every label of the run, the reader first: the funnel of stats.json."""
    return [READ_STAGE] + [label for phase in phases for label in phase.labels]
