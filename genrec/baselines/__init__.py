"""Baselines evaluated like the generation strategies (issue 6): popularity, BPR-MF, SASRec, BERT4Rec.

One module per baseline, each with a ``Params`` model (its own ``params.yaml``
section, named after it), ``TRAINED`` (whether it learns with early stopping) and
``fit_recommend``. ``common`` holds what they share. This file imports none of them,
so a stage runs (and depends on) only the module of its own baseline.
"""

NAMES = ("popularity", "bpr", "sasrec", "bert4rec")
