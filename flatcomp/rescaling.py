"""Function-preserving rescalings of BERT's attention: the same logits, other weights.

In one head h of a self-attention layer the scores are (W_Q x + b_Q)_h . (W_K x + b_K)_h, so
scaling the head's query rows (and bias) by a and its key rows by 1/a changes no score. Its
output is W_O[:, h] (softmax . V_h), so scaling the head's value rows (and bias) by b and the
columns of the output matrix that read them by 1/b changes no output either. Any measure that
moves under these maps (L2 sharpness, the Hessian's eigenvalues, a global magnitude mask) is a
property of the parameterisation, not of the function (Dinh et al., ICML 2017, made the same
point for ReLU networks); adaptive sharpness (:func:`flatcomp.flatness.adaptive_sharpness`) is
invariant to them.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def rescale_attention_head(model: nn.Module, layer: int, head: int, qk: float = 1.0,
                           vo: float = 1.0) -> nn.Module:
    """Scale head ``head`` of encoder layer ``layer`` of a Hugging Face BERT in place: W_Q, b_Q by
    ``qk`` and W_K, b_K by 1/``qk``; W_V, b_V by ``vo`` and W_O's columns of the head by
    1/``vo``. Returns the model. The logits are unchanged up to float rounding."""
    if qk <= 0 or vo <= 0:
        raise ValueError(f"scales must be positive, got qk={qk}, vo={vo}")
    layers = encoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} is outside 0..{len(layers) - 1}")
    attention = layers[layer].attention
    heads = attention.self.num_attention_heads
    if not 0 <= head < heads:
        raise ValueError(f"head {head} is outside 0..{heads - 1}")
    size = attention.self.attention_head_size
    rows = slice(head * size, (head + 1) * size)
    for linear, scale in ((attention.self.query, qk), (attention.self.key, 1 / qk),
                          (attention.self.value, vo)):
        linear.weight[rows] *= scale
        if linear.bias is not None:
            linear.bias[rows] *= scale
    attention.output.dense.weight[:, rows] /= vo
    return model


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The layers of a Hugging Face BERT's encoder."""
    for module in model.modules():
        if type(module).__name__.endswith("Encoder") and hasattr(module, "layer"):
            return module.layer
    raise ValueError("no BERT encoder (a module with .layer) in this model")
