"""Adam, adaptive moment estimation (Kingma & Ba, 2015), and AdamW (Loshchilov & Hutter, 2019).

Both follow torch's order of operations and keep, per parameter, 'step' t, 'exp_avg' m (the first moment)
and 'exp_avg_sq' v (the second):
    m = b1 * m + (1 - b1) * g,     v = b2 * v + (1 - b2) * g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
which is p - lr * m_hat / (sqrt(v_hat) + eps) with the bias-corrected m_hat = m / (1 - b1^t) and
v_hat = v / (1 - b2^t). They differ only in weight decay: Adam adds it to the gradient (L2,
g = grad + wd * p, so it is rescaled by the moments); AdamW shrinks the weights directly
(p = p * (1 - lr * wd), decoupled from the moments).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np

from scratchzoo.autograd import Tensor
from scratchzoo.optim.optimizer import Optimizer, check_option


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient before the moments (torch.optim.Adam)."""

    decoupled_weight_decay = False

    @property
    def fixed_options(self) -> dict[str, Any]:
        """torch options this class implements at one value only (load_state_dict refuses any other)."""
        return {"amsgrad": False, "maximize": False, "decoupled_weight_decay": self.decoupled_weight_decay}

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        betas = tuple(betas) if isinstance(betas, (tuple, list)) else betas
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check_options(self, options: dict[str, Any], owner: str) -> None:
        for option in ("lr", "eps", "weight_decay"):
            check_option(owner, option, options[option], low=0.0)
        betas = options["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"{owner}: betas must be a pair (beta1, beta2), got {type(betas).__name__} {betas!r}")
        for i, beta in enumerate(betas):
            check_option(owner, f"betas[{i}]", beta, low=0.0, high=1.0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in self.params_with_grad(group):
                self._update(p, lr, beta1, beta2, eps, weight_decay)
        return loss

    def _update(self, p: Tensor, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
        state = self.state.setdefault(p, {})
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        g = p.grad
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                p.data *= 1.0 - lr * weight_decay  # AdamW: p = p * (1 - lr * wd)
            else:
                g = g + weight_decay * p.data  # Adam: L2, g = grad + wd * p
        # One scratch array `buf` and in-place ops: the same arithmetic, in the same order, as
        # the one-line formulas, without a temporary array per operation (vs_torch's mlp step).
        buf = np.multiply(g, 1.0 - beta1)
        m *= beta1
        m += buf  # m = b1 * m + (1 - b1) * g
        np.multiply(g, 1.0 - beta2, out=buf)
        buf *= g
        v *= beta2
        v += buf  # v = b2 * v + (1 - b2) * g^2
        bias_correction1 = 1.0 - beta1 ** t
        bias_correction2 = 1.0 - beta2 ** t
        step_size = lr / bias_correction1
        denom = np.sqrt(v, out=buf)
        denom /= math.sqrt(bias_correction2)
        denom += eps  # sqrt(v_hat) + eps
        update = np.divide(m, denom, out=buf)
        update *= step_size
        p.data -= update  # p = p - lr * m_hat / (sqrt(v_hat) + eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p * (1 - lr * wd) before the Adam step (torch.optim.AdamW)."""

    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
