"""Batch normalisation layers: BatchNorm1d and BatchNorm2d, with PyTorch's buffers and options.

Each channel is normalised with statistics taken over everything else in the batch: over (N, L) for
BatchNorm1d on (N, C, L), over (N, H, W) for BatchNorm2d, so 64 channels give 64 means. gamma (`weight`)
and beta (`bias`) then rescale and shift each channel, so the layer can undo the normalisation where
that helps. The buffers `running_mean`, `running_var` and `num_batches_tracked` are saved in the state
dict but not learned; eval mode normalises with them instead of the batch.
"""
from __future__ import annotations

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import Tensor
from scratchzoo.nn.conv import check_channels
from scratchzoo.nn.module import Module, Parameter, op_errors


class _BatchNorm(Module):
    """The shared body; subclasses name the input ranks they accept."""

    _ndims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))  # gamma
            if bias:
                self.bias = Parameter(np.zeros(num_features, dtype=np.float32))  # beta
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data = np.array(0, dtype=np.int64)

    def forward(self, x: Tensor) -> Tensor:
        check_channels(self, x, self._ndims, self.num_features)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data = np.asarray(self.num_batches_tracked.data + 1)  # a 0-d int64 array
            if self.momentum is None:  # cumulative average: batch k gets weight 1/k
                factor = 1.0 / float(self.num_batches_tracked.data)
        # Batch statistics in training, and in eval when nothing was tracked; else the running ones.
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        with op_errors(self, "batch_norm"):
            return F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                                self.weight, self.bias, use_batch, factor, self.eps)

    def describe(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) features or (N, C, L) sequences, per channel C."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) feature maps: per channel, statistics over N, H and W."""

    _ndims = (4,)
