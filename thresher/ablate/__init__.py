"""Recipe ablation: judge a filtering recipe by the model its data trains.

FineWeb, DCLM and DataDecide compare recipes by training the same small model on each candidate
dataset and comparing losses on held-out text. ``thresher ablate`` is that loop over finished runs
(or configs it runs first): config.py (every fixed, recorded hyperparameter), data.py (shared
tokenizer, common token budget), reference.py (held-out texts and their evaluation windows),
model.py (the GPT), train.py (resumable, deterministic training and evaluation), report.py
(JSON and HTML), runner.py (the loop and its output directory), cli.py (the command).

Importing this package does not import torch; model.py and train.py do.
"""
