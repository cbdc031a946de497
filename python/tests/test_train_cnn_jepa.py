"""models/python/train_cnn_jepa.py: train a CNN JEPA in PyTorch on a `zplan collect` dataset,
export it to TorchScript, and plan with it through zplan (a few steps: a smoke test, < 30 s)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zplan
from conftest import ROOT, SCENARIOS

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

SCRIPT = ROOT / "models" / "python" / "train_cnn_jepa.py"
PIXELS = SCENARIOS / "two_rooms_pixels.ron"


def zplan_cli() -> Path:
    """The zplan binary (as `rust_example`: debug first, built if `cargo test` has not yet)."""
    for profile in ("debug", "release"):
        exe = ROOT / "target" / profile / "zplan"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    subprocess.run(["cargo", "build", "--quiet", "--bin", "zplan"], cwd=ROOT, check=True, timeout=1800)
    return ROOT / "target" / "debug" / "zplan"


def train_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "1", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("byo") / "data"
    subprocess.run(
        [str(zplan_cli()), "collect", str(PIXELS), "--episodes", "6", "--steps", "12",
         "--workers", "1", "--out", str(out)],
        check=True, capture_output=True, timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def exported(tiny_dataset) -> Path:
    out = tiny_dataset.parent / "byo.pt"
    r = train_script("--data", str(tiny_dataset), "--out", str(out), "--steps", "4", "--batch", "8",
                     "--eval-every", "2", "--log-every", "2", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "linear probe R^2" in r.stdout and "bf16 cast ok" in r.stdout
    return out


def test_exported_model_loads_and_plans_in_zplan(exported):
    report = json.loads(exported.with_suffix(".train.json").read_text())
    assert report["steps"] == 4 and len(report["latent_std"]) == 2
    env = zplan.make(PIXELS)
    model = zplan.load_model(exported, scenario=env)
    assert model.latent_shape == [2]  # one keypoint: (x, y)
    obs, _ = env.reset(seed=50_000)
    # zplan feeds the module the u8 image divided by 255: both sides agree.
    module = torch.jit.load(str(exported))
    with torch.no_grad():
        want = module.encode(torch.from_numpy(obs["image"]).float().unsqueeze(0) / 255.0)
    np.testing.assert_allclose(model.encode(obs), want.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(want.numpy()) <= 1.0)  # soft-argmax coordinates
    planner = zplan.Planner.from_ron("Cem(samples: 32, elites: 4, iterations: 2, horizon: 5)", scenario=env)
    result = planner.plan(model, obs, env.goal_observation())
    assert result.actions.shape == (5, env.action_space.shape[0])
    assert np.all(np.isfinite(result.actions))


def test_cli_model_inspect_accepts_the_export(exported):
    r = subprocess.run(
        [str(zplan_cli()), "model", "inspect", str(exported), "--scenario", str(PIXELS), "--batch", "8"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "latent shape:   [2]" in r.stdout


def test_directory_without_meta_json_is_refused(tmp_path):
    r = train_script("--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), "--steps", "1")
    assert r.returncode == 2
    assert "no meta.json" in r.stderr and str(tmp_path) in r.stderr
    assert not (tmp_path / "m.pt").exists()


def _script_module():
    spec = importlib.util.spec_from_file_location("train_cnn_jepa", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.update(format="zplan-dataset-v1"), "format `zplan-dataset-v1`, expected `zplan-dataset-v2`"),
        (lambda m: m.update(observation=[{"name": "state", "dtype": "f32", "shape": [2]}]),
         "no `image` field"),
        (lambda m: m["observation"][0].update(shape=[6, 64, 64]), "expected [3, H, W]"),
    ],
    ids=["format", "no-image", "image-shape"],
)
def test_bad_meta_is_refused_with_a_clear_message(tiny_dataset, tmp_path, edit, message):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    edit(meta)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    mod = _script_module()
    with pytest.raises(mod.DatasetError) as e:
        mod.Dataset(tmp_path)
    assert message in str(e.value) and "meta.json" in str(e.value)
