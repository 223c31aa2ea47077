"""Pruning on the tiny BERT of the smoke profile: the prunable set, global magnitude masks,
random tickets, rewinding, saving masks, and IMP (exact sparsities, resuming a killed run).

Every fine-tune here is one or two epochs on 32 shipped RTE rows (a fraction of a second).
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flatcomp.lab.data import encode, load_task
from flatcomp.lab.models import load_model
from flatcomp.lab.train import fine_tune
from flatcomp.pruning import (ImpRound, apply_masks, imp_rounds, iterative_magnitude_pruning,
                              load_masks, magnitude_masks, mask_overlap, prunable_weights,
                              random_masks, rewind, save_masks, snapshot, sparsity_report,
                              without_pooler)

TASK = "rte"
CPU = torch.device("cpu")
LINEARS_PER_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "intermediate.dense", "output.dense")


@pytest.fixture(scope="module")
def profile(smoke):
    return smoke.with_overrides(batch_size=16)


@pytest.fixture(scope="module")
def rows(profile, tokenizer):
    """32 shipped RTE training rows (trained and evaluated on: only the weights matter here)."""
    return encode(load_task(TASK, profile).train.subsample(32), tokenizer, profile.max_length)


@pytest.fixture
def model(profile):
    return load_model(profile, TASK, 0)


def _train_fn(profile, rows, optimizer="adam", epochs=1):
    def train(model, masks):
        return fine_tune(model, rows, rows, TASK, profile, optimizer, 0, masks=masks,
                         epochs=epochs, lr=1e-3, device=CPU, progress=False)
    return train


def _pruned_count(masks):
    return sum(int((~m).sum()) for m in masks.values())


def _same_masks(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the prunable set

def test_prunable_set_is_the_encoder_linears_and_the_pooler(model):
    weights = prunable_weights(model)
    layers = model.config.num_hidden_layers
    expected = {f"bert.encoder.layer.{i}.{lin}.weight"
                for i in range(layers) for lin in LINEARS_PER_LAYER} | {"bert.pooler.dense.weight"}
    assert set(weights) == expected
    assert len(weights) == 6 * layers + 1 == 13
    params = dict(model.named_parameters())
    assert all(weights[name] is params[name] for name in weights)  # the parameters, not copies
    for name in set(params) - set(weights):  # what is left: embeddings, LayerNorms, biases, head
        assert any(part in name for part in ("embeddings", "LayerNorm", "bias", "classifier"))
    assert not any(part in name for name in weights
                   for part in ("embeddings", "LayerNorm", "bias", "classifier"))


def test_the_bert_preset_is_the_default_for_bert(model):
    default, bert = prunable_weights(model), prunable_weights(model, preset="bert")
    assert list(default) == list(bert)
    assert all(default[name] is bert[name] for name in default)
    with pytest.raises(ValueError, match="unknown preset"):
        prunable_weights(model, preset="conv")


def test_prunable_set_of_any_model_leaves_out_the_head():
    plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                                torch.nn.Linear(8, 2))
    assert list(prunable_weights(plain)) == ["0.weight", "2.weight"]  # the last Linear is the head

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8))
            self.classifier = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
            self.after = torch.nn.Linear(2, 2)  # after the head in model order, still prunable

    assert list(prunable_weights(Named())) == ["body.0.weight", "body.1.weight", "after.weight"]


def test_nothing_to_prune_is_a_clear_error():
    for model in (torch.nn.Sequential(torch.nn.Linear(4, 2)), torch.nn.Sequential(torch.nn.ReLU())):
        with pytest.raises(ValueError, match="no prunable weights in Sequential"):
            magnitude_masks(prunable_weights(model), 0.5)
    with pytest.raises(ValueError, match="'encoder' or 'pooler'"):
        prunable_weights(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)), "bert")

# ---------------------------------------------------------------- global magnitude masks

def test_no_weights_is_a_clear_error():
    for masks in (None, {}):
        with pytest.raises(ValueError, match=r"no weights.*prunable_weights\(model\)"):
            magnitude_masks({}, 0.5, masks)


def test_iterated_magnitude_masks_have_exact_sparsity_and_keep_the_largest(model):
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    masks = None
    for k in range(1, 10):
        new = magnitude_masks(weights, k / 10, masks)
        assert _pruned_count(new) == round(k / 10 * total)
        if masks is not None:  # already pruned entries stay pruned
            assert all(torch.all(new[n] <= masks[n]) for n in masks)
        kept = torch.cat([new[n].flatten() for n in weights])
        assert magnitudes[~kept].max() <= magnitudes[kept].min()  # globally, across layers
        assert sparsity_report(new)["sparsity"] == pytest.approx(k / 10, abs=1 / total)
        masks = new
    layer_sparsities = sparsity_report(masks)["layers"].values()
    assert max(layer_sparsities) > min(layer_sparsities)  # a global, not a per-layer, ranking


def test_ties_are_broken_by_position_and_the_count_is_exact():
    weights = {"b": torch.ones(2, 5), "a": torch.ones(10)}
    masks = magnitude_masks(weights, 0.25)
    assert list(masks) == ["b", "a"]  # the caller's order
    assert _pruned_count(masks) == 5
    assert torch.equal(masks["a"], torch.arange(10) >= 5)  # names sorted, then row-major
    assert bool(masks["b"].all())


def test_pruned_entries_count_even_when_a_kept_weight_is_larger():
    """Already-pruned entries stay pruned even if their (trained) weight is now large."""
    weights = {"w": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])}
    first = {"w": torch.tensor([False, True, True, True, True])}
    masks = magnitude_masks(weights, 0.4, first)
    assert masks["w"].tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_the_unit_interval_raises(model, sparsity):
    with pytest.raises(ValueError, match="sparsity must be in"):
        magnitude_masks(prunable_weights(model), sparsity)


def test_sparsity_below_the_current_one_raises(model):
    weights = prunable_weights(model)
    with pytest.raises(ValueError, match="below the masks' current sparsity"):
        magnitude_masks(weights, 0.2, magnitude_masks(weights, 0.3))


def test_apply_masks_zeros_only_the_pruned_prunable_entries(model):
    before = snapshot(model)
    masks = magnitude_masks(prunable_weights(model), 0.5)
    apply_masks(model, masks)
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.all(p[~masks[name]] == 0)
            assert torch.equal(p[masks[name]], before[name][masks[name]])
        else:  # embeddings, LayerNorms, biases, the head
            assert torch.equal(p, before[name])
    assert sparsity_report(model)["pruned"] == sparsity_report(masks)["pruned"]


def test_without_pooler_leaves_the_pooler_dense_and_the_encoder_masked(model):
    masks = magnitude_masks(prunable_weights(model), 0.9)
    assert sparsity_report(masks)["layers"]["bert.pooler.dense.weight"] > 0
    kept = without_pooler(masks)
    assert set(masks) - set(kept) == {"bert.pooler.dense.weight"}
    apply_masks(model, kept)
    report = sparsity_report(model)["layers"]
    assert report.pop("bert.pooler.dense.weight") == 0
    assert report == sparsity_report(kept)["layers"]


# ---------------------------------------------------------------- random tickets and overlap

def test_random_masks_keep_the_per_layer_counts_at_other_positions(model):
    weights = prunable_weights(model)
    masks = magnitude_masks(weights, 0.6)
    ticket = random_masks(masks, seed=0)
    assert list(ticket) == list(masks)
    for name in masks:
        assert ticket[name].dtype == torch.bool and ticket[name].shape == masks[name].shape
        assert int(ticket[name].sum()) == int(masks[name].sum())
    assert not _same_masks(ticket, masks)
    assert _same_masks(random_masks(masks, seed=0), ticket)
    assert not _same_masks(random_masks(masks, seed=1), ticket)
    reordered = {name: masks[name] for name in reversed(list(masks))}
    assert _same_masks(random_masks(reordered, seed=0), ticket)  # independent of dict order
    apply_masks(model, masks)  # from weights: as many kept as non-zero entries
    assert _same_masks(random_masks(prunable_weights(model), seed=0), ticket)


def test_mask_overlap_by_hand_and_at_chance():
    a = {"w": torch.tensor([True, True, False, False])}
    b = {"w": torch.tensor([True, False, True, False])}
    overlap = mask_overlap(a, b)
    assert overlap["jaccard"] == pytest.approx(1 / 3)
    assert overlap["agreement"] == pytest.approx(0.5)
    assert overlap["layers"]["w"]["jaccard"] == pytest.approx(1 / 3)
    assert mask_overlap(a, a)["jaccard"] == 1.0 and mask_overlap(a, a)["agreement"] == 1.0

    big = {"w": torch.rand(200_000, generator=torch.Generator().manual_seed(0)) < 0.4}
    chance = mask_overlap(big, random_masks(big, seed=1))
    assert chance["jaccard"] == pytest.approx(chance["chance_jaccard"], abs=0.01)
    assert chance["agreement"] == pytest.approx(chance["chance_agreement"], abs=0.01)
    with pytest.raises(ValueError, match="same parameters"):
        mask_overlap(a, {"v": b["w"]})


# ---------------------------------------------------------------- saving and loading

def test_masks_round_trip_through_safetensors(model, tmp_path):
    masks = magnitude_masks(prunable_weights(model), 0.3)
    metadata = {"task": TASK, "optimizer": "sam", "seed": 0, "round": 3, "rate": 0.1,
                "profile": {"name": "smoke", "lr": {"default": 0.001}}}
    path = tmp_path / "masks" / "rte-sam-seed0-round3.safetensors"
    save_masks(masks, path, metadata)

    loaded, meta = load_masks(path)
    assert _same_masks(loaded, masks) and all(m.dtype == torch.bool for m in loaded.values())
    assert meta == {**metadata, "sparsity": sparsity_report(masks)["sparsity"]}
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file, uint8 inside
        assert set(f.keys()) == set(masks)
        assert f.get_tensor(next(iter(masks))).dtype == torch.uint8
    assert not list(tmp_path.glob("masks/.*.tmp"))


def test_loading_a_file_without_masks_raises(tmp_path):
    save_file({"w": torch.zeros(3)}, tmp_path / "weights.safetensors")
    with pytest.raises(ValueError, match="no flatcomp masks"):
        load_masks(tmp_path / "weights.safetensors")
    with pytest.raises(TypeError, match="bool"):
        save_masks({"w": torch.ones(3)}, tmp_path / "m.safetensors", {})


# ---------------------------------------------------------------- rewinding

def test_rewind_restores_the_pretrained_values_exactly(profile, rows, model):
    theta_0 = snapshot(model)
    masks = magnitude_masks(prunable_weights(model), 0.4)
    trained = _train_fn(profile, rows)(model, None).model
    assert not torch.equal(trained.classifier.weight, theta_0["classifier.weight"])

    rewind(trained, theta_0, masks)
    for name, p in trained.named_parameters():
        if name in masks:
            assert torch.equal(p[masks[name]], theta_0[name][masks[name]])
            assert torch.all(p[~masks[name]] == 0)
        else:  # embeddings, LayerNorms, biases and the head: their initial values
            assert torch.equal(p, theta_0[name])
    with pytest.raises(KeyError, match="lacks"):
        rewind(trained, {}, masks)


# ---------------------------------------------------------------- IMP

@pytest.mark.parametrize("optimizer, epochs", [("adam", 1), ("sam", 1), ("swa", 2)])
def test_imp_rounds_have_exact_sparsity_and_pruned_weights_stay_zero(profile, rows, optimizer,
                                                                     epochs):
    seen = []

    def check(record: ImpRound, result):
        trained = prunable_weights(result.model)
        for name, mask in record.masks.items():  # the round trained with these masks
            assert torch.all(trained[name][~mask] == 0)
            assert not torch.all(trained[name][mask] == 0)
        seen.append(record)

    records = iterative_magnitude_pruning(lambda: load_model(profile, TASK, 0),
                                          _train_fn(profile, rows, optimizer, epochs),
                                          rounds=2, on_round=check)
    assert records == seen and [r.round for r in records] == [0, 1, 2]
    total = sparsity_report(records[0].masks)["total"]
    for k, record in enumerate(records):
        assert record.sparsity == pytest.approx(0.1 * k)
        assert _pruned_count(record.masks) == round(0.1 * k * total)
        if k < 2:
            assert _same_masks(record.next_masks, records[k + 1].masks)
            assert all(torch.all(record.next_masks[n] <= record.masks[n]) for n in record.masks)
    assert records[-1].next_masks is None


def test_imp_prunes_the_smallest_trained_weights(profile, rows):
    checked = []

    def check(record: ImpRound, result):
        if record.next_masks is None:  # the last round prunes nothing
            return
        checked.append(record.round)
        trained = prunable_weights(result.model)
        newly = torch.cat([(record.masks[n] & ~record.next_masks[n]).flatten() for n in trained])
        still = torch.cat([record.next_masks[n].flatten() for n in trained])
        magnitudes = torch.cat([w.detach().abs().flatten() for w in trained.values()])
        assert newly.sum() > 0 and magnitudes[newly].max() <= magnitudes[still].min()

    iterative_magnitude_pruning(lambda: load_model(profile, TASK, 0), _train_fn(profile, rows),
                                rounds=2, on_round=check)
    assert checked == [0, 1]


@pytest.mark.parametrize("with_rewind", [True, False])
def test_killed_imp_run_resumes_to_the_same_masks(profile, rows, tmp_path, with_rewind):
    """Round 1 dies in training; the run resumes from round 0's stored masks (and, without
    rewinding, round 0's stored weights) and ends with the uninterrupted run's masks."""
    make_model, train = (lambda: load_model(profile, TASK, 0)), _train_fn(profile, rows)
    final_weights = {}

    def keep_last_weights(record, result):
        final_weights["reference"] = snapshot(result.model)

    reference = iterative_magnitude_pruning(make_model, train, rounds=2, rewind=with_rewind,
                                            on_round=keep_last_weights)

    calls, stored_weights = [], {}

    def dies_in_round_1(model, masks):
        calls.append(masks)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return train(model, masks)

    def store(record, result):
        save_masks(record.next_masks, tmp_path / f"round{record.round}.safetensors",
                   {"round": record.round})
        stored_weights[record.round] = snapshot(result.model)

    with pytest.raises(KeyboardInterrupt):
        iterative_magnitude_pruning(make_model, dies_in_round_1, rounds=2, rewind=with_rewind,
                                    on_round=store)
    start_masks, meta = load_masks(tmp_path / "round0.safetensors")
    assert meta["round"] == 0

    def keep(record, result):
        final_weights["resumed"] = snapshot(result.model)

    resumed = iterative_magnitude_pruning(
        make_model, train, rounds=2, rewind=with_rewind, start_round=1, start_masks=start_masks,
        start_state=None if with_rewind else stored_weights[0], on_round=keep)
    assert [r.round for r in resumed] == [1, 2]
    for got, want in zip(resumed, reference[1:]):
        assert _same_masks(got.masks, want.masks)
        assert (got.next_masks is None) == (want.next_masks is None)
        if want.next_masks is not None:
            assert _same_masks(got.next_masks, want.next_masks)
    ref, res = final_weights["reference"], final_weights["resumed"]
    assert all(torch.equal(ref[n], res[n]) for n in ref)  # the last round's model, bit for bit


def test_rewinding_and_continuing_train_different_models(profile, rows):
    """Without rewinding, round 1 starts from round 0's fine-tuned weights (head included)."""
    starts = {}

    def spy(flag):
        train = _train_fn(profile, rows)

        def recorded(model, masks):
            starts.setdefault(flag, []).append(model.classifier.weight.detach().clone())
            return train(model, masks)
        return recorded

    for flag in (True, False):
        iterative_magnitude_pruning(lambda: load_model(profile, TASK, 0), spy(flag), rounds=1,
                                    rewind=flag)
    assert torch.equal(starts[True][0], starts[True][1])      # rewound: the initial head again
    assert torch.equal(starts[True][0], starts[False][0])
    assert not torch.equal(starts[False][0], starts[False][1])  # continued: the trained head


def test_one_round_at_a_time(profile, rows):
    """``next(imp_rounds(...))`` trains only the round asked for."""
    calls = []
    train = _train_fn(profile, rows)

    def counting(model, masks):
        calls.append(masks is None)
        return train(model, masks)

    first = imp_rounds(lambda: load_model(profile, TASK, 0), counting, rounds=3)
    record, _ = next(first)
    assert calls == [True] and record.round == 0 and record.next_masks is not None
    record, _ = next(imp_rounds(lambda: load_model(profile, TASK, 0), counting, rounds=3,
                                start_round=1, start_masks=record.next_masks))
    assert calls == [True, False] and record.round == 1


def test_imp_arguments_are_checked(profile, model):
    make_model = lambda: load_model(profile, TASK, 0)  # noqa: E731
    never = lambda model, masks: pytest.fail("must not train")  # noqa: E731
    masks_10 = magnitude_masks(prunable_weights(model), 0.1)
    cases = [
        (dict(rounds=10), "rounds \\* rate must be below 1"),
        (dict(rounds=2, rate=0.0), "rate must be in"),
        (dict(rounds=2, start_round=3), "start_round <= rounds"),
        (dict(rounds=2, start_round=1), "start_masks prune 0 weights"),
        (dict(rounds=2, start_round=2, start_masks=masks_10), "round 2 at rate 0.1"),
        (dict(rounds=2, start_round=1, start_masks=masks_10, rewind=False), "start_state"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            iterative_magnitude_pruning(make_model, never, **kwargs)
