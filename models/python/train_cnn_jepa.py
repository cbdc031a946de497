#!/usr/bin/env python3
"""Train a small CNN JEPA world model in PyTorch on a `zplan collect` camera dataset and export
it as TorchScript for zplan ("bring your own model from PyTorch").

The exported module follows zplan's TorchScript contract with image observations
(../README.md, "The TorchScript contract"):

    encode(obs: [B, 3, H, W] float32 in [0, 1])   -> z  [B, 2K]
    predict(z: [B, 2K], action: [B, A])           -> z' [B, 2K]      (one step)
    rollout(z: [B, 2K], actions: [B, Hz, A])      -> [B, Hz, 2K]     (latent after each action)

so that `zplan run` can plan with it on `scenarios/two_rooms_pixels.ron` (one `image` field;
zplan passes the u8 camera image divided by 255).

Reproduce the model `models/trained/two_rooms_pixels_torch.pt` (planned by the suite
`scenarios/two_rooms_pixels_torch.ron`), from the repository root (the exact training command;
2400 steps took 18 min on one thread of a 2-vCPU VM, the time limit was not reached):

    target/release/zplan collect scenarios/collect/two_rooms_pixels_wide.ron \
        --episodes 1000 --steps 60 --beta 1.5 --out data/two_rooms_pixels
    ~/.cache/zplan/torch-2.11.0/bin/python models/python/train_cnn_jepa.py \
        --data data/two_rooms_pixels --out models/trained/two_rooms_pixels_torch.pt \
        --steps 2400 --keypoints 1 --batch 128 --seed 0 --threads 1 \
        --eval-every 200 --log-every 100 --time-limit-min 21
    target/release/zplan model inspect models/trained/two_rooms_pixels_torch.pt \
        --scenario scenarios/two_rooms_pixels.ron
    target/release/zplan run scenarios/two_rooms_pixels_torch.ron --workers 1

That run: best validation objective 0.715 (prediction term 0.00173) at step 2400 (from 1.560),
latent std 0.633 (x) and 0.352 (y) on validation frames, linear probe R^2 0.997 (x 0.9988,
y 0.9948); the suite succeeded in 20/20 episodes (mean final distance 0.061 m).

(The python is the one with the setup's torch: `$ZPLAN_PYTHON`, see .cargo/config.toml.)

Dataset (format `zplan-dataset-v2`, written by `zplan collect`): DIR/meta.json and chunk files
DIR/chunk-NNNNN.safetensors holding `obs.image` u8 [n, T+1, 3, H, W], `actions` f32 [n, T, A],
`state` f32 [n, T+1, S] (the true simulator state: used ONLY for the final linear-probe metric,
never as a training input) and `seeds`. The images are kept as uint8 in memory (1000 episodes
x 61 frames of 64 x 64 RGB are 750 MB) and converted to float one batch at a time.

Model (mirrors zplan's native pixel JEPA, `zplan train --keypoints K`):

  - encoder: per-pixel input normalisation (x - mean) / std with the mean and std of the
    training images (buffers, std floored at --min-std, so a static background is not blown
    up), conv 3x3 stride 2 (8 ch) + ReLU, conv 3x3 stride 2 (16 ch) + ReLU, a 1x1 conv to K
    keypoint maps, and a spatial soft-argmax: a softmax over the H x W positions of each map
    and its expected (x, y) in [-1, 1] at the cell centres (x right, y down). The latent is
    [x0, y0, x1, y1, ...] (2K entries). Latent distance is then image distance between where
    the keypoints sit, which grows smoothly as the ball moves away from the goal: the landscape
    an L2 planning energy needs (a flattened linear latent is flat far from the goal).
  - predictor: residual MLP z' = z + f([z, a_n]) with two GELU hidden layers of --hidden (128),
    a_n the action normalised to [-1, 1] by the dataset's action bounds (inside the module, so
    zplan passes raw actions).

Training: windows of --rollout-steps (6) actions from random episodes and start times; the
online encoder encodes every frame, an EMA copy (--ema 0.99) encodes the targets; the loss is
the open-loop multi-step prediction error (MSE between the predicted latent after each action
and the target latent, averaged over the steps) + VICReg variance (hinge at std 1, --var-weight
1.0) and covariance (--cov-weight 0.04) on the online latents + an inverse-dynamics head (an MLP
predicting the normalised action a_t from (z_t, z_{t+1}) for every step of the window,
--inverse-weight 1.0). AdamW (--lr 1e-3, --weight-decay 1e-4) with cosine decay to 5 % of the
rate. The validation split is by episode (the last --val-fraction, 10 %, of the episodes); the
validation metric is the whole objective on a fixed sample of validation windows (the prediction
term alone favours a collapsed latent), and the best validation checkpoint is what gets
exported. Seeded (torch.manual_seed and a seeded generator for the windows) and deterministic on
the CPU for the same arguments and thread count.

At the end it prints the per-dimension latent std on validation frames (collapse shows as std
near 0) and the R^2 of a linear probe (least squares with a bias) from the latent to the true
state: fit on training frames, scored on validation frames.

Export: torch.jit.script of the trained module, saved with torch.jit.save (with the training
report as the extra file `zplan_train.json`), then reloaded and checked: encode and rollout
shapes, rollout == looped predict, finite outputs, and a bfloat16 cast (zplan's
`--precision bf16` does `module.to(torch.bfloat16)`) still runs. A JSON report is also written
next to the model (`<out without .pt>.train.json`).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMAT = "zplan-dataset-v2"


class DatasetError(Exception):
    """A dataset that cannot be trained on; the message says what and where."""


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class Dataset:
    """A camera dataset loaded from `zplan collect` chunks.

    images: u8 [N, T+1, C, H, W]; actions: f32 [N, T, A]; state: f32 [N, T+1, S];
    action_low / action_high: f32 [A]; meta: the parsed meta.json.
    """

    def __init__(self, directory: Path, max_episodes: Optional[int] = None):
        try:
            from safetensors import safe_open
        except ImportError as e:  # pragma: no cover - the setup's python has it
            raise DatasetError("the `safetensors` package is needed to read zplan datasets") from e
        d = Path(directory)
        if not d.is_dir():
            raise DatasetError(f"{d}: no such dataset directory")
        meta_path = d / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(
                f"{d}: no meta.json (is this a dataset written by `zplan collect ... --out {d}`?)"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"{meta_path}: not readable JSON: {e}") from e
        fmt = meta.get("format")
        if fmt != FORMAT:
            raise DatasetError(
                f"{meta_path}: format `{fmt}`, expected `{FORMAT}` (re-collect with `zplan collect`)"
            )
        for key in ("observation", "chunks", "action_low", "action_high", "episodes", "steps"):
            if key not in meta:
                raise DatasetError(f"{meta_path}: missing key `{key}`")
        fields = {f.get("name"): f for f in (meta["observation"] or [])}
        if "image" not in fields:
            names = ", ".join(f"`{n}`" for n in fields) or "none"
            raise DatasetError(
                f"{meta_path}: the dataset observes no `image` field (fields: {names}); "
                "collect from a camera scenario such as scenarios/two_rooms_pixels.ron"
            )
        img = fields["image"]
        shape = list(img.get("shape", []))
        if len(shape) != 3 or shape[0] != 3 or shape[1] < 8 or shape[2] < 8:
            raise DatasetError(
                f"{meta_path}: image shape {shape}, expected [3, H, W] (one RGB frame, H, W >= 8; "
                "frame history is not supported by this script)"
            )
        if img.get("dtype") != "u8":
            raise DatasetError(f"{meta_path}: image dtype `{img.get('dtype')}`, expected `u8`")
        self.image_shape = tuple(int(s) for s in shape)
        self.action_low = torch.tensor(meta["action_low"], dtype=torch.float32)
        self.action_high = torch.tensor(meta["action_high"], dtype=torch.float32)
        if self.action_low.shape != self.action_high.shape or self.action_low.ndim != 1:
            raise DatasetError(f"{meta_path}: action_low and action_high must be lists of one size")
        if not bool((self.action_high > self.action_low).all()):
            raise DatasetError(f"{meta_path}: action_high must exceed action_low in every entry")
        a = int(self.action_low.numel())
        steps = int(meta["steps"])
        n_total = int(meta["episodes"])
        chunks = meta["chunks"]
        if not chunks or n_total < 1:
            raise DatasetError(f"{meta_path}: the dataset has no episodes")
        n = n_total if max_episodes is None else max(1, min(n_total, int(max_episodes)))
        c, h, w = self.image_shape
        # Preallocated u8 storage, filled chunk by chunk: never more than one chunk extra.
        self.images = torch.empty((n, steps + 1, c, h, w), dtype=torch.uint8)
        self.actions = torch.empty((n, steps, a), dtype=torch.float32)
        self.state: Optional[Tensor] = None
        filled = 0
        for info in chunks:
            if filled >= n:
                break
            first, count = int(info["first_episode"]), int(info["episodes"])
            path = d / info["file"]
            if first != filled:
                raise DatasetError(f"{meta_path}: chunk {info['file']} starts at episode {first}, expected {filled}")
            if not path.is_file():
                raise DatasetError(f"{path}: chunk file listed in meta.json is missing")
            take = min(count, n - filled)
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                for k in ("obs.image", "actions", "state"):
                    if k not in keys:
                        raise DatasetError(f"{path}: no tensor `{k}` (has: {', '.join(sorted(keys))})")
                want = {
                    "obs.image": ([count, steps + 1, c, h, w], torch.uint8),
                    "actions": ([count, steps, a], torch.float32),
                }
                got = {}
                for k, (wshape, wdtype) in want.items():
                    t = f.get_tensor(k)
                    if list(t.shape) != wshape or t.dtype != wdtype:
                        raise DatasetError(
                            f"{path}: tensor `{k}` is {t.dtype} {list(t.shape)}, expected {wdtype} {wshape}"
                        )
                    got[k] = t[:take]
                st = f.get_tensor("state")
                if st.ndim != 3 or list(st.shape[:2]) != [count, steps + 1]:
                    raise DatasetError(
                        f"{path}: tensor `state` is {list(st.shape)}, expected [{count}, {steps + 1}, S]"
                    )
            if not bool(torch.isfinite(got["actions"]).all()):
                raise DatasetError(f"{path}: `actions` contains NaN or Inf")
            if self.state is None:
                self.state = torch.empty((n, steps + 1, st.shape[2]), dtype=torch.float32)
            elif st.shape[2] != self.state.shape[2]:
                raise DatasetError(f"{path}: `state` has {st.shape[2]} entries, earlier chunks {self.state.shape[2]}")
            self.images[filled : filled + take] = got["obs.image"]
            self.actions[filled : filled + take] = got["actions"]
            self.state[filled : filled + take] = st[:take].float()
            filled += take
            del got, st
        if filled < n:
            raise DatasetError(f"{meta_path}: the chunks hold {filled} episodes, meta.json says {n_total}")
        self.meta = meta
        self.episodes = n
        self.steps = steps
        self.action_dim = a
        self.state_names = list(meta.get("state_names") or [])


def windows(ds: Dataset, eps: Tensor, t0: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Images u8 [B, k+1, C, H, W] and actions [B, k, A] of windows starting at (eps, t0)."""
    # Per-window slices and a stack: several times faster than 5-d advanced indexing on u8.
    pairs = list(zip(eps.tolist(), t0.tolist()))
    images = torch.stack([ds.images[e, t : t + k + 1] for e, t in pairs])
    actions = torch.stack([ds.actions[e, t : t + k] for e, t in pairs])
    return images, actions


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class KeypointEncoder(nn.Module):
    """Image [B, C, H, W] in [0, 1] -> keypoints [B, 2K] in [-1, 1] (spatial soft-argmax)."""

    def __init__(self, image_shape: Tuple[int, int, int], widths: List[int], keypoints: int):
        super().__init__()
        c, h, w = image_shape
        self.register_buffer("mean", torch.zeros(1, c, h, w))
        self.register_buffer("inv_std", torch.ones(1, c, h, w))
        convs = []
        cin = c
        for width in widths:
            convs += [nn.Conv2d(cin, width, 3, stride=2, padding=1), nn.ReLU()]
            cin = width
        self.convs = nn.Sequential(*convs)
        self.kp = nn.Conv2d(cin, keypoints, 1)
        self.keypoints = keypoints

    def set_norm(self, images: Tensor, min_std: float) -> None:
        """Per-pixel mean and 1 / max(std, min_std) from float images [N, C, H, W] in [0, 1]."""
        with torch.no_grad():
            self.mean.copy_(images.mean(0, keepdim=True))
            self.inv_std.copy_(1.0 / images.std(0, keepdim=True).clamp_min(min_std))

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs((x - self.mean) * self.inv_std)
        maps = self.kp(h)
        b, k, hh, ww = maps.shape[0], maps.shape[1], maps.shape[2], maps.shape[3]
        p = torch.softmax(maps.reshape(b, k, hh * ww), dim=-1).reshape(b, k, hh, ww)
        # Cell centres in [-1, 1], in the maps' dtype and device (bf16-castable).
        xs = torch.linspace(-1.0 + 1.0 / ww, 1.0 - 1.0 / ww, ww, dtype=maps.dtype, device=maps.device)
        ys = torch.linspace(-1.0 + 1.0 / hh, 1.0 - 1.0 / hh, hh, dtype=maps.dtype, device=maps.device)
        x_coord = (p.sum(2) * xs).sum(-1)
        y_coord = (p.sum(3) * ys).sum(-1)
        return torch.stack([x_coord, y_coord], dim=2).reshape(b, 2 * k)


def mlp(sizes: List[int]) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class CnnJepa(nn.Module):
    """The exported world model: keypoint encoder + residual action-conditioned predictor."""

    def __init__(
        self,
        image_shape: Tuple[int, int, int],
        action_low: Tensor,
        action_high: Tensor,
        widths: List[int],
        keypoints: int,
        hidden: int,
    ):
        super().__init__()
        self.encoder = KeypointEncoder(image_shape, widths, keypoints)
        latent = 2 * keypoints
        a = int(action_low.numel())
        self.predictor = mlp([latent + a, hidden, hidden, latent])
        # Action normalisation to [-1, 1] by the dataset's bounds (buffers: cast with the module).
        self.register_buffer("action_center", ((action_low + action_high) * 0.5).reshape(1, a))
        self.register_buffer("action_half", ((action_high - action_low) * 0.5).clamp_min(1e-6).reshape(1, a))

    def normalize_action(self, action: Tensor) -> Tensor:
        return (action - self.action_center) / self.action_half

    @torch.jit.export
    def encode(self, obs: Tensor) -> Tensor:
        return self.encoder(obs)

    @torch.jit.export
    def predict(self, z: Tensor, action: Tensor) -> Tensor:
        return z + self.predictor(torch.cat([z, self.normalize_action(action)], dim=-1))

    @torch.jit.export
    def rollout(self, z: Tensor, actions: Tensor) -> Tensor:
        out: List[Tensor] = []
        for t in range(actions.shape[1]):
            z = self.predict(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def forward(self, obs: Tensor) -> Tensor:
        return self.encode(obs)


# --------------------------------------------------------------------------------------------
# Objective
# --------------------------------------------------------------------------------------------


def vicreg(z: Tensor) -> Tuple[Tensor, Tensor]:
    """VICReg variance (hinge at std 1) and covariance (off-diagonal squares / D) of z [N, D]."""
    n, d = z.shape
    zc = z - z.mean(0, keepdim=True)
    std = torch.sqrt(zc.square().sum(0) / (n - 1) + 1e-4)
    var = F.relu(1.0 - std).mean()
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return var, off.square().sum() / d


def losses(
    model: CnnJepa,
    target: KeypointEncoder,
    inverse: nn.Module,
    images: Tensor,
    actions: Tensor,
    args,
) -> Dict[str, Tensor]:
    """The training objective of a batch of windows (images u8 [B, K+1, C, H, W])."""
    b, k1 = images.shape[0], images.shape[1]
    k = k1 - 1
    # channels_last: the convolutions (mkldnn) run about 1.4x faster on the CPU in this layout.
    x = images.reshape(b * k1, *images.shape[2:]).contiguous(memory_format=torch.channels_last)
    x = x.float().div_(255.0)
    z_all = model.encode(x)
    d = z_all.shape[1]
    z = z_all.reshape(b, k1, d)
    with torch.no_grad():
        later = x.reshape(b, k1, *x.shape[1:])[:, 1:].reshape(b * k, *x.shape[1:])
        tgt = target(later.contiguous(memory_format=torch.channels_last)).reshape(b, k, d)
    pred_steps = model.rollout(z[:, 0], actions)
    pred = (pred_steps - tgt).square().mean()
    var, cov = vicreg(z_all)
    a_n = model.normalize_action(actions)
    a_hat = inverse(torch.cat([z[:, :-1], z[:, 1:]], dim=-1))
    inv = (a_hat - a_n).square().mean()
    total = pred + args.var_weight * var + args.cov_weight * cov + args.inverse_weight * inv
    return {"total": total, "pred": pred, "var": var, "cov": cov, "inv": inv}


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """Cosine decay from lr to 5 % of lr over `steps` (as `zplan train`)."""
    frac = step / max(1, steps)
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.mul_(decay).add_(po, alpha=1.0 - decay)


@torch.no_grad()
def val_losses(model, target, inverse, val_images, val_actions, args) -> Dict[str, float]:
    """The objective's terms on the validation windows (batches of 128, weighted by size)."""
    sums: Dict[str, float] = {}
    n = 0
    for s in range(0, val_images.shape[0], 128):
        im, ac = val_images[s : s + 128], val_actions[s : s + 128]
        for key, v in losses(model, target, inverse, im, ac, args).items():
            sums[key] = sums.get(key, 0.0) + v.item() * im.shape[0]
        n += im.shape[0]
    return {key: v / max(1, n) for key, v in sums.items()}


@torch.no_grad()
def encode_frames(model: CnnJepa, frames: Tensor) -> Tensor:
    """Latents of u8 frames [N, C, H, W], in batches."""
    out = [model.encode(frames[s : s + 512].float() / 255.0) for s in range(0, frames.shape[0], 512)]
    return torch.cat(out, 0)


def linear_probe_r2(ztr: Tensor, ytr: Tensor, zva: Tensor, yva: Tensor) -> Tuple[List[float], float]:
    """R^2 per state entry of a least-squares map [z, 1] -> y fit on (ztr, ytr), scored on (zva, yva)."""
    xtr = torch.cat([ztr, torch.ones(ztr.shape[0], 1)], 1).double()
    xva = torch.cat([zva, torch.ones(zva.shape[0], 1)], 1).double()
    w = torch.linalg.lstsq(xtr, ytr.double()).solution
    y = yva.double()
    ss_res = (y - xva @ w).square().sum(0)
    ss_tot = (y - y.mean(0, keepdim=True)).square().sum(0)
    r2 = (1.0 - ss_res / ss_tot.clamp_min(1e-12)).tolist()
    informative = [r for r, v in zip(r2, y.var(0).tolist()) if v > 1e-9]
    return r2, sum(informative) / max(1, len(informative))


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export(model: CnnJepa, out: Path, report: dict, image_shape, action_dim: int) -> None:
    """torch.jit.script + save, then reload and check the contract (shapes, rollout, bf16)."""
    model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(out), _extra_files={"zplan_train.json": json.dumps(report)})

    loaded = torch.jit.load(str(out), map_location="cpu")
    gen = torch.Generator().manual_seed(1)
    c, h, w = image_shape
    obs = torch.rand(3, c, h, w, generator=gen)
    acts = torch.rand(3, 5, action_dim, generator=gen) * 2 - 1
    with torch.no_grad():
        z = loaded.encode(obs)
        d = 2 * model.encoder.keypoints
        if list(z.shape) != [3, d] or z.dtype != torch.float32:
            raise RuntimeError(f"reloaded encode gave {z.dtype} {list(z.shape)}, expected float32 [3, {d}]")
        roll = loaded.rollout(z, acts)
        if list(roll.shape) != [3, 5, d]:
            raise RuntimeError(f"reloaded rollout gave {list(roll.shape)}, expected [3, 5, {d}]")
        zz, steps = z, []
        for t in range(5):
            zz = loaded.predict(zz, acts[:, t])
            steps.append(zz)
        if not torch.allclose(torch.stack(steps, 1), roll, atol=1e-6):
            raise RuntimeError("reloaded rollout disagrees with looped predict")
        if not (torch.isfinite(z).all() and torch.isfinite(roll).all()):
            raise RuntimeError("reloaded module gives NaN or Inf")
        # zplan's --precision bf16 casts the module and its inputs to bfloat16.
        bf = torch.jit.load(str(out), map_location="cpu")
        bf.to(torch.bfloat16)
        zb = bf.encode(obs.bfloat16())
        rb = bf.rollout(zb, acts.bfloat16())
        if zb.dtype != torch.bfloat16 or list(rb.shape) != [3, 5, d]:
            raise RuntimeError("the bfloat16 cast of the module does not run")
    print(
        f"exported {out} ({out.stat().st_size / 1024:.0f} KiB): reloaded, encode [B, {c}, {h}, {w}] -> "
        f"[B, {d}], rollout [B, H, {action_dim}] -> [B, H, {d}], rollout == looped predict, bf16 cast ok"
    )


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train a CNN JEPA (spatial soft-argmax keypoint latent) on a `zplan collect` camera "
        "dataset and export it as TorchScript for zplan (see the module docstring for details).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, help="dataset directory written by `zplan collect` (meta.json + chunk-*.safetensors)")
    p.add_argument("--out", required=True, type=Path, help="output TorchScript file (.pt); a JSON report goes next to it")
    p.add_argument("--steps", type=int, default=2400, help="optimiser steps")
    p.add_argument("--keypoints", type=int, default=1, help="keypoint maps K (latent = 2K entries)")
    p.add_argument("--batch", type=int, default=128, help="windows per batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the window sampling")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--rollout-steps", type=int, default=6, help="open-loop prediction steps per window")
    p.add_argument("--conv-widths", default="8,16", help="channels of the stride-2 3x3 convolutions")
    p.add_argument("--hidden", type=int, default=128, help="width of the predictor's two hidden layers (and the inverse head's)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (cosine decay to 5 %%)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--ema", type=float, default=0.99, help="EMA decay of the target encoder")
    p.add_argument("--var-weight", type=float, default=1.0, help="VICReg variance weight")
    p.add_argument("--cov-weight", type=float, default=0.04, help="VICReg covariance weight")
    p.add_argument("--inverse-weight", type=float, default=1.0, help="inverse-dynamics weight")
    p.add_argument("--min-std", type=float, default=0.02, help="floor of the per-pixel std of the input normalisation")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the episodes kept for validation")
    p.add_argument("--val-windows", type=int, default=512, help="validation windows (fixed sample)")
    p.add_argument("--eval-every", type=int, default=200, help="validate (and keep the best checkpoint) every N steps")
    p.add_argument("--log-every", type=int, default=100, help="print the training loss every N steps")
    p.add_argument("--time-limit-min", type=float, default=0.0, help="stop after this many minutes (0: no limit); the best checkpoint is kept")
    p.add_argument("--max-episodes", type=int, default=None, help="use only the first N episodes of the dataset")
    args = p.parse_args(argv)
    try:
        args.widths = [int(x) for x in args.conv_widths.split(",") if x.strip()]
    except ValueError:
        p.error(f"--conv-widths must be comma-separated integers, got `{args.conv_widths}`")
    checks = [
        (args.steps >= 1, "--steps must be >= 1"),
        (1 <= args.keypoints <= 256, "--keypoints must be in 1..=256"),
        (args.batch >= 2, "--batch must be >= 2"),
        (args.threads >= 1, "--threads must be >= 1"),
        (args.rollout_steps >= 1, "--rollout-steps must be >= 1"),
        (len(args.widths) >= 1 and all(w >= 1 for w in args.widths), "--conv-widths needs at least one positive width"),
        (args.hidden >= 1, "--hidden must be >= 1"),
        (args.lr > 0, "--lr must be > 0"),
        (0.0 <= args.ema < 1.0, "--ema must be in [0, 1)"),
        (0.0 < args.val_fraction < 1.0, "--val-fraction must be in (0, 1)"),
        (args.min_std > 0, "--min-std must be > 0"),
        (args.eval_every >= 1 and args.log_every >= 1, "--eval-every and --log-every must be >= 1"),
        (args.val_windows >= 2, "--val-windows must be >= 2"),
    ]
    for ok, msg in checks:
        if not ok:
            p.error(msg)
    return args


def fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (e.g. when imported by a test)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.time()

    ds = Dataset(args.data, args.max_episodes)
    k = args.rollout_steps
    if ds.steps < k:
        raise DatasetError(f"{args.data}: episodes have {ds.steps} steps, fewer than --rollout-steps {k}")
    if ds.episodes < 2:
        raise DatasetError(f"{args.data}: {ds.episodes} episode(s); at least 2 are needed for a validation split")
    n_val = min(ds.episodes - 1, max(1, round(ds.episodes * args.val_fraction)))
    n_train = ds.episodes - n_val
    print(
        f"dataset {args.data}: {ds.episodes} episodes x {ds.steps} steps, image {list(ds.image_shape)} u8 "
        f"({ds.images.numel() / 2**20:.0f} MiB), actions {ds.action_dim}, true state {ds.state_names or ds.state.shape[2]}; "
        f"train episodes 0..{n_train}, validation {n_train}..{ds.episodes} "
        f"(loaded in {time.time() - started:.1f} s)",
        flush=True,
    )

    gen = torch.Generator().manual_seed(args.seed)
    n_start = ds.steps - k + 1  # window start times 0..=T-k

    def sample(lo: int, hi: int, b: int) -> Tuple[Tensor, Tensor]:
        return torch.randint(lo, hi, (b,), generator=gen), torch.randint(0, n_start, (b,), generator=gen)

    val_images, val_actions = windows(ds, *sample(n_train, ds.episodes, args.val_windows), k)

    model = CnnJepa(ds.image_shape, ds.action_low, ds.action_high, args.widths, args.keypoints, args.hidden)
    # Input normalisation from (at most 4096) training frames.
    frames = ds.images[:n_train].reshape(-1, *ds.image_shape)
    stride = max(1, frames.shape[0] // 4096)
    model.encoder.set_norm(frames[::stride].float() / 255.0, args.min_std)
    del frames
    model.to(memory_format=torch.channels_last)  # training layout (see `losses`)
    target = copy.deepcopy(model.encoder)
    for p in target.parameters():
        p.requires_grad_(False)
    d = 2 * args.keypoints
    inverse = mlp([2 * d, args.hidden, ds.action_dim])
    params = list(model.parameters()) + list(inverse.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: convs {args.widths}, {args.keypoints} keypoint(s) -> latent {d}, predictor hidden "
        f"{args.hidden} x 2, {n_params} parameters; {args.steps} steps of {args.batch} windows of {k} actions, "
        f"{args.threads} thread(s)",
        flush=True,
    )

    # The checkpoint kept is the one with the lowest validation *objective* (prediction +
    # VICReg + inverse dynamics): the prediction error alone is smallest for a collapsed
    # latent (it is in latent units), which it would select early in training.
    initial = val_losses(model, target, inverse, val_images, val_actions, args)
    initial_val = initial["total"]
    best = {"val": math.inf, "pred": math.inf, "step": 0, "state": None}
    curve = [{"step": 0, "train": None, "val": initial_val, "val_pred": initial["pred"]}]
    print(f"step 0: val total {initial_val:.5f} pred {initial['pred']:.5f}", flush=True)
    run = {key: 0.0 for key in ("total", "pred", "var", "cov", "inv")}
    run_n = 0
    t0 = time.time()
    deadline = t0 + args.time_limit_min * 60 if args.time_limit_min > 0 else math.inf
    step = 0
    while step < args.steps:
        model.train()
        for g in opt.param_groups:
            g["lr"] = cosine_lr(args.lr, step, args.steps)
        images, actions = windows(ds, *sample(0, n_train, args.batch), k)
        ls = losses(model, target, inverse, images, actions, args)
        opt.zero_grad(set_to_none=True)
        ls["total"].backward()
        opt.step()
        ema_update(target, model.encoder, args.ema)
        lv = ls["total"].item()
        if not math.isfinite(lv):
            raise RuntimeError(f"training diverged at step {step} (loss {lv}); lower --lr")
        for key in run:
            run[key] += ls[key].item()
        run_n += 1
        step += 1
        out_of_time = time.time() >= deadline
        if step % args.log_every == 0 or step == args.steps:
            el = time.time() - t0
            eta = el / step * (args.steps - step)
            parts = " ".join(f"{key} {run[key] / run_n:.4f}" for key in run)
            print(f"step {step}/{args.steps}: {parts}  [{fmt_time(el)} elapsed, eta {fmt_time(eta)}]", flush=True)
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            vl = val_losses(model, target, inverse, val_images, val_actions, args)
            v = vl["total"]
            curve.append({"step": step, "train": run["total"] / max(1, run_n), "val": v, "val_pred": vl["pred"]})
            mark = ""
            if v < best["val"]:
                best = {"val": v, "pred": vl["pred"], "step": step, "state": copy.deepcopy(model.state_dict())}
                mark = " (best)"
            parts = " ".join(f"{key} {val:.5f}" for key, val in vl.items())
            print(f"step {step}: val {parts}{mark}", flush=True)
            run = {key: 0.0 for key in run}
            run_n = 0
        if out_of_time:
            print(f"time limit of {args.time_limit_min} min reached at step {step}", flush=True)
            break
    train_s = time.time() - t0
    model.load_state_dict(best["state"])
    model.eval()

    # Latent health on the best checkpoint: per-dimension std on validation frames, and a linear
    # probe latent -> true state fit on training frames, scored on validation frames.
    g2 = torch.Generator().manual_seed(args.seed + 1)
    def frames_of(lo: int, hi: int, n: int) -> Tuple[Tensor, Tensor]:
        e = torch.randint(lo, hi, (n,), generator=g2)
        t = torch.randint(0, ds.steps + 1, (n,), generator=g2)
        return ds.images[e, t], ds.state[e, t]
    ftr, ytr = frames_of(0, n_train, 2048)
    fva, yva = frames_of(n_train, ds.episodes, 1024)
    ztr, zva = encode_frames(model, ftr), encode_frames(model, fva)
    std = zva.std(0).tolist()
    r2_per, r2 = linear_probe_r2(ztr, ytr, zva, yva)
    names = ds.state_names if len(ds.state_names) == len(r2_per) else [str(i) for i in range(len(r2_per))]
    print(f"best validation loss {best['val']:.5f} (prediction {best['pred']:.5f}) at step {best['step']} "
          f"(initial {initial_val:.5f}); "
          f"{step} steps in {fmt_time(train_s)} ({train_s / max(1, step):.3f} s/step)")
    print("latent std per dimension (validation frames): " + ", ".join(f"{s:.3f}" for s in std))
    print(f"linear probe R^2 latent -> true state (validation frames): {r2:.4f} ("
          + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, r2_per)) + ")")
    report = {
        "script": "models/python/train_cnn_jepa.py",
        "argv": sys.argv[1:],
        "config": {key: (str(v) if isinstance(v, Path) else v) for key, v in vars(args).items()},
        "dataset": {"episodes": ds.episodes, "steps": ds.steps, "train_episodes": n_train,
                    "val_episodes": n_val, "collect": ds.meta.get("collect")},
        "torch": torch.__version__,
        "parameters": n_params,
        "steps": step,
        "train_seconds": train_s,
        "initial_val_loss": initial_val,
        "best_val_loss": best["val"],
        "best_val_pred_loss": best["pred"],
        "best_step": best["step"],
        "latent_std": std,
        "probe_r2": r2,
        "probe_r2_per_field": dict(zip(names, r2_per)),
        "curve": curve,
    }
    export(model, args.out, report, ds.image_shape, ds.action_dim)
    report_path = args.out.with_suffix(".train.json") if args.out.suffix else Path(str(args.out) + ".train.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report {report_path}; total {fmt_time(time.time() - started)}")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
