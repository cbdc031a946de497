"""No leaks: memory stays flat over many plan calls; run_suite returns summary rows."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import zplan
from conftest import SCENARIOS


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


class Tiny(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, latent: int = 16, hidden: int = 64):
        super().__init__()
        self.enc = nn.Linear(obs_dim, latent)
        self.pred = nn.Sequential(nn.Linear(latent + action_dim, hidden), nn.Tanh(), nn.Linear(hidden, latent))

    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)

    @torch.jit.export
    def predict(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, action], dim=-1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)


def test_no_leak_over_1000_plans():
    env = zplan.make(SCENARIOS / "reach.ron")
    obs, _ = env.reset(seed=50_000)
    goal = env.goal_observation()
    torch.manual_seed(0)
    module = torch.jit.script(Tiny(obs["state"].shape[0], env.action_space.shape[0]).eval())
    model = zplan.load_model(module, scenario=env)
    planner = zplan.Planner.from_ron(
        "Cem(samples: 32, elites: 4, iterations: 2, horizon: 4)", scenario=env
    )
    for _ in range(200):
        planner.plan(model, obs, goal)
    before = rss_mb()
    for i in range(1000):
        r = planner.plan(model, obs, goal, warm_start=np.zeros((4, 3), np.float32))
        assert r.actions.shape == (4, 3)
    grown = rss_mb() - before
    assert grown < 8.0, f"RSS grew by {grown:.1f} MB over 1000 plans"


def test_run_suite_returns_summary_rows(tmp_path):
    suite = tmp_path / "tiny.ron"
    suite.write_text(
        f"""Suite(
    name: "py-tiny",
    seed: 2026,
    episodes: 2,
    entries: [
        (
            name: "reach/jepa",
            scenario: File("{SCENARIOS / 'reach.ron'}"),
            model: Jepa("{SCENARIOS.parent / 'models/trained/reach.safetensors'}"),
            planner: Cem(samples: 100, elites: 10, iterations: 3, horizon: 10),
            energy: (metric: L2, reduction: Sum),
            max_steps: Some(15),
        ),
    ],
)
"""
    )
    rows = zplan.run_suite(suite, out=tmp_path / "run", workers=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["entry"] == "reach/jepa" and row["episodes"] == 2 and row["errors"] == 0
    assert 0.0 <= row["success_rate"] <= 1.0 and row["plan_ms_p50"] > 0
    assert (tmp_path / "run" / "results.jsonl").is_file()
    # A second call resumes: nothing new to run, the same rows.
    assert zplan.run_suite(suite, out=tmp_path / "run", workers=1) == rows
