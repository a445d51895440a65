"""The multilayer perceptron: the simplest deep network, for regression and classification.

One layer computes h = activation(x @ W^T + b) (nn.Linear then an activation, applied to every
element). Stacking such layers gives the MLP; without the activation the stack would collapse into
a single linear map. The FFN block of later models (Transformer, GPT, MoE experts) is a two-layer MLP
that widens and narrows again: d_model -> hidden -> d_model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from scratchzoo.autograd import Tensor
from scratchzoo.nn import GELU, Dropout, LeakyReLU, Linear, Module, ReLU, Sequential, SiLU, Sigmoid, Tanh

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "gelu": GELU, "silu": SiLU, "leaky_relu": LeakyReLU}


def activation(name: str) -> Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


@dataclass
class MLPConfig:
    in_features: int = 64
    hidden: Sequence[int] = field(default_factory=lambda: (256, 128))
    out_features: int = 10
    activation: str = "relu"
    dropout: float = 0.0


class MLP(Sequential):
    """in -> [Linear -> activation -> Dropout] per hidden width -> Linear -> out.

    The last layer has no activation: it gives raw scores (logits) for classification, or the value
    itself for regression. Being a Sequential, its state_dict names ("0.weight", "3.bias", ...) equal
    those of the same torch.nn.Sequential.
    """

    def __init__(self, config: MLPConfig):
        widths = [config.in_features, *config.hidden]
        layers: list[Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [Linear(width_in, width_out), activation(config.activation)]
            if config.dropout > 0:
                layers.append(Dropout(config.dropout))
        layers.append(Linear(widths[-1], config.out_features))
        super().__init__(*layers)
        self.config = config


class FFN(Module):
    """The position-wise feed-forward block: y = W2 act(W1 x + b1) + b2 (the MoE experts; the Transformer
    layers and GPT's MLP compute the same under their PyTorch parameter names).

    W1 widens d_model to `hidden` (usually 4 * d_model) to give the layer capacity, W2 narrows back to
    d_model so the block can sit inside a residual connection x + FFN(x).
    """

    def __init__(self, d_model: int, hidden: int, activation_name: str = "relu", dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.up = Linear(d_model, hidden, bias=bias)
        self.act = activation(activation_name)
        self.down = Linear(hidden, d_model, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(self.act(self.up(x))))
