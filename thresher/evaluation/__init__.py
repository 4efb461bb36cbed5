"""Evaluation helpers for tests and benchmarks, kept out of the pipeline's own packages.

* ``extraction``: the two public extraction gold sets in ``shared/data`` and how extraction is
  scored against them (shingle F1, must/must-not snippets).
* ``corpora``: the shared pages run once through our extractor (cached) for the filter parity
  tests and benches, and language-ID accuracy on the Lingua test set.

Nothing in ``thresher`` imports this package; it sits above ``extract`` and ``filters`` and
imports both, so neither of them has to import the other for evaluation's sake.
"""
