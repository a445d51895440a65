"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay (torch's algorithm)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from scratchzoo.optim.optimizer import Optimizer, check_option


class SGD(Optimizer):
    """g = grad + weight_decay * p
    b = g on the first step, else momentum * b + (1 - dampening) * g
    g = g + momentum * b (nesterov) or b;   p = p - lr * g
    """

    fixed_options = {"maximize": False}

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def check_options(self, options: dict[str, Any], owner: str) -> None:
        for option in ("lr", "momentum", "weight_decay"):
            check_option(owner, option, options[option], low=0.0)
        check_option(owner, "dampening", options["dampening"])
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError(f"{owner}: nesterov=True needs momentum > 0 and dampening = 0, "
                             f"got momentum={options['momentum']}, dampening={options['dampening']}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, momentum, dampening = float(group["lr"]), float(group["momentum"]), float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            for p in self.params_with_grad(group):
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p.data  # L2: gradient of (wd/2) * ||p||^2
                if momentum != 0:
                    state = self.state.setdefault(p, {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()  # first step: b = g, no dampening
                    else:
                        buf *= momentum
                        buf += (1.0 - dampening) * g  # b = momentum * b + (1 - dampening) * g
                    g = g + momentum * buf if group["nesterov"] else buf
                p.data -= lr * g
        return loss
