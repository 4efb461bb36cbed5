"""Building the peers' pipeline steps the same way in every benchmark."""

from __future__ import annotations


def _accept_fasttext_numpy2() -> None:
    """datatrove checks for the ``fasttext-numpy2-wheel`` distribution by name; ``fasttext-numpy2``
    installs the same ``fasttext`` module. The check runs each time a step is created (also when
    an executor copies it), so it is relaxed for the whole benchmark process."""
    import datatrove.pipeline.base as dt_base
    import datatrove.utils.lid as dt_lid

    check = dt_base.check_required_dependencies

    def relaxed(name, deps):
        return check(name, [d for d in deps if (d[0] if isinstance(d, tuple) else d) != "fasttext"])

    dt_base.check_required_dependencies = relaxed
    if hasattr(dt_lid, "check_required_dependencies"):
        dt_lid.check_required_dependencies = relaxed


def datatrove_language_filter(languages: list[str], threshold: float):
    """datatrove's LanguageFilter on the same lid.176 file as ours: its model download is pointed
    at our file (the step stays picklable, as datatrove's executors copy their steps)."""
    import datatrove.utils.lid as dt_lid
    from datatrove.pipeline.filters import LanguageFilter

    from thresher.models import lid_model_path

    _accept_fasttext_numpy2()
    dt_lid.cached_asset_path_or_download = lambda *args, **kwargs: str(lid_model_path())
    return LanguageFilter(languages=languages, language_threshold=threshold)
