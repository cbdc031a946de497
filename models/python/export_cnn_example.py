#!/usr/bin/env python3
"""Export a small example CNN world model for image observations to TorchScript for zplan.

The exported module follows the TorchScript contract in ../README.md, with image observations:

    encode(obs)                                    -> [B, *latent_shape]
    predict(z: [B, *latent_shape], action: [B, A]) -> [B, *latent_shape]
    rollout(z: [B, *latent_shape], actions: [B, H, A]) -> [B, H, *latent_shape]   (optional)

where `obs` is

  - without --proprio: a float32 tensor [B, C, H, W] with values in [0, 1] (zplan divides the
    scenario's u8 image by 255; C = 3 x frame history, oldest frame first);
  - with --proprio P: a Dict[str, Tensor] with "image" (float32 [B, C, H, W] in [0, 1]) and
    "proprio" (float32 [B, P]). The module reads only these two keys and ignores any other.

The encoder is three stride-2 3x3 convolutions with ReLU (widths c, 2c, 2c for --channels c;
64x64 -> 8x8) on the [0, 1] image as given, then either

  - vector latent (default): adaptive average pooling to a 4x4 map, flatten, a linear layer
    to [latent_dim], LayerNorm;
  - token latent (--tokens N): adaptive average pooling to a gh x gw grid (gh * gw = N, gh the
    largest divisor of N not above sqrt(N)), a 1x1 convolution to latent_dim channels, the grid
    flattened row-major to N tokens, LayerNorm per token: [N, latent_dim].

Proprioception, when present, goes through Linear(P, 32) + GELU and is concatenated to the
pooled image features (to every grid cell for tokens) before the last layer. The predictor is a
JEPA-style residual MLP on the flattened latent, z' = z + f(z, a), with two GELU hidden layers
of width --hidden (default 256).

Examples:

    python export_cnn_example.py --out cnn.pt --image 3,64,64 --action-dim 2
    python export_cnn_example.py --out cnn_prop.pt --image 6,64,64 --proprio 4 --action-dim 2 \
        --tokens 16 --no-rollout --reference cnn_prop_ref.safetensors

With --reference, the script also writes inputs and the module's outputs (computed in PyTorch
from the *saved and reloaded* TorchScript file) as safetensors, so that zplan's tests can
check that Rust and Python agree:

    obs_image [B, C, H, W] uint8 (seeded uniform 0..255; encode gets obs_image / 255 as float32),
    obs_proprio [B, P] float32 (only with --proprio), actions [B, H, A],
    z [B, *latent], pred [B, *latent] (= predict(z, actions[:, 0])),
    rollout [B, H, *latent]  (the module's rollout, or predict looped in Python with --no-rollout)
"""

import argparse
import json
import math
import sys
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

PROPRIO_EMBED = 32  # width of the proprioception embedding
VECTOR_GRID = 4  # vector latents pool the last feature map to VECTOR_GRID x VECTOR_GRID


def mlp(inp: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """`layers` hidden layers of width `hidden` with GELU, then a linear output layer."""
    mods: List[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


def token_grid(tokens: int) -> Tuple[int, int]:
    """(gh, gw) with gh * gw = tokens and gh the largest divisor not above sqrt(tokens)."""
    gh = max(d for d in range(1, math.isqrt(tokens) + 1) if tokens % d == 0)
    return gh, tokens // gh


class CnnWorldModel(nn.Module):
    """Conv encoder + residual MLP predictor. Subclasses define `encode` for their input type."""

    def __init__(self, image_shape: List[int], proprio_dim: int, action_dim: int, latent_dim: int,
                 channels: int, tokens: int, hidden: int):
        super().__init__()
        c_in = image_shape[0]
        c1, c2 = channels, 2 * channels
        self.in_channels = c_in
        self.proprio_dim = proprio_dim
        self.tokens = tokens
        self.latent_dim = latent_dim
        self.trunk = nn.Sequential(
            nn.Conv2d(c_in, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, stride=2, padding=1), nn.ReLU(),
        )
        pe = PROPRIO_EMBED if proprio_dim > 0 else 0
        # nn.Identity keeps TorchScript typing simple (no None submodule); unused without proprio.
        self.proprio_net = (nn.Sequential(nn.Linear(proprio_dim, pe), nn.GELU())
                            if proprio_dim > 0 else nn.Identity())
        if tokens > 0:
            self.grid = list(token_grid(tokens))
            self.head = nn.Conv2d(c2 + pe, latent_dim, 1)
        else:
            self.grid = [VECTOR_GRID, VECTOR_GRID]
            self.head = nn.Linear(c2 * VECTOR_GRID * VECTOR_GRID + pe, latent_dim)
        self.norm = nn.LayerNorm(latent_dim)
        flat = latent_dim * max(tokens, 1)
        self.predictor = mlp(flat + action_dim, hidden, flat, 2)

    def _encode(self, image: torch.Tensor, proprio: Optional[torch.Tensor]) -> torch.Tensor:
        if image.dim() != 4 or image.size(1) != self.in_channels:
            raise RuntimeError("encode: expected image [B, " + str(self.in_channels)
                               + ", H, W], got " + str(image.shape))
        b = image.size(0)
        # No re-centring of the [0, 1] input: the first conv's bias can absorb it, and a full
        # pass over the image would cost as much as a conv layer on the CPU.
        feat = self.trunk(image)
        feat = F.adaptive_avg_pool2d(feat, self.grid)  # [B, c2, gh, gw]
        if self.tokens > 0:
            if proprio is not None:
                pe = self.proprio_net(proprio)  # [B, pe], the same for every grid cell
                pe = pe[:, :, None, None].expand(-1, -1, feat.size(2), feat.size(3))
                feat = torch.cat([feat, pe], dim=1)
            z = self.head(feat).flatten(2).transpose(1, 2)  # [B, N, latent_dim], row-major grid
        else:
            flat = feat.flatten(1)
            if proprio is not None:
                flat = torch.cat([flat, self.proprio_net(proprio)], dim=1)
            z = self.head(flat)  # [B, latent_dim]
        z = self.norm(z)
        return z.reshape(b, -1) if self.tokens == 0 else z

    @torch.jit.export
    def predict(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        b = z.size(0)
        flat = z.reshape(b, -1)
        delta = self.predictor(torch.cat([flat, action], dim=-1))
        return (flat + delta).reshape(z.shape)

    def _rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        # Compiled only where an exported `rollout` calls it.
        outs: List[torch.Tensor] = []
        for t in range(actions.size(1)):
            z = self.predict(z, actions[:, t])
            outs.append(z)
        return torch.stack(outs, dim=1)


class CnnImageModel(CnnWorldModel):
    """encode(obs: [B, C, H, W] float32 in [0, 1])."""

    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self._encode(obs, None)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs)


class CnnDictModel(CnnWorldModel):
    """encode(obs: {"image": [B, C, H, W] float32 in [0, 1], "proprio": [B, P]}); other keys are ignored."""

    @torch.jit.export
    def encode(self, obs: Dict[str, torch.Tensor]) -> torch.Tensor:
        if "image" not in obs or "proprio" not in obs:
            raise RuntimeError("encode: expected the observation keys \"image\" and \"proprio\", got "
                               + str(list(obs.keys())))
        proprio = obs["proprio"]
        if proprio.dim() != 2 or proprio.size(1) != self.proprio_dim:
            raise RuntimeError("encode: expected proprio [B, " + str(self.proprio_dim) + "], got "
                               + str(proprio.shape))
        return self._encode(obs["image"], proprio)

    def forward(self, obs: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(obs)


class CnnImageModelWithRollout(CnnImageModel):
    """Adds a fused `rollout`, which zplan prefers over looping `predict`."""

    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._rollout(z, actions)


class CnnDictModelWithRollout(CnnDictModel):
    """Adds a fused `rollout`, which zplan prefers over looping `predict`."""

    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._rollout(z, actions)


def parse_image(text: str) -> List[int]:
    dims = [int(d) for d in text.split(",") if d.strip()]
    if len(dims) != 3 or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad image shape {text!r}: expected C,H,W like 3,64,64")
    return dims


def non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a size >= 0, got {v}")
    return v


def positive(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a size > 0, got {v}")
    return v


def make_obs(image: torch.Tensor, proprio: Optional[torch.Tensor]):
    """What zplan passes to encode: the tensor alone, or the dict with --proprio."""
    if proprio is None:
        return image
    return {"image": image, "proprio": proprio}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the TorchScript module (.pt)")
    p.add_argument("--image", type=parse_image, default=[3, 64, 64],
                   help="image shape C,H,W (C = 3 x frame history); default 3,64,64")
    p.add_argument("--proprio", type=non_negative, default=0,
                   help="proprioception size P; > 0 makes encode take Dict[str, Tensor] "
                        "with \"image\" and \"proprio\"; 0 (default) = image tensor only")
    p.add_argument("--action-dim", type=positive, default=2)
    p.add_argument("--latent-dim", type=positive, default=32, help="latent size (per token with --tokens)")
    p.add_argument("--channels", type=positive, default=16,
                   help="conv width c (layers c, 2c, 2c); default 16")
    p.add_argument("--hidden", type=positive, default=256, help="hidden width of the predictor MLP")
    p.add_argument("--tokens", type=non_negative, default=0,
                   help="token latents [tokens, latent_dim] from a pooled feature-map grid; 0 = vector")
    p.add_argument("--no-rollout", action="store_true", help="export without the optional rollout method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="also write reference inputs/outputs here (.safetensors)")
    p.add_argument("--ref-batch", type=positive, default=3)
    p.add_argument("--ref-horizon", type=positive, default=4)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.proprio > 0:
        cls = CnnDictModel if args.no_rollout else CnnDictModelWithRollout
    else:
        cls = CnnImageModel if args.no_rollout else CnnImageModelWithRollout
    model = cls(args.image, args.proprio, args.action_dim, args.latent_dim, args.channels,
                args.tokens, args.hidden).eval()
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, args.out)
    n_params = sum(p.numel() for p in model.parameters())

    obs_fields = {"image": ["u8"] + args.image}
    if args.proprio > 0:
        obs_fields["proprio"] = ["f32", args.proprio]
    info = {
        "out": args.out,
        "encode_input": "Dict[str, Tensor]" if args.proprio > 0 else "Tensor",
        "obs": obs_fields,
        "action_dim": args.action_dim,
        "latent_shape": [args.tokens, args.latent_dim] if args.tokens > 0 else [args.latent_dim],
        "channels": [args.channels, 2 * args.channels, 2 * args.channels],
        "token_grid": list(token_grid(args.tokens)) if args.tokens > 0 else None,
        "hidden": args.hidden,
        "rollout": not args.no_rollout,
        "parameters": n_params,
    }

    if args.reference:
        from safetensors.torch import save_file

        loaded = torch.jit.load(args.out)  # check what Rust will load, not the Python object
        g = torch.Generator().manual_seed(args.seed + 1)
        b, h = args.ref_batch, args.ref_horizon
        obs_image = torch.randint(0, 256, [b] + args.image, generator=g, dtype=torch.uint8)
        obs_proprio = torch.randn(b, args.proprio, generator=g) if args.proprio > 0 else None
        actions = torch.rand(b, h, args.action_dim, generator=g) * 2 - 1
        with torch.no_grad():
            image = obs_image.to(torch.float32) / 255.0  # exactly what zplan does with u8 images
            z = loaded.encode(make_obs(image, obs_proprio))
            pred = loaded.predict(z, actions[:, 0])
            if args.no_rollout:
                zs, cur = [], z
                for t in range(h):
                    cur = loaded.predict(cur, actions[:, t])
                    zs.append(cur)
                roll = torch.stack(zs, dim=1)
            else:
                roll = loaded.rollout(z, actions)
        tensors = dict(obs_image=obs_image, actions=actions, z=z, pred=pred, rollout=roll)
        if obs_proprio is not None:
            tensors["obs_proprio"] = obs_proprio
        save_file({k: v.contiguous() for k, v in tensors.items()}, args.reference)
        info["reference"] = args.reference

    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
