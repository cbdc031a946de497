//! `zplan train` on camera datasets: a pixel JEPA (CNN image encoder, proprio MLP, residual
//! predictor) trained from chunked datasets with bounded memory.
//!
//! The objective is the state trainer's ([`crate::train`]): multi-step latent prediction
//! against an EMA target encoder, VICReg variance/covariance on the online latents, and
//! inverse dynamics. What differs is the data path: chunks are visited one at a time in a
//! seeded order (each visit draws about one pass of its training windows), so memory holds one
//! chunk plus a fixed validation sample, whatever the dataset's size. Validation episodes are
//! the last `val_fraction` of the episodes (episodes are independent draws of the collection
//! seeds). Latent health probes the latent against the true simulator state stored as labels.

use crate::collect::DatasetMeta;
use crate::dataset::{read_chunk, Chunk, ChunkInfo};
use crate::train::{
    checkpoint_path, cosine_lr, cross_correlation, episode_split, finish, health_of,
    jepa_objective, progress_bar, Losses, TrainConfig, TrainReport,
};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use zplan_models::jepa::{ImageHead, JepaConfig, JepaNets, ObsNorm, TargetEncoder};
use zplan_obs::{ObsSpec, IMAGE, PROPRIO};
use zplan_sim::ScenarioConfig;

/// Validation windows kept in memory.
const VAL_WINDOWS: usize = 512;
/// Floor of the per-pixel image std (in `[0, 1]` units) in the input normalisation: pixels
/// that never change in the data are scaled by at most 1 / 0.05.
const IMAGE_MIN_STD: f64 = 0.05;

/// A batch of windows: images `[B, K+1, C, H, W]` (u8), proprio `[B, K+1, P]`, actions
/// `[B, K, A]`, true states of every frame `[B, K+1, S]`.
struct Windows {
    image: Tensor,
    proprio: Tensor,
    actions: Tensor,
    state: Tensor,
}

impl Windows {
    fn len(&self) -> i64 {
        self.image.size()[0]
    }

    fn narrow(&self, start: i64, n: i64) -> Result<Windows> {
        Ok(Windows {
            image: self.image.f_narrow(0, start, n)?,
            proprio: self.proprio.f_narrow(0, start, n)?,
            actions: self.actions.f_narrow(0, start, n)?,
            state: self.state.f_narrow(0, start, n)?,
        })
    }
}

/// The dataset's description and where its episodes are.
struct Source<'a> {
    dir: &'a Path,
    meta: &'a DatasetMeta,
    spec: ObsSpec,
    state_dim: usize,
    action_dim: usize,
}

impl Source<'_> {
    fn chunk(&self, info: &ChunkInfo) -> Result<Chunk> {
        read_chunk(
            self.dir,
            info,
            &self.spec,
            self.state_dim,
            self.action_dim,
            self.meta.steps as usize,
        )
    }

    /// Windows of `k` steps starting at `(episode in chunk, t)`.
    fn gather(&self, chunk: &Chunk, starts: &[(i64, i64)], k: i64) -> Result<Windows> {
        let b = starts.len() as i64;
        let ep = Tensor::from_slice(&starts.iter().map(|s| s.0).collect::<Vec<_>>());
        let t0 = Tensor::from_slice(&starts.iter().map(|s| s.1).collect::<Vec<_>>());
        let tt = t0.unsqueeze(1) + Tensor::arange(k + 1, (Kind::Int64, Device::Cpu)).unsqueeze(0);
        let e2 = ep.unsqueeze(1).expand([b, k + 1], false);
        let at = |t: &Tensor, e: &Tensor, tt: &Tensor| -> Result<Tensor> {
            Ok(t.f_index(&[Some(e.shallow_clone()), Some(tt.shallow_clone())])?)
        };
        let image = at(chunk.field(IMAGE).context("image field")?, &e2, &tt)?;
        let proprio = match chunk.field(PROPRIO) {
            Some(p) => at(p, &e2, &tt)?,
            None => Tensor::zeros([b, k + 1, 0], (Kind::Float, Device::Cpu)),
        };
        let state = at(&chunk.state, &e2, &tt)?;
        let actions = at(
            &chunk.actions,
            &e2.f_narrow(1, 0, k)?,
            &tt.f_narrow(1, 0, k)?,
        )?;
        Ok(Windows {
            image,
            proprio,
            actions,
            state,
        })
    }
}

fn batch_loss(
    nets: &JepaNets,
    target: &TargetEncoder,
    w: &Windows,
    cfg: &TrainConfig,
    action_scale: &(Tensor, Tensor),
    device: Device,
) -> Result<Losses> {
    let s = w.image.size();
    let (b, k1) = (s[0], s[1]);
    let k = k1 - 1;
    let img = w.image.f_to_device(device)?;
    let prop = w.proprio.f_to_device(device)?;
    let frames = |t: &Tensor, from: i64, n: i64| -> Result<Tensor> {
        let mut shape = vec![b * n];
        shape.extend_from_slice(&t.size()[2..]);
        Ok(t.f_narrow(1, from, n)?.f_reshape(shape.as_slice())?)
    };
    let (all, spread) =
        nets.encode_images_with_spread(&frames(&img, 0, k1)?, &frames(&prop, 0, k1)?)?;
    let latent = all.size()[1];
    let z_all = all.f_reshape([b, k1, latent])?;
    let tgt = target
        .encode_images(&frames(&img, 1, k)?, &frames(&prop, 1, k)?)?
        .f_reshape([b, k, latent])?;
    let actions = w.actions.f_to_device(device)?;
    let mut losses = jepa_objective(nets, &all, &z_all, &tgt, &actions, cfg, action_scale)?;
    if let (true, Some(spread)) = (cfg.keypoint_spread > 0.0, spread) {
        let excess = (spread - cfg.keypoint_spread)
            .f_relu()?
            .f_mean(Kind::Float)?;
        losses.total = losses.total.f_add(&(excess * cfg.keypoint_spread_weight))?;
    }
    if cfg.proprio_decorrelation > 0.0 && prop.size()[2] > 0 {
        let points = all.f_narrow(1, 0, 2 * cfg.keypoints)?;
        let corr = cross_correlation(&points, &frames(&prop, 0, k1)?)?;
        losses.total = losses.total.f_add(&(corr * cfg.proprio_decorrelation))?;
    }
    Ok(losses)
}

fn eval_loss(
    nets: &JepaNets,
    target: &TargetEncoder,
    val: &Windows,
    cfg: &TrainConfig,
    scale: &(Tensor, Tensor),
    device: Device,
) -> Result<f64> {
    let _g = tch::no_grad_guard();
    let (mut sum, mut n) = (0.0, 0.0);
    let mut start = 0;
    while start < val.len() {
        let m = 128.min(val.len() - start);
        let l = batch_loss(nets, target, &val.narrow(start, m)?, cfg, scale, device)?;
        // The whole objective (prediction + VICReg + inverse dynamics), as trained: the
        // prediction error alone is not comparable across steps (VICReg changes the latent's
        // scale) and rewards latents that move little or encode only what is static.
        sum += l.total.double_value(&[]) * m as f64;
        n += m as f64;
        start += m;
    }
    Ok(sum / n.max(1.0))
}

/// True states `[N, S]` rewritten into what the camera image determines, the labels of a
/// pixel model's latent probe ([`ScenarioConfig::identifiable_state`]: a square push block's
/// yaw as `(cos 4θ, sin 4θ)`, since its image repeats every quarter turn).
pub(crate) fn identifiable_labels(y: &Tensor, scenario: &ScenarioConfig) -> Result<Tensor> {
    let size = y.size();
    let mut rows = Vec::<f32>::try_from(y.f_to_kind(Kind::Float)?.f_reshape([-1])?)?;
    let width = size.last().copied().unwrap_or(1).max(1) as usize;
    for row in rows.chunks_mut(width) {
        scenario.identifiable_state(row);
    }
    Ok(Tensor::f_from_slice(&rows)?.f_reshape(size.as_slice())?)
}

/// Latents of the first frame of every window, and that frame's true state.
fn first_frames(nets: &JepaNets, w: &Windows, device: Device) -> Result<(Tensor, Tensor)> {
    let _g = tch::no_grad_guard();
    let mut zs = Vec::new();
    let mut start = 0;
    while start < w.len() {
        let m = 256.min(w.len() - start);
        let part = w.narrow(start, m)?;
        let img = part.image.f_select(1, 0)?.f_to_device(device)?;
        let prop = part.proprio.f_select(1, 0)?.f_to_device(device)?;
        zs.push(nets.encode_images(&img, &prop)?);
        start += m;
    }
    Ok((Tensor::f_cat(&zs, 0)?, w.state.f_select(1, 0)?))
}

/// Trains a pixel JEPA on the chunked camera dataset in `dir` (see the module docs); outputs
/// as [`crate::train::train`].
pub fn train_pixels(
    dir: &Path,
    meta: &DatasetMeta,
    cfg: &TrainConfig,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<TrainReport> {
    cfg.validate()?;
    let started = Instant::now();
    let spec = meta.scenario.spec();
    let obs = meta
        .observation
        .clone()
        .context("the dataset has no observation spec")?;
    let image = obs.field(IMAGE).context("no image field")?.clone();
    let proprio_dim = obs.field(PROPRIO).map_or(0, |f| f.numel() as i64);
    // With a keypoint head the latent size follows from the keypoints; the recorded training
    // config says so.
    let mut cfg = cfg.clone();
    if cfg.keypoints > 0 {
        cfg.latent_dim = 2 * cfg.keypoints * if cfg.keypoint_moment > 0 { 2 } else { 1 }
            + cfg.keypoint_context
            + if proprio_dim > 0 {
                cfg.proprio_latent_dim
            } else {
                0
            };
    }
    let cfg = &cfg;
    if proprio_dim > cfg.proprio_latent_dim && cfg.enc_layers == 0 {
        tracing::warn!(
            "--proprio-latent-dim {} is below the proprio field's {proprio_dim} entries with a \
             linear proprio encoder (--enc-layers 0): the latent cannot hold the whole proprio \
             state (reach_pixels lost its last centimetres of precision that way); give \
             --proprio-latent-dim {proprio_dim} or more",
            cfg.proprio_latent_dim
        );
    }
    let src = Source {
        dir,
        meta,
        spec: obs.clone(),
        state_dim: spec.state_dim(),
        action_dim: spec.action_dim(),
    };
    let k = cfg.rollout_steps as i64;
    let steps_per_ep = meta.steps as i64;
    let (n_ep, first_val) = episode_split(meta, cfg)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);

    // Validation windows from the chunks holding the validation episodes.
    let mut val_parts = Vec::new();
    let per_chunk_val = VAL_WINDOWS.div_ceil(meta.chunks.len().max(1));
    for c in &meta.chunks {
        let lo = (first_val - c.first_episode as i64).max(0);
        let hi = c.episodes as i64;
        if lo >= hi {
            continue;
        }
        let chunk = src.chunk(c)?;
        let starts: Vec<(i64, i64)> = (0..per_chunk_val.max(VAL_WINDOWS / 4))
            .map(|_| {
                (
                    rng.random_range(lo..hi),
                    rng.random_range(0..=steps_per_ep - k),
                )
            })
            .collect();
        val_parts.push(src.gather(&chunk, &starts, k)?);
    }
    let cat = |f: &dyn Fn(&Windows) -> &Tensor| -> Result<Tensor> {
        Ok(Tensor::f_cat(
            &val_parts.iter().map(f).collect::<Vec<_>>(),
            0,
        )?)
    };
    let val = Windows {
        image: cat(&|w| &w.image)?,
        proprio: cat(&|w| &w.proprio)?,
        actions: cat(&|w| &w.actions)?,
        state: cat(&|w| &w.state)?,
    };
    drop(val_parts);

    // Training chunks: those with training episodes, with the range of them.
    let train_chunks: Vec<(ChunkInfo, i64)> = meta
        .chunks
        .iter()
        .filter_map(|c| {
            let n = (first_val - c.first_episode as i64).clamp(0, c.episodes as i64);
            (n > 0).then(|| (c.clone(), n))
        })
        .collect();
    if train_chunks.is_empty() {
        bail!("no training episodes left after the validation split");
    }

    let (c, h, w) = (
        image.shape[0] as i64,
        image.shape[1] as i64,
        image.shape[2] as i64,
    );
    let mut jcfg = JepaConfig::pixels(c, h, w, proprio_dim, spec.action_dim() as i64);
    jcfg.latent_dim = cfg.latent_dim;
    jcfg.pred_hidden = cfg.hidden;
    jcfg.pred_layers = cfg.layers;
    if let Some(im) = jcfg.image.as_mut() {
        if !cfg.conv_widths.is_empty() {
            im.widths = cfg.conv_widths.clone();
        }
        im.strides = cfg.conv_strides.clone();
        im.layer_norm = cfg.image_layer_norm;
        if cfg.keypoints > 0 {
            im.head = ImageHead::Keypoints {
                count: cfg.keypoints,
                context: cfg.keypoint_context,
                moment: cfg.keypoint_moment,
                gain: cfg.keypoint_gain,
                radius: cfg.keypoint_moment_radius,
                mask: cfg.keypoint_mask,
            };
        }
    }
    if proprio_dim > 0 {
        jcfg.proprio_latent_dim = cfg.proprio_latent_dim;
        jcfg.enc_hidden = cfg.hidden.min(128);
        jcfg.enc_layers = cfg.enc_layers;
    }
    if cfg.keypoints > 0 {
        jcfg.latent_dim = cfg.latent_dim;
    }
    if cfg.inverse_weight > 0.0 {
        jcfg.inverse_hidden = cfg.hidden;
        jcfg.inverse_layers = 1;
    }
    jcfg.seed = cfg.seed;
    let mut nets = JepaNets::new(jcfg, device)?;
    // Input normalisation (image statistics per pixel or channel, proprio mean and std) from the
    // training episodes of the first training chunk.
    let (info, n) = &train_chunks[0];
    let chunk = src.chunk(info)?;
    {
        let frames = chunk
            .field(IMAGE)
            .context("image field")?
            .f_narrow(0, 0, *n)?
            .f_reshape([-1, c, h, w])?;
        let total = frames.size()[0];
        let stride = (total / 4096).max(1);
        let sample = frames
            .f_slice(0, 0, total, stride)?
            .f_to_kind(Kind::Float)?
            / 255.0;
        nets.encoder
            .image_mut()
            .context("a pixel JEPA has an image encoder")?
            .set_norm_from(&sample, IMAGE_MIN_STD, cfg.image_norm)?;
    }
    if proprio_dim > 0 {
        let p = chunk
            .field(PROPRIO)
            .context("proprio field")?
            .f_narrow(0, 0, *n)?
            .f_reshape([-1, proprio_dim])?;
        nets.set_obs_norm(ObsNorm::from_data(&p)?)?;
    }
    nets.scenario = Some(serde_json::to_value(&meta.scenario)?);
    let low = Tensor::from_slice(&meta.action_low).f_to_device(device)?;
    let high = Tensor::from_slice(&meta.action_high).f_to_device(device)?;
    let scale = (
        ((&low + &high) * 0.5),
        ((&high - &low) * 0.5).f_clamp_min(1e-6)?,
    );
    let mut target = nets.target_encoder()?;
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&nets.vs, cfg.lr)?;

    let ckpt = checkpoint_path(out);
    let initial_val = eval_loss(&nets, &target, &val, cfg, &scale, device)?;
    let mut best = (f64::INFINITY, 0usize);
    let mut curve = vec![(0usize, f64::NAN, initial_val)];
    let bar = progress_bar(cfg.steps, progress);
    let (mut running, mut running_n, mut step) = (0.0, 0.0, 0usize);
    let deadline = started + std::time::Duration::from_secs_f64(cfg.time_limit_min * 60.0);
    let mut order: Vec<usize> = Vec::new();
    let mut last_chunk: Option<(Chunk, i64)> = None;
    'train: while step < cfg.steps {
        if order.is_empty() {
            order = (0..train_chunks.len()).collect();
            order.shuffle(&mut rng);
        }
        let (info, n) = &train_chunks[order.pop().unwrap_or(0)];
        let chunk = src.chunk(info)?;
        let windows = n * (steps_per_ep - k + 1);
        let visit = ((windows as usize).div_ceil(cfg.batch)).max(1);
        for _ in 0..visit {
            if step >= cfg.steps {
                break;
            }
            let starts: Vec<(i64, i64)> = (0..cfg.batch)
                .map(|_| {
                    (
                        rng.random_range(0..*n),
                        rng.random_range(0..=steps_per_ep - k),
                    )
                })
                .collect();
            let batch = src.gather(&chunk, &starts, k)?;
            opt.set_lr(cosine_lr(cfg.lr, step, cfg.steps));
            let l = batch_loss(&nets, &target, &batch, cfg, &scale, device)?;
            opt.zero_grad();
            l.total.f_backward()?;
            opt.step();
            target.ema_update(&nets, cfg.ema)?;
            let lv = l.total.double_value(&[]);
            if !lv.is_finite() {
                bail!("training diverged at step {step} (loss {lv}); lower --lr");
            }
            running += lv;
            running_n += 1.0;
            step += 1;
            bar.inc(1);
            if step % cfg.eval_every == 0 || step == cfg.steps || Instant::now() >= deadline {
                let v = eval_loss(&nets, &target, &val, cfg, &scale, device)?;
                curve.push((step, running / running_n, v));
                bar.set_message(format!("train {:.4} val {:.4}", running / running_n, v));
                if bar.is_hidden() {
                    // No terminal (a log file, CI): one line per evaluation instead of the bar.
                    let spent = started.elapsed().as_secs_f64();
                    let eta = spent / step as f64 * (cfg.steps - step) as f64;
                    eprintln!(
                        "step {step}/{} train {:.4} val {v:.5} ({:.0} s, ETA {:.0} s)",
                        cfg.steps,
                        running / running_n,
                        spent,
                        eta
                    );
                }
                running = 0.0;
                running_n = 0.0;
                if v < best.0 {
                    best = (v, step);
                    nets.training =
                        serde_json::json!({ "step": step, "val_loss": v, "config": cfg });
                    nets.save(&ckpt)?;
                }
                if Instant::now() >= deadline {
                    tracing::warn!("time limit reached at step {step}");
                    last_chunk = Some((chunk, *n));
                    break 'train;
                }
            }
        }
        last_chunk = Some((chunk, *n));
    }
    bar.finish_and_clear();
    let best_nets = JepaNets::load(&ckpt, device)?;
    // Latent health: latent std on validation frames; a linear probe latent → true state,
    // fit on training frames of the last chunk visited and scored on validation frames.
    let (chunk, n) = last_chunk.context("no training step ran")?;
    let probe_starts: Vec<(i64, i64)> = (0..1024)
        .map(|_| {
            (
                rng.random_range(0..n),
                rng.random_range(0..=steps_per_ep - k),
            )
        })
        .collect();
    let probe = src.gather(&chunk, &probe_starts, k)?;
    let (ztr, ytr) = first_frames(&best_nets, &probe, device)?;
    let (zva, yva) = first_frames(&best_nets, &val, device)?;
    let (ytr, yva) = (
        identifiable_labels(&ytr, &meta.scenario)?,
        identifiable_labels(&yva, &meta.scenario)?,
    );
    let health = health_of(&ztr, &ytr, &zva, &yva)?;
    let report = TrainReport {
        steps: step,
        best_val_loss: best.0,
        best_step: best.1,
        initial_val_loss: initial_val,
        curve,
        health,
        seconds: started.elapsed().as_secs_f64(),
        model_path: out.to_path_buf(),
    };
    let dataset =
        serde_json::json!({ "episodes": n_ep, "steps": steps_per_ep, "collect": meta.collect });
    finish(best_nets, &report, cfg, dataset, out)?;
    Ok(report)
}
