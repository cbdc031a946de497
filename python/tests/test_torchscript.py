"""A TorchScript CNN world model, passed as a ScriptModule, on a pixel scenario."""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch
from torch import nn

import zplan
from conftest import SCENARIOS


class TinyCnnJepa(nn.Module):
    """Image [B, 3, 64, 64] in [0, 1] -> latent [B, 16]; residual MLP predictor."""

    def __init__(self, action_dim: int = 2, latent: int = 16):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 16, latent),
        )
        self.pred = nn.Sequential(nn.Linear(latent + action_dim, 64), nn.GELU(), nn.Linear(64, latent))

    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)

    @torch.jit.export
    def predict(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, action], dim=-1))

    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(actions.shape[1]):
            z = self.predict(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)


@pytest.fixture(scope="module")
def pixel_env():
    return zplan.make(SCENARIOS / "two_rooms_pixels.ron")


def test_scriptmodule_plans_on_pixels(pixel_env):
    torch.manual_seed(0)
    module = torch.jit.script(TinyCnnJepa(action_dim=pixel_env.action_space.shape[0]).eval())
    model = zplan.load_model(module, scenario=pixel_env)
    assert model.latent_shape == [16]
    obs, _ = pixel_env.reset(seed=50_000)
    goal = pixel_env.goal_observation()
    assert obs["image"].dtype == np.uint8
    # zplan feeds the module the u8 image scaled to [0, 1]: both sides agree.
    with torch.no_grad():
        want = module.encode(torch.from_numpy(obs["image"]).float().unsqueeze(0) / 255.0)
    np.testing.assert_allclose(model.encode(obs), want.numpy(), rtol=1e-5, atol=1e-6)
    planner = zplan.Planner.from_ron(
        "Cem(samples: 64, elites: 8, iterations: 2, horizon: 8)", scenario=pixel_env
    )
    result = planner.plan(model, obs, goal)
    assert result.actions.shape == (8, pixel_env.action_space.shape[0])
    assert np.all(np.isfinite(result.actions)) and np.isfinite(result.best_energy)
    assert pixel_env.action_space.contains(result.actions[0])


def test_image_of_the_wrong_kind_is_refused(pixel_env):
    module = torch.jit.script(TinyCnnJepa(action_dim=pixel_env.action_space.shape[0]).eval())
    model = zplan.load_model(module, scenario=pixel_env)
    obs, _ = pixel_env.reset(seed=50_001)
    with pytest.raises(ValueError, match="uint8"):
        model.encode({"image": obs["image"].astype(np.float32)})
    with pytest.raises(ValueError, match="shape"):
        model.encode({"image": obs["image"][:, :32]})
    with pytest.raises(ValueError, match="missing"):
        model.encode({})
