"""Shared fixtures of the zplan Python tests (run by ./test.sh after `maturin develop`)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

import zplan

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

# One libtorch thread: tests run beside each other on small machines, and plans compared
# with the Rust reference bit for bit are computed with one thread on both sides.
torch.set_num_threads(1)


def scenario_files() -> list[Path]:
    """Every scenario file (suite files excluded)."""
    out = []
    for p in sorted(SCENARIOS.glob("*.ron")):
        text = re.sub(r"//[^\n]*", "", p.read_text())
        if not re.match(r"\s*Suite\s*\(", text):
            out.append(p)
    return out


def rust_example(name: str) -> Path:
    """A Rust example binary of the workspace, built (debug) if `cargo test` has not yet."""
    for profile in ("debug", "release"):
        exe = ROOT / "target" / profile / "examples" / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    subprocess.run(
        ["cargo", "build", "--quiet", "--example", name], cwd=ROOT, check=True, timeout=1800
    )
    return ROOT / "target" / "debug" / "examples" / name


@pytest.fixture(scope="session")
def reach_env():
    return zplan.make(SCENARIOS / "reach.ron")


@pytest.fixture(scope="session")
def reach_jepa(reach_env):
    return zplan.load_model(ROOT / "models/trained/reach", scenario=reach_env)
