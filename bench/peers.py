"""Building the peers' pipeline steps the same way in every benchmark."""

from __future__ import annotations


def datatrove_language_filter(languages: list[str], threshold: float):
    """datatrove's LanguageFilter on the same lid.176 file as ours, with no download.

    datatrove checks for the ``fasttext-numpy2-wheel`` distribution by name; ``fasttext-numpy2``
    installs the same ``fasttext`` module, so that one check is skipped while the filter is built.
    """
    import datatrove.pipeline.base as dt_base
    import fasttext
    from datatrove.pipeline.filters import LanguageFilter

    from thresher.models import lid_model_path

    check = dt_base.check_required_dependencies
    dt_base.check_required_dependencies = lambda name, deps: check(
        name, [d for d in deps if (d[0] if isinstance(d, tuple) else d) != "fasttext"]
    )
    try:
        lid = LanguageFilter(languages=languages, language_threshold=threshold)
    finally:
        dt_base.check_required_dependencies = check
    lid.model._model = fasttext.load_model(str(lid_model_path()))
    return lid
