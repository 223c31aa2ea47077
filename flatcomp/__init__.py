"""flatcomp: train flat, then compress.

A small library behind the book that reproduces Na, Mehta & Strubell (Findings of EMNLP 2022):
fine-tune BERT with Sharpness-Aware Minimization instead of Adam, then prune or quantize it.
The methods a training loop uses are importable from here:

    from flatcomp import SAM, Masker, magnitude_masks, prunable_weights, quantize_dynamic_int8
    from flatcomp import fine_tune  # Adam or SAM for any model, on any dict batches

Each name is imported from its module when it is first used, so ``import flatcomp`` loads
neither transformers nor the book's data and experiment code.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_PUBLIC = {
    "SAM": "sam",
    "KStepSAM": "sam_variants", "LookSAM": "sam_variants", "ESAM": "sam_variants",
    "sam_on": "sam_variants",
    "prunable_weights": "pruning", "magnitude_masks": "pruning", "random_masks": "pruning",
    "Masker": "pruning", "rewind": "pruning", "imp_rounds": "pruning", "apply_masks": "pruning",
    "sparsity_report": "pruning",
    "add_gates": "cofi", "compact": "cofi", "Lagrangian": "cofi",
    "distillation_loss": "distill",
    "quantize_dynamic_int8": "quantization", "fake_quantize_weights": "quantization",
    "sharpness": "flatness", "adaptive_sharpness": "flatness",
    "hessian_top_eigenvalue": "flatness", "hessian_trace": "flatness",
    "low_rank_model": "low_rank", "effective_rank": "low_rank",
    "rescale_attention_head": "rescaling",
    "fine_tune": "loop", "FitResult": "loop",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """``flatcomp.SAM`` and ``from flatcomp import SAM``: the name from its module, imported now."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'flatcomp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flatcomp.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
