#!/usr/bin/env python3
"""Reference CEM in PyTorch, written the way common research planning code does it.

Python loops over iterations and horizon steps; each step is one batched ``predict`` call for
all candidates of the iteration. Sampling and refit follow zplan's CEM exactly (see
planner/src/cem.rs and planner/src/sampling.rs), with zplan's defaults:

- actions live in [-1, 1] (the bounds ``zplan bench-plan --obs-shape`` uses), candidates are
  ``clamp(mean + std * N(0, 1), -1, 1)``; candidate 0 is the current mean;
- energy: L1 distance of the last predicted latent to the goal latent, averaged over the
  latent's entries (zplan's default energy);
- refit to the ``elites`` lowest energies: ``mean = clamp(m * mean + (1 - m) * elite_mean, -1, 1)``,
  ``std = clamp(m * std + (1 - m) * elite_std, min_std, max_std)`` with the unbiased elite std,
  momentum m = 0.1, init std 1.0, min std 0.05, max std 2.0;
- the plan is the final mean.

One timed plan = encoding the start observation + all iterations, as in ``zplan bench-plan``.
The goal is encoded once, outside the timing. Start and goal observations are seeded uniform
random vectors in [-1, 1].

The last line printed is machine-readable:
``plan_ms_median=... plan_ms_p99=...``.

Example:

    python reference_cem.py --model tiny.pt --obs-shape 11 --action-dim 2 \
        --samples 300 --horizon 16 --iters 10 --elites 30 --threads 1
"""

import argparse
import statistics
import sys
import time

import torch


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default, zplan's stats::percentile)."""
    v = sorted(values)
    rank = q / 100.0 * (len(v) - 1)
    lo, hi = int(rank // 1), int(-(-rank // 1))
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def cem_plan(model, z0, z_goal, horizon, action_dim, samples, elites, iters,
             init_std=1.0, min_std=0.05, max_std=2.0, momentum=0.1):
    """One CEM plan from latent ``z0`` [1, *latent] towards ``z_goal`` [1, *latent]."""
    dev = z0.device
    mean = torch.zeros(horizon, action_dim, device=dev)
    std = torch.full((horizon, action_dim), init_std, device=dev)
    for _ in range(iters):
        noise = torch.randn(samples, horizon, action_dim, device=dev)
        actions = (mean + std * noise).clamp(-1.0, 1.0)
        actions[0] = mean                       # the current mean is candidate 0
        z = z0.expand(samples, *z0.shape[1:])
        for t in range(horizon):                # one batched predict per step
            z = model.predict(z, actions[:, t])
        energy = (z - z_goal).abs().flatten(1).mean(dim=1)
        idx = torch.topk(energy, elites, largest=False).indices
        elite = actions[idx]
        mean = (momentum * mean + (1.0 - momentum) * elite.mean(dim=0)).clamp(-1.0, 1.0)
        std = (momentum * std + (1.0 - momentum) * elite.std(dim=0)).clamp(min_std, max_std)
    return mean


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="TorchScript world model (zplan contract)")
    p.add_argument("--obs-shape", default="11", help="observation shape, e.g. 11 or 3,8")
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time (all threads of the "
                        "process; robust to other processes competing for the cores)")
    args = p.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    device = torch.device(args.device)
    if device.type == "cuda" and args.clock == "cpu":
        p.error("--clock cpu cannot time CUDA work; use wall")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # Spin-waiting OpenMP workers on a busy machine distort timings badly: fix the count.
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    obs_shape = [int(d) for d in args.obs_shape.split(",") if d.strip()]
    model = torch.jit.load(args.model, map_location=device)
    model.eval()
    g = torch.Generator().manual_seed(args.seed)
    start = (torch.rand([1] + obs_shape, generator=g) * 2 - 1).to(device)
    goal = (torch.rand([1] + obs_shape, generator=g) * 2 - 1).to(device)

    times = []
    with torch.no_grad():
        z_goal = model.encode(goal)
        for i in range(args.warmup + args.repeats):
            sync()
            t0 = clock()
            z0 = model.encode(start)
            plan = cem_plan(model, z0, z_goal, args.horizon, args.action_dim, args.samples,
                            args.elites, args.iters)
            sync()
            dt = (clock() - t0) * 1e3
            if i >= args.warmup:
                times.append(dt)
    assert plan.shape == (args.horizon, args.action_dim)
    med, p99 = statistics.median(times), percentile(times, 99)
    print(f"model       {args.model} (latent {list(z_goal.shape[1:])}) on {device}, "
          f"torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock")
    print(f"planner     reference CEM: {args.samples} samples, {args.elites} elites, "
          f"horizon {args.horizon}, {args.iters} iterations")
    print(f"plan        median {med:.3f} ms  p99 {p99:.3f} ms  ({args.repeats} repeats after "
          f"{args.warmup} warm-up)")
    print(f"plan_ms_median={med:.4f} plan_ms_p99={p99:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
