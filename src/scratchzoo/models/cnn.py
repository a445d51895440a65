"""The convolutional classifier: local features first, then a small MLP on top.

Data flows through two stages, as in the classic pipeline:

  features:   [Conv -> BatchNorm -> ReLU -> MaxPool(2)] per width in `channels` -> AdaptiveAvgPool
  classifier: Flatten -> Linear -> ReLU -> Dropout -> Linear

Each convolution slides a small kernel over the input and sums products (a cross-correlation), so one
output pixel sees a k x k patch; stacking convolutions and pooling by 2 widens what each pixel sees
(its receptive field, see `nn.receptive_field`). Channels are learned features: the first layer's
channels respond to edges or strokes, deeper ones to combinations of them. The adaptive pool squeezes
whatever spatial size is left into a fixed grid, so the classifier's input size does not depend on the
image size. `dims=1` builds the same network for sequences (Conv1d, BatchNorm1d, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from scratchzoo.autograd import Tensor
from scratchzoo.nn import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Dropout,
                           Flatten, Linear, MaxPool1d, MaxPool2d, Module, ReLU, Sequential)

_LAYERS = {1: (Conv1d, BatchNorm1d, MaxPool1d, AdaptiveAvgPool1d),
           2: (Conv2d, BatchNorm2d, MaxPool2d, AdaptiveAvgPool2d)}


@dataclass
class CNNConfig:
    in_channels: int = 1
    num_classes: int = 10
    channels: Sequence[int] = field(default_factory=lambda: (32, 64))
    kernel_size: int = 3
    pooled_size: int = 1  # AdaptiveAvgPool's output size per spatial dim (1 = global average)
    hidden: int = 128
    dropout: float = 0.5
    dims: int = 2  # 2: images (N, C, H, W); 1: sequences (N, C, L)


def conv_block(config: CNNConfig, width_in: int, width_out: int) -> Sequential:
    """Conv (padding keeps the size) -> BatchNorm (per-channel statistics) -> ReLU -> MaxPool(2) (halves it)."""
    conv, batch_norm, max_pool, _ = _LAYERS[config.dims]
    return Sequential(conv(width_in, width_out, config.kernel_size, padding=config.kernel_size // 2),
                      batch_norm(width_out), ReLU(), max_pool(2))


class CNN(Module):
    def __init__(self, config: CNNConfig):
        super().__init__()
        if config.dims not in _LAYERS:
            raise ValueError(f"CNN: dims must be 1 or 2, got {config.dims}")
        self.config = config
        widths = [config.in_channels, *config.channels]
        adaptive_pool = _LAYERS[config.dims][3]
        self.features = Sequential(*(conv_block(config, w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:])),
                                   adaptive_pool(config.pooled_size))
        flat = widths[-1] * config.pooled_size ** config.dims
        self.classifier = Sequential(Flatten(), Linear(flat, config.hidden), ReLU(), Dropout(config.dropout),
                                     Linear(config.hidden, config.num_classes))

    def forward(self, x: Tensor) -> Tensor:  # x: (N, C, H, W), or (N, C, L) when dims = 1
        return self.classifier(self.features(x))  # -> (N, num_classes) logits
