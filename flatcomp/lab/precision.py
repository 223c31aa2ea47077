"""Which precision a fine-tune runs in: bf16 autocast where the machine multiplies bf16 fast.

A profile's ``precision`` is ``"auto"``, ``"bf16"`` or ``"fp32"``. An explicit value wins;
``"auto"`` resolves per device: bf16 on a CUDA GPU that supports it, and on a CPU whose flags in
``/proc/cpuinfo`` name AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``); fp32 elsewhere. On a
CPU without either, bf16 autocast is emulated and was measured 9x slower than fp32 (a 2-core
AVX2 EPYC); on a Zen 4 EPYC with AVX512-BF16 a MiniLM step was 1.8x faster in bf16.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from flatcomp.lab.config import PRECISIONS, Profile

FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & FAST_BF16_CPU_FLAGS)
    return False


def resolve_precision(profile_or_precision: Profile | str, device: torch.device | str) -> str:
    """``"bf16"`` or ``"fp32"``: what a profile (or a precision name) runs in on ``device``."""
    precision = getattr(profile_or_precision, "precision", profile_or_precision)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of "
                         f"{', '.join(map(repr, PRECISIONS))}")
    if precision != "auto":
        return precision
    return "bf16" if fast_bf16(torch.device(device)) else "fp32"


def uses_bf16(profile: Profile, device: torch.device | str) -> bool:
    """Whether the training code runs bf16 autocast for ``profile`` on ``device``."""
    return resolve_precision(profile, device) == "bf16"
