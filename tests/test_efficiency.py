"""The efficiency chapter's experiments and tables, at the smoke profile (the bench and variants
units the smoke plan stores are checked by the smoke pass: tests/smoke_units.py)."""

from __future__ import annotations

import pytest

from flatcomp.lab import efficiency_report
from flatcomp.lab.config import PAPER
from flatcomp.lab.experiments.efficiency import one_shot_pruned
from flatcomp.lab.models import load_model
from flatcomp.lab.train import VARIANTS
from flatcomp.pruning import sparsity_report


def test_every_variant_is_an_optimizer_the_loop_takes(smoke):
    from flatcomp.lab.train import make_optimizer

    model = load_model(smoke, "mrpc")
    for name in VARIANTS:
        assert hasattr(make_optimizer(name, model, 1e-3), "step")
    with pytest.raises(ValueError, match="looksam"):
        make_optimizer("lookahead", model, 1e-3)


def test_one_shot_pruning_leaves_the_model_and_hits_the_sparsity(smoke):
    model = load_model(smoke, "mrpc")
    pruned = one_shot_pruned(model, 0.7)
    assert sparsity_report(pruned)["sparsity"] == pytest.approx(0.7, abs=1e-4)
    assert sparsity_report(model)["sparsity"] == 0.0


def test_variant_differences_pair_by_seed():
    def run(optimizer, seed, fp32):
        return {"task": "mrpc", "optimizer": optimizer, "seed": seed, "fp32": fp32,
                "int8_drop": 0.0, "bits": {"4": fp32}, "one_shot": {"0.7": fp32}}

    runs = [run("adam", 0, 0.80), run("adam", 1, 0.70), run("looksam", 0, 0.85),
            run("looksam", 2, 0.10)]  # seed 2 has no Adam partner: left out
    table = efficiency_report.variant_differences(runs, "adam")
    assert table.loc[("MRPC", "LookSAM"), "dev"] == "+5.0"
    assert table.loc[("MRPC", "LookSAM"), "paired seeds"] == 1


def test_paper_cost_table_counts_each_model_once(monkeypatch):
    # the hub's sizes: a local folder without MNLI/QQP/QNLI train files would size those tasks
    # at half their dev sets, and the fine-tunes' share would shrink accordingly
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)
    table = efficiency_report.plan_cost_table(PAPER, seconds_per_step=0.1)
    steps = {e: float(v.replace(",", "")) for (_, e), v in table["training steps"].items()}
    assert steps["quantization"] < steps["finetune"] / 10  # its models are the fine-tunes'
    assert steps["imp"] > steps["finetune"]
