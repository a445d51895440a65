"""Loss modules: thin wrappers that hold the options and call the fused loss functions."""
from __future__ import annotations

from typing import Any

from scratchzoo import losses
from scratchzoo.autograd import Tensor
from scratchzoo.nn.module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction='{self.reduction}'" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    """mean((input - target)^2)."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return losses.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """mean(|input - target|)."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return losses.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """-log softmax(logits)[target], averaged; class indices or probabilities, label smoothing."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return losses.cross_entropy(input, target, self.ignore_index, self.reduction, self.label_smoothing)


class NLLLoss(_Loss):
    """-input[target] for log-probabilities (pair it with log_softmax)."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return losses.nll_loss(input, target, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, stable for any logit size."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return losses.binary_cross_entropy_with_logits(input, target, self.reduction)
