"""Scenarios as gymnasium environments."""
from __future__ import annotations

import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._zplan import Env as CoreEnv


def _space(field: dict) -> spaces.Box:
    shape = tuple(int(d) for d in field["shape"])
    if field["dtype"] == "u8":
        return spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)
    return spaces.Box(low=-np.inf, high=np.inf, shape=shape, dtype=np.float32)


class ZplanEnv(gym.Env):
    """A zplan scenario (Rapier physics) as a ``gymnasium.Env``.

    - ``observation_space``: a ``Dict`` with one ``Box`` per observation field of the
      scenario (``state``/``proprio`` float32 vectors, ``image`` uint8
      ``[3 * history, height, width]``).
    - ``action_space``: a float32 ``Box`` with the scenario's action bounds.
    - ``reset(seed=s)`` starts zplan's episode ``s`` (the same start and goal as ``zplan run``
      gives that episode seed); ``reset()`` without a seed draws one from ``np_random``.
    - ``step(action)``: reward is minus the distance to the goal; ``terminated`` when the
      goal is reached; ``truncated`` at the scenario's step limit. ``info`` has
      ``distance``, ``success``, ``clipped`` and ``episode_seed``.
    - ``render()`` (``render_mode="rgb_array"``): a top-down uint8 ``[H, W, 3]`` view with
      the goal marker.
    - ``goal_observation()``: what the robot would observe at the goal (the goal image).

    ``core`` is the underlying ``zplan.CoreEnv``; pass the environment itself as
    ``scenario=`` to ``zplan.load_model`` and ``zplan.Planner``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        scenario: str | os.PathLike | CoreEnv,
        seed: int | None = None,
        render_mode: str | None = "rgb_array",
        render_size: tuple[int, int] = (256, 256),
        max_episode_steps: int | None = None,
    ):
        super().__init__()
        if isinstance(scenario, CoreEnv):
            self.core = scenario
        else:
            self.core = CoreEnv(os.fspath(scenario))
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r}: zplan environments render 'rgb_array' (or None)"
            )
        self.render_mode = render_mode
        self.render_size = (int(render_size[0]), int(render_size[1]))
        self.spec_dict: dict[str, Any] = json.loads(self.core.spec_json())
        fields = self.spec_dict["observation"]
        if isinstance(fields, dict):
            fields = fields["fields"]
        self.observation_space = spaces.Dict({f["name"]: _space(f) for f in fields})
        self.action_space = spaces.Box(
            low=np.asarray(self.spec_dict["action_low"], dtype=np.float32),
            high=np.asarray(self.spec_dict["action_high"], dtype=np.float32),
            dtype=np.float32,
        )
        self.max_episode_steps = int(max_episode_steps or self.spec_dict["max_steps"])
        self.metadata = dict(self.metadata)
        self.metadata["render_fps"] = max(1, round(1.0 / float(self.spec_dict["control_dt"])))
        self._first_seed = seed
        self._episode_seed: int | None = None

    @property
    def kind(self) -> str:
        """Scenario family (``reach``, ``two_rooms``, ``push``)."""
        return self.core.kind

    def _info(self, clipped: int = 0) -> dict[str, Any]:
        return {
            "distance": float(self.core.distance_to_goal()),
            "success": bool(self.core.success()),
            "clipped": int(clipped),
            "episode_seed": self._episode_seed,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        if seed is None:
            seed = int(self.np_random.integers(0, 2**63 - 1))
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed}")
        self._episode_seed = int(seed)
        self.core.reset(int(seed))
        return self.core.observe(), self._info()

    def step(self, action):
        if self._episode_seed is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        clipped = self.core.step(np.asarray(action, dtype=np.float32))
        obs = self.core.observe()
        info = self._info(clipped)
        terminated = info["success"]
        truncated = (not terminated) and self.core.steps() >= self.max_episode_steps
        return obs, -info["distance"], terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() without a render_mode: pass render_mode='rgb_array'")
            return None
        w, h = self.render_size
        return self.core.render(w, h)

    def goal_observation(self) -> dict[str, np.ndarray]:
        """What the robot would observe at the goal (the goal image, for cameras)."""
        return self.core.goal_observation()

    def close(self):
        pass


def make(scenario, seed: int | None = None, **kwargs) -> ZplanEnv:
    """``zplan.make("scenarios/push_pixels.ron", seed=...)``: a scenario as a gymnasium env.

    ``seed`` is the episode seed of the first ``reset()`` without a seed of its own; keyword
    arguments go to ``ZplanEnv`` (``render_mode``, ``render_size``, ``max_episode_steps``).
    """
    return ZplanEnv(scenario, seed=seed, **kwargs)
