#!/usr/bin/env python3
"""stable-worldmodel's CEMSolver on a zplan TorchScript model: the third column of
run_side_by_side.py.

The model (models/python/export_example.py's contract: ``encode``, ``predict``, optional
``rollout``) is wrapped as stable-worldmodel's ``Costable``: ``get_cost`` rolls the start latent
forward under all candidates (the fused ``rollout`` when the module has one, else ``predict``
per step) and scores them with zplan's default energy (L1 on the last step, averaged over the
latent). One timed plan = encoding the start observation + ``solver.solve`` (the goal latent is
encoded once, outside the timing), as in reference_cem.py and ``zplan bench-plan``.

stable-worldmodel is imported from the environment or from $STABLE_WORLDMODEL_PATH (prepended
to sys.path). Without it the script prints ``unavailable=...`` and exits 0.

    python swm_cem.py --model tiny.pt --obs-shape 11 --action-dim 2 \\
        --samples 300 --horizon 16 --iters 10 --elites 30 --threads 1

Last line: ``plan_ms_median=... plan_ms_p99=...``.
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch


def percentile(values, q):
    v = sorted(values)
    rank = q / 100.0 * (len(v) - 1)
    lo, hi = int(rank // 1), int(-(-rank // 1))
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


class Costable:
    """stable-worldmodel's Costable protocol over a TorchScript world model."""

    def __init__(self, module):
        self.module = module
        self.has_rollout = hasattr(module, "rollout")

    def parameters(self):
        return self.module.parameters()

    def get_cost(self, info_dict, action_candidates):
        b, n, h, a = action_candidates.shape
        z = info_dict["z0"][:, 0].repeat_interleave(n, 0)
        goal = info_dict["goal"][:, 0].repeat_interleave(n, 0)
        actions = action_candidates.reshape(b * n, h, a)
        if self.has_rollout:
            last = self.module.rollout(z, actions)[:, -1]
        else:
            for t in range(h):
                z = self.module.predict(z, actions[:, t])
            last = z
        return (last - goal).abs().reshape(b * n, -1).mean(-1).reshape(b, n)

    criterion = get_cost


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--obs-shape", required=True)
    p.add_argument("--action-dim", type=int, required=True)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    extra = os.environ.get("STABLE_WORLDMODEL_PATH")
    if extra:
        sys.path.insert(0, extra)
    try:
        import numpy as np
        from gymnasium import spaces
        from stable_worldmodel.solver import CEMSolver
    except Exception as e:  # noqa: BLE001 (any import failure means: not available)
        print(f"unavailable={type(e).__name__}: {e}")
        return 0
    import stable_worldmodel

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    module = torch.jit.load(args.model, map_location=dev)
    module.eval()
    obs_shape = [int(d) for d in args.obs_shape.split(",")]
    gen = torch.Generator().manual_seed(0)
    start = (torch.rand([1] + obs_shape, generator=gen) * 2 - 1).to(dev)
    goal_obs = (torch.rand([1] + obs_shape, generator=gen) * 2 - 1).to(dev)
    model = Costable(module)
    solver = CEMSolver(model, batch_size=1, num_samples=args.samples, var_scale=1.0,
                       n_steps=args.iters, topk=args.elites, device=args.device, seed=0)
    space = spaces.Box(low=-np.ones((1, args.action_dim), np.float32),
                       high=np.ones((1, args.action_dim), np.float32))
    config = SimpleNamespace(horizon=args.horizon, receding_horizon=1, history_len=1,
                             action_block=1, warm_start=False)
    solver.configure(action_space=space, n_envs=1, config=config)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.inference_mode():
        goal = module.encode(goal_obs)
        times = []
        for i in range(args.warmup + args.repeats):
            t = clock()
            z0 = module.encode(start)
            with contextlib.redirect_stdout(io.StringIO()):  # it prints the solve time
                solver.solve({"z0": z0, "goal": goal})
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append((clock() - t) * 1e3)
    print(f"# stable-worldmodel {getattr(stable_worldmodel, '__version__', '?')}, torch "
          f"{torch.__version__}, {args.threads} thread(s)")
    print(f"plan_ms_median={statistics.median(times):.4f} plan_ms_p99={percentile(times, 99):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
