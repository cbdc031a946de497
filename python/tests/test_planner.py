"""Planners, MPC and the controller from Python, against the Rust API."""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

import zplan
from conftest import ROOT, SCENARIOS, rust_example

CEM = "Cem(samples: 64, elites: 8, iterations: 3, horizon: 5)"
ENERGY = "(metric: L2, reduction: Sum)"


def rust_plan(scenario, model, planner, energy, seed, episode):
    exe = rust_example("plan_once")
    out = subprocess.run(
        [str(exe), str(scenario), model, planner, energy, str(seed), str(episode)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "model,planner",
    [
        ("jepa:" + str(ROOT / "models/trained/reach"), CEM),
        ("jepa:" + str(ROOT / "models/trained/reach"), "ICem(samples: 64, iterations: 2, horizon: 6)"),
        ("jepa:" + str(ROOT / "models/trained/reach"), "Mppi(samples: 64, iterations: 2, horizon: 5)"),
        ("sim", "Cem(samples: 16, elites: 4, iterations: 2, horizon: 4)"),
    ],
    ids=["jepa-cem", "jepa-icem", "jepa-mppi", "sim-cem"],
)
def test_plans_identical_to_the_rust_api(model, planner):
    scenario = SCENARIOS / "reach.ron"
    expected = rust_plan(scenario, model, planner, ENERGY, 7, 50_000)
    env = zplan.make(scenario)
    env.reset(seed=50_000)
    m = zplan.load_model(model, scenario=env)
    sim = model == "sim"
    obs = env.core.observe(true_state=sim)
    goal = env.core.goal_observation(true_state=sim)
    p = zplan.Planner.from_ron(planner, energy=ENERGY, scenario=env, seed=7)
    result = p.plan(m, obs, goal)
    want = np.asarray(expected["actions"], np.float32).reshape(
        expected["horizon"], expected["action_dim"]
    )
    assert result.actions.dtype == np.float32
    np.testing.assert_array_equal(result.actions, want)
    assert result.best_energy == np.float32(expected["best_energy"])
    assert result.energy_trace == pytest.approx(expected["energy_trace"], rel=0, abs=0)


def test_keyword_constructor_equals_ron(reach_env, reach_jepa):
    reach_env.reset(seed=50_001)
    obs, goal = reach_env.core.observe(), reach_env.goal_observation()
    a = zplan.Planner.from_ron(CEM, energy=ENERGY, bounds=reach_env.action_space, seed=3)
    b = zplan.Planner(
        "cem",
        samples=64,
        elites=8,
        iterations=3,
        horizon=5,
        energy={"metric": "L2", "reduction": "Sum"},
        bounds=(reach_env.action_space.low, reach_env.action_space.high),
        seed=3,
    )
    ra, rb = a.plan(reach_jepa, obs, goal), b.plan(reach_jepa, obs, goal)
    np.testing.assert_array_equal(ra.actions, rb.actions)
    # The stream continues across calls; reset() rewinds it.
    rc = a.plan(reach_jepa, obs, goal)
    assert not np.array_equal(ra.actions, rc.actions)
    a.reset()
    np.testing.assert_array_equal(a.plan(reach_jepa, obs, goal).actions, ra.actions)
    # Energies never increase; actions lie within the bounds.
    assert all(y <= x for x, y in zip(ra.energy_trace, ra.energy_trace[1:]))
    assert np.all(ra.actions >= reach_env.action_space.low - 1e-6)
    assert np.all(ra.actions <= reach_env.action_space.high + 1e-6)
    assert ra.plan_ms > 0 and ra.total_ms >= ra.plan_ms


def test_warm_start_and_deadline(reach_env, reach_jepa):
    reach_env.reset(seed=50_002)
    obs, goal = reach_env.core.observe(), reach_env.goal_observation()
    p = zplan.Planner.from_ron(
        "Cem(samples: 64, elites: 8, iterations: 1000, horizon: 5)", energy=ENERGY, scenario=reach_env
    )
    t = time.perf_counter()
    r = p.plan(reach_jepa, obs, goal, warm_start=np.zeros((5, 3)), deadline_ms=30.0)
    assert r.hit_deadline and r.iterations < 1000
    assert time.perf_counter() - t < 1.0
    r = p.plan(reach_jepa, obs, goal, iterations=2)
    assert r.iterations == 2


def test_torch_tensors_are_accepted(reach_env, reach_jepa):
    import torch

    reach_env.reset(seed=50_003)
    obs, goal = reach_env.core.observe(), reach_env.goal_observation()
    z = reach_jepa.encode(obs)
    zt = reach_jepa.encode({k: torch.from_numpy(v) for k, v in obs.items()})
    np.testing.assert_array_equal(z, zt)
    assert z.shape == (1, *reach_jepa.latent_shape)
    preds = reach_jepa.rollout(z, np.zeros((1, 4, 3), np.float32))
    assert preds.shape == (1, 4, *reach_jepa.latent_shape)


def test_bad_input_raises(reach_env, reach_jepa):
    reach_env.reset(seed=50_004)
    obs, goal = reach_env.core.observe(), reach_env.goal_observation()
    p = zplan.Planner.from_ron(CEM, scenario=reach_env)
    with pytest.raises(ValueError, match="samples"):
        zplan.Planner.from_ron("Cem(samples: 0)")
    with pytest.raises(ValueError, match="elites"):
        zplan.Planner("cem", samples=10, elites=20)
    with pytest.raises(ValueError, match="kind"):
        zplan.Planner("annealing")
    with pytest.raises(ValueError, match="state"):
        p.plan(reach_jepa, {"state": np.zeros(99, np.float32)}, goal)
    with pytest.raises(ValueError, match="finite"):
        p.plan(reach_jepa, {k: np.full_like(v, np.nan) for k, v in obs.items()}, goal)
    with pytest.raises(ValueError, match="not in the observation spec"):
        p.plan(reach_jepa, {**obs, "lidar": np.zeros(3, np.float32)}, goal)
    with pytest.raises(ValueError, match="float32"):
        p.plan(reach_jepa, {k: v.astype(np.int64) for k, v in obs.items()}, goal)
    with pytest.raises(ValueError, match="warm_start"):
        p.plan(reach_jepa, obs, goal, warm_start=np.full((5, 3), np.inf))
    with pytest.raises(ValueError, match="warm_start"):
        p.plan(reach_jepa, obs, goal, warm_start=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="deadline_ms"):
        p.plan(reach_jepa, obs, goal, deadline_ms=-1.0)
    with pytest.raises(ValueError, match="bounds"):
        zplan.Planner.from_ron(CEM).plan(reach_jepa, obs, goal)
    with pytest.raises(ValueError, match="bounds"):
        zplan.Planner.from_ron(CEM, bounds=(np.zeros(2), np.ones(2))).plan(reach_jepa, obs, goal)
    with pytest.raises(zplan.ZplanError, match="nowhere"):
        zplan.load_model("jepa:/nowhere/model", scenario=reach_env)
    with pytest.raises(TypeError):
        zplan.load_model(42)
    with pytest.raises(ValueError, match="needs scenario"):
        zplan.load_model("sim")


def test_mpc_reaches_the_goal(reach_jepa):
    env = zplan.make(SCENARIOS / "reach.ron")
    obs, _ = env.reset(seed=50_010)
    planner = zplan.Planner.from_ron(
        "Cem(samples: 300, elites: 30, iterations: 5, horizon: 15)", energy=ENERGY, scenario=env
    )
    mpc = zplan.Mpc(reach_jepa, planner, env.goal_observation(), seed=1, config="(replan_every: 2)")
    for _ in range(env.max_episode_steps):
        for action in mpc.next_actions(obs):
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        if terminated or truncated:
            break
    assert info["success"], f"final distance {info['distance']:.3f}"
    assert len(mpc.latencies_ms()) > 0


def test_controller_real_time_loop(reach_jepa):
    env = zplan.make(SCENARIOS / "reach.ron")
    obs, _ = env.reset(seed=50_011)
    planner = zplan.Planner.from_ron(
        "Cem(samples: 100, elites: 10, iterations: 3, horizon: 10)", energy=ENERGY, scenario=env
    )
    dt = 0.05
    with zplan.Controller(
        reach_jepa, planner, env.goal_observation(), seed=1, control_dt=dt, deadline_ms=40
    ) as ctl:
        first = None
        calls = []
        start = time.perf_counter()
        for tick in range(40):
            ctl.push_observation(obs)
            t = time.perf_counter()
            action = ctl.latest_action()
            calls.append(time.perf_counter() - t)
            if action is not None and first is None:
                first = tick
            obs, *_ = env.step(action if action is not None else np.zeros(3, np.float32))
            if tick == 20:
                ctl.set_deadline(30.0)
            time.sleep(max(0.0, start + (tick + 1) * dt - time.perf_counter()))
        stats = ctl.stats()
        report = ctl.stop()
        assert ctl.stop() is None
    # latest_action reads a slot; it never waits for a plan (tens of ms here). The median is
    # robust to the loop thread being descheduled on a loaded machine.
    calls.sort()
    assert calls[len(calls) // 2] < 1e-3, f"latest_action median {calls[len(calls) // 2]:.4f} s"
    # The first plan is published while the loop runs (well within the 2 s of the loop).
    assert first is not None and first < 30, f"first action at tick {first}"
    assert stats["plans"] >= 3 and stats["errors"] == 0
    assert report["latency_ms_p50"] is not None and report["last_error"] is None
    with pytest.raises(zplan.ZplanError, match="stopped"):
        ctl.latest_action()
    with pytest.raises(ValueError, match="deadline_ms"):
        zplan.Controller(reach_jepa, planner, env.goal_observation(), deadline_ms=float("nan"))
