"""CoFi gates on the tiny BERT of the smoke profile: deterministic gates keep the expected count,
the expected size matches the compact model's, compact logits equal gated logits, a removed
sublayer is the identity, gradients reach log alpha, the lambdas ascend, compact models save."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from flatcomp.cofi import (COFI_GATE_INIT, GATE_INIT, STRUCTURES, HardConcrete, Lagrangian,
                           add_gates, cofi_optimizers, compact, compact_like, lagrangian,
                           target_at)
from flatcomp.lab.cofi_train import CoFiSchedule
from flatcomp.lab.models import load_model

LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense")


@pytest.fixture
def model(smoke):
    return load_model(smoke, "mrpc").eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return dict(input_ids=ids, attention_mask=mask)


def prune_some(gates) -> None:
    """Drop one head, a whole FFN, a whole attention, FFN dims and hidden dims."""
    with torch.no_grad():
        la = {k: g.log_alpha for k, g in gates.gates.items()}
        la["head"][0, 1] = -10.0
        la["ffn_layer"][0] = -10.0
        la["attn_layer"][1] = -10.0
        la["ffn_dim"][1, :40] = -10.0
        la["hidden"][0, :8] = -10.0
        la["head"][1, 0] = 3.0  # kept with a gate value below 1 (folded by compact)
        la["ffn_dim"][1, 40:60] = 2.0


def encoder_weights(model) -> int:
    """Parameters of the encoder layers' weight matrices (what the expected size counts)."""
    return sum(m.weight.numel() for name, m in model.bert.encoder.named_modules()
               if isinstance(m, torch.nn.Linear))


def test_initial_log_alphas_are_ours_and_cofis_is_declared_beside_them(model):
    """Ours: 10 for every structure (the stored results' gate_init); CoFi's L0Module: 10 too but
    0 for the FFN dimensions, where P(z != 0) = sigmoid(beta ln 11) = 0.83 (module docstring)."""
    gates = add_gates(model)
    assert GATE_INIT == CoFiSchedule.__dataclass_fields__["gate_init"].default == 10.0
    for key, g in gates.gates.items():
        assert (g.log_alpha - GATE_INIT).abs().max() < 0.1, key
    assert set(COFI_GATE_INIT) == set(STRUCTURES)
    assert {k for k, v in COFI_GATE_INIT.items() if v != GATE_INIT} == {"ffn_dim"}
    cofi = HardConcrete(2, 512, init_mean=COFI_GATE_INIT["ffn_dim"]).prob_nonzero()
    assert cofi.mean().item() == pytest.approx(0.832, abs=1e-3)
    assert gates.gates["ffn_dim"].prob_nonzero().min().item() > 0.9999


def test_deterministic_gates_keep_the_expected_count(model):
    gates = add_gates(model)
    prune_some(gates)
    with torch.no_grad():
        gates.gates["ffn_dim"].log_alpha[0].normal_(0.0, 2.0)
    z = gates.deterministic()
    for key, g in gates.gates.items():
        expected = g.prob_nonzero().sum(-1).round()
        assert torch.equal((z[key] != 0).sum(-1).float(), expected), key
        kept_min = g.log_alpha.masked_fill(z[key] == 0, float("inf")).min(-1).values
        dropped_max = g.log_alpha.masked_fill(z[key] != 0, -float("inf")).max(-1).values
        assert (kept_min >= dropped_max).all(), key  # the largest log alphas are the kept ones


@pytest.mark.parametrize("pruned", [False, True])
def test_expected_size_matches_the_compact_model(model, pruned):
    gates = add_gates(model)
    if pruned:
        prune_some(gates)
    expected = float(gates.expected_params().detach())
    assert encoder_weights(compact(model, gates)) == pytest.approx(expected, rel=0.01)
    assert float(gates.expected_sparsity().detach()) == pytest.approx(1 - expected / encoder_weights(model))
    if not pruned:
        assert float(gates.expected_sparsity().detach()) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("pruned", [False, True])
def test_compact_logits_equal_gated_logits(model, batch, pruned):
    gates = add_gates(model)
    if pruned:
        prune_some(gates)
    gated = model(**batch).logits
    small = compact(model, gates).eval()
    torch.testing.assert_close(small(**batch).logits, gated, atol=1e-4, rtol=0)
    if pruned:
        # layer 1's FFN: 68 dims with P ~ 1 and 20 with P = 0.97 round to 87 kept
        assert small.config.cofi_kept == {"heads": [1, 0], "ffn": [0, 87], "hidden": 56}
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel()
                                                                for p in model.parameters())


def test_removed_sublayers_are_the_identity(model, batch):
    gates = add_gates(model)
    seen = {}
    hooks = [model.bert.encoder.layer[i].register_forward_hook(
        lambda m, args, out, i=i: seen.__setitem__(i, (args[0], out))) for i in range(2)]
    with torch.no_grad():
        gates.gates["attn_layer"].log_alpha[0] = -10.0  # layer 0: attention gone, FFN kept
        gates.gates["ffn_layer"].log_alpha[0] = -10.0   # ... and the FFN too: layer 0 is gone
        gates.gates["head"].log_alpha[1] = -10.0        # layer 1: every head gone
    model(**batch)
    x0, out0 = seen[0]
    assert torch.equal(out0, x0)  # exactly: both sublayers of layer 0 are skipped
    x1 = seen[1][0]
    ffn = model.bert.encoder.layer[1]
    expected = ffn.output(ffn.intermediate(x1), x1)  # layer 1 = its FFN alone
    torch.testing.assert_close(seen[1][1], expected)
    for h in hooks:
        h.remove()


def test_remove_detaches_the_hooks(model, batch):
    before = model(**batch).logits
    gates = add_gates(model)
    prune_some(gates)
    assert not torch.allclose(model(**batch).logits, before)
    gates.remove()
    torch.testing.assert_close(model(**batch).logits, before, atol=0, rtol=0)


def test_gradients_reach_every_log_alpha(model, batch):
    model.train()
    gates = add_gates(model, init_mean=0.0)  # gates inside (0, 1): the task loss reaches them
    torch.manual_seed(0)
    loss = model(**batch, labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    for key, g in gates.gates.items():
        assert g.log_alpha.grad is not None and g.log_alpha.grad.abs().sum() > 0, key
    gates.zero_grad()
    gates.expected_sparsity().backward()
    for key, g in gates.gates.items():
        assert (g.log_alpha.grad < 0).all(), key  # a larger log alpha keeps more: less sparse


def test_training_gates_are_sampled_eval_gates_fixed(model, batch):
    gates = add_gates(model, init_mean=0.0)
    model.train()
    model(**batch)
    first = gates.z["ffn_dim"].clone()
    model(**batch)
    assert not torch.equal(first, gates.z["ffn_dim"])
    assert ((first >= 0) & (first <= 1)).all() and (first == 0).any()
    model.eval()
    model(**batch)
    assert torch.equal(gates.z["ffn_dim"], gates.deterministic()["ffn_dim"])


def test_lambda_ascent_raises_the_penalty_below_target():
    lag = Lagrangian()
    opt = torch.optim.AdamW(lag.parameters(), lr=0.1, weight_decay=0.0, maximize=True)
    sparsity, target = torch.tensor(0.2), 0.5
    penalties = []
    for _ in range(3):
        penalty = lag(sparsity, target)
        penalties.append(float(penalty.detach()))
        opt.zero_grad()
        penalty.backward()
        opt.step()
    assert penalties[0] == 0.0 and penalties[1] > 0 and penalties[2] > penalties[1]
    assert lag.lambda_1.item() < 0 and lag.lambda_2.item() > 0
    assert lagrangian(sparsity, target, lag.lambda_1, lag.lambda_2).item() == pytest.approx(
        lag.lambda_1.item() * -0.3 + lag.lambda_2.item() * 0.09)


def test_target_warms_up_linearly():
    assert [target_at(s, 10, 0.6) for s in (0, 5, 10, 20)] == pytest.approx([0, 0.3, 0.6, 0.6])
    assert target_at(3, 0, 0.6) == 0.6


def test_optimizers_freeze_embeddings_and_ascend_lambdas(model):
    gates, lag = add_gates(model), Lagrangian()
    opt, gate_opt, lag_opt = cofi_optimizers(model, gates, lag, lr=1e-4, gate_lr=0.05)
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert {id(p) for p in gate_opt.param_groups[0]["params"]} == {id(p) for p in gates.parameters()}
    assert gate_opt.param_groups[0]["lr"] == 0.05 and lag_opt.param_groups[0]["maximize"]
    assert not opt.param_groups[0]["maximize"]


def test_constrain_clamps_log_alpha(model):
    gates = add_gates(model)
    gates.constrain()
    for g in gates.gates.values():
        assert g.log_alpha.max() <= torch.log(torch.tensor(100.0)) + 1e-6


def test_compact_model_saves_and_loads(model, batch, smoke, tmp_path):
    gates = add_gates(model)
    prune_some(gates)
    small = compact(model, gates).eval()
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    fresh = compact_like(load_model(smoke, "mrpc", seed=1), small.config.cofi_kept).eval()
    fresh.load_state_dict(load_file(str(path)), strict=True)
    torch.testing.assert_close(fresh(**batch).logits, small(**batch).logits, atol=0, rtol=0)
