"""Mixture-of-Experts: many feed-forward experts, and a router that sends each token to k of them.

    x (..., d_model) -> tokens (N, d)                         every position is routed on its own
      router:   H = x W_g  (+ N(0,1) * softplus(x W_noise))   one score per expert (noise: training only)
                top-k of H per token -> experts e_1..e_k, weights g = softmax(H_e1..H_ek)   (sum to 1)
      dispatch: the (token, slot) assignments sorted by expert; each expert runs ONE matrix product on
                its contiguous block of gathered rows (at most `capacity` of them: the rest are dropped)
      combine:  y_n = sum_j g_nj * Expert_{e_nj}(x_n)  (+ sum_s Shared_s(x_n))     (N, d) -> (..., d_model)
      (share_down_projection: the experts keep their own up-projection and share one down-projection W2,
       so y_n = W2 (sum_j g_nj act(W1_{e_nj} x_n)) + (sum_j g_nj) b2, W2 run once per token, not k times)

An expert is the Transformer's FFN (models/mlp.py): up-projection, activation, down-projection. With E
experts and k active, the layer holds E experts' parameters but spends the compute of k per token: more
capacity at the same cost per token. What keeps it working is that tokens spread over the experts; the
Switch-Transformer loss `aux_loss` = E * sum_i f_i * P_i pushes the router toward uniform load.

After each forward, the layer keeps its routing statistics (see `MoE`): `aux_loss`, `last_load`,
`last_dropped`, `last_expert_index`, `last_gates`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import Tensor
from scratchzoo.functional.routing import gather_rows, softplus, topk
from scratchzoo.models.mlp import FFN, activation
from scratchzoo.nn import Linear, Module, ModuleList, Sequential, check_input, init
from scratchzoo.rng import generator


@dataclass
class MoEConfig:
    d_model: int = 64
    hidden: int = 256  # each expert's hidden width (d_model -> hidden -> d_model)
    num_experts: int = 4
    top_k: int = 2  # experts per token
    activation: str = "gelu"
    noisy_gating: bool = False  # Shazeer et al. 2017: learned noise on the router scores, in training only
    capacity_factor: float | None = None  # None: no limit; else capacity = ceil(factor * tokens * k / experts)
    eval_capacity_factor: float | None = None  # the same in eval mode; None: no limit (see MoE.capacity)
    num_shared_experts: int = 0  # experts that every token uses, outside the routing
    shared_hidden: int | None = None  # hidden width of each shared expert (None: `hidden`)
    bias: bool = True  # biases in the experts' Linear layers (the router never has one)
    share_down_projection: bool = False  # lighter experts: one down-projection shared by all (see MoE)


# ============================================================================ routing


class Routing(NamedTuple):
    """The router's decision for N tokens."""
    expert_index: np.ndarray  # (N, k) int64: the chosen experts, best first
    gates: Tensor  # (N, k): their weights, softmax over the k chosen scores (each row sums to 1)
    probs: Tensor  # (N, E): softmax over all E scores, the router probability of the balancing loss


class TopKRouter(Module):
    """Scores every expert for every token and keeps the k best.

    H(x) = x W_g, plus in training (noisy gating) N(0,1) * softplus(x W_noise): a per-token, per-expert
    noise whose scale the router learns. W_noise starts at zero (softplus(0) = ln 2), as in Shazeer et al.
    """

    def __init__(self, d_model: int, num_experts: int, top_k: int, noisy: bool = False):
        super().__init__()
        self.num_experts, self.top_k = num_experts, top_k
        self.gate = Linear(d_model, num_experts, bias=False)  # W_g, stored (E, d_model) as every Linear
        self.noise: Linear | None = None  # W_noise, with noisy gating only
        if noisy:
            self.noise = Linear(d_model, num_experts, bias=False)
            init.zeros_(self.noise.weight)

    def forward(self, x: Tensor) -> Routing:  # x: (N, d_model)
        scores = self.gate(x)  # x W_g: (N, E)
        if self.noise is not None and self.training:
            standard = Tensor(generator().standard_normal(scores.shape).astype(x.dtype))
            scores = scores + standard * softplus(self.noise(x))  # H = x W_g + N(0,1) * softplus(x W_noise)
        chosen, expert_index = topk(scores, self.top_k)  # the k largest H per token, best first: (N, k)
        return Routing(expert_index.data, F.softmax(chosen, dim=-1), F.softmax(scores, dim=-1))

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, top_k={self.top_k}, noisy={self.noise is not None}"


def load_balancing_loss(probs: Tensor, expert_index: np.ndarray, num_experts: int) -> Tensor:
    """The Switch Transformer's auxiliary loss: L = E * sum_i f_i * P_i.

    f_i = the fraction of the N*k (token, slot) assignments that the router sent to expert i (a count: no
    gradient); P_i = the mean router probability of expert i over the tokens (differentiable). Both sum to 1
    over i. With uniform routing f_i = P_i = 1/E and L = 1; the more the load concentrates on the experts
    the router already favours, the larger L (up to E). Its gradient lowers P_i in proportion to f_i:
    it pulls probability away from the busiest experts.
    """
    fraction = np.bincount(expert_index.reshape(-1), minlength=num_experts) / expert_index.size  # f_i
    mean_prob = probs.mean(dim=0)  # P_i: (E,)
    return (mean_prob * Tensor(fraction.astype(probs.dtype))).sum() * float(num_experts)


# ============================================================================ dispatch: group the tokens by expert


class DispatchPlan(NamedTuple):
    """Integer bookkeeping that turns per-token choices into one contiguous block of rows per expert.

    The assignments are numbered a = token * k + slot (the layout of expert_index.reshape(-1)).
    """
    token: np.ndarray  # (M,) the token row each kept assignment reads, grouped by expert
    counts: np.ndarray  # (E,) kept assignments per expert: the block sizes, in expert order
    source: np.ndarray  # (N*k,) for assignment a, its row among the M expert outputs; M (a zero row) if dropped
    routed: np.ndarray  # (E,) assignments the router sent to each expert, before the capacity cut
    dropped: int  # assignments over capacity


def dispatch_plan(expert_index: np.ndarray, num_experts: int, capacity: int | None) -> DispatchPlan:
    """Sort the (token, slot) assignments by expert and keep the first `capacity` of each expert.

    Within an expert, first choices (slot 0) come before second choices, and earlier tokens before later
    ones (GShard's priority): when an expert overflows, it is tokens' back-up choices that go first.
    """
    expert = expert_index.reshape(-1)  # assignment a = token * k + slot
    token, slot = np.divmod(np.arange(expert.size), expert_index.shape[1])
    order = np.lexsort((token, slot, expert))  # by expert, then slot, then token (lexsort: last key first)
    routed = np.bincount(expert, minlength=num_experts)
    kept = order
    if capacity is not None:
        block_start = np.cumsum(routed) - routed
        rank = np.arange(expert.size) - np.repeat(block_start, routed)  # place of order[p] in its expert's queue
        kept = order[rank < capacity]
    source = np.full(expert.size, kept.size)  # dropped assignments read row M, the zero row
    source[kept] = np.arange(kept.size)  # the inverse permutation: assignment kept[p] is output row p
    return DispatchPlan(token[kept], np.bincount(expert[kept], minlength=num_experts), source, routed,
                        expert.size - kept.size)


# ============================================================================ the layer


class MoE(Module):
    """A Mixture-of-Experts feed-forward layer: (..., d_model) -> (..., d_model), a drop-in for the FFN.

    Routing statistics of the last forward (set by `forward`; read them after it):
      aux_loss           Tensor, scalar, in the graph: the load-balancing loss E * sum_i f_i P_i. Add
                         `weight * layer.aux_loss` to the training loss to use it (Switch: weight 0.01).
      last_load          np.ndarray (E,): the fraction of the (token, slot) assignments the router sent to
                         each expert, before the capacity cut (sums to 1; a fair share is 1/E).
      last_dropped       float: the fraction of assignments over capacity (they contribute 0; the residual
                         connection around the layer carries their token unchanged).
      last_expert_index  np.ndarray (N, k): the chosen experts of each token (N = all leading dims).
      last_gates         np.ndarray (N, k): their weights.
    """

    def __init__(self, config: MoEConfig):
        super().__init__()
        c = config
        if c.num_experts < 1:
            raise ValueError(f"MoE: num_experts must be >= 1, got {c.num_experts}")
        if not 1 <= c.top_k <= c.num_experts:
            raise ValueError(f"MoE: top_k must lie in [1, num_experts={c.num_experts}], got top_k={c.top_k}")
        for name in ("capacity_factor", "eval_capacity_factor"):
            factor = getattr(c, name)
            if factor is not None and factor <= 0:
                raise ValueError(f"MoE: {name} must be > 0 (or None for no limit), got {factor}")
        if c.num_shared_experts < 0:
            raise ValueError(f"MoE: num_shared_experts must be >= 0, got {c.num_shared_experts}")
        self.config = c
        self.router = TopKRouter(c.d_model, c.num_experts, c.top_k, c.noisy_gating)
        if c.share_down_projection:  # each expert is up-projection + activation; `down` is everyone's W2
            self.experts = ModuleList(Sequential(Linear(c.d_model, c.hidden, bias=c.bias), activation(c.activation))
                                      for _ in range(c.num_experts))
            self.down: Linear | None = Linear(c.hidden, c.d_model, bias=c.bias)
        else:
            self.experts = ModuleList(FFN(c.d_model, c.hidden, c.activation, bias=c.bias)
                                      for _ in range(c.num_experts))
            self.down = None
        shared_hidden = c.shared_hidden or c.hidden
        self.shared_experts = ModuleList(FFN(c.d_model, shared_hidden, c.activation, bias=c.bias)
                                         for _ in range(c.num_shared_experts))
        self.aux_loss: Tensor | None = None
        self.last_load: np.ndarray | None = None
        self.last_dropped: float | None = None
        self.last_expert_index: np.ndarray | None = None
        self.last_gates: np.ndarray | None = None

    def capacity(self, tokens: int, training: bool | None = None) -> int | None:
        """Rows each expert may take in one forward of `tokens` tokens: ceil(factor * tokens * k / E), with
        capacity_factor in training and eval_capacity_factor in eval mode (`training`: which one; default
        the layer's mode); None: no limit.

        Without a limit at inference (the default) a token's output depends on that token alone. With one,
        it also depends on the other tokens of the call: how many there are (so one-token steps with a KV
        cache would route differently from a forward over the whole sequence) and which come later (a later
        token's first choice can push out an earlier token's second: the future leaking into a causal
        model). The Switch Transformer likewise evaluates with a factor of its own."""
        c = self.config
        factor = c.capacity_factor if (self.training if training is None else training) else c.eval_capacity_factor
        return None if factor is None else math.ceil(factor * tokens * c.top_k / c.num_experts)

    def forward(self, x: Tensor) -> Tensor:  # x: (..., d_model)
        c = self.config
        check_input(self, x, last_dim=c.d_model)
        tokens = x.reshape(-1, c.d_model)  # (N, d): routing is per token
        route = self.router(tokens)
        plan = dispatch_plan(route.expert_index, c.num_experts, self.capacity(tokens.shape[0]))
        self._record(route, plan)
        out = self.combine(self.run_experts(tokens, plan), route.gates, plan)  # (N, d), or (N, hidden) shared
        if self.down is not None:
            out = self.shared_down(out, route.gates, plan)
        for expert in self.shared_experts:
            out = out + expert(tokens)  # shared experts: every token, weight 1
        return out.reshape(x.shape)

    def run_experts(self, tokens: Tensor, plan: DispatchPlan) -> list[Tensor]:
        """Gather the kept assignments' token rows grouped by expert, (M, d), and run each expert once on
        its block: one matrix product per expert and layer, never a loop over tokens."""
        rows = gather_rows(tokens, plan.token)  # (M, d); a token chosen by k experts is gathered k times
        blocks = F.split(rows, plan.counts.tolist(), dim=0)  # expert i's block: counts[i] rows
        return [expert(block) for expert, block, n in zip(self.experts, blocks, plan.counts) if n]

    def combine(self, outputs: list[Tensor], gates: Tensor, plan: DispatchPlan) -> Tensor:
        """y_n = sum_j g_nj * Expert_{e_nj}(x_n): un-permute the expert outputs back to (token, slot) order
        (dropped assignments read a zero row), then weight and sum over the k slots."""
        tokens, k = gates.shape
        if plan.dropped:
            width = self.config.d_model if self.down is None else self.config.hidden
            outputs = outputs + [Tensor(np.zeros((1, width), dtype=gates.dtype))]
        per_slot = gather_rows(F.cat(outputs, dim=0), plan.source).reshape(tokens, k, -1)  # (N, k, d)
        return (per_slot * gates.unsqueeze(-1)).sum(dim=1)  # (N, d)

    def shared_down(self, mixed: Tensor, gates: Tensor, plan: DispatchPlan) -> Tensor:
        """W2 h + (sum_j g_j) b2 for h = sum_j g_j act(W1_j x), the k experts' mixed hidden activations: equal
        to sum_j g_j (W2 act(W1_j x) + b2) since W2 is linear, but one (hidden -> d_model) product per token
        instead of k. The bias counts only the kept assignments, so a fully dropped token still gets 0."""
        out = F.linear(mixed, self.down.weight)
        if self.down.bias is None:
            return out
        kept = Tensor((plan.source < plan.token.size).reshape(gates.shape).astype(gates.dtype))  # 0 if dropped
        return out + (gates * kept).sum(dim=-1, keepdim=True) * self.down.bias

    def _record(self, route: Routing, plan: DispatchPlan) -> None:
        """The routing statistics documented in the class docstring."""
        self.aux_loss = load_balancing_loss(route.probs, route.expert_index, self.config.num_experts)
        self.last_load = plan.routed / plan.routed.sum()
        self.last_dropped = plan.dropped / route.expert_index.size
        self.last_expert_index = route.expert_index
        self.last_gates = route.gates.data

    def extra_repr(self) -> str:
        c = self.config
        return (f"d_model={c.d_model}, hidden={c.hidden}, experts={c.num_experts}, top_k={c.top_k}, "
                f"capacity_factor={c.capacity_factor}, eval_capacity_factor={c.eval_capacity_factor}, "
                f"shared={c.num_shared_experts}")
