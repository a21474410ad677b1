"""What the baselines share beyond the training loop (``genrec.training``): the transformer
baselines' params, left-padded batches and recommending from the best epoch's model."""

from __future__ import annotations

from typing import Annotated, Any, Callable, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator

from genrec.distributed import SINGLE, Group
from genrec.dropout import DropoutMasks
from genrec.params import AtLeast1, Dropout, require_multiple
from genrec import training
from genrec.sequences import UserSequences
from genrec.training import Data, EpochResult, LoopParams, TrainResult, recommend, training_users


class TransformerParams(LoopParams):
    """The params SASRec and BERT4Rec share: the training keys (as ``train``'s) and the network's
    size. ``SECTION`` names the params.yaml section in messages."""

    SECTION: ClassVar[str]
    max_len: Annotated[int, Field(ge=2)]  # items a user is represented by (GPT-2's window)
    hidden: AtLeast1
    layers: AtLeast1  # transformer blocks
    heads: AtLeast1
    dropout: Dropout
    dropout_masks: DropoutMasks  # as train.dropout_masks (genrec/dropout.py)
    processes: AtLeast1  # data-parallel training processes (torch.distributed), as train.processes

    @model_validator(mode="after")
    def _heads_divide_the_hidden_size(self) -> TransformerParams:
        require_multiple(self.SECTION, self, "hidden", of="heads")
        return self


def trim_left(batch: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """Drop the leading columns that are padding in every row of a left-padded batch:
    most users are shorter than the window."""
    width = max(int((batch != padding).sum(dim=1).max()), 1)
    return batch[:, batch.shape[1] - width:]


def training_matrix(sequences: UserSequences, width: int) -> torch.Tensor:
    """What SASRec and BERT4Rec train on: the last ``width`` items of each user with at least two,
    left-padded (``width`` from the model's ``training_width``)."""
    return torch.from_numpy(sequences.last_items(training_users(sequences), width, side="left"))


def fit_transformer(build: Callable[[], torch.nn.Module], objective: Callable[[torch.nn.Module], torch.nn.Module],
                    train_epoch: Callable, scorer: Callable, data: Data, params: TransformerParams,
                    device: torch.device, on_epoch: Callable[[EpochResult], None], group: Group,
                    width: int) -> tuple[torch.nn.Module, TrainResult]:
    """SASRec's and BERT4Rec's ``fit``: ``build()`` the model from ``params.seed`` (the same on every
    rank), then train it with early stopping on each user's last ``width`` items, left-padded;
    returns the model with the best epoch's weights, and the history."""
    torch.manual_seed(params.seed)  # the initial weights
    model = build().to(device)
    if group.world > 1:  # each rank draws its own dropout; one process keeps the stream it always had
        torch.manual_seed(params.seed + group.rank)
    result = training.fit(model, training_matrix(data.sequences, width), train_epoch, scorer, data, params, device,
                          on_epoch, f"{params.SECTION}.lr", objective=objective(model), group=group)
    return model, result


def fit_then_recommend(fit: Callable, scorer: Callable) -> Callable:
    """A baseline's ``fit_recommend`` from its ``fit`` and ``scorer``: train (on the processes of
    ``group``), then recommend ``k`` unseen items to each user from the best epoch's model."""
    def fit_recommend(data: Data, users: np.ndarray, params: Any, k: int, device: torch.device = torch.device("cpu"),
                      on_epoch: Callable[[EpochResult], None] = lambda result: None, group: Group = SINGLE
                      ) -> tuple[np.ndarray, TrainResult]:
        model, result = fit(data, params, device, on_epoch, group)
        return recommend(scorer(model, data, device), data.sequences, users, k), result

    return fit_recommend
