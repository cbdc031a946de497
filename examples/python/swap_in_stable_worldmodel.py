#!/usr/bin/env python3
"""Swap stable-worldmodel's CEM solver for zplan's, with the calls a stable-worldmodel user makes.

stable-worldmodel plans through a *solver*: ``CEMSolver(model, num_samples=..., n_steps=...,
topk=..., var_scale=...)``, ``solver.configure(action_space=..., n_envs=..., config=...)`` and
``solver.solve(info_dict, init_action=None)`` returning ``{"actions": [n_envs, H, A], ...}``,
where the model is a ``Costable`` with ``get_cost(info_dict, candidates)``. ``ZplanCEMSolver``
below takes the same calls and plans with zplan's CEM (Rust, libtorch) on the same PyTorch
model, compiled to TorchScript once.

Run (from the repository root, after ``maturin develop --release -m python/Cargo.toml``):

    python examples/python/swap_in_stable_worldmodel.py
    PYTHONPATH=/path/to/stable-worldmodel python examples/python/swap_in_stable_worldmodel.py

It prints the time per plan of both solvers on the same model and budget (CEM 300 samples x
horizon 16 x 10 iterations, 30 elites, one torch thread) and the cost each plan reaches, scored
by the same ``get_cost``. Without stable-worldmodel installed it says so and times zplan alone.

The two CEMs are the same algorithm at the same budget, not the same arithmetic:
stable-worldmodel samples unclipped Gaussians and refits mean/std without momentum; zplan
clips candidates to the action bounds and refits with momentum 0.1 (planner/src/cem.rs).
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

import zplan

ROOT = Path(__file__).resolve().parents[2]


class LatentWorldModel(nn.Module):
    """A JEPA-style world model that is both a stable-worldmodel ``Costable`` (``get_cost``)
    and a zplan TorchScript world model (``encode``, ``predict``, ``rollout``)."""

    def __init__(self, obs_dim: int, action_dim: int, latent: int = 32, hidden: int = 256):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(obs_dim, hidden), nn.GELU(), nn.Linear(hidden, latent))
        self.pred = nn.Sequential(
            nn.Linear(latent + action_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, latent),
        )

    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)

    @torch.jit.export
    def predict(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, action], dim=-1))

    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(actions.size(1)):
            z = self.predict(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)

    # stable-worldmodel's Costable protocol (plain Python; not part of the TorchScript export).
    @torch.jit.ignore
    def get_cost(self, info_dict: dict, action_candidates: torch.Tensor) -> torch.Tensor:
        b, n, h, a = action_candidates.shape
        z = self.encode(info_dict["state"][:, 0]).repeat_interleave(n, 0)
        zg = self.encode(info_dict["goal_state"][:, 0]).repeat_interleave(n, 0)
        preds = self.rollout(z, action_candidates.reshape(b * n, h, a))
        # zplan's default energy: L1 on the last step, averaged over the latent.
        return (preds[:, -1] - zg).abs().mean(-1).reshape(b, n)


class ZplanCEMSolver:
    """stable-worldmodel's solver interface, planned by zplan's CEM.

    Same constructor arguments as ``stable_worldmodel.solver.CEMSolver`` plus ``scenario``
    (a zplan environment or scenario file: the observation fields and action bounds).
    ``info_dict`` carries ``state`` and ``goal_state`` tensors ``[n_envs, obs_dim]``.
    """

    def __init__(self, model, batch_size=1, num_samples=300, var_scale=1.0, n_steps=30,
                 topk=30, device="cpu", seed=1234, *, scenario):
        self.model = model
        self.num_samples, self.var_scale, self.n_steps, self.topk = num_samples, var_scale, n_steps, topk
        self.device, self.seed, self.scenario = device, seed, scenario
        self._zmodel = zplan.load_model(torch.jit.script(model.eval()), scenario=scenario, device=device)

    def configure(self, *, action_space, n_envs: int, config) -> None:
        low = np.asarray(action_space.low, np.float32).reshape(n_envs, -1)[0]
        high = np.asarray(action_space.high, np.float32).reshape(n_envs, -1)[0]
        self._n_envs, self._config = n_envs, config
        self._planner = zplan.Planner(
            "cem", samples=self.num_samples, elites=self.topk, iterations=self.n_steps,
            horizon=config.horizon, init_std=float(self.var_scale), bounds=(low, high), seed=self.seed,
        )

    @property
    def horizon(self) -> int:
        return self._config.horizon

    def __call__(self, *args, **kwargs) -> dict:
        return self.solve(*args, **kwargs)

    def solve(self, info_dict: dict, init_action: torch.Tensor | None = None) -> dict:
        actions, costs = [], []
        for i in range(len(info_dict["state"])):
            obs = {"state": info_dict["state"][i]}
            goal = {"state": info_dict["goal_state"][i]}
            warm = None if init_action is None else init_action[i]
            r = self._planner.plan(self._zmodel, obs, goal, warm_start=warm)
            actions.append(torch.from_numpy(r.actions))
            costs.append(r.best_energy)
        return {"actions": torch.stack(actions), "costs": costs}


def time_solver(solver, info_dict, repeats: int) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # stable-worldmodel prints per solve
            out = solver.solve(info_dict)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), out["actions"]


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = zplan.make(ROOT / "scenarios/reach.ron")
    obs, _ = env.reset(seed=50_000)
    goal = env.goal_observation()
    obs_dim, action_dim = obs["state"].shape[0], env.action_space.shape[0]
    model = LatentWorldModel(obs_dim, action_dim)
    info_dict = {
        "state": torch.from_numpy(obs["state"]).unsqueeze(0),
        "goal_state": torch.from_numpy(goal["state"]).unsqueeze(0),
    }
    n_envs = 1
    batched_space = spaces.Box(
        low=np.tile(env.action_space.low, (n_envs, 1)), high=np.tile(env.action_space.high, (n_envs, 1))
    )
    config = SimpleNamespace(horizon=16, receding_horizon=1, history_len=1, action_block=1, warm_start=True)
    budget = dict(num_samples=300, n_steps=10, topk=30, var_scale=1.0)

    def cost_of(actions: torch.Tensor) -> float:
        expanded = {k: v.unsqueeze(1) for k, v in info_dict.items()}
        with torch.no_grad():
            return float(model.get_cost(expanded, actions.unsqueeze(1).float())[0, 0])

    zsolver = ZplanCEMSolver(model, **budget, scenario=env)
    zsolver.configure(action_space=batched_space, n_envs=n_envs, config=config)
    time_solver(zsolver, info_dict, 3)
    z_ms, z_actions = time_solver(zsolver, info_dict, 20)
    print(f"zplan CEM (Rust):              {z_ms:8.2f} ms per plan, cost {cost_of(z_actions):.4f}")

    try:
        from stable_worldmodel.solver import CEMSolver
    except ImportError as e:
        print(f"stable-worldmodel is not installed ({e}); `pip install stable-worldmodel` to compare")
        return
    ssolver = CEMSolver(model, batch_size=1, **budget, device="cpu", seed=1234)
    ssolver.configure(action_space=batched_space, n_envs=n_envs, config=config)
    time_solver(ssolver, info_dict, 3)
    s_ms, s_actions = time_solver(ssolver, info_dict, 20)
    print(f"stable-worldmodel CEMSolver:   {s_ms:8.2f} ms per plan, cost {cost_of(s_actions):.4f}")
    print(f"zplan is {s_ms / z_ms:.2f}x as fast on the same model and budget")


if __name__ == "__main__":
    main()
