"""What a run may do to its output directory: which entries are its own, when it must refuse.

A run owns a fixed set of names in its output directory (``documents/``, ``dropped/``,
``stats.json``, ...), and in its subdirectories only files named the way it names them. It
never reads, removes or mixes in anything else: other entries of the output directory (an
Airflow run's ``crawl/``, a user's notes) are left alone, while a foreign file inside one of
the run's own subdirectories (``documents/mine.parquet``) makes it refuse, even with
``--overwrite``, since the file would otherwise end up inside the dataset. An output that holds
entries of a run (finished or not) is refused unless the run is told ``--overwrite`` (remove
what a run wrote, start again) or ``--resume``. The checks run before any work starts.

The same rules hold on an object store (``--output s3://bucket/prefix``), checked with listings
of the store (:func:`survey_store`): there a "directory" is the keys below a prefix, and links do
not exist.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePath

from thresher.io import TEMP_NAME as _TMP  # our atomic writes' temporaries (a killed writer leaves them)
from thresher.run import layout as names
from thresher.run.layout import RunLayout


class OutputDirError(RuntimeError):
    """The output directory cannot be used as asked; the message is one line saying why and what to do."""


class OutputExistsError(OutputDirError):
    """The output directory already holds a run's files, or files a run did not write."""


class InputInsideOutputError(OutputDirError):
    """An input file lies where the run writes, so the run would delete or overwrite its own input."""


class ResumeError(OutputDirError):
    """``--resume`` into an output written by a run with other inputs or another config."""


@dataclass(frozen=True)
class OutputLayout:
    """The entries a writer owns in its output directory: ``files`` (names), ``trees`` (directories
    owned whole) and ``dirs`` (directory name → pattern of the file names it writes there)."""

    files: tuple[str, ...]
    trees: tuple[str, ...]
    dirs: tuple[tuple[str, str], ...]

    def names(self) -> list[str]:
        return [*self.files, *self.trees, *(d for d, _ in self.dirs)]

    def patterns(self) -> dict[str, re.Pattern]:
        return {d: re.compile(p) for d, p in self.dirs}


SHARD = r"\d{5}-\d{5}"  # names.shard_name
RUN_LAYOUT = OutputLayout(
    files=(names.STATS, names.REPORT),
    trees=(names.WORK, names.PROGRESS, names.EXPORTS),
    dirs=(
        (names.DOCUMENTS, rf"^{SHARD}\.parquet$"),
        (names.DROPPED, rf"^{SHARD}(\.phase\d+)?\.parquet$"),
        (names.TOKENS, rf"^((shard|val)-{SHARD}-\d{{5}}\.parquet|manifest\.json)$"),  # tokenize/step.py
        (
            names.TOKENIZER,
            r"^(tokenizer\.tiktoken|tokenizer\.json|thresher\.json|tokenizer_config\.json|special_tokens_map\.json)$",
        ),
    ),
)
"""What a run (``thresher run``, ``thresher dedup``) writes: the names of :mod:`thresher.run.layout`
(see the README's Outputs)."""


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_inputs_outside(inputs: list[str], output: Path, layout: OutputLayout, hint: str) -> None:
    """Refuse an input that lies in an entry the run writes or removes (resolved paths, so links
    and ``..`` do not hide it)."""
    out = output.resolve()
    owned = [out / name for name in layout.names()]
    for spec in inputs:
        if "://" in spec and not spec.startswith("file://"):
            continue
        path = Path(spec.removeprefix("file://")).resolve()
        for entry in owned:
            if _inside(path, entry):
                raise InputInsideOutputError(f"input {spec} is inside {entry}, which this run writes; {hint}")


@dataclass
class OutputState:
    """What an output directory holds of a layout: entries a writer of it wrote (``ours``) and
    files in its subdirectories it did not (``foreign``)."""

    ours: list[Path]
    foreign: list[Path]


def survey(output: Path, layout: OutputLayout) -> OutputState:
    ours: list[Path] = []
    foreign: list[Path] = []
    for name in (*layout.files, *layout.trees):
        if (output / name).exists() or (output / name).is_symlink():
            ours.append(output / name)
    for name, pattern in layout.patterns().items():
        directory = output / name
        if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
            foreign.append(directory)
            continue
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            own = (
                entry.is_file()
                and not entry.is_symlink()
                and (pattern.match(entry.name) or _TMP.match(entry.name))
            )
            (ours if own else foreign).append(entry)
    return OutputState(ours, foreign)


def survey_store(run: RunLayout, layout: OutputLayout) -> OutputState:
    """:func:`survey` on the run's store (an object store): the same rules, from listings."""
    ours: list[PurePath] = []
    foreign: list[PurePath] = []
    top = set(run.names(run.root))
    for name in (*layout.files, *layout.trees):
        if name in top:
            ours.append(run.root / name)
    for name, pattern in layout.patterns().items():
        if name not in top:
            continue
        if not run.store.isdir(name):
            foreign.append(run.root / name)
            continue
        base = name + "/"
        for key in run.store.find(name):
            rest = key[len(base) :]
            own = "/" not in rest and bool(pattern.match(rest) or _TMP.match(rest))
            (ours if own else foreign).append(run.root / key)
    return OutputState(ours, foreign)  # type: ignore[arg-type]


def _listing(paths: list[PurePath], output: PurePath, most: int = 3) -> str:
    names = [
        p.as_posix().removeprefix("./") if not p.is_absolute() else str(p.relative_to(output))
        for p in paths[:most]
    ]
    more = f" and {len(paths) - most} more" if len(paths) > most else ""
    return ", ".join(names) + more


def refuse_unless_free(
    output: Path | RunLayout, layout: OutputLayout, overwrite: bool, what: str
) -> OutputState:
    """Raise :class:`OutputExistsError` when ``output`` holds foreign files in the layout's
    directories (always), or entries of the layout without ``overwrite``. Returns the survey.
    ``output`` is a local directory or a run's layout (any store)."""
    if isinstance(output, RunLayout):
        if output.is_local:
            return refuse_unless_free(Path(output.root), layout, overwrite, what)
        state, shown, finished = survey_store(output, layout), output.uri, output.exists(output.stats)
        output = output.root  # type: ignore[assignment]
    else:
        state, shown, finished = survey(output, layout), output, (output / names.STATS).exists()
    if state.foreign:
        raise OutputExistsError(
            f"{shown} holds files {what} did not write: {_listing(state.foreign, output)}; "
            "move them away or give another --output"
        )
    if state.ours and not overwrite:
        kind = "a finished run" if finished else "an unfinished run"
        raise OutputExistsError(
            f"{shown} already holds {kind} ({_listing(state.ours, output)}); give --overwrite to "
            "replace it, --resume to continue it, or another --output"
        )
    return state


def clear(output: Path | RunLayout, layout: OutputLayout) -> None:
    """Remove what a writer of ``layout`` wrote in ``output`` (files matching its names), and its
    directories when nothing else is left in them. ``output``: a local directory or a run's layout."""
    if isinstance(output, RunLayout):
        if not output.is_local:
            for path in survey_store(output, layout).ours:
                output.rm(path, recursive=True)
            return
        output = Path(output.root)
    state = survey(output, layout)
    for path in state.ours:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for name, _ in layout.dirs:
        directory = output / name
        if directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
            os.rmdir(directory)


IN_PLACE_HINT = "write the new dataset to another --output (e.g. OUTPUT-dedup)"


def claim_output(
    layout: RunLayout, files: list[str], fingerprint: dict, *, resume: bool, overwrite: bool
) -> bool:
    """Decide, before any work, whether a run may use ``layout``'s directory: True when it
    resumes the run there (``resume`` and the same ``fingerprint``: inputs and config). Refuses
    an input inside the run's own entries, foreign files among them, and a run's files unless
    ``overwrite`` (or a matching ``resume``). Nothing is removed here: see :func:`clear`."""
    if layout.is_local:
        check_inputs_outside(files, Path(layout.root), RUN_LAYOUT, IN_PLACE_HINT)
    else:
        check_inputs_outside_store(files, layout, RUN_LAYOUT, IN_PLACE_HINT)
    if resume and layout.exists(layout.run_record):
        if layout.read_json(layout.run_record) == fingerprint:
            refuse_unless_free(layout, RUN_LAYOUT, True, "a run")  # foreign files only
            return True
        if not overwrite:
            raise ResumeError(
                f"--resume: {layout.uri} was written by a run with other inputs or another config; "
                "give --overwrite instead to start over, or another --output"
            )
    refuse_unless_free(layout, RUN_LAYOUT, overwrite, "a run")
    return False


def check_inputs_outside_store(inputs: list[str], run: RunLayout, layout: OutputLayout, hint: str) -> None:
    """:func:`check_inputs_outside` for an output on an object store: an input URI below one of
    the run's entries (same scheme, bucket and key prefix) is refused."""
    base = run.uri.rstrip("/")
    for spec in inputs:
        for name in layout.names():
            entry = f"{base}/{name}"
            if spec == entry or spec.startswith(entry + "/"):
                raise InputInsideOutputError(f"input {spec} is inside {entry}, which this run writes; {hint}")
