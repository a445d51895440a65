"""Neural-network building blocks: Module, Parameter, containers, init, layers, losses."""
from scratchzoo.nn import init, utils  # noqa: F401
from scratchzoo.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from scratchzoo.nn.layers import (GELU, Dropout, Embedding, Flatten, Identity, LayerNorm,  # noqa: F401
                                  LeakyReLU, Linear, ReLU, Sigmoid, SiLU, Softmax, Tanh)
from scratchzoo.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from scratchzoo.nn.module import (IncompatibleKeys, Module, Parameter, StateDictError,  # noqa: F401
                                  check_input, check_token_ids, eval_mode)
from scratchzoo.nn.conv import Conv1d, Conv2d, ConvTranspose2d  # noqa: E402,F401
from scratchzoo.nn.normalization import BatchNorm1d, BatchNorm2d  # noqa: E402,F401
from scratchzoo.nn.pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool2d, Dropout2d,  # noqa: E402,F401
                                   MaxPool1d, MaxPool2d, Upsample)
from scratchzoo.nn.recurrent import (GRU, LSTM, RNN, GRUCell, LSTMCell, LSTMGates, RNNCell,  # noqa: E402,F401
                                     lstm_gates)
from scratchzoo.nn.receptive_field import FieldRow, receptive_field  # noqa: E402,F401
from scratchzoo.nn.attention import MultiheadAttention  # noqa: E402,F401
from scratchzoo.nn.transformer import (LearnedPositionalEmbedding, SinusoidalPositionalEncoding,  # noqa: E402,F401
                                       Transformer, TransformerDecoder, TransformerDecoderLayer,
                                       TransformerEncoder, TransformerEncoderLayer)
from scratchzoo.nn.kv_cache import KVCache  # noqa: E402,F401
