#!/usr/bin/env python3
"""Export a small example world model to TorchScript for zplan.

The exported module follows the contract in ../README.md:

    encode(obs: [B, *obs_shape])                  -> [B, *latent_shape]
    predict(z: [B, *latent_shape], action: [B, A]) -> [B, *latent_shape]
    rollout(z: [B, *latent_shape], actions: [B, H, A]) -> [B, H, *latent_shape]   (optional)

The encoder is an MLP; the predictor is a residual MLP, z' = z + f(z, a). The latent is a
vector [latent_dim] by default, or tokens [tokens, latent_dim] with --tokens N.

Examples:

    python export_example.py --out tiny.pt --obs-shape 4 --action-dim 2 --size tiny
    python export_example.py --out tok.pt --obs-shape 6 --action-dim 2 --tokens 4 --no-rollout \
        --reference tok_ref.safetensors

With --reference, the script also writes inputs and the module's outputs (computed in PyTorch
from the *saved and reloaded* TorchScript file) as safetensors, so that zplan's tests can
check that Rust and Python agree:

    obs [B, *obs_shape], actions [B, H, A], z [B, *latent], pred [B, *latent] (= predict(z, actions[:, 0])),
    rollout [B, H, *latent]  (the module's rollout, or predict looped in Python without --no-rollout)
"""

import argparse
import json
import sys
from typing import List

import torch
from torch import nn

# Presets used by the throughput benchmark: (latent_dim, hidden, layers).
PRESETS = {
    "tiny": (16, 64, 2),
    "small": (64, 256, 2),
    "large": (256, 1024, 5),  # about 9.5M parameters for small obs/action sizes
}


def mlp(inp: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """`layers` hidden layers of width `hidden` with GELU, then a linear output layer."""
    mods: List[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class ExampleWorldModel(nn.Module):
    """MLP encoder + residual MLP predictor; no `rollout` (zplan loops `predict`)."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, hidden: int,
                 layers: int, tokens: int):
        super().__init__()
        self.tokens = tokens
        self.latent_dim = latent_dim
        flat = latent_dim * max(tokens, 1)
        self.encoder = mlp(obs_dim, hidden, flat, layers)
        self.predictor = mlp(flat + action_dim, hidden, flat, layers)

    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        b = obs.size(0)
        z = self.encoder(obs.reshape(b, -1))
        if self.tokens > 0:
            z = z.reshape(b, self.tokens, self.latent_dim)
        return z

    @torch.jit.export
    def predict(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        b = z.size(0)
        flat = z.reshape(b, -1)
        delta = self.predictor(torch.cat([flat, action], dim=-1))
        return (flat + delta).reshape(z.shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)


class ExampleWorldModelWithRollout(ExampleWorldModel):
    """Adds a fused `rollout`, which zplan prefers over looping `predict`."""

    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        outs: List[torch.Tensor] = []
        for t in range(actions.size(1)):
            z = self.predict(z, actions[:, t])
            outs.append(z)
        return torch.stack(outs, dim=1)


def parse_shape(text: str) -> List[int]:
    dims = [int(d) for d in text.split(",") if d.strip()]
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected positive sizes like 8 or 3,8")
    return dims


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the TorchScript module (.pt)")
    p.add_argument("--obs-shape", type=parse_shape, default=[4], help="observation shape, e.g. 8 or 3,8")
    p.add_argument("--action-dim", type=int, default=2)
    p.add_argument("--size", choices=sorted(PRESETS), default="tiny",
                   help="preset for --latent-dim/--hidden/--layers (explicit flags win)")
    p.add_argument("--latent-dim", type=int, help="latent size (per token with --tokens)")
    p.add_argument("--hidden", type=int, help="hidden width of both MLPs")
    p.add_argument("--layers", type=int, help="hidden layers of both MLPs")
    p.add_argument("--tokens", type=int, default=0, help="token latents [tokens, latent_dim]; 0 = vector")
    p.add_argument("--no-rollout", action="store_true", help="export without the optional rollout method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="also write reference inputs/outputs here (.safetensors)")
    p.add_argument("--ref-batch", type=int, default=5)
    p.add_argument("--ref-horizon", type=int, default=4)
    args = p.parse_args(argv)

    latent, hidden, layers = PRESETS[args.size]
    latent = args.latent_dim or latent
    hidden = args.hidden or hidden
    layers = args.layers if args.layers is not None else layers
    obs_dim = 1
    for d in args.obs_shape:
        obs_dim *= d

    torch.manual_seed(args.seed)
    cls = ExampleWorldModel if args.no_rollout else ExampleWorldModelWithRollout
    model = cls(obs_dim, args.action_dim, latent, hidden, layers, args.tokens).eval()
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, args.out)
    n_params = sum(p.numel() for p in model.parameters())

    info = {
        "out": args.out,
        "obs_shape": args.obs_shape,
        "action_dim": args.action_dim,
        "latent_shape": [args.tokens, latent] if args.tokens > 0 else [latent],
        "hidden": hidden,
        "layers": layers,
        "rollout": not args.no_rollout,
        "parameters": n_params,
    }

    if args.reference:
        from safetensors.torch import save_file

        loaded = torch.jit.load(args.out)  # check what Rust will load, not the Python object
        g = torch.Generator().manual_seed(args.seed + 1)
        b, h = args.ref_batch, args.ref_horizon
        obs = torch.randn([b] + args.obs_shape, generator=g)
        actions = torch.rand(b, h, args.action_dim, generator=g) * 2 - 1
        with torch.no_grad():
            z = loaded.encode(obs)
            pred = loaded.predict(z, actions[:, 0])
            if args.no_rollout:
                zs, cur = [], z
                for t in range(h):
                    cur = loaded.predict(cur, actions[:, t])
                    zs.append(cur)
                roll = torch.stack(zs, dim=1)
            else:
                roll = loaded.rollout(z, actions)
        save_file({k: v.contiguous() for k, v in
                   dict(obs=obs, actions=actions, z=z, pred=pred, rollout=roll).items()},
                  args.reference)
        info["reference"] = args.reference

    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
