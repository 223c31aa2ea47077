"""Tests of flatcomp.quantization: int8 dynamic quantization, fake k-bit weights, the theory.

Run on the smoke profile's tiny BERT (2 layers, 64 wide, random weights) and a batch of random
token ids. Its logits are small (|logit| ~ 0.2), so tolerances are stated relative to their scale.

PyTorch 2.13 warns that ``torch.ao.quantization`` is deprecated (a DeprecationWarning) and that
quantized tensor creation is (a UserWarning). flatcomp uses that API on purpose (see the module's
docstring) and passes both warnings on to the user; ``test_deprecation_reaches_the_user`` checks
that. Everywhere else exactly these two messages are filtered, by the marks below, so that the
test output shows only what is new.

Where torch.ao.quantization is gone, ``quantize_dynamic_int8`` falls back to torchao, which is not
a dependency: its tests hide torch.ao.quantization from the import system and skip when torchao
is not installed (``PYTHONPATH`` to a ``pip install --target`` of torchao runs them).
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from flatcomp.quantization import (benchmark_latency, compare_speed, fake_quantize,
                                   fake_quantize_weights, model_size_bytes, quantization_step,
                                   quantize_dynamic_int8, rounding_noise_variance)

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel"
                               ":UserWarning"),
]

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


@pytest.fixture(scope="module")
def bert():
    """The tiny BERT in eval mode. Shared by the tests: none may change it (and each checks that
    the functions it calls do not)."""
    from flatcomp.lab.config import SMOKE
    from flatcomp.lab.models import load_model

    return load_model(SMOKE, "rte", 0).eval()


def make_batch(batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 1000, (batch_size, seq_len), generator=generator),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long)}


@pytest.fixture(scope="module")
def batch():
    return make_batch(4, 16)


def logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------- int8 dynamic quantization

@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_replaces_every_linear_and_leaves_the_original(bert, batch, per_channel):
    before = snapshot(bert)
    names = linear_names(bert)
    assert any(n.startswith("bert.encoder.") for n in names)
    quantized = quantize_dynamic_int8(bert, per_channel=per_channel)
    modules = dict(quantized.named_modules())
    for name in names:
        assert type(modules[name]) is DynamicLinear, name
    scheme = torch.per_channel_affine if per_channel else torch.per_tensor_affine
    assert modules["bert.encoder.layer.0.attention.self.query"].weight().qscheme() == scheme
    assert not any(m.training for m in quantized.modules())
    # the original: same weights bit for bit, still plain nn.Linear layers
    assert_unchanged(bert, before)
    assert all(type(m) is nn.Linear for name, m in bert.named_modules() if name in names)


def test_int8_quantizes_a_bare_linear():
    """quantize_dynamic only swaps children; a model that is itself one Linear is swapped too."""
    layer = nn.Linear(4, 4)
    assert type(quantize_dynamic_int8(layer)) is DynamicLinear
    assert type(layer) is nn.Linear


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_logits_close_to_fp32(bert, batch, per_channel):
    """int8 weights are off by at most max|w| / 255 (0.4%), the 7-bit activations by about 0.8%
    of their range; through a dozen Linear layers that leaves a few percent of the logits' scale.
    5% of max |logit| allows that and still fails for a broken quantizer (2-bit weights alone
    move these logits by over 50%, see test_fake_quantization_error_grows_as_bits_shrink), and
    the predicted class must not change (the margins here are about 0.1, far above 5%)."""
    reference = logits(bert, batch)
    quantized = logits(quantize_dynamic_int8(bert, per_channel=per_channel), batch)
    scale = reference.abs().max()
    assert (quantized - reference).abs().max() <= 0.05 * scale
    assert (quantized - reference).abs().max() > 0  # it did quantize something
    assert torch.equal(quantized.argmax(-1), reference.argmax(-1))


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_shrinks_linear_layers_about_4x(per_channel):
    """fp32 -> int8 is 4 bytes -> 1 per weight; biases (fp32), scales and zero points cost a
    little, per output row when per channel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    ratio = model_size_bytes(model) / model_size_bytes(quantize_dynamic_int8(model, per_channel))
    assert 3.5 < ratio < 4.0


def test_int8_shrinks_bert_by_its_linear_weights(bert):
    """Most of the tiny BERT is its 30522 x 64 word embedding, which stays fp32: the whole model
    shrinks by only a few percent, but by at least half the 3 bytes saved per Linear weight."""
    linear_weights = sum(m.weight.numel() for m in bert.modules() if isinstance(m, nn.Linear))
    saved = model_size_bytes(bert) - model_size_bytes(quantize_dynamic_int8(bert))
    assert 0.5 * 3 * linear_weights < saved < 3 * linear_weights


def test_int8_needs_a_cpu_model():
    """A model not on the CPU is refused with a message saying what to do. The "meta" device
    (shapes without storage) goes through the same check a CUDA model does, on any machine."""
    model = nn.Sequential(nn.Linear(4, 4, device="meta"))
    with pytest.raises(ValueError, match=r"'0.weight' is on meta: call model.cpu\(\) first"):
        quantize_dynamic_int8(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_int8_refuses_a_cuda_model():
    with pytest.raises(ValueError, match=r"call model.cpu\(\)"):
        quantize_dynamic_int8(nn.Linear(4, 4).cuda())


def test_deprecation_reaches_the_user():
    """flatcomp does not hide torch's deprecation of torch.ao.quantization. (Should a torch
    release drop the warning, this fails: revisit the module docstring's choice then.)"""
    with pytest.warns(DeprecationWarning, match="deprecated"):
        quantize_dynamic_int8(nn.Linear(4, 4))


def _without_torch_ao(monkeypatch) -> None:
    """As if torch.ao.quantization had been removed: importing it fails."""
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_without_torch_ao_falls_back_to_torchao(bert, batch, monkeypatch, per_channel):
    """torchao's quantize_ takes over where torch.ao.quantization is gone: every Linear keeps
    its class and gets an int8 weight, the original is untouched, and the logits agree with
    torch.ao's and fp32's to the tolerance of test_int8_logits_close_to_fp32."""
    pytest.importorskip("torchao.quantization")
    before = snapshot(bert)
    reference = logits(bert, batch)
    torch_ao = logits(quantize_dynamic_int8(bert, per_channel=per_channel), batch)
    _without_torch_ao(monkeypatch)
    quantized = quantize_dynamic_int8(bert, per_channel=per_channel)
    names = linear_names(bert)
    modules = dict(quantized.named_modules())
    for name in names:
        assert type(modules[name]) is nn.Linear, name
        assert type(modules[name].weight).__module__.startswith("torchao."), name
        assert modules[name].weight.qdata.dtype == torch.int8, name
    assert not any(m.training for m in quantized.modules())
    torchao = logits(quantized, batch)
    scale = reference.abs().max()
    assert 0 < (torchao - reference).abs().max() <= 0.05 * scale
    assert (torchao - torch_ao).abs().max() <= 0.05 * scale
    assert torch.equal(torchao.argmax(-1), reference.argmax(-1))
    assert_unchanged(bert, before)


def test_int8_without_torch_ao_or_torchao_says_to_install_torchao(monkeypatch):
    _without_torch_ao(monkeypatch)
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ImportError, match=r"torch.ao.quantization.quantize_dynamic.*"
                                          r"torchao's quantize_.*pip install torchao"):
        quantize_dynamic_int8(nn.Linear(4, 4))


# ---------------------------------------------------------------- size and latency

def test_model_size_counts_the_state_dict():
    model = nn.Linear(100, 10)
    assert 4 * (100 * 10 + 10) < model_size_bytes(model) < 4 * (100 * 10 + 10) + 2000


def test_benchmark_latency_returns_timings_and_restores_threads():
    before = torch.get_num_threads()
    threads = 2 if before != 2 else 1
    model = nn.Sequential(nn.Linear(32, 32), nn.Dropout(0.5)).train()
    result = benchmark_latency(model, torch.randn(8, 32), threads=threads, repeats=3, warmup=1)
    assert torch.get_num_threads() == before
    assert result["mean_s"] > 0 and result["min_s"] > 0 and result["std_s"] >= 0
    assert result["min_s"] <= result["mean_s"]
    assert result["threads"] == threads and result["batch_shape"] == [8, 32]
    assert model.training and model[1].training  # train/eval flags put back


def test_benchmark_latency_restores_threads_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        benchmark_latency(nn.Linear(4, 4), torch.randn(2, 5), threads=before + 1)
    assert torch.get_num_threads() == before


def test_compare_speed_rows(bert):
    rows = compare_speed(bert, make_batch, batch_sizes=(1, 2), seq_len=8, threads=1,
                         repeats=2, warmup=1)
    assert [(r["precision"], r["batch_size"]) for r in rows] == [
        ("fp32", 1), ("int8", 1), ("fp32", 2), ("int8", 2)]
    for row in rows:
        assert row["mean_s"] > 0 and row["batch_shape"] == [row["batch_size"], 8]
    assert rows[1]["speedup"] == pytest.approx(rows[0]["mean_s"] / rows[1]["mean_s"])
    assert rows[1]["size_bytes"] < rows[0]["size_bytes"]


# ---------------------------------------------------------------- simulated k-bit weights

KNOWN = torch.tensor([[0.5, -0.9, 0.25], [2.0, 0.1, -0.3]])


def test_quantization_step_and_fake_quantize_by_hand():
    # 4 bits symmetric: 7 levels each side. Per tensor Delta = 2.0 / 7; per row 0.9 / 7, 2.0 / 7.
    assert quantization_step(KNOWN, 4) == pytest.approx(2.0 / 7)
    assert torch.allclose(quantization_step(KNOWN, 4, per_channel=True),
                          torch.tensor([[0.9 / 7], [2.0 / 7]]))
    # w / Delta = [[1.75, -3.15, 0.875], [7, 0.35, -1.05]] -> codes [[2, -3, 1], [7, 0, -1]]
    expected = torch.tensor([[2.0, -3.0, 1.0], [7.0, 0.0, -1.0]]) * (2.0 / 7)
    assert torch.allclose(fake_quantize(KNOWN, 4), expected)
    # asymmetric, 16 levels on [-0.9, 2.0]: Delta = 2.9 / 15
    assert quantization_step(KNOWN, 4, symmetric=False) == pytest.approx(2.9 / 15)


def test_rounding_noise_variance_by_hand():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(KNOWN)
    per_tensor = rounding_noise_variance(model, bits=4)
    per_row = rounding_noise_variance(model, bits=4, per_channel=True)
    assert per_tensor.keys() == per_row.keys() == {"0.weight", "2.weight"}
    assert torch.allclose(per_tensor["0.weight"], torch.full((2, 3), (2.0 / 7) ** 2 / 12))
    assert torch.allclose(per_row["0.weight"],
                          torch.tensor([[0.9 / 7] * 3, [2.0 / 7] * 3]) ** 2 / 12)


def test_rounding_noise_variance_matches_the_measured_error():
    """The uniform-noise model: with 255 levels over a Gaussian, mean (w' - w)^2 = Delta^2 / 12
    (65,536 draws: the relative standard error of the mean is about 0.4%, 3% is 7 of them)."""
    weight = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    for per_channel in (False, True):
        error = fake_quantize(weight, 8, per_channel) - weight
        predicted = quantization_step(weight, 8, per_channel) ** 2 / 12
        measured = float((error ** 2).mean())
        assert measured == pytest.approx(float(predicted.expand_as(weight).mean()), rel=0.03)


def test_rounding_noise_variance_keys_are_bert_parameter_names(bert):
    variance = rounding_noise_variance(bert, bits=8)
    params = dict(bert.named_parameters())
    assert "bert.encoder.layer.0.attention.self.query.weight" in variance
    assert set(variance) == {f"{n}.weight" for n in linear_names(bert)}
    for name, value in variance.items():
        assert value.shape == params[name].shape and (value > 0).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fake_quantized_weights_lie_on_the_grid(bert, bits, per_channel, symmetric):
    """Every Linear weight within Delta / 2 of the original, at most 2^b - 1 (symmetric) or 2^b
    distinct values per tensor or per row; biases and every other parameter untouched."""
    quantized = dict(fake_quantize_weights(bert, bits, per_channel, symmetric).named_parameters())
    linear_weights = {f"{n}.weight" for n in linear_names(bert)}
    levels = 2 ** bits - 1 if symmetric else 2 ** bits
    for name, original in bert.named_parameters():
        new = quantized[name]
        if name not in linear_weights:
            assert torch.equal(new, original), name
            continue
        step = quantization_step(original, bits, per_channel, symmetric)
        assert ((new - original).abs() <= step / 2 * (1 + 1e-5)).all(), name
        groups = new.detach() if per_channel else new.detach().reshape(1, -1)
        assert max(len(torch.unique(row)) for row in groups) <= levels, name


def test_fake_quantization_error_grows_as_bits_shrink(bert, batch):
    """8 bits are near-lossless (logits move by under 2% of their scale; each halving of the step
    should divide that by ~2), 2 bits are not (at least 16 times the 8-bit change)."""
    before = snapshot(bert)
    reference = logits(bert, batch)
    change = {bits: float((logits(fake_quantize_weights(bert, bits), batch) - reference)
                          .abs().max()) for bits in (2, 3, 4, 8)}
    assert change[8] < 0.02 * float(reference.abs().max())
    assert change[2] > change[3] > change[4] > change[8] > 0
    assert change[2] > 16 * change[8]
    assert_unchanged(bert, before)


def test_fake_quantize_keeps_zeros_and_zero_rows():
    """Pruned weights stay exactly zero, and an all-zero row (Delta = 0) gives no NaN."""
    weight = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, -0.7]])
    for per_channel in (False, True):
        for symmetric in (True, False):
            out = fake_quantize(weight, 3, per_channel, symmetric)
            assert torch.isfinite(out).all()
            assert (out[weight == 0] == 0).all()
    assert torch.equal(quantization_step(weight, 3, per_channel=True)[0], torch.zeros(1))


def test_fake_quantize_keeps_dtype_and_rejects_bad_bits():
    weight = torch.randn(4, 4).to(torch.bfloat16)
    assert fake_quantize(weight, 4).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="bits"):
        fake_quantize_weights(nn.Linear(2, 2), bits=1)
