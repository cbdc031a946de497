#!/usr/bin/env python3
"""Run zplan's CEM and the PyTorch reference CEM back to back on the same TorchScript models.

For each model size (tiny: latent 16 hidden 64; small: latent 64 hidden 256; large: about 10M
parameters; see models/python/export_example.py) and each export variant (`rollout`: the model
has a fused `rollout` method, which zplan uses; `predict`: exported with --no-rollout, so zplan
loops `predict` from Rust), it runs

    python benches/python/reference_cem.py --model M ...      (Python loops, one predict per step)
    zplan bench-plan --model M --planner cem ...              (same budget, same thread count)

with CEM 300 samples x horizon 16 x 10 iterations, 30 elites, float32 on the CPU, and prints a
Markdown table with the ratio python / zplan (higher is better for zplan), zplan's own
rollouts-alone time and overhead, and the ceiling: python / zplan's rollouts alone, the ratio a
planner with zero overhead would reach on the same model.

Standard library only. The reference and the exporter run with $ZPLAN_PYTHON (else the
`ZPLAN_PYTHON` in .cargo/config.toml, else python3); zplan is $ZPLAN_BIN, else
target/release/zplan, built first with `cargo build --release --bin zplan` unless --no-build.

A stable-worldmodel column (its CEMSolver at the same budget, benches/python/swm_cem.py) is
added when stable-worldmodel can be imported (or STABLE_WORLDMODEL_PATH points at it).

    python3 benches/python/run_side_by_side.py                 # all sizes, 1 thread
    python3 benches/python/run_side_by_side.py --sizes tiny small --threads 2 --clock cpu
    python3 benches/python/run_side_by_side.py --sizes tiny small --threads 2 --rollout-threads 2
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"tiny": 3.0, "small": 1.2, "large": 1.0}
DEFAULT_REPEATS = {"tiny": 20, "small": 10, "large": 3}


def find_python():
    if os.environ.get("ZPLAN_PYTHON"):
        return os.environ["ZPLAN_PYTHON"]
    cfg = ROOT / ".cargo" / "config.toml"
    if cfg.is_file():
        m = re.search(r'ZPLAN_PYTHON\s*=\s*\{\s*value\s*=\s*"([^"]+)"', cfg.read_text())
        if m:
            return m.group(1)
    return shutil.which("python3") or "python3"


def find_zplan(build):
    if os.environ.get("ZPLAN_BIN"):
        return os.environ["ZPLAN_BIN"]
    if build:
        subprocess.run(["cargo", "build", "--release", "--bin", "zplan"], cwd=ROOT, check=True)
    exe = ROOT / "target" / "release" / "zplan"
    if not exe.is_file():
        sys.exit(f"{exe} does not exist: build it (cargo build --release) or set ZPLAN_BIN")
    return str(exe)


def last_line_values(text):
    """Parses the machine-readable `key=value ...` last line of a benchmark's output."""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    if not lines:
        raise RuntimeError("no output")
    return {k: float(v) for k, v in (kv.split("=", 1) for kv in lines[-1].split())}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}{p.stdout}")
    return p.stdout


def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {load}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "small", "large"],
                   choices=["tiny", "small", "large"])
    p.add_argument("--variants", nargs="+", default=["rollout", "predict"],
                   choices=["rollout", "predict"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads of both sides")
    p.add_argument("--rollout-threads", type=int, default=1,
                   help="zplan only: roll out candidate groups on this many threads with one torch "
                        "thread each (the reference keeps --threads intra-op threads); wall clock")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--obs-dim", type=int, default=11)
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--repeats", type=int, help="timed plans per run (default per size)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate python/zplan this many times; medians over rounds are reported")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides; use the wall clock)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build")
    p.add_argument("--no-swm", action="store_true",
                   help="skip the stable-worldmodel column (benches/python/swm_cem.py; it is "
                        "skipped anyway when stable-worldmodel cannot be imported: install it or "
                        "set STABLE_WORLDMODEL_PATH)")
    p.add_argument("--keep", help="export the models into this folder (default: a temporary one)")
    args = p.parse_args(argv)

    py = find_python()
    if args.rollout_threads < 1:
        sys.exit(f"--rollout-threads must be at least 1, got {args.rollout_threads}")
    if args.rollout_threads > 1 and args.clock == "cpu":
        sys.exit("--rollout-threads needs the wall clock (the CPU clock adds the threads' times up)")
    zplan = find_zplan(not args.no_build)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="zplan-sbs-"))
    work.mkdir(parents=True, exist_ok=True)
    torch_version = run([py, "-c", "import torch; print(torch.__version__)"]).strip()
    budget = [
        "--samples", str(args.samples), "--elites", str(args.elites), "--horizon",
        str(args.horizon), "--iters", str(args.iters),
        "--warmup", str(args.warmup), "--clock", args.clock, "--device", args.device,
    ]
    ref_threads = ["--threads", str(args.threads)]
    zp_threads = (["--threads", "1", "--rollout-threads", str(args.rollout_threads)]
                  if args.rollout_threads > 1 else ref_threads)
    print(f"# zplan vs PyTorch reference CEM, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    print(f"# machine: {machine_line()}")
    zplan_threads = (f"zplan {args.rollout_threads} candidate groups x 1 torch thread"
                     if args.rollout_threads > 1 else "same for zplan")
    print(f"# torch {torch_version}, {args.threads} thread(s) ({zplan_threads}), {args.clock} clock; CEM "
          f"{args.samples} samples x horizon {args.horizon} x {args.iters} iterations, "
          f"{args.elites} elites, float32, {args.device}; obs {args.obs_dim}, action {args.action_dim}")
    rows = []
    for size in args.sizes:
        for variant in args.variants:
            model = work / f"{size}-{variant}.pt"
            export = [py, str(ROOT / "models" / "python" / "export_example.py"), "--out",
                      str(model), "--obs-shape", str(args.obs_dim), "--action-dim",
                      str(args.action_dim), "--size", size]
            if variant == "predict":
                export.append("--no-rollout")
            info = json.loads(run(export).strip().splitlines()[-1])
            repeats = str(args.repeats or DEFAULT_REPEATS[size])
            ref_cmd = [py, str(ROOT / "benches" / "python" / "reference_cem.py"), "--model",
                       str(model), "--obs-shape", str(args.obs_dim), "--action-dim",
                       str(args.action_dim), "--repeats", repeats] + budget + ref_threads
            zp_cmd = [zplan, "bench-plan", "--model", str(model), "--obs-shape",
                      str(args.obs_dim), "--action-dim", str(args.action_dim), "--planner",
                      "cem", "--repeats", repeats] + budget + zp_threads
            swm_cmd = [py, str(ROOT / "benches" / "python" / "swm_cem.py"), "--model",
                       str(model), "--obs-shape", str(args.obs_dim), "--action-dim",
                       str(args.action_dim), "--repeats", repeats] + budget + ref_threads
            ref, zp, swm = [], [], []
            for _ in range(args.rounds):
                ref.append(last_line_values(run(ref_cmd)))
                zp.append(last_line_values(run(zp_cmd)))
                if not args.no_swm:
                    out = run(swm_cmd)
                    if "unavailable=" in out:
                        print(f"# stable-worldmodel column skipped: {out.strip()}", file=sys.stderr)
                        args.no_swm = True
                    else:
                        swm.append(last_line_values(out))
            med = lambda runs, key: statistics.median(r[key] for r in runs)
            row = dict(
                size=size, variant=variant, params=info["parameters"],
                python_ms=med(ref, "plan_ms_median"), zplan_ms=med(zp, "plan_ms_median"),
                rollout_ms=med(zp, "rollout_ms_median"), overhead=med(zp, "overhead"),
            )
            row["ratio"] = row["python_ms"] / row["zplan_ms"]
            row["swm_ms"] = med(swm, "plan_ms_median") if swm else None
            row["ceiling"] = row["python_ms"] / row["rollout_ms"]
            rows.append(row)
            print(f"# {size}/{variant}: python {row['python_ms']:.2f} ms, zplan "
                  f"{row['zplan_ms']:.2f} ms, ratio {row['ratio']:.2f}", file=sys.stderr)
    print()
    print("| model | params | zplan calls | python ms | stable-worldmodel ms | zplan ms | ratio | "
          "vs stable-worldmodel | target | zplan rollouts alone ms | zplan overhead | ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        calls = "rollout (fused)" if r["variant"] == "rollout" else "predict x H"
        ok = "ok" if r["ratio"] >= TARGETS[r["size"]] else "missed"
        swm_ms = "n/a" if r["swm_ms"] is None else f"{r['swm_ms']:.2f}"
        swm_ratio = "n/a" if r["swm_ms"] is None else f"{r['swm_ms'] / r['zplan_ms']:.2f}x"
        print(f"| {r['size']} | {r['params']:,} | {calls} | {r['python_ms']:.2f} | {swm_ms} | "
              f"{r['zplan_ms']:.2f} | {r['ratio']:.2f}x | {swm_ratio} | >= {TARGETS[r['size']]}x ({ok}) | "
              f"{r['rollout_ms']:.2f} | {r['overhead']:.3f} | {r['ceiling']:.2f}x |")
    print()
    print("ratio = python / zplan plan time (medians); vs stable-worldmodel = its CEMSolver's plan time / zplan's; ceiling = python / zplan's rollouts "
          "alone: the ratio a zero-overhead planner would reach on this model. The reference "
          "always loops predict in Python.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
