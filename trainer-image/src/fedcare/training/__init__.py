"""Local training and evaluation of a site's model over in-memory tensors."""

from fedcare.training.loop import evaluate, loss_function, make_optimizer, predict, train_local
from fedcare.training.metrics import (
    accuracy,
    auprc,
    auroc,
    bce_with_logits,
    brier,
    cindex,
    cox_nll,
    ece,
    mae,
    mse,
    r2,
    rmse,
)
from fedcare.training.survival import cox_ph_loss

__all__ = [
    "accuracy",
    "auprc",
    "auroc",
    "bce_with_logits",
    "brier",
    "cindex",
    "cox_nll",
    "cox_ph_loss",
    "ece",
    "evaluate",
    "loss_function",
    "mae",
    "make_optimizer",
    "mse",
    "predict",
    "r2",
    "rmse",
    "train_local",
]
