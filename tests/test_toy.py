"""The two-weight toy of chapter 2: where its minima are, how curved they are, how GD and SAM
move on it, and the second-order predictions of the loss under noise, rounding and pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatcomp import toy

SHARP_START = (-1.5, 1.5)  # left of the saddle: GD ends in the sharp gorge


def test_loss_takes_points_batches_and_grids():
    assert toy.loss(torch.zeros(2, dtype=torch.float64)).shape == ()
    assert toy.loss(torch.zeros(5, 2, dtype=torch.float64)).shape == (5,)
    x, y, z = toy.landscape(n=11)
    assert x.shape == y.shape == z.shape == (11, 11)
    assert np.isfinite(z).all() and (z >= 0).all()


@pytest.mark.parametrize("name", ["sharp", "flat"])
def test_minima_are_where_the_module_says(name):
    m = toy.minima()[name]
    assert toy.loss(m).item() == pytest.approx(0.0, abs=1e-12)
    w = m.clone().requires_grad_(True)
    toy.loss(w).backward()
    assert w.grad.abs().max().item() < 1e-10
    assert torch.linalg.eigvalsh(toy.hessian_at(m)).min().item() > 0
    # and no lower point nearby
    gen = torch.Generator().manual_seed(0)
    ring = m + 0.05 * torch.randn(200, 2, dtype=torch.float64, generator=gen)
    assert (toy.loss(ring) > toy.loss(m)).all()
    # the minimum lies on the side of the saddle its name says
    assert (m[0].item() < toy.CENTER[0]) == (name == "sharp")


def test_sharp_minimum_has_the_larger_hessian_trace():
    m = toy.minima()
    trace = {k: torch.trace(toy.hessian_at(v)).item() for k, v in m.items()}
    assert trace["sharp"] > 3 * trace["flat"]
    table = toy.minima_table()
    assert table.loc["sharp", "trace H"] == pytest.approx(trace["sharp"])
    # the floor is curved alike at both minima (8h), the Hessian is diagonal there
    np.testing.assert_allclose(table["H_11 (along)"].to_numpy(float), 8 * toy.BARRIER)
    assert (table["H_12"].abs() < 1e-12).all()
    assert table.loc["sharp", "H_22 (across)"] > 10 * table.loc["flat", "H_22 (across)"]


def test_gd_from_the_sharp_basin_stays_there_and_sam_leaves():
    m = toy.minima()
    gd = toy.trajectory(SHARP_START, "gd")
    assert gd.shape == (toy.STEPS + 1, 2)
    assert np.allclose(gd[0], SHARP_START)
    assert np.linalg.norm(gd[-1] - m["sharp"].numpy()) < 1e-6
    sam = toy.trajectory(SHARP_START, "sam", rho=0.3)
    assert toy.basin_of(torch.from_numpy(sam[-1:]))[0] == "flat"
    small = toy.trajectory(SHARP_START, "sam", rho=0.05)
    assert toy.basin_of(torch.from_numpy(small[-1:]))[0] == "sharp"


def test_trajectories_are_deterministic():
    for optimizer in ("gd", "sam"):
        assert np.array_equal(toy.trajectory((0.1, 1.3), optimizer, steps=50),
                              toy.trajectory((0.1, 1.3), optimizer, steps=50))


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="optimizer"):
        toy.trajectory(SHARP_START, "adam")


@pytest.mark.parametrize("rho,adaptive", [(0.0, False), (0.3, False), (0.1, False), (0.3, True)])
def test_batched_descent_reproduces_the_sam_optimizer(rho, adaptive):
    """basin_counts uses descend(); it must be the same update as flatcomp.sam.SAM."""
    starts = [SHARP_START, (-0.4, -0.9), (1.9, -0.7)]
    optimizer = "sam" if rho > 0 else "gd"
    ends = toy.descend(torch.tensor(starts, dtype=torch.float64), rho=rho, steps=120,
                       adaptive=adaptive).numpy()
    for start, end in zip(starts, ends):
        path = toy.trajectory(start, optimizer, rho=rho, steps=120, adaptive=adaptive)
        np.testing.assert_allclose(end, path[-1], atol=1e-12)


def test_basin_counts_add_up_and_gd_splits_the_plane():
    counts = toy.basin_counts(rhos=(0.0, 0.3), n=8, steps=200)
    assert (counts[["sharp", "flat", "neither"]].sum(axis=1) == 64).all()
    assert counts.loc[0.0, "sharp"] > 0 and counts.loc[0.0, "flat"] > 0
    assert counts.loc[0.3, "flat"] >= counts.loc[0.0, "flat"]


@pytest.mark.parametrize("name", ["sharp", "flat"])
def test_noise_prediction_matches_measurement_for_small_sigma(name):
    point = toy.minima()[name]
    table = toy.noise_test(point, sigmas=(0.01, 0.02), samples=20_000, seed=0)
    trace = torch.trace(toy.hessian_at(point)).item()
    np.testing.assert_allclose(table["predicted"], 0.5 * np.array([0.01, 0.02]) ** 2 * trace)
    np.testing.assert_allclose(table["measured"], table["predicted"], rtol=0.03)
    assert table.equals(toy.noise_test(point, sigmas=(0.01, 0.02), samples=20_000, seed=0))


def test_quantize_moves_each_coordinate_by_at_most_half_a_step():
    w = torch.tensor([[-0.77, 0.37], [1.23, -2.049]], dtype=torch.float64)
    for step in (0.05, 0.1, 0.25):
        for offset in (0.0, torch.tensor([0.013, 0.2], dtype=torch.float64)):
            q = toy.quantize(w, step, offset)
            assert (q - w).abs().max().item() <= step / 2 + 1e-12
            k = (q - offset) / step
            assert torch.allclose(k, k.round(), atol=1e-9)


def test_quantize_test_random_grids_follow_the_uniform_noise_formula():
    m = toy.minima()
    sharp = toy.quantize_test(m["sharp"], steps=(0.05, 0.1))
    flat = toy.quantize_test(m["flat"], steps=(0.05, 0.1))
    for table in (sharp, flat):
        np.testing.assert_allclose(table["increase, random grid"], table["predicted, random grid"],
                                   rtol=0.05)
    # the minima are 2 apart along w1, so every grid step that divides 2 moves them alike
    moves = ["move w1", "move w2"]
    np.testing.assert_allclose(sharp[moves], flat[moves], atol=1e-12)
    assert (sharp["increase"] > flat["increase"]).all()


def test_pruning_zeroes_the_smaller_coordinate_and_costs_the_sharp_minimum_more():
    m = toy.minima()
    sharp, flat = toy.prune_test(m["sharp"]), toy.prune_test(m["flat"])
    assert sharp["pruned"] == flat["pruned"] == "w2"
    assert sharp["move"] == pytest.approx(-toy.CENTER[1])
    # the toy is exactly quadratic across the valley: the prediction is exact
    assert sharp["increase"] == pytest.approx(sharp["predicted"])
    assert sharp["increase"] > 5 * flat["increase"]
