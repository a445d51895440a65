"""scratchzoo: classic deep-learning architectures on one small NumPy autograd engine."""
from scratchzoo.autograd import (DTypeError, Function, ShapeError, Tensor, arange, bool_, enable_grad,  # noqa: F401
                                 float32, float64, from_numpy, int64, is_grad_enabled, no_grad, ones,
                                 tensor, zeros)
from scratchzoo import functional  # noqa: F401
from scratchzoo.functional import cat, stack, where  # noqa: F401
from scratchzoo.rng import get_rng_state, manual_seed, set_rng_state  # noqa: F401

__version__ = "0.1.0"
