"""Post-training quantization: real int8 inference, simulated k-bit weights, and their theory.

Two kinds of quantization, for two questions:

    quantize_dynamic_int8(model)             what does int8 buy on a CPU? (size, latency, score)
    fake_quantize_weights(model, bits=4)     how much does rounding the weights to k bits hurt,
                                             and does a flat minimum (SAM) suffer less?

with the measurements around them:

    model_size_bytes(model)                          bytes of torch.save(model.state_dict())
    benchmark_latency(model, batch, threads=2)       seconds per forward pass, mean and std
    compare_speed(model, make_batch)                 fp32 vs int8 at batch 1 and 32
    quantization_step(weight, bits)                  the step Delta, per tensor or per row
    rounding_noise_variance(model, bits)             Delta^2 / 12 for every Linear weight

Only ``nn.Linear`` layers are quantized (in BERT: attention, feed-forward, pooler, classifier);
embeddings and LayerNorm stay fp32. The quantizers return a NEW model (a deep copy) and every
function leaves its argument bit-identical, so the fp32 model can be compared with its copies.

**Uniform quantization.** A symmetric b-bit quantizer with the restricted range
{-(2^(b-1) - 1), ..., 2^(b-1) - 1} (Jacob et al., CVPR 2018; Krishnamoorthi, arXiv:1806.08342;
Nagel et al., "A White Paper on Neural Network Quantization", arXiv:2106.08295) maps

    Delta = max|w| / (2^(b-1) - 1),   q = clamp(round(w / Delta), -(2^(b-1) - 1), 2^(b-1) - 1),
    w' = q * Delta,

with max|w| over the whole tensor, or over each output row (per channel). The range covers every
weight, so nothing is clipped and |w' - w| <= Delta / 2; zero stays exactly zero (pruned weights
stay pruned). The asymmetric variant uses 2^b levels on [min(w, 0), max(w, 0)]:
Delta = (max - min) / (2^b - 1) and an integer zero point z = round(-min / Delta),
w' = (clamp(round(w / Delta) + z, 0, 2^b - 1) - z) * Delta.

**Rounding noise.** When the weights spread over many steps, the error e = w' - w behaves like
noise uniform on [-Delta/2, Delta/2], independent of w (Bennett, Bell System Technical Journal
1948; Widrow & Kollar, "Quantization Noise", 2008):

    E[e] = 0,   Var[e] = Delta^2 / 12.

A second-order Taylor expansion around a minimum then gives the expected loss increase

    E[L(w + e)] - L(w) ~= 1/2 sum_i H_ii Delta_i^2 / 12,

the cross terms vanishing for independent zero-mean errors: the flatter the minimum along the
diagonal of the Hessian, the less the rounding costs (the sensitivity HAWQ uses: Dong et al.,
ICCV 2019, NeurIPS 2020). :func:`rounding_noise_variance` gives Delta_i^2 / 12 keyed like
:func:`flatcomp.flatness.hessian_diagonal`, so the two multiply name by name. Near 2 bits, with a
handful of levels, the uniform-noise model is only a rough guide.

**Real int8: why ``torch.ao.quantization`` and not torchao.** PyTorch's dynamic quantization
(``torch.ao.quantization.quantize_dynamic``) swaps each ``nn.Linear`` for a
``torch.ao.nn.quantized.dynamic.Linear``: weights stored as int8 (symmetric, scale
max|w| / 127.5 on [-128, 127], per tensor or per output row), activations quantized to uint8 on
the fly from each input's own min and max (7 bits on x86: fbgemm's ``reduce_range``, which avoids
an overflow of its 16-bit intermediate sums), int32 accumulation, fp32 output. PyTorch 2.13 marks
``torch.ao.quantization`` deprecated (its warning says "removed in 2.10"; it is still there and
works in 2.13) and points to torchao's
``quantize_(model, Int8DynamicActivationInt8WeightConfig())``.
We checked torchao 0.18.0, the newest on PyPI and not a dependency of this project, in a throwaway
install next to torch 2.13+cpu: it runs on the CPU in eager mode and shrinks the weights as much,
but its linear layer is a tensor subclass that quantizes the activation op by op and then calls
``torch._int_mm``; without ``torch.compile`` to fuse those ops it was no faster than fp32. On a
MiniLM-sized feed-forward block (384 -> 1536 -> 384, one thread, best of several runs on a busy
machine) it took 1.3 ms for 128 tokens and 100 ms for 4,096 (fp32: 1.7 and 96 ms), against 0.6 and
23 ms for torch.ao's fbgemm kernel. The compression chapter asks what int8 buys on a CPU, so this
module uses torch.ao: the real speed-up, no new dependency. Its deprecation warnings are passed
on to the user untouched. Should torch.ao.quantization be removed, the replacement is torchao's
``quantize_``, whose CPU speed then rests on ``torch.compile`` (not measured here).

Simulated quantization and int8 differ on purpose: :func:`fake_quantize_weights` rounds only the
weights (the variable of the theory above), while dynamic int8 also rounds the activations and
uses a slightly different weight scale.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

Batch = Mapping[str, torch.Tensor] | torch.Tensor


# ---------------------------------------------------------------- int8 dynamic quantization

def quantize_dynamic_int8(model: nn.Module, per_channel: bool = False) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by PyTorch's dynamic int8 Linear.

    Weights are quantized once, symmetric int8 with one scale per tensor (``per_channel=False``,
    ``default_dynamic_qconfig``) or per output row (``per_channel_dynamic_qconfig``); activations
    are quantized at every call from their own range (see the module docstring). The copy is in
    eval mode; ``model`` itself is not touched. The quantized kernels run only on the CPU, so the
    model must be there: a ValueError says so otherwise.

    Where ``torch.ao.quantization.quantize_dynamic`` is gone (its removal is announced), torchao's
    ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` (tested with torchao 0.18.0)
    takes its place: symmetric int8 weights again, per tensor or per row, but activations
    quantized symmetrically per token, each ``nn.Linear`` kept and given an int8 tensor subclass
    as its weight, and no speed-up without ``torch.compile`` (module docstring). Without either,
    an ImportError says to install torchao.
    """
    _require_cpu(model)
    return _int8_quantizer()(model, per_channel)


def _int8_quantizer() -> Callable[[nn.Module, bool], nn.Module]:
    """torch.ao's dynamic quantization where this PyTorch has it, else torchao's."""
    if hasattr(_module("torch.ao.quantization"), "quantize_dynamic"):
        return _torch_ao_int8
    if hasattr(_module("torchao.quantization"), "Int8DynamicActivationInt8WeightConfig"):
        return _torchao_int8
    raise ImportError(
        "int8 quantization needs torch.ao.quantization.quantize_dynamic, which PyTorch "
        f"{torch.__version__} no longer has, or its replacement, torchao's quantize_ with "
        "Int8DynamicActivationInt8WeightConfig (torchao 0.18.0 works): pip install torchao")


def _module(name: str) -> Any:
    """The module ``name``, or None where it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _torch_ao_int8(model: nn.Module, per_channel: bool) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` on a copy: nn.Linear -> dynamic int8 Linear."""
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    # quantize_dynamic swaps children only: a bare nn.Linear goes in a container and comes out.
    wrapped = nn.Sequential(copy.deepcopy(model))
    torch.ao.quantization.quantize_dynamic(
        wrapped, qconfig_spec={nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    return wrapped[0].eval()


def _torchao_int8(model: nn.Module, per_channel: bool) -> nn.Module:
    """torchao's ``quantize_`` on a copy: int8 weights per tensor or per row, int8 activations
    per token. ``set_inductor_config=False``: no global ``torch._inductor`` settings changed."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    from torchao.quantization.granularity import PerRow, PerTensor

    weight = PerRow() if per_channel else PerTensor()
    config = Int8DynamicActivationInt8WeightConfig(granularity=[PerRow(), weight],
                                                   set_inductor_config=False)
    quantized = copy.deepcopy(model).eval()
    quantize_(quantized, config)
    return quantized


def _require_cpu(model: nn.Module) -> None:
    """Raise a ValueError naming the first parameter or buffer that is not on the CPU."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.device.type != "cpu":
            raise ValueError(
                f"dynamic int8 quantization runs on the CPU only, but {name!r} is on "
                f"{tensor.device}: call model.cpu() first")


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``, written to memory.

    A quantized model's state dict holds its packed int8 weights with their scales and zero
    points, so this is the size of the checkpoint on disk (give or take the file's header).
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# ---------------------------------------------------------------- latency

def benchmark_latency(model: nn.Module, batch: Batch, threads: int = 2, repeats: int = 10,
                      warmup: int = 2) -> dict[str, Any]:
    """Wall-clock seconds per forward pass: ``warmup`` untimed calls, then ``repeats`` timed ones.

    ``batch`` is a dict of keyword arguments (a Hugging Face batch: ``model(**batch)``) or a
    tensor (``model(batch)``). The model runs in eval mode (each module's train/eval flag is put
    back afterwards) under ``torch.no_grad`` with ``torch.set_num_threads(threads)``; the previous
    thread count is restored, also on an error. On CUDA the clock is read after a synchronize.

    Returns {"mean_s", "std_s" (sample std, nan for one repeat), "min_s", "threads",
    "batch_shape" (of ``input_ids``, or of the first tensor), "repeats", "warmup"}.
    """
    if threads < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need threads >= 1, repeats >= 1, warmup >= 0; got threads={threads}, "
                         f"repeats={repeats}, warmup={warmup}")
    call = _forward_call(model, batch)
    sync = _synchronizer(batch)
    previous_threads = torch.get_num_threads()
    modules = list(model.modules())
    flags = [m.training for m in modules]
    times = []
    try:
        torch.set_num_threads(threads)
        model.eval()
        with torch.no_grad():
            for _ in range(warmup):
                call()
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                sync()
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
        for module, flag in zip(modules, flags):
            module.training = flag
    return {"mean_s": statistics.fmean(times),
            "std_s": statistics.stdev(times) if len(times) > 1 else math.nan,
            "min_s": min(times), "threads": threads, "batch_shape": _batch_shape(batch),
            "repeats": repeats, "warmup": warmup}


def compare_speed(model: nn.Module, make_batch: Callable[[int, int], Batch],
                  batch_sizes: Sequence[int] = (1, 32), seq_len: int = 128, threads: int = 2,
                  repeats: int = 10, warmup: int = 2,
                  per_channel: bool = False) -> list[dict[str, Any]]:
    """fp32 against dynamic int8 latency, one row per (precision, batch size).

    ``make_batch(batch_size, seq_len)`` builds the model's inputs; both models see the same
    batch. Each row is :func:`benchmark_latency`'s dict with "precision" ("fp32" or "int8"),
    "batch_size", "seq_len" and "size_bytes"; int8 rows add "speedup" = fp32 mean / int8 mean.
    """
    models = {"fp32": model, "int8": quantize_dynamic_int8(model, per_channel=per_channel)}
    sizes = {name: model_size_bytes(m) for name, m in models.items()}
    rows = []
    for batch_size in batch_sizes:
        batch = make_batch(batch_size, seq_len)
        timed = {name: benchmark_latency(m, batch, threads=threads, repeats=repeats,
                                         warmup=warmup) for name, m in models.items()}
        for name, result in timed.items():
            row = {"precision": name, "batch_size": batch_size, "seq_len": seq_len,
                   "size_bytes": sizes[name], **result}
            if name == "int8":
                row["speedup"] = timed["fp32"]["mean_s"] / result["mean_s"]
            rows.append(row)
    return rows


def _forward_call(model: nn.Module, batch: Batch) -> Callable[[], Any]:
    if isinstance(batch, Mapping):
        return lambda: model(**batch)
    return lambda: model(batch)


def _tensors(batch: Batch) -> list[torch.Tensor]:
    values = batch.values() if isinstance(batch, Mapping) else [batch]
    return [v for v in values if isinstance(v, torch.Tensor)]


def _batch_shape(batch: Batch) -> list[int]:
    if isinstance(batch, Mapping) and isinstance(batch.get("input_ids"), torch.Tensor):
        return list(batch["input_ids"].shape)
    tensors = _tensors(batch)
    return list(tensors[0].shape) if tensors else []


def _synchronizer(batch: Batch) -> Callable[[], None]:
    """CUDA kernels run asynchronously: wait for them before reading the clock."""
    if any(t.is_cuda for t in _tensors(batch)):
        return torch.cuda.synchronize
    return lambda: None


# ---------------------------------------------------------------- simulated k-bit weights

def quantization_step(weight: torch.Tensor, bits: int, per_channel: bool = False,
                      symmetric: bool = True) -> torch.Tensor:
    """The step Delta of a uniform b-bit quantizer fitted to ``weight``:

        symmetric:   Delta = max|w| / (2^(b-1) - 1)
        asymmetric:  Delta = (max(w, 0) - min(w, 0)) / (2^b - 1)

    over the whole tensor (a 0-dim result) or over each output row, the slice along dim 0
    (``per_channel``: shape (rows, 1, ...), broadcastable against ``weight``). An all-zero tensor
    or row has Delta = 0: it is represented exactly. Computed in float32.
    """
    _check_bits(bits)
    w = weight.detach().float()
    dims = tuple(range(1, w.dim())) if per_channel and w.dim() > 0 else None
    if symmetric:
        return _amax(w.abs(), dims) / (2 ** (bits - 1) - 1)
    high = _amax(w, dims).clamp_min(0.0)
    low = -_amax(-w, dims).clamp_min(0.0)   # min(w, 0)
    return (high - low) / (2 ** bits - 1)


def fake_quantize(weight: torch.Tensor, bits: int, per_channel: bool = False,
                  symmetric: bool = True) -> torch.Tensor:
    """Quantize-dequantize: w' = q * Delta with q the b-bit integer code (module docstring).

    Same shape and dtype as ``weight`` (the arithmetic is float32); |w' - w| <= Delta / 2
    element-wise, and at most 2^b - 1 (symmetric) or 2^b (asymmetric) distinct values per tensor
    or per row.
    """
    step = quantization_step(weight, bits, per_channel, symmetric)
    w = weight.detach().float()
    safe_step = torch.where(step > 0, step, torch.ones_like(step))  # all-zero rows: q = 0
    if symmetric:
        limit = 2 ** (bits - 1) - 1
        codes = torch.clamp(torch.round(w / safe_step), -limit, limit)
        return (codes * step).to(weight.dtype)
    dims = tuple(range(1, w.dim())) if per_channel and w.dim() > 0 else None
    low = -_amax(-w, dims).clamp_min(0.0)
    zero_point = torch.round(-low / safe_step)
    codes = torch.clamp(torch.round(w / safe_step) + zero_point, 0, 2 ** bits - 1)
    return ((codes - zero_point) * step).to(weight.dtype)


def fake_quantize_weights(model: nn.Module, bits: int, per_channel: bool = False,
                          symmetric: bool = True) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Linear`` weight is replaced by
    :func:`fake_quantize` of it at ``bits`` bits; biases, embeddings, LayerNorm and ``model``
    itself are untouched. The copy stays in floating point on the same device: it simulates the
    accuracy of b-bit weights, not their size or speed.
    """
    _check_bits(bits)
    quantized = copy.deepcopy(model)
    with torch.no_grad():
        for module in quantized.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(fake_quantize(module.weight, bits, per_channel, symmetric))
    return quantized


def rounding_noise_variance(model: nn.Module, bits: int, per_channel: bool = False,
                            symmetric: bool = True) -> dict[str, torch.Tensor]:
    """Var[w' - w] = Delta^2 / 12 under the uniform-noise model (Bennett 1948), broadcast to the
    shape of every ``nn.Linear`` weight, keyed by its name in ``model.named_parameters()``
    (e.g. "bert.encoder.layer.0.attention.self.query.weight"). With the Hessian's diagonal H
    (:func:`flatcomp.flatness.hessian_diagonal`), sum over names of (H * var).sum() / 2 is the
    second-order prediction of the expected loss increase of :func:`fake_quantize_weights` at the
    same settings (module docstring).
    """
    _check_bits(bits)
    return {_weight_name(name): (quantization_step(m.weight, bits, per_channel, symmetric) ** 2
                                 / 12).expand(m.weight.shape).clone()
            for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, got {bits!r}")


def _amax(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """max over ``dims`` keeping them (None: over everything, a 0-dim tensor)."""
    if dims is None:
        return x.amax() if x.numel() else x.new_zeros(())
    return x.amax(dim=dims, keepdim=True) if dims else x


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"
