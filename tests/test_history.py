import math

import pytest

from mlpgrad.history import History


def test_records_epochs_and_best_epoch_on_training_loss():
    h = History()
    assert h.epochs == 0 and h.best_epoch is None
    for loss in (3.0, 1.0, 2.0):
        h.record_epoch(loss)
    assert h.train_loss == [3.0, 1.0, 2.0] and h.validation_loss == []
    assert h.epochs == 3 and h.best_epoch == 1


def test_best_epoch_follows_validation_loss_when_given():
    h = History()
    h.record_epoch(3.0, 5.0)
    h.record_epoch(1.0, 6.0)
    assert h.monitored_loss == [5.0, 6.0] and h.best_epoch == 0


def test_nan_loss_never_becomes_best():
    h = History()
    h.record_epoch(2.0)
    h.record_epoch(math.nan)
    assert h.best_epoch == 0


def test_validation_loss_for_all_epochs_or_none():
    h = History()
    h.record_epoch(1.0, 1.0)
    with pytest.raises(ValueError, match="validation_loss"):
        h.record_epoch(1.0)
    h = History()
    h.record_epoch(1.0)
    with pytest.raises(ValueError, match="validation_loss"):
        h.record_epoch(1.0, 1.0)
    assert h.epochs == 1
