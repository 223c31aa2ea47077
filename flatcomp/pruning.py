"""Unstructured pruning: masks, global magnitude pruning, rewinding, random tickets and IMP.

A *mask* is a dict ``{parameter name: bool tensor}`` over the prunable weights: True keeps an
entry, False prunes it (the weight is held at exactly zero: in :func:`flatcomp.lab.train.fine_tune`,
or in a loop of your own with any optimizer through a :class:`Masker`). The *sparsity* of a mask
is the fraction of the prunable weights it prunes.

The prunable set of any model is the weight matrix of every ``nn.Linear`` but the output head
(:func:`prunable_weights`). For BERT that is Chen et al.'s set (NeurIPS 2020, "The Lottery Ticket
Hypothesis for Pre-trained BERT Networks"): every ``nn.Linear`` of the encoder (query, key,
value, attention output, intermediate and output dense) and of the pooler, also available as the
preset ``"bert"``. Embeddings, LayerNorms, biases and the task head are never pruned.

Iterative magnitude pruning (IMP; Frankle & Carbin, ICLR 2019, "The Lottery Ticket Hypothesis:
Finding Sparse, Trainable Neural Networks"), as Chen et al. apply it to BERT, with theta_0 the
pre-trained encoder and the freshly initialised head, and m_0 = 1:

    for k = 0, 1, ..., K:
        theta_k = train(theta_0 * m_k)                   (rewinding; or theta_{k-1} * m_k without)
        m_{k+1} = keep the largest |theta_k| under m_k, so that a fraction (k+1) * r of the
                  *original* prunable weights is pruned (global ranking across all layers)

The dev score of theta_k is the score of the subnetwork at sparsity k * r: round 0 is the
ordinary dense fine-tune, round k the ticket m_k trained in isolation from the pre-trained values.

    >>> masks = magnitude_masks(prunable_weights(model), sparsity=0.3)
    >>> rewind(model, pretrained_state, masks)          # theta_0 * m, in place
    >>> fine_tune(model, train, dev, task, profile, "sam", masks=masks)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn


__all__ = ["HEAD_NAMES", "ImpRound", "Masker", "apply_masks", "imp_rounds",
           "iterative_magnitude_pruning", "load_masks", "magnitude_masks", "mask_overlap",
           "prunable_weights", "random_masks", "rewind", "save_masks", "snapshot",
           "sparsity_report"]

Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor, True = kept
METADATA_KEY = "flatcomp_masks"  # the safetensors header entry that holds our JSON metadata


# ---------------------------------------------------------------- the prunable set

HEAD_NAMES = ("classifier", "lm_head", "head", "qa_outputs")  # output heads, never pruned
PRESETS = ("linear", "bert", "encoder")


def prunable_weights(model: nn.Module, preset: str = "linear") -> dict[str, torch.Tensor]:
    """The weights to prune, keyed by their names in ``model.named_parameters()`` (the
    parameters themselves, not copies), in model order.

    ``preset="linear"`` (any model): the weight of every ``nn.Linear`` except the output head.
    The head is every ``nn.Linear`` inside a module named (last dotted part) one of
    ``HEAD_NAMES``, e.g. BERT's ``classifier`` or ``qa_outputs``; a model without one has the
    last ``nn.Linear`` in ``model.modules()`` order as its head.

    ``preset="bert"``: Chen et al.'s set (2020, Section 3), every ``nn.Linear`` inside the
    ``encoder`` or the ``pooler``: 6 L + 1 matrices for BERT with L layers. For Hugging Face's
    ``BertForSequenceClassification`` the two presets agree.

    ``preset="encoder"``: the 6 L matrices inside the ``encoder``, the pooler left dense: for a
    model whose pooler was never trained (a sentence-embedding model such as all-MiniLM-L6-v2,
    which pools by averaging), where global magnitude pruning would empty it.

    Raises ValueError when nothing matches: pass a dict of weights of your own to
    :func:`magnitude_masks` instead.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if preset in ("bert", "encoder"):
        inside = {"encoder", "pooler"} if preset == "bert" else {"encoder"}
        chosen = [(n, m) for n, m in linears if inside & set(n.split("."))]
    else:
        chosen = [(n, m) for n, m in linears if not set(HEAD_NAMES) & set(n.split("."))]
        if len(chosen) == len(linears):
            chosen = chosen[:-1]  # no named head: the last Linear is the output layer
    names = {id(p): n for n, p in model.named_parameters()}
    weights = {names[id(m.weight)]: m.weight for _, m in chosen if id(m.weight) in names}
    if not weights:
        raise ValueError(
            f"no prunable weights in {type(model).__name__} with preset {preset!r}: 'linear' "
            f"takes every nn.Linear weight but the output head (a module named one of "
            f"{', '.join(HEAD_NAMES)}, else the last nn.Linear), 'bert' those inside an "
            "'encoder' or 'pooler', 'encoder' those inside an 'encoder'; pass your own {name: weight} dict to magnitude_masks instead")
    return weights


def without_pooler(masks: Mapping[str, torch.Tensor]) -> Masks:
    """``masks`` less the pooler's. Applied to a model they leave the pooler dense and every
    encoder matrix pruned as before: a control for a ticket whose pooler was pruned away."""
    return {name: mask for name, mask in masks.items() if "pooler" not in name.split(".")}


def _kept(tensor: torch.Tensor) -> torch.Tensor:
    """A mask as is; for weights, the entries that are not exactly zero."""
    return tensor if tensor.dtype == torch.bool else tensor != 0


# ---------------------------------------------------------------- masks in a loop of your own

@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the pruned entries (mask False) of each named parameter to exactly zero."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def mask_gradients(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if params[name].grad is not None:
            params[name].grad.mul_(mask.to(params[name].grad.device, params[name].grad.dtype))


class Masker:
    """Holds pruned weights at exactly zero in any training loop, with any optimizer.

    For a mask m (True = kept) on weight w it keeps w = m * w by three means:

    1. the weights are masked once, when the Masker is made: w <- m * w;
    2. a gradient hook on each masked parameter: grad <- m * grad at every backward, so SAM and
       its variants perturb nothing there (e is proportional to the gradient), and an optimizer
       whose state is still zero there (SGD with momentum, Adam, AdamW with weight decay) moves
       nothing;
    3. after every step of the optimizer passed to ``Masker(..., optimizer)`` or
       :meth:`attach`: w <- m * w again, which catches what state can still move (Adam's
       moments from steps taken before the masks, say). For SAM and its variants the hook sits
       on ``optimizer.base_optimizer``, so it also runs in the ``first_step`` /
       ``second_step`` loop.

        masker = Masker(model, masks, optimizer)
        ...  # the usual loop: backward, optimizer.step(...)
        masker.remove()  # the hooks off again

    Without an optimizer call :meth:`apply` after each step yourself.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor],
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise KeyError(f"masks name {len(unknown)} parameters the model lacks, e.g. "
                           f"{unknown[0]}")
        for name, mask in masks.items():
            if mask.shape != params[name].shape:
                raise ValueError(f"the mask of {name} has shape {tuple(mask.shape)}, the "
                                 f"parameter {tuple(params[name].shape)}")
        self.masks = {name: _kept(m).to(params[name].device) for name, m in masks.items()}
        self.params = {name: params[name] for name in masks}
        self.apply()
        self._handles = [p.register_hook(_masking_hook(self.masks[name]))
                         for name, p in self.params.items()]
        if optimizer is not None:
            self.attach(optimizer)

    @torch.no_grad()
    def apply(self) -> None:
        """w <- m * w for every masked parameter."""
        for name, p in self.params.items():
            p.mul_(self.masks[name].to(p.device))

    def attach(self, optimizer: torch.optim.Optimizer) -> "Masker":
        """Re-mask the weights after every ``step`` of ``optimizer`` (of its ``base_optimizer``
        when it has one: SAM and its variants). Returns the Masker."""
        target = getattr(optimizer, "base_optimizer", optimizer)
        self._handles.append(target.register_step_post_hook(lambda *_: self.apply()))
        return self

    def remove(self) -> None:
        """Take every hook off: the weights train freely again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _masking_hook(mask: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: grad * mask.to(grad.device)


# ---------------------------------------------------------------- global magnitude pruning

@torch.no_grad()
def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float,
                    masks: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Global magnitude pruning: prune the smallest |w| across all layers together.

    ``sparsity`` is the fraction of *all* entries of ``weights`` to prune, counting those already
    pruned by ``masks``, which stay pruned. With N entries exactly n = round(sparsity * N) are
    pruned: the n smallest of the scores s = |w| on kept entries and s = -1 on pruned ones. Ties
    go by position (names sorted, then row-major order), so the result is deterministic. Round k
    of IMP with rate r asks for sparsity k * r of the original weights (Chen et al., 2020).
    Masks come back on the CPU. An empty ``weights`` is a ValueError.
    """
    _check_sparsity(sparsity)
    if not weights:
        raise ValueError("magnitude_masks was given no weights: pass a {name: weight} dict of "
                         "the weights to prune, e.g. prunable_weights(model)")
    names = sorted(weights)
    masks = masks or {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    if sorted(masks) != names:
        raise ValueError("masks and weights must name the same parameters")
    total = sum(weights[n].numel() for n in names)
    target = round(sparsity * total)
    already = sum(int((~masks[n]).sum()) for n in names)
    if target < already:
        raise ValueError(f"sparsity {sparsity} is below the masks' current sparsity "
                         f"{already / total:.6f}: pruned weights cannot come back")
    scores = torch.cat([torch.where(masks[n].to(weights[n].device), weights[n].detach().abs(),
                                    -1.0).float().flatten() for n in names])
    if not torch.isfinite(scores).all():
        raise ValueError("weights hold NaN or inf: cannot rank them by magnitude")
    kept = ~_smallest(scores, target)
    sizes = [weights[n].numel() for n in names]
    split = {n: k.view(weights[n].shape).cpu() for n, k in zip(names, kept.split(sizes))}
    return {name: split[name] for name in weights}


def _smallest(scores: torch.Tensor, n: int) -> torch.Tensor:
    """A bool vector with exactly ``n`` True entries: the n smallest scores, ties by index."""
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    if n == 0:
        return chosen
    threshold = scores.kthvalue(n).values
    chosen |= scores < threshold
    ties = torch.nonzero(scores == threshold).flatten()
    chosen[ties[: n - int(chosen.sum())]] = True
    return chosen


def _check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


# ---------------------------------------------------------------- random tickets

def random_masks(masks_or_weights: Mapping[str, torch.Tensor], seed: int) -> Masks:
    """The random-ticket baseline: in each layer as many kept entries as the given mask keeps
    (or as the given weights have non-zero entries), at uniformly random positions.

    Layers are drawn in sorted-name order from one generator seeded with ``seed``, so the same
    masks and seed give the same random ticket whatever the dict order.
    """
    generator = torch.Generator().manual_seed(seed)
    drawn = {}
    for name in sorted(masks_or_weights):
        tensor = masks_or_weights[name]
        keep = int(_kept(tensor).sum())
        flat = torch.zeros(tensor.numel(), dtype=torch.bool)
        flat[torch.randperm(tensor.numel(), generator=generator)[:keep]] = True
        drawn[name] = flat.view(tensor.shape)
    return {name: drawn[name] for name in masks_or_weights}


# ---------------------------------------------------------------- reports

def sparsity_report(model_or_masks: nn.Module | Mapping[str, torch.Tensor],
                    preset: str = "linear") -> dict[str, Any]:
    """The fraction of pruned entries, overall and per layer.

    A model is measured by the exact zeros of its prunable weights (:func:`prunable_weights`
    with ``preset``); a dict of bool masks by its
    False entries (a dict of other tensors is read as weights). Returns ``{"sparsity", "pruned",
    "total", "layers": {name: fraction pruned}}``.
    """
    tensors = (prunable_weights(model_or_masks, preset) if isinstance(model_or_masks, nn.Module)
               else model_or_masks)
    pruned = {name: int((~_kept(t.detach())).sum()) for name, t in tensors.items()}
    total = sum(t.numel() for t in tensors.values())
    return {"sparsity": sum(pruned.values()) / total if total else 0.0,
            "pruned": sum(pruned.values()), "total": total,
            "layers": {name: pruned[name] / tensors[name].numel() for name in tensors}}


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """How much two masks agree, overall and per layer.

    ``jaccard`` = |A & B| / |A | B| of the kept sets (1 when both keep nothing); ``agreement`` =
    the fraction of entries on which both make the same decision. For comparison, two independent
    random masks keeping fractions p and q would have, to first order, Jaccard p q / (p + q - p q)
    and agreement p q + (1 - p)(1 - q): these are ``chance_jaccard`` and ``chance_agreement``.
    """
    if sorted(a) != sorted(b):
        raise ValueError("the two masks must name the same parameters")
    layers = {name: _overlap_counts(_kept(a[name]), _kept(b[name])) for name in a}
    overall = {key: sum(c[key] for c in layers.values()) for key in next(iter(layers.values()))}
    return {**_overlap_stats(overall),
            "layers": {name: _overlap_stats(counts) for name, counts in layers.items()}}


def _overlap_counts(a: torch.Tensor, b: torch.Tensor) -> dict[str, int]:
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.cpu(), b.cpu()
    return {"both": int((a & b).sum()), "either": int((a | b).sum()), "same": int((a == b).sum()),
            "kept_a": int(a.sum()), "kept_b": int(b.sum()), "total": a.numel()}


def _overlap_stats(c: dict[str, int]) -> dict[str, float]:
    p, q = c["kept_a"] / c["total"], c["kept_b"] / c["total"]
    return {"jaccard": c["both"] / c["either"] if c["either"] else 1.0,
            "agreement": c["same"] / c["total"],
            "chance_jaccard": p * q / (p + q - p * q) if p + q > 0 else 1.0,
            "chance_agreement": p * q + (1 - p) * (1 - q)}


# ---------------------------------------------------------------- saving and loading

def save_masks(masks: Mapping[str, torch.Tensor], path: Path | str,
               metadata: Mapping[str, Any]) -> None:
    """Write masks as safetensors (bool stored as uint8), atomically.

    ``metadata`` (JSON-serialisable: the configuration that made the masks) is stored as JSON in
    the safetensors header, with the masks' overall ``sparsity`` added.
    """
    if any(m.dtype != torch.bool for m in masks.values()):
        raise TypeError("masks must be bool tensors")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**metadata, "sparsity": sparsity_report(masks)["sparsity"]}
    tensors = {name: m.detach().to("cpu", torch.uint8).contiguous() for name, m in masks.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp, metadata={"format": "pt", METADATA_KEY: json.dumps(header)})
    tmp.replace(path)


def load_masks(path: Path | str) -> tuple[Masks, dict[str, Any]]:
    """Masks and metadata written by :func:`save_masks` (safetensors only, never pickle)."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        if METADATA_KEY not in header:
            raise ValueError(f"{path} is a safetensors file but holds no flatcomp masks")
        stored = {name: f.get_tensor(name) for name in f.keys()}
    for name, tensor in stored.items():
        if tensor.dtype != torch.uint8 or bool((tensor > 1).any()):
            raise ValueError(f"{path}: {name} is not a 0/1 uint8 mask")
    return {name: t.bool() for name, t in stored.items()}, json.loads(header[METADATA_KEY])


# ---------------------------------------------------------------- rewinding

def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of every parameter: the theta_0 to rewind to."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def rewind(model: nn.Module, pretrained_state: Mapping[str, torch.Tensor],
           masks: Mapping[str, torch.Tensor] | None) -> nn.Module:
    """theta <- theta_0 * m, in place: every parameter (the task head included) is set back to
    ``pretrained_state`` (e.g. :func:`snapshot` of the freshly loaded model), then the pruned
    entries are zeroed (Frankle & Carbin, 2019; Chen et al., 2020). Returns ``model``."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(pretrained_state))
    if missing:
        raise KeyError(f"pretrained_state lacks {len(missing)} parameters, e.g. {missing[0]}")
    for name, p in params.items():
        p.copy_(pretrained_state[name])
    if masks:
        apply_masks(model, masks)
    return model


_rewind = rewind  # the IMP functions below take a flag named ``rewind``


# ---------------------------------------------------------------- iterative magnitude pruning

@dataclass
class ImpRound:
    """One round of IMP: the model trained this round and the masks it leads to.

    ``masks`` are those the round's model was trained with (sparsity ``sparsity`` = round * rate,
    nominal; the exact fraction is ``sparsity_report(masks)["sparsity"]``), so the round's dev
    score is the score at that sparsity. ``next_masks`` were pruned from the trained weights:
    they are the next round's ``masks`` (None after the last round).
    """

    round: int
    sparsity: float
    masks: Masks
    next_masks: Masks | None


def imp_rounds(make_model: Callable[[], nn.Module],
               train_fn: Callable[[nn.Module, Masks | None], Any],
               rounds: int, rate: float = 0.1, rewind: bool = True, start_round: int = 0,
               start_masks: Masks | None = None,
               start_state: Mapping[str, torch.Tensor] | None = None,
               preset: str = "linear") -> Iterator[tuple[ImpRound, Any]]:
    """IMP one round at a time: yields ``(ImpRound, what train_fn returned)`` for rounds
    ``start_round, ..., rounds``. See :func:`iterative_magnitude_pruning` for the arguments.

    Lazy: round k + 1 is trained only when the next item is asked for, so one round can be
    computed on its own with ``next(imp_rounds(..., start_round=k, start_masks=m_k))``. The
    yielded model is trained further (or rewound) in place when the next round starts.
    """
    _check_schedule(rounds, rate, start_round)
    model = make_model()
    theta_0 = snapshot(model)
    masks = start_masks or {n: torch.ones_like(w, dtype=torch.bool)
                            for n, w in prunable_weights(model, preset).items()}
    _check_start(masks, prunable_weights(model, preset), start_round, rate)
    if start_round > 0 and not rewind:
        if start_state is None:
            raise ValueError("without rewinding, resuming at round k needs start_state: the "
                             "weights trained in round k - 1")
        _rewind(model, start_state, masks)
    for k in range(start_round, rounds + 1):
        if rewind:
            _rewind(model, theta_0, masks)       # theta_0 * m_k
        else:
            apply_masks(model, masks)            # theta_{k-1} * m_k
        trained = train_fn(model, masks if k > 0 else None)
        model = trained if isinstance(trained, nn.Module) else trained.model
        next_masks = (magnitude_masks(prunable_weights(model, preset), _nominal(k + 1, rate),
                                      masks)
                      if k < rounds else None)
        yield ImpRound(k, _nominal(k, rate), masks, next_masks), trained
        masks = next_masks


def iterative_magnitude_pruning(make_model: Callable[[], nn.Module],
                                train_fn: Callable[[nn.Module, Masks | None], Any],
                                rounds: int, rate: float = 0.1, rewind: bool = True,
                                start_round: int = 0, start_masks: Masks | None = None,
                                start_state: Mapping[str, torch.Tensor] | None = None,
                                on_round: Callable[[ImpRound, Any], None] | None = None,
                                preset: str = "linear") -> list[ImpRound]:
    """Iterative magnitude pruning with (or without) rewinding (Frankle & Carbin, 2019; Chen et
    al., 2020), rounds ``start_round, ..., rounds``.

    Round k (m_0 keeps everything; theta_0 is ``make_model()`` as first built: the pre-trained
    encoder and the initial head):

    1. start from theta_0 * m_k (``rewind=True``), or from the weights trained in round k - 1
       times m_k (``rewind=False``);
    2. train with ``train_fn(model, masks)`` (masks None in round 0, the dense fine-tune); it
       must build a new optimizer and schedule each call (``fine_tune`` does) and return the
       trained model or an object holding it as ``.model`` (a ``FineTuneResult``);
    3. prune m_{k+1}: the smallest trained |w| until (k + 1) * rate of the *original* prunable
       weights are pruned, globally across layers (not after the last round).

    **Which model each round's score belongs to:** round k's trained model is the subnetwork
    m_k at sparsity k * rate, trained from the pre-trained weights (with rewinding): its dev
    score is "the score at sparsity k * rate" in Chen et al.'s sense. Round 0 is the full model.
    ``rounds`` pruning steps thus cost ``rounds + 1`` fine-tunes and score sparsities 0, rate,
    ..., rounds * rate; the pruning decisions use the weights ``train_fn`` returns
    (``fine_tune``: those of the best dev epoch).

    ``on_round(record, trained)`` is called after each round, before the next one starts: store
    the round there (``save_masks(record.next_masks, ...)``, the score as JSON, and without
    rewinding the trained weights). A killed run resumes with ``start_round=k``,
    ``start_masks`` = round k - 1's ``next_masks`` and, without rewinding, ``start_state`` = the
    weights round k - 1 trained; on a deterministic device it then gives the same masks as an
    uninterrupted run. ``preset`` names the prunable set (:func:`prunable_weights`). Returns the
    records of the rounds run.
    """
    records = []
    for record, trained in imp_rounds(make_model, train_fn, rounds, rate, rewind, start_round,
                                      start_masks, start_state, preset):
        if on_round is not None:
            on_round(record, trained)
        records.append(record)
    return records


def _nominal(k: int, rate: float) -> float:
    """k * rate without float noise (3 * 0.1 is 0.30000000000000004)."""
    return round(k * rate, 12)


def _check_schedule(rounds: int, rate: float, start_round: int) -> None:
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    if rounds < 0 or not 0 <= start_round <= rounds:
        raise ValueError(f"need 0 <= start_round <= rounds, got {start_round} and {rounds}")
    if _nominal(rounds, rate) >= 1:
        raise ValueError(f"rounds * rate must be below 1, got {rounds} * {rate}: the last round "
                         "would prune every prunable weight (round 0 is the dense fine-tune, so "
                         "9 rounds at 0.1 score sparsities 0%, 10%, ..., 90%)")


def _check_start(masks: Masks, weights: Mapping[str, torch.Tensor], start_round: int,
                 rate: float) -> None:
    """The masks to start from must prune exactly round k's share of the prunable weights."""
    if sorted(masks) != sorted(weights):
        raise ValueError("start_masks must cover exactly the model's prunable weights")
    report = sparsity_report(masks)
    expected = round(_nominal(start_round, rate) * report["total"])
    if report["pruned"] != expected:
        raise ValueError(f"start_masks prune {report['pruned']} weights, but round "
                         f"{start_round} at rate {rate} starts with {expected} pruned")
