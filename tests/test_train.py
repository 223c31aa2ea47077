"""The fine-tuning loop on the tiny BERT of the smoke profile, with shipped RTE rows.

On a busy 2-core CPU each fine-tune here takes about a second (one PyTorch thread, see conftest).
"""

from __future__ import annotations

import pytest
import torch

import flatcomp.lab.train as T
from flatcomp.lab.data import encode, load_task
from flatcomp.lab.models import load_model
from flatcomp.lab.train import evaluate, fine_tune, make_optimizer

TASK = "rte"
MASKED = "bert.encoder.layer.0.attention.self.query.weight"


@pytest.fixture(scope="module")
def rows(smoke, tokenizer):
    """64 and 32 shipped RTE training rows, encoded."""
    data = load_task(TASK, smoke)
    return {n: encode(data.train.subsample(n), tokenizer, smoke.max_length) for n in (64, 32)}


@pytest.fixture(scope="module")
def batch8(smoke):
    return smoke.with_overrides(batch_size=8)


def _tune(profile, train, dev, seed=0, optimizer="adam", **kwargs):
    model = load_model(profile, TASK, seed)
    return fine_tune(model, train, dev, TASK, profile, optimizer, seed, progress=False,
                     device=torch.device("cpu"), **kwargs)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- it learns

@pytest.fixture(scope="module")
def memorised(batch8, rows):
    """8 epochs at lr 1e-3 on 64 rows, evaluated on those same rows."""
    return _tune(batch8, rows[64], rows[64], epochs=8, lr=1e-3)


def test_training_loss_falls(memorised):
    losses = [h["train_loss"] for h in memorised.history]
    assert len(losses) == 8
    assert losses[-1] < 0.9 * losses[0], losses


def test_fits_its_training_rows(memorised, batch8, rows):
    accuracy = evaluate(memorised.model, rows[64], TASK, batch8)["accuracy"]
    assert accuracy > 0.8
    assert memorised.steps == 8 * 8  # 64 rows / batch 8, 8 epochs


# ---------------------------------------------------------------- determinism

def test_same_seed_gives_bit_identical_weights_and_history(batch8, rows):
    a = _tune(batch8, rows[32], rows[32], seed=0, epochs=2)
    b = _tune(batch8, rows[32], rows[32], seed=0, epochs=2)
    assert a.history == b.history
    sa, sb = _state(a.model), _state(b.model)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_different_seed_gives_different_weights(batch8, rows):
    a = _tune(batch8, rows[32], rows[32], seed=0, epochs=2)
    b = _tune(batch8, rows[32], rows[32], seed=1, epochs=2)
    sa, sb = _state(a.model), _state(b.model)
    assert not all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- masks

@pytest.mark.parametrize("optimizer", ["adam", "sam", "swa"])
def test_masked_weights_stay_exactly_zero(batch8, rows, optimizer):
    model = load_model(batch8, TASK, 0)
    weight = dict(model.named_parameters())[MASKED]
    mask = torch.Generator().manual_seed(0)
    mask = torch.rand(weight.shape, generator=mask) < 0.5
    assert weight[~mask].abs().min() > 0  # the pruned entries start non-zero
    before = weight.detach().clone()

    result = fine_tune(model, rows[32], rows[32], TASK, batch8, optimizer, 0,
                       masks={MASKED: mask}, epochs=2, lr=1e-3, progress=False,
                       device=torch.device("cpu"))
    after = dict(result.model.named_parameters())[MASKED].detach()
    assert torch.all(after[~mask] == 0)
    assert not torch.equal(after[mask], before[mask])  # the kept entries trained


def test_swa_keeps_the_running_average_of_the_weights(batch8, rows, monkeypatch):
    """From SWA_START_EPOCH (2) on, the evaluated and returned model is the mean of the weights
    after every step of those epochs, not the last weights."""
    snapshots = []

    class Recording(T.AveragedModel):  # sees the weights after every step it averages
        def update_parameters(self, model):
            snapshots.append(dict(model.named_parameters())[MASKED].detach().clone())
            super().update_parameters(model)

    epochs_seen = iter(range(100))
    monkeypatch.setattr(T, "AveragedModel", Recording)
    monkeypatch.setattr(T, "evaluate_rows",
                        lambda *a, **k: ({"accuracy": next(epochs_seen) / 100}, None))
    result = fine_tune(load_model(batch8, TASK, 0), rows[32], rows[32], TASK, batch8, "swa", 0,
                       epochs=2, lr=1e-3, progress=False, device=torch.device("cpu"))

    got = dict(result.model.named_parameters())[MASKED].detach()
    assert result.best_epoch == 2 and len(snapshots) == 32 // batch8.batch_size
    torch.testing.assert_close(got, torch.stack(snapshots).mean(0))
    assert not torch.allclose(got, snapshots[-1])


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("optimizer", ["adam", "sam"])
def test_timed_steps_mask_like_fine_tune(batch8, rows, optimizer):
    """The masked steps that the overhead measurement times are the real ones."""
    from flatcomp.lab.data import batches

    model = load_model(batch8, TASK, 0)
    weight = dict(model.named_parameters())[MASKED]
    mask = torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    seconds = T.time_steps(model, list(batches(rows[32], 8)), optimizer, batch8,
                           device=torch.device("cpu"), masks={MASKED: mask})
    assert seconds > 0
    assert torch.all(weight.detach()[~mask] == 0) and torch.all(weight.detach()[mask] != 0)


def test_unknown_optimizer_raises(batch8, rows):
    with pytest.raises(ValueError, match="sgd"):
        _tune(batch8, rows[32], rows[32], optimizer="sgd", epochs=1)
    with pytest.raises(ValueError, match="adam, sam"):
        make_optimizer("lion", load_model(batch8, TASK, 0), lr=1e-3)


# ---------------------------------------------------------------- the best epoch is kept

def test_returned_model_scores_as_the_best_epoch(batch8, rows):
    result = _tune(batch8, rows[64], rows[64], epochs=7, lr=1e-3)
    scores = [h["accuracy"] for h in result.history]
    assert result.best_score == max(scores)
    assert result.best_epoch == scores.index(max(scores)) + 1  # the first of ties
    again = evaluate(result.model, rows[64], TASK, batch8)
    best = result.history[result.best_epoch - 1]
    assert again == {k: best[k] for k in again}
    # the best epoch's prediction for every dev row, which scores as that epoch did
    assert len(result.dev_predictions) == len(rows[64])
    assert T.glue_metrics(TASK, result.dev_predictions, list(rows[64].labels)) == again
    assert result.summary()["dev_predictions"] == result.dev_predictions


def test_returned_weights_are_those_of_the_best_epoch(batch8, rows, monkeypatch):
    """With scripted dev scores (epoch 2 best of 3), the weights seen at epoch 2 come back."""
    scripted = iter([0.5, 0.9, 0.7])
    seen = []

    def fake_evaluate(model, data, task, profile, device=None):
        seen.append(_state(model))
        return {"accuracy": next(scripted)}, None

    monkeypatch.setattr(T, "evaluate_rows", fake_evaluate)
    result = _tune(batch8, rows[32], rows[32], epochs=3, lr=1e-3)
    assert result.best_epoch == 2 and result.best_score == 0.9
    final = _state(result.model)
    assert all(torch.equal(final[k], seen[1][k]) for k in final)
    assert not all(torch.equal(final[k], seen[2][k]) for k in final)


def test_nan_score_never_wins(batch8, rows, monkeypatch):
    scripted = iter([float("nan"), 0.3, float("nan")])
    monkeypatch.setattr(T, "evaluate_rows", lambda *a, **k: ({"accuracy": next(scripted)}, None))
    result = _tune(batch8, rows[32], rows[32], epochs=3, lr=1e-3)
    assert result.best_epoch == 2 and result.best_score == 0.3
