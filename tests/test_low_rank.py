"""Low-rank truncation, the attention rescaling and adaptive sharpness on the tiny BERT."""

import pytest
import torch

from flatcomp.lab.config import SMOKE
from flatcomp.lab.models import load_model


def _model():
    return load_model(SMOKE, "mrpc", 0).eval()


def _ids():
    return torch.randint(5, 100, (4, 12), generator=torch.Generator().manual_seed(0))


def test_full_rank_factorisation_keeps_the_logits_and_a_quarter_rank_has_fewer_parameters():
    from flatcomp.low_rank import LowRankLinear, low_rank_model, parameter_count

    model, ids = _model(), _ids()
    full = low_rank_model(model, 1.0)
    assert any(isinstance(m, LowRankLinear) for m in full.modules())
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())  # a copy
    with torch.no_grad():
        assert torch.allclose(full(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)
        quarter = low_rank_model(model, 0.25)
        assert not torch.allclose(quarter(input_ids=ids).logits, model(input_ids=ids).logits)
    assert parameter_count(quarter) < parameter_count(model)
    ranks = {m.rank for m in quarter.modules() if isinstance(m, LowRankLinear)}
    assert ranks == {16}  # a quarter of min(64, 64) and of min(64, 128)


def test_truncation_keeps_the_largest_singular_values():
    from flatcomp.low_rank import LowRankLinear

    linear = torch.nn.Linear(8, 6)
    w = LowRankLinear(linear, 2)
    product = w[1].weight @ w[0].weight
    u, s, vh = torch.linalg.svd(linear.weight.detach())
    assert torch.allclose(product, u[:, :2] @ torch.diag(s[:2]) @ vh[:2], atol=1e-5)


def test_bad_low_rank_requests_say_what_is_wrong():
    from flatcomp.low_rank import low_rank_model

    with pytest.raises(ValueError, match="rank_fraction"):
        low_rank_model(_model(), 0.0)
    with pytest.raises(ValueError, match="not Linear modules"):
        low_rank_model(_model(), 0.5, modules=["nope"])
    with pytest.raises(ValueError, match="no Linear to truncate"):
        low_rank_model(torch.nn.Sequential(torch.nn.Linear(3, 3)), 0.5)


def _loss_fn(ids):
    labels = torch.tensor([0, 1, 0, 1])
    return lambda m: m(input_ids=ids, labels=labels).loss


def test_rescaling_a_head_keeps_the_logits_moves_sharpness_but_not_adaptive_sharpness():
    from flatcomp.flatness import adaptive_sharpness, sharpness
    from flatcomp.rescaling import rescale_attention_head

    model, ids = _model(), _ids()
    loss_fn = _loss_fn(ids)
    before = {"sharp": sharpness(model, loss_fn, rho=0.05, steps=3)["sharpness"],
              "adaptive": adaptive_sharpness(model, loss_fn, rho=0.5, steps=3)["sharpness"]}
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for layer in range(2):
        for head in range(2):
            rescale_attention_head(model, layer, head, qk=50.0, vo=50.0)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, logits, atol=1e-5)
    after = {"sharp": sharpness(model, loss_fn, rho=0.05, steps=3)["sharpness"],
             "adaptive": adaptive_sharpness(model, loss_fn, rho=0.5, steps=3)["sharpness"]}
    assert after["adaptive"] == pytest.approx(before["adaptive"], rel=1e-3)
    assert after["sharp"] > 1.1 * before["sharp"]  # the same function, a sharper-looking one


def test_rescaling_checks_its_arguments():
    from flatcomp.rescaling import rescale_attention_head

    with pytest.raises(ValueError, match="layer 5"):
        rescale_attention_head(_model(), 5, 0, qk=2.0)
    with pytest.raises(ValueError, match="positive"):
        rescale_attention_head(_model(), 0, 0, qk=0.0)


def test_effective_rank_counts_equal_directions_and_less_when_one_dominates():
    from flatcomp.low_rank import effective_rank

    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    skewed = torch.diag(torch.tensor([100.0, 1.0, 1.0, 1.0, 1.0]))
    assert 1.0 < effective_rank(skewed) < 2.0
