"""zplan from Python: latent-space planning for robots.

zplan plans by imagining: a world model encodes observations to latents and rolls them
forward under candidate action sequences; a planner (CEM, iCEM, MPPI, gradient) searches for
the sequence whose predicted latents land on the goal's latent; MPC executes the first
actions and replans. This package is the Rust engine's Python face (PyO3):

- ``zplan.make(path, seed=...)``: a scenario file as a ``gymnasium.Env``
  (``observation_space`` a ``Dict`` of ``Box`` fields, images uint8), with
  ``goal_observation()``.
- ``zplan.load_model(model, scenario=...)``: a TorchScript file or ``torch.jit.ScriptModule``,
  a native JEPA model, or ``"sim"`` (the simulator-backed upper bound).
- ``zplan.Planner``: ``Planner.from_ron("Cem(samples: 300, horizon: 16)", scenario=...)`` or
  ``Planner("cem", samples=300, horizon=16, bounds=env.action_space)``;
  ``planner.plan(model, obs, goal_obs)`` returns a ``PlanResult`` (``actions`` float32
  ``[H, A]``, ``best_energy``, ``energy_trace``, timings).
- ``zplan.Mpc`` (receding horizon) and ``zplan.Controller`` (a non-blocking planner thread
  for a real-time loop).
- ``zplan.run_suite(path, out=...)``: a scenario suite, returning its summary rows.

Errors: bad arguments raise ``ValueError``; other zplan errors raise ``zplan.ZplanError``
(a ``RuntimeError``), each with zplan's own message.

The compiled module links the libtorch of the torch it was built against; importing zplan
imports torch first so that the process holds one libtorch, and refuses to load next to a
different torch version.
"""
from __future__ import annotations

import os as _os
import tempfile as _tempfile

import torch as _torch  # load the shared libtorch before the extension that links it

from . import _zplan
from ._zplan import (
    Controller,
    Env as CoreEnv,
    Model,
    Mpc,
    Planner,
    PlanResult,
    ZplanError,
    libtorch_lib_dir,
    libtorch_version,
    set_num_threads,
    tune_allocator,
)

__version__ = _zplan.__version__


def _check_libtorch() -> None:
    built = libtorch_version()
    loaded = _torch.__version__.split("+")[0]
    if built not in ("unknown", loaded):
        raise ImportError(
            f"zplan was built against libtorch {built} ({libtorch_lib_dir()}), but this "
            f"process imported torch {_torch.__version__} from {_os.path.dirname(_torch.__file__)}: "
            "install the zplan wheel into the environment whose torch it was built with "
            "(scripts/setup.sh's venv), or rebuild it there"
        )


_check_libtorch()

# The allocator thresholds the zplan CLI sets (10-20 % faster plans on small models): opt out
# with ZPLAN_NO_MALLOPT=1.
if _os.environ.get("ZPLAN_NO_MALLOPT", "") not in ("1", "true", "yes"):
    _zplan.tune_allocator()

from .env import ZplanEnv, make  # noqa: E402


def load_model(
    model, scenario=None, device: str = "cpu", threads: int = 1, precision: str = "fp32"
) -> Model:
    """Loads a world model and checks that it fits ``scenario``.

    ``model``: ``"sim"`` (the simulator-backed model; needs ``scenario``),
    ``"torchscript:PATH"`` / a ``.pt`` path (the TorchScript contract in models/README.md;
    needs ``scenario`` for its observation spec and action size), ``"jepa:PATH"`` / a JEPA
    stem (a native model trained by ``zplan train``), or a ``torch.jit.ScriptModule`` object
    (saved to a temporary file and loaded like a TorchScript file).
    ``scenario``: a scenario path, a ``zplan.make`` environment or a ``CoreEnv``.
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    ``threads``: rollout threads of the simulator-backed model.
    ``precision``: ``"fp32"`` or ``"bf16"`` (TorchScript and JEPA models compute in bfloat16;
    latents and predictions come back as float32).
    """
    if isinstance(model, (_torch.jit.ScriptModule, _torch.jit.ScriptFunction)):
        fd, path = _tempfile.mkstemp(suffix=".pt", prefix="zplan-scriptmodule-")
        _os.close(fd)
        try:
            _torch.jit.save(model, path)
            return _zplan.load_model(f"torchscript:{path}", scenario, device, threads, precision)
        finally:
            _os.unlink(path)
    if isinstance(model, _os.PathLike):
        model = _os.fspath(model)
    if not isinstance(model, str):
        raise TypeError(
            "load_model: expected a path, a model spec string or a torch.jit.ScriptModule, "
            f"got {type(model).__name__}"
        )
    return _zplan.load_model(model, scenario, device, threads, precision)


def run_suite(path, out=None, workers=None, device=None, progress: bool = False) -> list[dict]:
    """Runs a scenario suite as ``zplan run`` does and returns its summary rows.

    One dict per entry: ``entry``, ``scenario``, ``model``, ``planner``, ``episodes``,
    ``errors``, ``successes``, ``success_rate``, ``success_ci_low``, ``success_ci_high``,
    ``mean_final_distance``, ``plan_ms_p50``, ``plan_ms_p95``, ``plan_ms_p99``,
    ``rollouts_per_s``. ``out`` is the run directory (``results.jsonl``, ``summary.md``);
    a directory holding records of the same suite is resumed.
    """
    return _zplan.run_suite(
        _os.fspath(path),
        None if out is None else _os.fspath(out),
        workers,
        device,
        progress,
    )


__all__ = [
    "Controller",
    "CoreEnv",
    "Model",
    "Mpc",
    "Planner",
    "PlanResult",
    "ZplanEnv",
    "ZplanError",
    "load_model",
    "make",
    "run_suite",
    "set_num_threads",
]
