"""The library's fine-tuning loop on any module and any dict batches, with no profile."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatcomp import fine_tune
from flatcomp.pruning import magnitude_masks


def _data(rows: int = 64, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return [{"x": x[i:i + 16], "y": y[i:i + 16]} for i in range(0, rows, 16)]


def _loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(batch["x"]), batch["y"])


def _accuracy(model: nn.Module, batches: list[dict]) -> float:
    return sum(float((model(b["x"]).argmax(-1) == b["y"]).float().sum()) for b in batches) / \
        sum(len(b["y"]) for b in batches)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("optimizer", ["adam", "sam"])
def test_fine_tune_trains_a_plain_sequential_on_dict_batches(optimizer):
    train, dev = _data(), _data(seed=1)
    model = _model()
    before = _accuracy(model, dev)
    result = fine_tune(model, train, epochs=5, optimizer=optimizer, lr=0.05, loss_fn=_loss,
                       evaluate=lambda m: _accuracy(m, dev))
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_score == max(r["score"] for r in result.history) > before
    assert _accuracy(result.model, dev) == result.best_score  # the best epoch's weights


def test_the_same_seed_gives_the_same_weights_and_sam_differs_from_adam():
    def trained(optimizer):
        return fine_tune(_model(), _data(), 2, optimizer, lr=0.05, loss_fn=_loss).model

    a, b, s = trained("adam"), trained("adam"), trained("sam")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), s.parameters()))


def test_masks_keep_pruned_weights_at_zero_through_training():
    model = _model()
    masks = magnitude_masks({"0.weight": model[0].weight.detach()}, 0.5)
    fine_tune(model, _data(), 3, "sam", lr=0.05, loss_fn=_loss, masks=masks)
    assert torch.all(model[0].weight[~masks["0.weight"]] == 0)
    assert torch.count_nonzero(model[0].weight) == masks["0.weight"].sum()


def test_the_rate_decays_linearly_to_zero():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fine_tune(model, _data(), 2, opt, loss_fn=_loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_a_hugging_face_model_uses_its_own_loss(smoke):
    from flatcomp.lab.data import batches
    from flatcomp.lab.experiments import encoded_task
    from flatcomp.lab.models import load_model

    train, _, _ = encoded_task(smoke, "mrpc")
    data = list(batches(train, 16))[:4]
    result = fine_tune(load_model(smoke, "mrpc", 0), data, epochs=2, lr=1e-3)
    assert result.best_epoch == 2 and result.history[-1]["train_loss"] > 0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        fine_tune(_model(), _data(), 1, "sgd", loss_fn=_loss)
    with pytest.raises(ValueError, match="batches are empty"):
        fine_tune(_model(), [], 1, loss_fn=_loss)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        fine_tune(_model(), _data(), 0, loss_fn=_loss)
