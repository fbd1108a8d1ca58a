"""The record a training run returns: ``mlpgrad.fit`` and ``mlpgrad.distributed.fit`` both give a ``History``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class History:
    """Per-epoch losses and where the time went.

    ``train_loss[e]`` is the mean training loss of epoch ``e`` (the sample-weighted mean over the epoch's
    mini-batches, each measured at the parameters it was computed with, before its step);
    ``validation_loss[e]`` the loss on the validation data after epoch ``e`` (empty without validation data).
    ``seconds_in_mlpgrad`` is the time spent in mlpgrad's own gradient and optimiser calls,
    ``seconds_other`` the rest of the run (batching, shuffling, losses, callbacks, progress).
    ``stopped_early`` says whether early stopping ended the run before its last epoch; ``best_epoch`` is the
    epoch with the lowest monitored loss (validation if given, else training), or ``None`` before any epoch.
    """

    train_loss: List[float] = field(default_factory=list)
    validation_loss: List[float] = field(default_factory=list)
    seconds_in_mlpgrad: float = 0.0
    seconds_other: float = 0.0
    stopped_early: bool = False
    best_epoch: Optional[int] = None

    @property
    def epochs(self) -> int:
        """Epochs completed."""
        return len(self.train_loss)

    @property
    def monitored_loss(self) -> List[float]:
        """The loss early stopping watches: validation loss when there is validation data, else training loss."""
        return self.validation_loss if self.validation_loss else self.train_loss

    def record_epoch(self, train_loss: float, validation_loss: Optional[float] = None) -> None:
        """Appends one epoch's losses and updates ``best_epoch``."""
        if self.validation_loss and validation_loss is None:
            raise ValueError("validation_loss: this history has validation losses; every epoch needs one")
        if validation_loss is not None and len(self.validation_loss) != len(self.train_loss):
            raise ValueError("validation_loss: earlier epochs of this history have none; give it for all or none")
        self.train_loss.append(float(train_loss))
        if validation_loss is not None:
            self.validation_loss.append(float(validation_loss))
        monitored = self.monitored_loss
        if self.best_epoch is None or monitored[-1] < monitored[self.best_epoch]:
            self.best_epoch = len(monitored) - 1
