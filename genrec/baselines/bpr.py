"""``bpr``: BPR matrix factorisation (Rendle et al. 2009) with the ``implicit`` library's CPU
implementation, early-stopped on validation NDCG@10.

``implicit`` has no early stopping, but its ``fit`` keeps factors it already has, so
calling it with ``iterations=eval_every`` repeatedly continues the same SGD run in chunks,
validated after each; a ``numpy.random.Generator`` as ``random_state`` is returned
unchanged by ``implicit``, so each call draws fresh samples instead of replaying the first
chunk's. One thread makes the run reproducible (more threads update the factors
concurrently, in no fixed order). Validating every epoch would cost more than the epochs
themselves, and BPR's validation curve moves slowly (and noisily) from epoch to epoch.

Scores are ``user_factors @ item_factors.T``; ``implicit`` keeps an item bias as the last
factor (a constant 1 on the user side). torch computes them, on a GPU when there is one
(``bpr.device``): at ML-20M's size ranking the 68,000 validation users over the catalogue
takes a 2-core CPU about half an epoch of training, every ``eval_every`` epochs.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable

import numpy as np
import scipy.sparse
import torch
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.recommender_base import ModelFitError
from pydantic import Field, model_validator

from genrec.baselines.common import fit_then_recommend
from genrec.distributed import SINGLE, Group
from genrec.params import AtLeast0, AtLeast1, PositiveFloat, Section, require_multiple
from genrec.training import Data, EpochResult, TrainResult, early_stopping

TRAINED = True


class Params(Section):
    factors: AtLeast1
    lr: PositiveFloat
    regularization: Annotated[float, Field(ge=0)]
    max_epochs: AtLeast1  # implicit's iterations, at most
    eval_every: AtLeast1  # epochs between validations (a multiple of it must be max_epochs)
    patience: AtLeast1  # stop after this many epochs without a better validation NDCG@10
    num_threads: AtLeast0  # 0: every core, faster but not reproducible
    seed: int
    device: str  # where users are scored: auto (CUDA when present), cpu or cuda; training is on the CPU

    @model_validator(mode="after")
    def _whole_validation_rounds(self) -> Params:
        require_multiple("bpr", self, "max_epochs", of="eval_every")
        return self


def user_items(data: Data) -> scipy.sparse.csr_matrix:
    """(users, num_items + 1) binary CSR of the training interactions, column 0 (padding) empty."""
    sequences = data.sequences
    matrix = scipy.sparse.csr_matrix(
        (np.ones(len(sequences.items), dtype=np.float32), sequences.items, sequences.indptr),
        shape=(sequences.num_users, data.num_items + 1))
    matrix.sum_duplicates()  # implicit needs sorted column indices; repeated items count once (BPR is binary)
    matrix.data[:] = 1.0
    return matrix


def scores(model: BayesianPersonalizedRanking, users: np.ndarray,
           device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(len(users), num_items + 1) dot products of the users' and every item's factors, by torch
    on ``device``. The factors are read at each call (training goes on between validations):
    the item factors, 4.8 MB at ML-20M's size, cross to a GPU once per batch of users."""
    items = torch.from_numpy(model.item_factors).to(device, non_blocking=True)
    return torch.from_numpy(model.user_factors[users]).to(device, non_blocking=True) @ items.T


def scorer(model: BayesianPersonalizedRanking, data: Data, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """Users -> their ``scores`` on ``device``, where the rest of the ranking then runs too."""
    return lambda users: scores(model, users, device)


def fit(data: Data, params: Params, device: torch.device = torch.device("cpu"),
        on_epoch: Callable[[EpochResult], None] = lambda result: None,
        group: Group = SINGLE) -> tuple[BayesianPersonalizedRanking, TrainResult]:
    """Train; return the model holding the best epoch's factors, and the ``TrainResult``. The
    signature is the other trained baselines': ``implicit`` trains on the CPU in this one process,
    whatever ``device`` and ``group`` say; validation scores users on ``device``."""
    matrix = user_items(data)
    model = BayesianPersonalizedRanking(
        factors=params.factors, learning_rate=params.lr, regularization=params.regularization,
        iterations=params.eval_every, num_threads=params.num_threads, random_state=np.random.default_rng(params.seed))

    def train_epoch() -> dict[str, float]:
        stats = {}

        def record(epoch, elapsed, correct, skipped):
            # The share of sampled (user, positive, negative) triples ranked right: a training AUC.
            stats["auc"] = correct / max(matrix.nnz - skipped, 1)

        try:
            model.fit(matrix, show_progress=False, callback=record)
        except ModelFitError:  # NaN factors: early_stopping stops with a message naming bpr.lr
            stats["auc"] = math.nan
        return stats

    def snapshot():
        return model.user_factors.copy(), model.item_factors.copy()

    result = early_stopping(train_epoch, scorer(model, data, device), snapshot, data,
                            params.max_epochs, params.patience, on_epoch, step=params.eval_every, lr_label="bpr.lr")
    model.user_factors, model.item_factors = result.best_state
    return model, result


fit_recommend = fit_then_recommend(fit, scorer)
