"""Neural-network building blocks: Module, Parameter, containers, init, layers, losses."""
from scratchzoo.nn import init, utils  # noqa: F401
from scratchzoo.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from scratchzoo.nn.layers import (GELU, Dropout, Embedding, Flatten, Identity, LayerNorm,  # noqa: F401
                                  LeakyReLU, Linear, ReLU, Sigmoid, SiLU, Softmax, Tanh)
from scratchzoo.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from scratchzoo.nn.module import IncompatibleKeys, Module, Parameter, StateDictError, check_input  # noqa: F401
