"""The precision a profile runs in: bf16 autocast where the machine multiplies bf16 fast."""

from __future__ import annotations

import pytest
import torch

from flatcomp.lab import precision as P
from flatcomp.lab.precision import resolve_precision, uses_bf16

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})     # this session's EPYC: no AMX
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})
AVX2_ONLY = frozenset({"avx2", "fma"})                    # the 2-core EPYC: bf16 9x slower


@pytest.fixture
def flags(monkeypatch):
    """Set the CPU flags the detection reads."""
    return lambda value: monkeypatch.setattr(P, "cpu_flags", lambda: value)


@pytest.mark.parametrize("cpu, expected", [(ZEN4, "bf16"), (SAPPHIRE_RAPIDS, "bf16"),
                                           (AVX2_ONLY, "fp32"), (frozenset(), "fp32")])
def test_auto_follows_the_cpus_bf16_units(smoke, flags, cpu, expected):
    flags(cpu)
    assert resolve_precision(smoke, CPU) == expected
    assert resolve_precision("auto", "cpu") == expected
    assert uses_bf16(smoke, CPU) == (expected == "bf16")


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_the_gpu(smoke, flags, monkeypatch, supported, expected):
    flags(AVX2_ONLY)  # the host CPU does not matter
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision(smoke, CUDA) == expected


@pytest.mark.parametrize("cpu", [ZEN4, AVX2_ONLY])
@pytest.mark.parametrize("explicit", ["bf16", "fp32"])
def test_an_explicit_precision_wins(smoke, flags, cpu, explicit):
    flags(cpu)
    assert resolve_precision(smoke.with_overrides(precision=explicit), CPU) == explicit
    assert resolve_precision(explicit, CUDA) == explicit


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="'fp16'.*'auto', 'bf16', 'fp32'"):
        resolve_precision("fp16", CPU)


def test_cpu_flags_reads_the_flags_line(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n")
    real_path = P.Path
    monkeypatch.setattr(P, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    P.cpu_flags.cache_clear()
    try:
        assert P.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    finally:
        P.cpu_flags.cache_clear()


def test_training_code_autocasts_as_resolved(smoke, tokenizer, flags, monkeypatch):
    """predict (and so fine_tune's evaluation) runs bf16 autocast exactly when resolved so."""
    import flatcomp.lab.train as T
    from flatcomp.lab.data import encode, load_task
    from flatcomp.lab.models import load_model

    seen, real = [], T.autocast
    monkeypatch.setattr(T, "autocast", lambda device, enabled: seen.append(enabled)
                        or real(device, enabled))
    rows = encode(load_task("rte", smoke).train.subsample(4), tokenizer, smoke.max_length)
    model = load_model(smoke, "rte")
    for cpu, expected in ((ZEN4, True), (AVX2_ONLY, False)):
        flags(cpu)
        T.predict(model, rows, smoke, CPU)
        assert seen and set(seen) == {expected}
        seen.clear()
