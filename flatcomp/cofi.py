"""CoFi pruning: hard-concrete L0 gates on five structures of a BERT, a Lagrangian that drives them
to a target sparsity, and :func:`compact`, which slices the model to what the gates keep.

Gates (Louizos et al., ICLR 2018, "Learning Sparse Neural Networks through L0 Regularization"),
on the structures of CoFi (Xia et al., ACL 2022, "Structured Pruning Learns Compact and Accurate
Models")::

    attn_layer (L, 1)   a whole attention sublayer        ffn_layer (L, 1)   a whole FFN sublayer
    head       (L, H)   one attention head                ffn_dim   (L, F)   one FFN inner dimension
    hidden     (1, d)   one hidden dimension, shared by every layer (and the embeddings)

Each gate has a log alpha. In training a gate is sampled from the stretched, clipped concrete
distribution, with u ~ U(eps, 1 - eps), l = -0.1, r = 1.1, beta = 2/3::

    z = clamp(sigmoid((log u - log(1 - u) + log alpha) / beta) * (r - l) + l, 0, 1)

and P(z != 0) = sigmoid(log alpha - beta * ln(-l / r)). In evaluation the gates are deterministic:
per row of a structure, the round(sum P(z != 0)) units of largest log alpha are kept, with CoFi's
value sigmoid(0.8 * log alpha / beta) (from Wang et al. 2020; never 0, so the count is exact; it is
0.996 at log alpha = ln 100 and folded into the weights by :func:`compact`); the others are 0.

**Initial log alphas: ours against CoFi's.** Every gate here starts at log alpha ~ N(10, 0.01^2)
(``GATE_INIT``). CoFi's ``L0Module`` (princeton-nlp/CoFiPruning, ``models/l0_module.py``) starts
four structures there too but the FFN dimensions at log alpha = ln((1 - p) / p) = 0, with its
``droprate_init`` p = 0.5 (``COFI_GATE_INIT``). The two starts differ:

    log alpha = 10:  P(z != 0) = 1.0000, a sample is exactly 1 with probability 0.9998
                     (0.95 at ln 100, where ``constrain`` puts it after the first step)
    log alpha = 0:   P(z != 0) = sigmoid(beta ln(-r / l)) = 0.83, a sample is 0 or 1 with
                     probability 0.17 each and in (0, 1) otherwise

so our student starts as the dense model (all but about 1 in 4,000 sampled gates exactly 1), its
expected sparsity at 0 where the target's warm-up starts, while CoFi's starts with every FFN
thinned by noisy gates (s_hat = 0.11 on BERT-base).
We keep 10 for every structure because the book's stored CoFi results were made with it
(``gate_init`` = 10.0 in each result file); ``add_gates(model, init_mean=0.0)`` starts every
structure, not only the FFN dimensions, at CoFi's FFN value.

How the gates act (forward hooks only, no fork of ``modeling_bert``), for a sublayer with input x,
branch input h (attention context or FFN activations) and LayerNorm restricted to the kept hidden
dimensions K = {i : z_hidden_i != 0}::

    out = z_hidden * LN_K(x + z_layer * z_hidden * (W (z_units * h) + b))   if the sublayer is kept
    out = x                                                                if it is removed

A sublayer is *removed* when its layer gate is 0 or all its unit gates are 0 (CoFi skips it, so
that its output is its input; LN(x + b) would not be the identity). The same rule holds in training
and evaluation, and :func:`compact` replaces a removed sublayer by a skip, so the compact model
computes exactly what the gated one computes. The embeddings' output is z_hidden * LN_K(e). Pruned
hidden dimensions are then exactly 0 in the residual stream, so slicing the inputs of Q, K, V, the
FFN and the pooler to K is exact.

Expected size, counted in the weight matrices of the encoder (embeddings excluded and frozen, as in
CoFi): 4 d_head parameters per (head, hidden dimension) pair, 2 per (FFN dimension, hidden dimension)
pair::

    E[params] = (sum_i P(hidden_i)) * (4 d_head sum_{l,h} P(attn_l) P(head_lh)
                                        + 2 sum_{l,j} P(ffn_l) P(dim_lj))
    s_hat = 1 - E[params] / (L (4 d^2 + 2 d F))

The Lagrangian lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2 is minimised by the model and the gates
and maximised by the lambdas (CoFi, eq. 5); the target t warms up linearly from 0. A training loop::

    gates, lag = add_gates(model), Lagrangian()
    opt, gate_opt, lag_opt = cofi_optimizers(model, gates, lag, lr=2e-5)
    for step, batch in enumerate(loader):
        loss = model(**batch).loss + lag(gates.expected_sparsity(), target_at(step, warmup, 0.6))
        loss.backward()
        for o in (opt, gate_opt, lag_opt):
            o.step(); o.zero_grad()
        gates.constrain()
    model.eval(); small = compact(model, gates)
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

LIMIT_L, LIMIT_R, BETA, EPS = -0.1, 1.1, 2.0 / 3.0, 1e-6
LOG_ALPHA_MIN, LOG_ALPHA_MAX = math.log(1e-2), math.log(1e2)
MAGICAL_NUMBER = 0.8  # CoFi's deterministic gate value sigmoid(0.8 log alpha / beta)
GATE_INIT = 10.0  # our initial log alpha, every structure (module docstring; the stored results')
COFI_GATE_INIT = {"attn_layer": 10.0, "head": 10.0, "ffn_layer": 10.0, "ffn_dim": 0.0,
                  "hidden": 10.0}  # CoFi's L0Module: ffn_dim ("intermediate") at ln(0.5 / 0.5)
STRUCTURES = ("attn_layer", "head", "ffn_layer", "ffn_dim", "hidden")


class HardConcrete(nn.Module):
    """A (rows, cols) tensor of hard-concrete gates; deterministic gates are chosen per row."""

    def __init__(self, rows: int, cols: int, init_mean: float = GATE_INIT,
                 init_std: float = 0.01):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.empty(rows, cols).normal_(init_mean, init_std))

    def prob_nonzero(self) -> torch.Tensor:
        """P(z != 0) = sigmoid(log alpha - beta ln(-l / r)), differentiable in log alpha."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R))

    def sample(self) -> torch.Tensor:
        """z = clamp(sigmoid((logit u + log alpha) / beta) (r - l) + l, 0, 1), u ~ U(eps, 1-eps)."""
        u = torch.empty_like(self.log_alpha).uniform_(EPS, 1 - EPS)
        s = torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / BETA)
        return (s * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0.0, 1.0)

    @torch.no_grad()
    def deterministic(self) -> torch.Tensor:
        """Per row, the round(sum P(z != 0)) units of largest log alpha, valued
        sigmoid(0.8 log alpha / beta); the rest 0."""
        keep = self.prob_nonzero().sum(-1).round().long()
        rank = self.log_alpha.argsort(-1, descending=True).argsort(-1)
        value = torch.sigmoid(self.log_alpha * MAGICAL_NUMBER / BETA)
        return torch.where(rank < keep[:, None], value, torch.zeros_like(value))


def bert_of(model: nn.Module) -> nn.Module:
    """The ``BertModel`` inside a task model (``model.bert``), or the model itself."""
    encoder = getattr(model, "bert", model)
    if not (hasattr(encoder, "embeddings") and hasattr(encoder, "encoder")):
        raise TypeError(f"{type(model).__name__} is not a BERT: no embeddings and encoder")
    return encoder


class CoFiGates(nn.Module):
    """The log alphas of the five structures of a BERT and the hooks that apply the gates.

    The gates are drawn once per forward pass (a pre-hook on the embeddings): sampled while the
    model is in training mode, deterministic in eval mode. ``self.z`` holds the last values.
    Every log alpha starts at ``init_mean``: 10 by default for all five structures, where CoFi
    starts the FFN dimensions at 0 (``COFI_GATE_INIT``; module docstring)."""

    def __init__(self, model: nn.Module, hidden: bool = True, init_mean: float = GATE_INIT):
        super().__init__()
        self.bert = [bert_of(model)]  # a list, so the model is not a submodule of the gates
        c = self.bert[0].config
        self.num_layers, self.num_heads = c.num_hidden_layers, c.num_attention_heads
        self.d_model, self.d_ffn = c.hidden_size, c.intermediate_size
        self.d_head = c.hidden_size // c.num_attention_heads
        self.hidden = hidden
        shapes = dict(attn_layer=(self.num_layers, 1), head=(self.num_layers, self.num_heads),
                      ffn_layer=(self.num_layers, 1), ffn_dim=(self.num_layers, self.d_ffn),
                      hidden=(1, self.d_model))
        self.gates = nn.ModuleDict({k: HardConcrete(*shape, init_mean=init_mean)
                                    for k, shape in shapes.items() if hidden or k != "hidden"})
        self.z: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self.attach()

    # -- gate values -----------------------------------------------------------------------
    def sample(self) -> dict[str, torch.Tensor]:
        return self._complete({k: g.sample() for k, g in self.gates.items()})

    def deterministic(self) -> dict[str, torch.Tensor]:
        """The evaluation gates, per structure (see the module docstring)."""
        return self._complete({k: g.deterministic() for k, g in self.gates.items()})

    def _complete(self, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "hidden" not in z:
            z["hidden"] = torch.ones(1, self.d_model, device=z["head"].device)
        return z

    def constrain(self) -> None:
        """Clamp every log alpha to [ln 0.01, ln 100] (CoFi does this after every step)."""
        with torch.no_grad():
            for g in self.gates.values():
                g.log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)

    # -- expected size ---------------------------------------------------------------------
    def full_params(self) -> int:
        """L (4 d^2 + 2 d F): the weight matrices of the encoder's layers."""
        return self.num_layers * (4 * self.d_model ** 2 + 2 * self.d_model * self.d_ffn)

    def expected_params(self) -> torch.Tensor:
        """E[params] = sum P(hidden) (4 d_head sum P(attn) P(head) + 2 sum P(ffn) P(dim))."""
        p = {k: g.prob_nonzero() for k, g in self.gates.items()}
        heads = (p["attn_layer"] * p["head"]).sum()
        dims = (p["ffn_layer"] * p["ffn_dim"]).sum()
        hidden = p["hidden"].sum() if "hidden" in p else torch.tensor(float(self.d_model))
        return hidden * (4 * self.d_head * heads + 2 * dims)

    def expected_sparsity(self) -> torch.Tensor:
        """s_hat = 1 - E[params] / full params (differentiable in every log alpha)."""
        return 1 - self.expected_params() / self.full_params()

    def existing_layers(self, z: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(L,) bool: the layers whose attention or FFN is kept (for layer distillation)."""
        z = z or self.z or self.deterministic()
        return ~(attention_removed(z) & ffn_removed(z))

    # -- hooks -----------------------------------------------------------------------------
    def attach(self) -> None:
        """Register the hooks on the model (done by the constructor)."""
        if self._handles:
            return
        bert, h = self.bert[0], self._handles
        h.append(bert.embeddings.register_forward_pre_hook(self._draw))
        if self.hidden:
            h.append(bert.embeddings.LayerNorm.register_forward_hook(self._layer_norm))
        for i, layer in enumerate(bert.encoder.layer):
            self._attach_sublayer(layer.attention.output, i, "attn_layer", "head")
            self._attach_sublayer(layer.output, i, "ffn_layer", "ffn_dim")

    def _attach_sublayer(self, out: nn.Module, i: int, layer_key: str, unit_key: str) -> None:
        h = self._handles
        h.append(out.dense.register_forward_pre_hook(self._gate_units(i, unit_key)))
        h.append(out.dense.register_forward_hook(self._gate_branch(i, layer_key)))
        if self.hidden:
            h.append(out.LayerNorm.register_forward_hook(self._layer_norm))
        removed = attention_removed if layer_key == "attn_layer" else ffn_removed
        h.append(out.register_forward_hook(
            lambda m, args, output: args[1] if removed(self.z)[i] else output))

    def remove(self) -> None:
        """Detach every hook: the model computes as if it had no gates."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _draw(self, embeddings: nn.Module, args) -> None:
        self.z = self.sample() if embeddings.training else self.deterministic()

    def _gate_units(self, i: int, key: str):
        def hook(dense: nn.Module, args):
            h, z = args[0], self.z[key][i]
            if key == "head":  # (batch, seq, heads * d_head) -> per head
                return (h.unflatten(-1, (self.num_heads, self.d_head)) * z[:, None]).flatten(-2)
            return h * z
        return hook

    def _gate_branch(self, i: int, key: str):
        return lambda dense, args, out: out * (self.z[key][i] * self.z["hidden"][0])

    def _layer_norm(self, ln: nn.LayerNorm, args, out: torch.Tensor) -> torch.Tensor:
        return masked_layer_norm(args[0], ln, self.z["hidden"][0])


def attention_removed(z: dict[str, torch.Tensor]) -> torch.Tensor:
    """(L,) bool: the attention sublayer's gate is 0 or all its heads' gates are 0."""
    return (z["attn_layer"][:, 0] == 0) | (z["head"] == 0).all(-1)


def ffn_removed(z: dict[str, torch.Tensor]) -> torch.Tensor:
    """(L,) bool: the FFN sublayer's gate is 0 or all its inner dimensions' gates are 0."""
    return (z["ffn_layer"][:, 0] == 0) | (z["ffn_dim"] == 0).all(-1)


def masked_layer_norm(x: torch.Tensor, ln: nn.LayerNorm, z: torch.Tensor) -> torch.Tensor:
    """z * LN_K(x): LayerNorm over the kept dimensions K = {i : z_i != 0} only, 0 elsewhere."""
    keep = z != 0
    if keep.all():
        return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps) * z
    y = F.layer_norm(x[..., keep], (int(keep.sum()),), ln.weight[keep], ln.bias[keep], ln.eps)
    return torch.zeros_like(x).masked_scatter(keep.expand_as(x), y) * z


def add_gates(model: nn.Module, hidden: bool = True, init_mean: float = GATE_INIT) -> CoFiGates:
    """Hard-concrete gates on ``model`` (a BERT or a task model holding one in ``.bert``), every
    log alpha starting at ``init_mean`` (CoFi's differ for the FFN dimensions: module docstring).
    """
    return CoFiGates(model, hidden=hidden, init_mean=init_mean)


# -- the Lagrangian --------------------------------------------------------------------------
def target_at(step: int, warmup_steps: int, final_target: float) -> float:
    """t = final * min(1, step / warmup): the target sparsity, warmed up linearly from 0."""
    return final_target if warmup_steps <= 0 else final_target * min(1.0, step / warmup_steps)


def lagrangian(expected_sparsity: torch.Tensor, target: float, lambda1: torch.Tensor,
               lambda2: torch.Tensor) -> torch.Tensor:
    """lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2 (Xia et al. 2022, eq. 5)."""
    gap = expected_sparsity - target
    return lambda1 * gap + lambda2 * gap ** 2


class Lagrangian(nn.Module):
    """The two multipliers, learned by gradient *ascent* (see :func:`cofi_optimizers`)."""

    def __init__(self):
        super().__init__()
        self.lambda_1 = nn.Parameter(torch.tensor(0.0))
        self.lambda_2 = nn.Parameter(torch.tensor(0.0))

    def forward(self, expected_sparsity: torch.Tensor, target: float) -> torch.Tensor:
        return lagrangian(expected_sparsity, target, self.lambda_1, self.lambda_2)


def cofi_optimizers(model: nn.Module, gates: CoFiGates, multipliers: Lagrangian, lr: float,
                    gate_lr: float = 0.01, lambda_lr: float = 0.01,
                    weight_decay: float = 0.0) -> tuple[torch.optim.Optimizer, ...]:
    """Three AdamWs: the model without its (frozen) embeddings at ``lr``; the log alphas at
    ``gate_lr``; the lambdas at ``lambda_lr`` with ``maximize=True`` (ascent on the Lagrangian)."""
    bert_of(model).embeddings.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    return (torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
            torch.optim.AdamW(gates.parameters(), lr=gate_lr, weight_decay=0.0),
            torch.optim.AdamW(multipliers.parameters(), lr=lambda_lr, weight_decay=0.0,
                              maximize=True))


# -- compact ---------------------------------------------------------------------------------
class SkipAttention(nn.Module):
    """A removed attention sublayer: its output is its input."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states, None


class SkipOutput(nn.Module):
    """A removed FFN sublayer (with ``intermediate`` an ``nn.Identity``): returns the residual."""

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return input_tensor


@torch.no_grad()
def compact(model: nn.Module, gates: CoFiGates) -> nn.Module:
    """A copy of ``model`` with every Linear, LayerNorm and embedding sliced to the units the
    deterministic gates keep, their values folded into the weights, removed sublayers skipped.
    Its logits equal the gated model's in eval mode; ``config.cofi_kept`` records its shape
    (for :func:`compact_like`)."""
    gates.remove()
    try:
        small = copy.deepcopy(model)
    finally:
        gates.attach()
    z = {k: v.detach().cpu() for k, v in gates.deterministic().items()}
    _slice(bert_of(small), z)
    small.config.cofi_kept = kept_shape(z)
    return small


def kept_shape(z: dict[str, torch.Tensor]) -> dict:
    """Heads and FFN dimensions kept per layer (0 where the sublayer is removed), hidden dims."""
    heads = torch.where(attention_removed(z), 0, (z["head"] != 0).sum(-1))
    dims = torch.where(ffn_removed(z), 0, (z["ffn_dim"] != 0).sum(-1))
    return {"heads": heads.tolist(), "ffn": dims.tolist(), "hidden": int((z["hidden"] != 0).sum())}


@torch.no_grad()
def compact_like(model: nn.Module, kept: dict) -> nn.Module:
    """Slice a full-size ``model`` in place to the shape ``kept`` (from ``config.cofi_kept``), so
    that a compact model's saved state dict loads into it."""
    L, c = len(kept["heads"]), bert_of(model).config
    z = {"attn_layer": torch.ones(L, 1), "ffn_layer": torch.ones(L, 1),
         "head": _first(kept["heads"], c.num_attention_heads),
         "ffn_dim": _first(kept["ffn"], c.intermediate_size),
         "hidden": _first([kept["hidden"]], c.hidden_size)}
    _slice(bert_of(model), z)
    model.config.cofi_kept = kept
    return model


def _first(counts: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(counts)[:, None]).float()


def _slice(bert: nn.Module, z: dict[str, torch.Tensor]) -> None:
    hidden = z["hidden"][0].nonzero()[:, 0]
    scale = z["hidden"][0][hidden]
    emb = bert.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        old = getattr(emb, name)
        new = nn.Embedding(old.num_embeddings, len(hidden), padding_idx=old.padding_idx)
        new.weight.copy_(old.weight[:, hidden])
        setattr(emb, name, new)
    emb.LayerNorm = _layer_norm(emb.LayerNorm, hidden, scale)
    gone_attn, gone_ffn = attention_removed(z), ffn_removed(z)
    for i, layer in enumerate(bert.encoder.layer):
        if gone_attn[i]:
            layer.attention = SkipAttention()
        else:
            _slice_attention(layer.attention, z["head"][i], z["attn_layer"][i, 0], hidden, scale)
        if gone_ffn[i]:
            layer.intermediate, layer.output = nn.Identity(), SkipOutput()
        else:
            _slice_ffn(layer, z["ffn_dim"][i], z["ffn_layer"][i, 0], hidden, scale)
    if getattr(bert, "pooler", None) is not None:
        bert.pooler.dense = _linear(bert.pooler.dense, cols=hidden)


def _slice_attention(attention: nn.Module, z_head: torch.Tensor, z_layer: torch.Tensor,
                     hidden: torch.Tensor, scale: torch.Tensor) -> None:
    """Keep the heads with z != 0; BertSelfAttention infers the number of heads from the width
    (``view(..., -1, attention_head_size)``); ``num_attention_heads`` and ``all_head_size`` are
    set to match."""
    att, dh = attention.self, attention.self.attention_head_size
    heads = z_head.nonzero()[:, 0]
    cols = (heads[:, None] * dh + torch.arange(dh)).reshape(-1)
    for name in ("query", "key", "value"):
        setattr(att, name, _linear(getattr(att, name), rows=cols, cols=hidden))
    att.num_attention_heads, att.all_head_size = len(heads), len(cols)
    out = attention.output
    out.dense = _linear(out.dense, rows=hidden, cols=cols, row_scale=z_layer * scale,
                        col_scale=z_head[heads].repeat_interleave(dh))
    out.LayerNorm = _layer_norm(out.LayerNorm, hidden, scale)


def _slice_ffn(layer: nn.Module, z_dim: torch.Tensor, z_layer: torch.Tensor,
               hidden: torch.Tensor, scale: torch.Tensor) -> None:
    dims = z_dim.nonzero()[:, 0]
    layer.intermediate.dense = _linear(layer.intermediate.dense, rows=dims, cols=hidden)
    out = layer.output
    out.dense = _linear(out.dense, rows=hidden, cols=dims, row_scale=z_layer * scale,
                        col_scale=z_dim[dims])
    out.LayerNorm = _layer_norm(out.LayerNorm, hidden, scale)


def _linear(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
            row_scale: torch.Tensor | None = None,
            col_scale: torch.Tensor | None = None) -> nn.Linear:
    """W' = diag(row_scale) W[rows, cols] diag(col_scale), b' = row_scale * b[rows]."""
    w, b = old.weight, old.bias
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    if col_scale is not None:
        w = w * col_scale.to(w)
    if row_scale is not None:
        w = w * row_scale.to(w)[:, None]
        b = b * row_scale.to(b) if b is not None else None
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).to(w)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new


def _layer_norm(old: nn.LayerNorm, keep: torch.Tensor, scale: torch.Tensor) -> nn.LayerNorm:
    """LN over the kept dimensions with the hidden gates folded in: gamma * z, beta * z."""
    new = nn.LayerNorm(len(keep), eps=old.eps).to(old.weight)
    new.weight.copy_(old.weight[keep] * scale.to(old.weight))
    new.bias.copy_(old.bias[keep] * scale.to(old.bias))
    return new
