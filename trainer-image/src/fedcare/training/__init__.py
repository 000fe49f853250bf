"""Local training and evaluation of a site's model over in-memory tensors."""

from fedcare.training.loop import evaluate, loss_function, make_optimizer, predict, train_local
from fedcare.training.metrics import accuracy, auroc, bce_with_logits, mae, mse

__all__ = [
    "accuracy",
    "auroc",
    "bce_with_logits",
    "evaluate",
    "loss_function",
    "mae",
    "make_optimizer",
    "mse",
    "predict",
    "train_local",
]
