"""The SQuAD chapter: extractive question answering (Rajpurkar et al., EMNLP 2016) fine-tuned with
Adam, SAM and SWA through the one loop of :mod:`flatcomp.lab.train`, then compressed: dynamic int8
and k-bit weights, IMP with rewinding, and the sparsest IMP round's ticket in int8.

The experiments, in the plan's order (their priority, then the seed):

    squad_finetune           0  Adam and SAM, first seed: the models the chapter's verdict uses
    squad_quant              1  their exact match and F1 in fp32 and dynamic int8 (F1 per question
                                too, to pair the int8 drops of two models over one dev set)
    squad_imp                2  IMP with rewinding, Adam and SAM: round 0 is the dense fine-tune,
                                round k trains the ticket at k x imp_rate sparsity (4 x 10%)
    squad_compound           2  the last IMP round's ticket (40%) in fp32 and dynamic int8
    squad_more               3  SWA on every seed, Adam and SAM on the other seeds
    squad_more_quant         3  their int8
    squad_bits               3  the first seed's Adam and SAM models with k-bit weights

Every experiment runs at :meth:`~flatcomp.lab.config.Profile.for_squad` (the SQuAD batch size and
window length; the plan measures its step there), every record carries the data cut (the article
split of a local dev set, the subsample of training questions), and the fine-tuned weights live in
the checkpoint cache like the GLUE ones (:func:`flatcomp.lab.experiments.core.finetuned`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from flatcomp.lab.config import Profile
from flatcomp.lab.data import squad_is_local, squad_rows
from flatcomp.lab.experiments.core import (PASSES_PER_STEP, Experiment, Unit, checkpoint_paths,
                                           encoded_task, fine_tune_summary, finetune_record,
                                           finetuned, model_steps, unit_id)
from flatcomp.lab.experiments.lottery import finish_imp_round
from flatcomp.lab.experiments.quantization_runs import QUANT_BITS
from flatcomp.lab.models import load_model, load_weights, model_source
from flatcomp.lab.qa_features import QAFeatures, squad_features
from flatcomp.lab.results import ResultsStore
from flatcomp.lab.qa_answers import question_f1, squad_scores
from flatcomp.lab.train import OPTIMIZERS, fine_tune, predict_spans

TASK = "squad"
HEADLINE = ("adam", "sam")  # the optimizers of the verdict (SWA is in squad_more)
# Windows per question of the official splits at 384 tokens and stride 128 (bert-base-uncased's
# WordPiece: 88,524 train windows of 87,599 questions, 10,784 of 10,570 in validation, as
# Hugging Face's run_qa.py reports; encode_squad makes the same 10,784 of the dev set), for cost
# estimates where no data is at hand.
OFFICIAL_WINDOWS_PER_QUESTION = (88524 / 87599, 10784 / 10570)


# ---------------------------------------------------------------- units

def _model(optimizer: str, seed: int) -> Unit:
    return dict(task=TASK, optimizer=optimizer, seed=seed)


def _headline_units(profile: Profile) -> list[Unit]:
    """Adam and SAM at the first seed."""
    return [_model(o, profile.seeds[0]) for o in HEADLINE]


def _more_units(profile: Profile) -> list[Unit]:
    """SWA at every seed, and Adam and SAM at every seed but the first."""
    return [_model(o, s) for s in profile.seeds for o in OPTIMIZERS
            if o == "swa" or s != profile.seeds[0]]


def _imp_units(profile: Profile) -> list[Unit]:
    """IMP with rewinding at the first seed, Adam and SAM, rounds 0 to ``imp_rounds``."""
    rounds = profile.squad_settings()["imp_rounds"]
    return [dict(task=TASK, optimizer=o, rewind=True, seed=profile.seeds[0], round=k)
            for o in HEADLINE for k in range(rounds + 1)]


def _compound_units(profile: Profile) -> list[Unit]:
    """The last IMP round of each optimizer, at its sparsity."""
    return [dict(task=TASK, optimizer=o, sparsity=_sparsity(profile, _last_round(profile)),
                 seed=profile.seeds[0]) for o in HEADLINE]


def _last_round(profile: Profile) -> int:
    return profile.squad_settings()["imp_rounds"]


def _sparsity(profile: Profile, k: int) -> float:
    return round(k * profile.squad_settings()["imp_rate"], 12)


# ---------------------------------------------------------------- running a unit

def _run_finetune(profile: Profile, unit: Unit) -> dict:
    """A full model fine-tuned on SQuAD (cached), its exact match and F1 after every epoch."""
    _, summary = finetuned(profile, TASK, unit["optimizer"], unit["seed"])
    return finetune_record(summary)


def _run_quantization(profile: Profile, unit: Unit) -> dict:
    """Exact match and F1 of a fine-tuned model in fp32 and after dynamic int8 (per tensor and
    per channel), on the CPU without autocast (:mod:`flatcomp.quantization`), with the F1 of every
    question in fp32 and int8."""
    from flatcomp import quantization as q

    model = finetuned(profile, TASK, unit["optimizer"], unit["seed"])[0].cpu().eval()
    _, dev, cut = encoded_task(profile, TASK)
    measured = _cpu_scores(profile, dev, _int8_variants(model))
    drop = measured["scores"]["fp32"] - measured["scores"]["int8"]
    return {**unit, **measured, "int8_drop": drop,
            "size_bytes": {"fp32": q.model_size_bytes(model),
                           "int8": q.model_size_bytes(q.quantize_dynamic_int8(model))},
            "data_cut": cut}


def _run_bits(profile: Profile, unit: Unit) -> dict:
    """Exact match and F1 of a fine-tuned model with its Linear weights rounded to each of
    :data:`QUANT_BITS` bits, per tensor and per channel (the quantization chapter's sweep)."""
    from flatcomp import quantization as q

    model = finetuned(profile, TASK, unit["optimizer"], unit["seed"])[0].cpu().eval()
    _, dev, cut = encoded_task(profile, TASK)
    variants = {}
    for bits in QUANT_BITS:
        for per_channel in (False, True):
            key = f"{bits} bit{' per channel' if per_channel else ''}"
            variants[key] = lambda b=bits, c=per_channel: q.fake_quantize_weights(model, b, c)
    return {**unit, **_cpu_scores(profile, dev, variants, paired=()), "data_cut": cut}


def _int8_variants(model: torch.nn.Module) -> dict[str, Callable[[], torch.nn.Module]]:
    from flatcomp import quantization as q

    return {"fp32": lambda: model, "int8": lambda: q.quantize_dynamic_int8(model),
            "int8 per channel": lambda: q.quantize_dynamic_int8(model, per_channel=True)}


def _cpu_scores(profile: Profile, dev: QAFeatures, variants: dict,
                paired: tuple[str, ...] = ("fp32", "int8")) -> dict:
    """``{"scores": {name: F1}, "exact_match": {name: EM}, "f1_per_question": {name: [F1]}}`` of
    each variant (a function that makes the model) on ``dev``, on the CPU in fp32 (how quantized
    models are compared); the F1 of every question (rounded to 1e-4) for the variants in
    ``paired``."""
    fp32 = profile.with_overrides(precision="fp32")
    scores, exact, per_question = {}, {}, {}
    for name, make in tqdm(variants.items(), desc="SQuAD on the CPU", leave=False,
                           mininterval=0.5):
        logits = predict_spans(make(), dev, fp32, torch.device("cpu"))
        metrics = squad_scores(dev, *logits)
        scores[name], exact[name] = metrics["f1"], metrics["exact_match"]
        if name in paired:
            per_question[name] = [round(f1, 4) for f1 in question_f1(dev, *logits)]
    measured = {"scores": scores, "exact_match": exact}
    return {**measured, "f1_per_question": per_question} if paired else measured


def _run_imp(profile: Profile, unit: Unit) -> dict:
    """One round of IMP with rewinding (:func:`flatcomp.pruning.imp_rounds`). Round 0 is the
    dense fine-tune (its cached checkpoint); round k > 0 trains theta_0 * m_k, theta_0 the
    pre-trained encoder and the seed's fresh span head, under the masks that round k - 1 pruned
    (stored first if missing). Every round leaves its weights and the next round's masks in the
    checkpoint cache."""
    from flatcomp import pruning

    optimizer, seed, k = unit["optimizer"], unit["seed"], unit["round"]
    settings = profile.squad_settings()
    lr, epochs = profile.lr_for(TASK), profile.epochs_for(TASK)
    masks = None
    if k == 0:
        model, summary = finetuned(profile, TASK, optimizer, seed)
    else:
        previous = {**unit, "round": k - 1}
        ResultsStore(profile).load_or_run("squad_imp", unit_id(previous),
                                          lambda: _run_imp(profile, previous), seed)
        masks, _ = pruning.load_masks(_cached(profile, _imp_file(profile, unit, k, "masks"),
                                              previous))
        train, dev, cut = encoded_task(profile, TASK)
        train_fn = lambda model, m: fine_tune(model, train, dev, TASK, profile,  # noqa: E731
                                              optimizer, seed, masks=m, epochs=epochs, lr=lr)
        _, result = next(pruning.imp_rounds(
            lambda: load_model(profile, TASK, seed), train_fn, settings["imp_rounds"],
            settings["imp_rate"], rewind=True, start_round=k, start_masks=masks))
        model = result.model
        summary = fine_tune_summary(result, TASK, optimizer, seed, lr, epochs, train, dev, cut)
    next_sparsity = _sparsity(profile, k + 1) if k < settings["imp_rounds"] else None
    return finish_imp_round(model, masks, unit, k, next_sparsity, summary,
                            lambda k, kind: _imp_file(profile, unit, k, kind))


def _run_compound(profile: Profile, unit: Unit) -> dict:
    """The last IMP round's model (the ticket at the unit's sparsity, trained) in fp32 and after
    dynamic int8, on the CPU without autocast."""
    imp = dict(task=TASK, optimizer=unit["optimizer"], rewind=True, seed=unit["seed"],
               round=_last_round(profile))
    record = ResultsStore(profile).load_or_run("squad_imp", unit_id(imp),
                                               lambda: _run_imp(profile, imp), unit["seed"])
    weights = _cached(profile, _imp_file(profile, imp, imp["round"], "weights"), imp)
    model = load_weights(load_model(profile, TASK, unit["seed"]), weights).cpu().eval()
    _, dev, cut = encoded_task(profile, TASK)
    measured = _cpu_scores(profile, dev, _int8_variants(model))
    drop = measured["scores"]["fp32"] - measured["scores"]["int8"]
    return {**unit, **measured, "int8_drop": drop,
            "imp_round": unit_id(imp), "imp_record_score": record["best_score"],
            "data_cut": cut}


def _imp_file(profile: Profile, unit: Unit, k: int, kind: str) -> Path:
    """Cache file of IMP round ``k``'s masks (those it trains with) or trained weights."""
    weights, _ = checkpoint_paths(profile, TASK, unit["optimizer"], unit["seed"],
                                  profile.lr_for(TASK), profile.epochs_for(TASK))
    rate = profile.squad_settings()["imp_rate"]
    name = f"{weights.stem}-rewind-rate{rate:g}-round{k}.{kind}.safetensors"
    return weights.parent / "squad-imp" / name


def _cached(profile: Profile, path: Path, maker: Unit) -> Path:
    """``path``, left in the checkpoint cache by the stored IMP round ``maker``; if the round was
    stored on another machine (or the cache cleared), the round is trained again to remake it,
    with a warning (its stored record is kept)."""
    if not path.exists():
        warnings.warn(f"{path.name} is not in the checkpoint cache ({path.parent}), though SQuAD "
                      f"IMP round {unit_id(maker)} is stored: training that round again to "
                      "remake it", stacklevel=2)
        _run_imp(profile, maker)
    return path


# ---------------------------------------------------------------- what each unit needs

def _needs_model(experiment: str) -> Callable[[Profile, Unit], tuple]:
    """The stored unit of ``experiment`` that trains the unit's model (its checkpoint too)."""
    return lambda profile, unit: ((experiment, unit_id(_model(unit["optimizer"],
                                                              unit["seed"]))),)


def _imp_needs(profile: Profile, unit: Unit) -> tuple:
    """Round 0 the dense fine-tune, round k the round before it."""
    if unit["round"] == 0:
        return _needs_model("squad_finetune")(profile, unit)
    return (("squad_imp", unit_id({**unit, "round": unit["round"] - 1})),)


def _compound_needs(profile: Profile, unit: Unit) -> tuple:
    return (("squad_imp", unit_id(dict(task=TASK, optimizer=unit["optimizer"], rewind=True,
                                       seed=unit["seed"], round=_last_round(profile)))),)


# ---------------------------------------------------------------- costs, in SQuAD training steps

def squad_windows(profile: Profile) -> tuple[int, int]:
    """(train windows, eval windows) at the profile: counted (the questions tokenised, once per
    process) where the data and the tokenizer are at hand (shipped rows or a local dev set, a
    local model folder), else estimated from the official splits' windows per question
    (:data:`OFFICIAL_WINDOWS_PER_QUESTION`), without reaching for the hub."""
    if squad_is_local(profile) and Path(model_source(profile)).is_dir():
        train, dev, _ = squad_features(profile)
        return len(train), len(dev)
    questions = squad_rows(profile)
    return tuple(math.ceil(n * w) for n, w in zip(questions, OFFICIAL_WINDOWS_PER_QUESTION))


def squad_fine_tune_steps(profile: Profile, optimizer: str) -> float:
    """A SQuAD fine-tune's work in training steps at the SQuAD batch size (what the plan times at
    :meth:`~flatcomp.lab.config.Profile.for_squad`): epochs x batches of windows (times the
    optimizer's passes per step), plus an evaluation per epoch (a forward pass at twice the
    batch is about 2/3 of a training step)."""
    train, dev = squad_windows(profile)
    batch, epochs = profile.squad_batch_size, profile.epochs_for(TASK)
    return epochs * (math.ceil(train / batch) * PASSES_PER_STEP.get(optimizer, 1.0)
                     + _eval_steps(profile, dev))


def _eval_steps(profile: Profile, dev_windows: int, passes: int = 1) -> float:
    return passes * math.ceil(dev_windows / (2 * profile.squad_batch_size)) * 2 / 3


def _model_steps(profile: Profile, unit: Unit) -> float:
    """Getting the unit's fine-tuned model (:func:`~flatcomp.lab.experiments.core.model_steps`):
    nothing while the unit that trains it (``squad_finetune`` or ``squad_more``) is still to run
    first, or once the cache has it."""
    model = _model(unit["optimizer"], unit["seed"])
    trainer = "squad_finetune" if model in _headline_units(profile) else "squad_more"
    return model_steps(profile, TASK, unit["optimizer"], unit["seed"],
                       _needs_model(trainer)(profile, unit),
                       squad_fine_tune_steps(profile, unit["optimizer"]))


def _finetune_cost(profile: Profile, unit: Unit) -> float:
    return squad_fine_tune_steps(profile, unit["optimizer"])


def _quantization_cost(profile: Profile, unit: Unit) -> float:
    """The model, then fp32 and two int8: one eval pass each."""
    return _model_steps(profile, unit) + _eval_steps(profile, squad_windows(profile)[1], 3)


def _bits_cost(profile: Profile, unit: Unit) -> float:
    """The model, then two roundings per bit width: one eval pass each."""
    passes = 2 * len(QUANT_BITS)
    return _model_steps(profile, unit) + _eval_steps(profile, squad_windows(profile)[1], passes)


def _imp_cost(profile: Profile, unit: Unit) -> float:
    """Round 0 is the dense fine-tune (free if cached); every later round a masked fine-tune."""
    if unit["round"] == 0:
        return _model_steps(profile, unit)
    return squad_fine_tune_steps(profile, unit["optimizer"])


def _compound_cost(profile: Profile, unit: Unit) -> float:
    return _eval_steps(profile, squad_windows(profile)[1], 3)


EXPERIMENTS = (
    Experiment("squad_finetune", "SQuAD v1.1 span extraction fine-tuned with Adam and SAM, "
               "first seed", _headline_units, _run_finetune, "squad", priority=0,
               cost=_finetune_cost, at=Profile.for_squad),
    Experiment("squad_quant", "SQuAD exact match and F1 after dynamic int8 (Adam and SAM, "
               "first seed)", _headline_units, _run_quantization,
               "squad", priority=1, cost=_quantization_cost,
               needs=_needs_model("squad_finetune"), at=Profile.for_squad),
    Experiment("squad_imp", "SQuAD IMP with rewinding, Adam and SAM, one unit per round",
               _imp_units, _run_imp, "squad", priority=2, cost=_imp_cost, needs=_imp_needs,
               at=Profile.for_squad),
    Experiment("squad_compound", "the sparsest SQuAD IMP round in fp32 and dynamic int8",
               _compound_units, _run_compound, "squad", priority=2, cost=_compound_cost,
               needs=_compound_needs, at=Profile.for_squad),
    Experiment("squad_more", "SQuAD fine-tunes: SWA on every seed, Adam and SAM on the others",
               _more_units, _run_finetune, "squad", priority=3, cost=_finetune_cost,
               at=Profile.for_squad),
    Experiment("squad_more_quant", "SQuAD dynamic int8 of the squad_more models", _more_units,
               _run_quantization, "squad", priority=3, cost=_quantization_cost,
               needs=_needs_model("squad_more"), at=Profile.for_squad),
    Experiment("squad_bits", "SQuAD exact match and F1 with k-bit weights (Adam and SAM, first "
               "seed)", _headline_units, _run_bits, "squad", priority=3, cost=_bits_cost,
               needs=_needs_model("squad_finetune"), at=Profile.for_squad),
)
