"""Differentiable ops. Each is a `Function` with its forward and backward side by side.

Reading guide: `forward` receives NumPy arrays and keeps the least it needs for `backward`;
`backward` receives dL/d(output) and returns dL/d(input) for each tensor input, via the chain rule.
Broadcasting is undone in one place, `unbroadcast`. The public functions at the bottom of each
section turn Python numbers and arrays into tensors and check shapes, then call `Op.apply`.
"""
from scratchzoo.functional._base import (  # noqa: F401
    as_tensor)
from scratchzoo.functional.arithmetic import (  # noqa: F401
    Add, Div, MatMul, MaxMin, Mean, Mul, Neg, Pow, Sub, Sum, ValuesIndices, Var, add, argmax, argmin, div,
    matmul, max, mean, min, mul, neg, pow, sub, sum, var)
from scratchzoo.functional.elementwise import (  # noqa: F401
    Abs, Clamp, Exp, GELU, LeakyReLU, Log, LogSoftmax, SiLU, Sigmoid, Softmax, Sqrt, Tanh, abs, clamp, exp,
    gelu, leaky_relu, log, log_softmax, relu, sigmoid, silu, softmax, sqrt, tanh)
from scratchzoo.functional.shape import (  # noqa: F401
    Cast, Concat, EmbeddingLookup, Expand, Index, MaskedFill, Permute, Reshape, Where, broadcast_to, cast,
    cat, chunk, embedding, expand, flatten, index, masked_fill, permute, reshape, split, squeeze, stack,
    transpose, unsqueeze, where)
from scratchzoo.functional.layers import (  # noqa: F401
    Dropout, LayerNormOp, LinearOp, dropout, layer_norm, linear)
# losses live in their own module; re-exported so `F.cross_entropy` reads as in PyTorch
from scratchzoo.losses import (  # noqa: E402,F401
    binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss)
# CNN ops: convolutions, pooling and resizing, batch norm (one file each)
from scratchzoo.functional.conv import (  # noqa: E402,F401
    Conv2dOp, ConvTranspose2dOp, conv1d, conv2d, conv2d_naive, conv_transpose2d)
from scratchzoo.functional.pooling import (  # noqa: E402,F401
    AvgPool2dOp, Dropout2dOp, MaxPool2dOp, NearestOp, SeparableResample, adaptive_avg_pool1d, adaptive_avg_pool2d,
    avg_pool2d, dropout2d, interpolate, max_pool1d, max_pool2d)
from scratchzoo.functional.normalization import BatchNormOp, batch_norm  # noqa: E402,F401
# recurrent ops: fused LSTM/GRU steps and the scans (BPTT) that run them over a sequence
from scratchzoo.functional.recurrent import (  # noqa: E402,F401
    GRUCellOp, GRUScan, LSTMCellOp, LSTMScan, RNNScan, gru_cell, gru_scan, lstm_cell_gates, lstm_scan, rnn_scan)
# attention: scaled dot-product attention as one fused op (and its weights for visualisation)
from scratchzoo.functional.attention import (  # noqa: E402,F401
    AttentionWeights, ScaledDotProductAttention, causal_mask, scaled_dot_product_attention)
