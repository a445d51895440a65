"""Learning-rate schedules: each sets every group's 'lr' from its 'initial_lr' and the step count.

As in torch, building a scheduler records 'initial_lr' in each group and applies the value for
epoch 0 at once; call `scheduler.step()` after each `optimizer.step()`. Schedules here use the
closed form lr(t) = f(initial_lr, t), so a schedule can be read off its formula.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from scratchzoo.optim.optimizer import Optimizer, check_option


class LRScheduler:
    """Base class: subclasses write `get_lr()`, the list of each group's lr at `self.last_epoch`."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr' to resume from (last_epoch={last_epoch}); "
                                   "load the optimizer's state dict first")
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or iteration) and write the new lr into every group."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The lr of each group as last set by `step()`."""
        return self._last_lr

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (which has its own state dict)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step count, and put the saved lrs back into the groups whatever the loading order."""
        self.__dict__.update(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class StepLR(LRScheduler):
    """lr = initial_lr * gamma^(floor(t / step_size)): decay by gamma every step_size epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        check_option(type(self).__name__, "step_size", step_size, low=1, integer=True)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (SGDR without restarts).

    Past T_max the cosine climbs back up, as torch's does.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        check_option(type(self).__name__, "T_max", T_max, low=1, integer=True)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


class LinearLR(LRScheduler):
    """lr = initial_lr * factor, factor going linearly from start_factor to end_factor over total_iters."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        name = type(self).__name__
        check_option(name, "start_factor", start_factor, low=0.0, high=1.0, low_inclusive=False, high_inclusive=True)
        check_option(name, "end_factor", end_factor, low=0.0, high=1.0, high_inclusive=True)
        check_option(name, "total_iters", total_iters, low=1, integer=True)
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(t); one function for all groups, or a list with one per group.

    The functions are not saved in `state_dict()` (code is not data); rebuild the scheduler with them.
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
                 last_epoch: int = -1):
        groups = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
        if len(self.lr_lambdas) != groups:
            raise ValueError(f"LambdaLR expected {groups} lr_lambdas (one per group), got {len(self.lr_lambdas)}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict[str, Any]:
        return {key: value for key, value in super().state_dict().items() if key != "lr_lambdas"}


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup to initial_lr over warmup_steps, then cosine decay to min_lr_ratio * initial_lr at total_steps.

    factor(t) = (t + 1) / warmup_steps                                    for t < warmup_steps
    factor(t) = r + (1 - r) * (1 + cos(pi * progress)) / 2,  progress = (t - warmup_steps) / (total_steps - warmup_steps)
    with progress capped at 1, so the lr stays at min_lr_ratio * initial_lr after total_steps.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine needs 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        progress = min(1.0, (t - warmup_steps) / (total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * (1 + math.cos(math.pi * progress)) / 2

    return LambdaLR(optimizer, factor)
