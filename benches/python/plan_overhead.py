#!/usr/bin/env python3
"""Python call overhead of a zplan plan versus the Rust API, on the same model in one process.

A Rust caller of the planning API encodes the observation and the goal and calls
``Planner::plan``; a Python caller does the same through ``zplan.Planner.plan``. The Rust side
times exactly those calls (``PlanResult.encode_ms + PlanResult.plan_ms``); the Python side
times the whole ``plan(...)`` call with ``time.perf_counter``. The difference is what the
binding adds: reading the numpy observations, releasing and re-taking the GIL, building the
result (the actions move into numpy without a copy).

    overhead = median(Python wall per call) / median(encode_ms + plan_ms) - 1

Also runs ``zplan bench-plan`` (a separate Rust process, when ``target/release/zplan`` exists)
on the same TorchScript file and budget for a cross-check; that figure encodes only the start
observation per plan, so it is slightly lower than the in-process Rust time.

Build the extension in release mode first:

    VIRTUAL_ENV=$(python -c 'import sys; print(sys.prefix)') python -m maturin develop --release -m python/Cargo.toml
    python benches/python/plan_overhead.py --size tiny --samples 300 --horizon 16 --iters 5

Prints a Markdown table row and a machine-readable last line.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import zplan

ROOT = Path(__file__).resolve().parents[2]


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = re.search(r"flags\s*:\s*(.*)", text)
    keep = [f for f in (flags.group(1).split() if flags else []) if f.startswith(("avx", "amx", "fma"))]
    return f"{model.group(1) if model else '?'}; {os.cpu_count()} cores; {' '.join(sorted(set(keep)))}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny", choices=["tiny", "small", "large"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--elites", type=int, default=30)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    # The model reads reach.ron's observation (an 11-entry state) and action (3 entries).
    env = zplan.make(ROOT / "scenarios/reach.ron")
    obs_dim = env.observation_space["state"].shape[0]
    action_dim = env.action_space.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / f"{args.size}.pt"
        subprocess.run(
            [sys.executable, str(ROOT / "models/python/export_example.py"), "--out", str(model_path),
             "--obs-shape", str(obs_dim), "--action-dim", str(action_dim), "--size", args.size],
            check=True, capture_output=True,
        )
        model = zplan.load_model(str(model_path), scenario=env)
        args.obs_dim, args.action_dim = obs_dim, action_dim
        rng = np.random.default_rng(0)
        obs = {"state": rng.uniform(-1, 1, args.obs_dim).astype(np.float32)}
        goal = {"state": rng.uniform(-1, 1, args.obs_dim).astype(np.float32)}
        planner = zplan.Planner(
            "cem", samples=args.samples, elites=args.elites, iterations=args.iters,
            horizon=args.horizon, bounds=(-np.ones(args.action_dim), np.ones(args.action_dim)),
        )
        for _ in range(args.warmup):
            planner.plan(model, obs, goal)
        wall, inner = [], []
        for _ in range(args.calls):
            t = time.perf_counter()
            r = planner.plan(model, obs, goal)
            wall.append((time.perf_counter() - t) * 1e3)
            inner.append(r.encode_ms + r.plan_ms)
        w, i = statistics.median(wall), statistics.median(inner)
        overhead = w / i - 1.0

        bench = None
        zbin = Path(os.environ.get("ZPLAN_BIN", ROOT / "target/release/zplan"))
        if zbin.is_file():
            out = subprocess.run(
                [str(zbin), "bench-plan", "--model", str(model_path), "--obs-shape", str(args.obs_dim),
                 "--action-dim", str(args.action_dim), "--planner", "cem", "--samples", str(args.samples),
                 "--elites", str(args.elites), "--horizon", str(args.horizon), "--iters", str(args.iters),
                 "--threads", str(args.threads)],
                capture_output=True, text=True,
            )
            m = re.search(r"plan_ms_median=([0-9.]+)", out.stdout + out.stderr)
            bench = float(m.group(1)) if m else None

    print(f"CPU: {cpu_flags()}")
    print(f"torch threads {args.threads}; CEM {args.samples} x {args.horizon} x {args.iters}, {args.elites} elites; "
          f"{args.size} model; {args.calls} calls")
    print()
    print("| model | Python call (ms, median) | Rust API encode+plan (ms, median) | Python overhead | zplan bench-plan (ms) |")
    print("|---|---|---|---|---|")
    print(f"| {args.size} | {w:.3f} | {i:.3f} | {overhead * 100:+.2f} % | "
          f"{'n/a' if bench is None else f'{bench:.3f}'} |")
    print(f"python_ms_median={w:.4f} rust_ms_median={i:.4f} overhead={overhead:.4f}"
          f" bench_plan_ms_median={bench if bench is not None else 'nan'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
