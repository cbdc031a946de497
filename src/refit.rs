//! `zplan train --refit-predictor MODEL`: retrains the predictor of a trained pixel JEPA on
//! its frozen latents, with transitions sampled in proportion to how badly they are predicted.
//!
//! A pixel JEPA's encoder and predictor are trained together, and the predictor's loss is an
//! average over windows: transitions that matter for planning but are rare in the data (the
//! ball meeting a wall beside a door, the pusher meeting the block) weigh little in it. With
//! the encoder fixed, every frame of the dataset is encoded once (a few floats per frame, so
//! the whole dataset's latents fit in memory whatever its size), and the predictor then trains
//! on latent windows only: thousands of steps a minute on one core instead of a few per
//! second. Half of each batch is drawn uniformly, half in proportion to each window's
//! prediction loss raised to `priority`, recomputed every `refresh` steps, as prioritised
//! replay does. Validation is on the held-out episodes, uniformly.
//!
//! The encoder (and its normalisation, inverse head and sidecar) is copied unchanged: plans
//! toward a goal image see the same latents as before. The predictor either continues from
//! the model's own weights, or, when `--hidden` or `--layers` differs from the model's,
//! starts fresh at the new size.

use crate::collect::DatasetMeta;
use crate::dataset::read_chunk;
use crate::train::{
    checkpoint_path, cosine_lr, episode_split, finish, health_of, progress_bar, TrainConfig,
    TrainReport,
};
use crate::train_pixels::identifiable_labels;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use zplan_models::jepa::JepaNets;
use zplan_obs::{IMAGE, PROPRIO};

/// Frames encoded per batch.
const ENCODE_BATCH: i64 = 512;
/// Windows scored per batch when priorities are refreshed.
const SCORE_BATCH: i64 = 16384;

/// What the refit needs beyond the training config.
#[derive(Debug, Clone)]
pub struct RefitOptions {
    /// The trained pixel JEPA whose encoder is kept.
    pub base: std::path::PathBuf,
    /// Exponent of the prioritised half of each batch (0: the whole batch uniform).
    pub priority: f64,
    /// Steps between recomputations of every window's loss for the prioritised draws.
    pub refresh: usize,
    /// Predictor hidden width; `None` or the model's own keeps (and continues) its predictor.
    pub hidden: Option<i64>,
    /// Predictor hidden layers; as `hidden`.
    pub layers: Option<usize>,
    /// Weigh each latent entry's prediction error by the inverse of its variance over the
    /// training frames (the loss in standardised units). Without it the loss weighs entries
    /// by their raw scale: a proprio latent of std 1 beside image keypoints of std 0.15 takes
    /// 40× the keypoints' share, and the predictor learns the agent's own (easy) motion
    /// before the body it pushes.
    pub normalize: bool,
    /// Train the predictor in standardised latent coordinates: `z_n = (z - mean) / std` per
    /// entry over the training frames, `z_n' = z_n + f(z_n, a)`, the loss the plain mean
    /// square in those units (so it implies `normalize`). The affine maps are folded into the
    /// MLP's first and last layers whenever weights are saved ([`reparameterize`]): the saved
    /// predictor computes `z' = z + std * f((z - mean) / std, a)` in raw units, the same
    /// function, and loads like any other. Adam is not invariant to this rescaling: with
    /// entries of std 0.15 beside entries of std 1 the raw parameterisation trains the small
    /// entries' input weights slowly, and the predictor blurs the block's contacts.
    pub standardize: bool,
    /// Control steps per predictor step (`JepaConfig::frameskip`); `None` keeps the model's
    /// own. With `k > 1` each episode is cut into `k` phases (frames `o, o + k, ...`), each
    /// block's action the mean of its `k` actions, and the predictor learns `z_t → z_{t+k}`.
    pub frameskip: Option<usize>,
}

/// Per-entry `(mean, std)` `[L]` of latents `[N, T+1, L]` (std floored at 1e-3).
fn latent_moments(z: &Tensor) -> Result<(Tensor, Tensor)> {
    let l = z.size()[2];
    let flat = z.f_reshape([-1, l])?;
    Ok((
        flat.f_mean_dim(0, false, Kind::Float)?,
        flat.f_std_dim(0, false, false)?.f_clamp_min(1e-3)?,
    ))
}

/// Rewrites the predictor's first and last linear layers between the raw and the
/// standardised parameterisation of [`RefitOptions::standardize`], in place. With `W1 = [Wz,
/// Wa]`, `b1` the first layer and `WL`, `bL` the last, raw from standardised is `Wz / std`
/// (per input column), `b1 - Wz (mean / std)`, `std * WL` and `std * bL` (per output row),
/// so that `std * f_n((z - mean) / std, a) = f_raw(z, a)` exactly (hidden layers, layer
/// norms and activations are untouched); `to_raw = false` is the inverse.
fn reparameterize(nets: &JepaNets, mean: &Tensor, std: &Tensor, to_raw: bool) -> Result<()> {
    let _g = tch::no_grad_guard();
    let vars = nets.vs.variables();
    let last = (0..)
        .take_while(|i| vars.contains_key(&format!("predictor.l{i}.weight")))
        .last()
        .context("the predictor has no layers")?;
    let get = |name: String| {
        vars.get(&name)
            .map(Tensor::shallow_clone)
            .with_context(|| format!("no predictor tensor `{name}`"))
    };
    let (mut w1, mut b1) = (
        get("predictor.l0.weight".into())?,
        get("predictor.l0.bias".into())?,
    );
    let l = mean.size()[0];
    let scale_in = |w1: &mut Tensor, b1: &mut Tensor| -> Result<()> {
        let mut wz = w1.f_narrow(1, 0, l)?;
        if to_raw {
            let shift = wz.f_matmul(&(mean / std))?;
            let _ = b1.f_sub_(&shift)?;
            wz.f_copy_(&(&wz / std))?;
        } else {
            let shift = wz.f_matmul(mean)?;
            let _ = b1.f_add_(&shift)?;
            wz.f_copy_(&(&wz * std))?;
        }
        Ok(())
    };
    let scale_out = |wl: &mut Tensor, bl: &mut Tensor| -> Result<()> {
        let s = if to_raw {
            std.shallow_clone()
        } else {
            std.f_reciprocal()?
        };
        let _ = wl.f_mul_(&s.f_unsqueeze(1)?)?;
        let _ = bl.f_mul_(&s)?;
        Ok(())
    };
    let (mut wl, mut bl) = (
        get(format!("predictor.l{last}.weight"))?,
        get(format!("predictor.l{last}.bias"))?,
    );
    // The two maps commute (columns of the first layer, rows of the last), also when the
    // predictor is a single linear layer.
    scale_in(&mut w1, &mut b1)?;
    scale_out(&mut wl, &mut bl)?;
    Ok(())
}

/// Saves `nets` with a standardised predictor folded back to raw units (`moments`), leaving
/// the training weights exactly as they were.
fn save_raw(nets: &JepaNets, moments: Option<&(Tensor, Tensor)>, path: &Path) -> Result<()> {
    let Some((mean, std)) = moments else {
        nets.save(path)?;
        return Ok(());
    };
    let _g = tch::no_grad_guard();
    let saved: Vec<(Tensor, Tensor)> = nets
        .vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("predictor."))
        .map(|(_, t)| {
            let copy = t.f_detach_copy()?;
            Ok((t, copy))
        })
        .collect::<Result<_>>()?;
    reparameterize(nets, mean, std, true)?;
    let result = nets.save(path);
    for (mut t, copy) in saved {
        t.f_copy_(&copy)?;
    }
    Ok(result?)
}

/// Every frame's latent `[N, T+1, L]`, action `[N, T, A]` and true state `[N, T+1, S]`, and
/// the weight `[L]` of each latent entry's squared error (`None`: all 1).
struct Encoded {
    z: Tensor,
    actions: Tensor,
    state: Tensor,
    weight: Option<Tensor>,
}

impl Encoded {
    /// The episodes `[N, T+1, ..]` seen every `k` steps: `k` phases per episode (frames `o, o
    /// + k, ...` for `o` in `0..k`, each `(T + 1 - k) / k` blocks long), episode `i`'s phases
    /// at `i * k .. (i + 1) * k` (so an episode split stays an episode split), each block's
    /// action the mean of its `k` actions.
    fn frameskip(self, k: i64) -> Result<Encoded> {
        if k == 1 {
            return Ok(self);
        }
        let t = self.actions.size()[1];
        let blocks = (t + 1 - k) / k;
        let (mut z, mut a, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for o in 0..k {
            let frames = |x: &Tensor| x.f_slice(1, o, o + k * blocks + 1, k);
            z.push(frames(&self.z)?);
            s.push(frames(&self.state)?);
            let acts = self.actions.f_narrow(1, o, k * blocks)?;
            let sz = acts.size();
            a.push(
                acts.f_reshape([sz[0], blocks, k, sz[2]])?
                    .f_mean_dim(2, false, Kind::Float)?,
            );
        }
        let merge = |parts: Vec<Tensor>| -> Result<Tensor> {
            let st = Tensor::f_stack(&parts, 1)?;
            let mut sz = st.size();
            let n = sz.remove(0) * k;
            sz[0] = n;
            Ok(st.f_reshape(sz.as_slice())?)
        };
        Ok(Encoded {
            z: merge(z)?,
            actions: merge(a)?,
            state: merge(s)?,
            weight: self.weight,
        })
    }
}

/// Encodes every episode of the dataset with the (frozen) encoder of `nets`.
fn encode_dataset(
    dir: &Path,
    meta: &DatasetMeta,
    nets: &JepaNets,
    device: Device,
) -> Result<Encoded> {
    let _g = tch::no_grad_guard();
    let spec = meta.scenario.spec();
    let obs = meta
        .observation
        .clone()
        .context("the dataset has no observation spec")?;
    let (mut zs, mut acts, mut states) = (Vec::new(), Vec::new(), Vec::new());
    for info in &meta.chunks {
        let chunk = read_chunk(
            dir,
            info,
            &obs,
            spec.state_dim(),
            spec.action_dim(),
            meta.steps as usize,
        )?;
        let image = chunk.field(IMAGE).context("image field")?;
        let s = image.size();
        let (n, t1) = (s[0], s[1]);
        let frames = image.f_reshape([n * t1, s[2], s[3], s[4]])?;
        let prop = match chunk.field(PROPRIO) {
            Some(p) => p.f_reshape([n * t1, -1])?,
            None => Tensor::zeros([n * t1, 0], (Kind::Float, Device::Cpu)),
        };
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n * t1 {
            let m = ENCODE_BATCH.min(n * t1 - start);
            parts.push(nets.encode_images(
                &frames.f_narrow(0, start, m)?.f_to_device(device)?,
                &prop.f_narrow(0, start, m)?.f_to_device(device)?,
            )?);
            start += m;
        }
        let z = Tensor::f_cat(&parts, 0)?;
        let l = z.size()[1];
        zs.push(z.f_reshape([n, t1, l])?);
        acts.push(chunk.actions.f_to_device(device)?);
        states.push(chunk.state.shallow_clone());
    }
    Ok(Encoded {
        z: Tensor::f_cat(&zs, 0)?,
        actions: Tensor::f_cat(&acts, 0)?,
        state: Tensor::f_cat(&states, 0)?,
        weight: None,
    })
}

/// Per-window prediction loss `[B]` of the windows starting at `(episode, t)` (`ep`, `t0`:
/// int64 `[B]`): the mean squared latent error over a `k`-step open-loop rollout.
fn window_losses(
    nets: &JepaNets,
    enc: &Encoded,
    ep: &Tensor,
    t0: &Tensor,
    k: i64,
) -> Result<Tensor> {
    let device = enc.z.device();
    let (ep, t0) = (ep.f_to_device(device)?, t0.f_to_device(device)?);
    let mut z = enc
        .z
        .f_index(&[Some(ep.shallow_clone()), Some(t0.shallow_clone())])?;
    let mut sum = Tensor::zeros([ep.size()[0]], (Kind::Float, device));
    for s in 0..k {
        let a = enc
            .actions
            .f_index(&[Some(ep.shallow_clone()), Some(&t0 + s)])?;
        z = nets.predict(&z, &a)?;
        let target = enc
            .z
            .f_index(&[Some(ep.shallow_clone()), Some(&t0 + (s + 1))])?;
        let mut err = (&z - target).f_square()?;
        if let Some(w) = &enc.weight {
            err = err.f_mul(w)?;
        }
        sum = sum.f_add(&err.f_mean_dim(-1, false, Kind::Float)?)?;
    }
    Ok(sum / k as f64)
}

/// `1 / var` of each latent entry over frames `[N, T+1, L]` (variance floored at 1e-6: an
/// entry that never changes is not blown up).
fn inverse_variance(z: &Tensor) -> Result<Tensor> {
    let l = z.size()[2];
    Ok(z.f_reshape([-1, l])?
        .f_var_dim(0, false, false)?
        .f_clamp_min(1e-6)?
        .f_reciprocal()?)
}

/// The windows `(episode, t)` of episodes `episodes`, `t` in `0..=steps - k`, as two int64
/// tensors.
fn windows(episodes: std::ops::Range<i64>, steps: i64, k: i64) -> (Tensor, Tensor) {
    let per = steps - k + 1;
    let n = episodes.end - episodes.start;
    let idx = Tensor::arange(n * per, (Kind::Int64, Device::Cpu));
    (
        idx.divide_scalar_mode(per, "floor") + episodes.start,
        idx.remainder(per),
    )
}

/// Mean loss over windows `(ep, t0)`, in batches, without gradients.
fn scored(nets: &JepaNets, enc: &Encoded, ep: &Tensor, t0: &Tensor, k: i64) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let n = ep.size()[0];
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let m = SCORE_BATCH.min(n - start);
        parts.push(window_losses(
            nets,
            enc,
            &ep.f_narrow(0, start, m)?,
            &t0.f_narrow(0, start, m)?,
            k,
        )?);
        start += m;
    }
    Ok(Tensor::f_cat(&parts, 0)?.f_to_device(Device::Cpu)?)
}

/// The base model's networks with the predictor kept, or re-created at a new size, and the
/// base model's training record.
fn start_from(
    opts: &RefitOptions,
    seed: u64,
    device: Device,
) -> Result<(JepaNets, serde_json::Value)> {
    let base = JepaNets::load(&opts.base, device)
        .with_context(|| format!("--refit-predictor {}", opts.base.display()))?;
    if base.config.image.is_none() {
        bail!(
            "--refit-predictor {}: not a pixel JEPA (no image encoder); retrain state JEPAs with plain `zplan train`",
            opts.base.display()
        );
    }
    let hidden = opts.hidden.unwrap_or(base.config.pred_hidden);
    let layers = opts.layers.unwrap_or(base.config.pred_layers);
    let frameskip = opts.frameskip.unwrap_or(base.config.frameskip);
    if !(1..=64).contains(&frameskip) {
        bail!("--frameskip must be between 1 and 64 control steps, got {frameskip}");
    }
    let base_training = base.training.clone();
    if hidden == base.config.pred_hidden && layers == base.config.pred_layers {
        // The same predictor continues (from the base's weights also when the frameskip
        // changes: a one-step predictor is a fair start for a k-step one).
        let mut base = base;
        base.config.frameskip = frameskip;
        return Ok((base, base_training));
    }
    let mut cfg = base.config.clone();
    cfg.pred_hidden = hidden;
    cfg.pred_layers = layers;
    cfg.frameskip = frameskip;
    cfg.seed = seed;
    let mut nets = JepaNets::new(cfg, device)?;
    nets.set_obs_norm(base.obs_norm().clone())?;
    nets.scenario = base.scenario.clone();
    let from: std::collections::BTreeMap<String, Tensor> =
        base.vs.variables().into_iter().collect();
    let _g = tch::no_grad_guard();
    for (name, mut var) in nets.vs.variables() {
        if name.starts_with("predictor.") {
            continue;
        }
        let src = from
            .get(&name)
            .with_context(|| format!("{}: no tensor `{name}`", opts.base.display()))?;
        var.f_copy_(src)?;
    }
    Ok((nets, base_training))
}

/// Checks that the dataset is the one the model's encoder reads: same scenario kind, image
/// size, proprio size and action size.
fn check_compatible(nets: &JepaNets, meta: &DatasetMeta, base: &Path) -> Result<()> {
    let obs = meta
        .observation
        .as_ref()
        .context("the dataset has no observation spec")?;
    let image = obs.field(IMAGE).context("the dataset has no image field")?;
    let im = nets.config.image.as_ref().context("not a pixel JEPA")?;
    let want = [im.channels, im.height, im.width];
    let got: Vec<i64> = image.shape.iter().map(|&d| d as i64).collect();
    if got != want {
        bail!(
            "the dataset's images are {:?} (channels, height, width) but the encoder of {} reads {:?}",
            got,
            base.display(),
            want
        );
    }
    let prop = obs.field(PROPRIO).map_or(0, |f| f.numel() as i64);
    if prop != nets.config.obs_dim {
        bail!(
            "the dataset's proprio field has {prop} entries but {} encodes {}",
            base.display(),
            nets.config.obs_dim
        );
    }
    let actions = meta.scenario.spec().action_dim() as i64;
    if actions != nets.config.action_dim {
        bail!(
            "the dataset's actions have {actions} entries but the predictor of {} takes {}",
            base.display(),
            nets.config.action_dim
        );
    }
    if let Some(sc) = nets.scenario_config()? {
        if sc.kind() != meta.scenario.kind() {
            bail!(
                "scenario mismatch: the dataset is `{}` but {} was trained on `{}`",
                meta.scenario.kind(),
                base.display(),
                sc.kind()
            );
        }
    }
    Ok(())
}

/// Draws `n` indices from the cumulative weights `cum` (last entry = the total).
fn draw(cum: &[f64], n: usize, rng: &mut impl Rng) -> Vec<i64> {
    let total = *cum.last().unwrap_or(&0.0);
    (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            cum.partition_point(|&c| c <= u).min(cum.len() - 1) as i64
        })
        .collect()
}

/// Cumulative sampling weights `(loss + eps)^priority` of every training window.
fn cumulative(losses: &Tensor, priority: f64) -> Result<Vec<f64>> {
    let l: Vec<f64> = Vec::<f64>::try_from(&losses.f_to_kind(Kind::Double)?)?;
    let mut acc = 0.0;
    Ok(l.into_iter()
        .map(|v| {
            acc += (v.max(0.0) + 1e-9).powf(priority);
            acc
        })
        .collect())
}

/// Retrains the predictor of `opts.base` on the frozen latents of the pixel dataset in `dir`;
/// outputs as [`crate::train::train`] (model, sidecar, loss plot, report).
pub fn refit_predictor(
    dir: &Path,
    meta: &DatasetMeta,
    cfg: &TrainConfig,
    opts: &RefitOptions,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<TrainReport> {
    cfg.validate()?;
    if !(opts.priority >= 0.0 && opts.priority.is_finite()) {
        bail!("--priority must be >= 0, got {}", opts.priority);
    }
    if opts.refresh == 0 {
        bail!("--priority-refresh must be at least 1 step");
    }
    let started = Instant::now();
    let (mut nets, base_training) = start_from(opts, cfg.seed, device)?;
    check_compatible(&nets, meta, &opts.base)?;
    let k = cfg.rollout_steps as i64;
    let (n_ep, first_val) = episode_split(meta, cfg)?;
    let fs = nets.config.frameskip.max(1) as i64;
    let steps = (meta.steps as i64 + 1 - fs) / fs;
    if steps < k {
        let source = if opts.frameskip.is_some() {
            "--frameskip"
        } else {
            "the model's frameskip"
        };
        bail!(
            "{source} {fs}: episodes of {} control steps give {steps} predictor steps, fewer than --rollout-steps {k}",
            meta.steps
        );
    }
    let (n_ep, first_val) = (n_ep * fs, first_val * fs);
    let mut enc = encode_dataset(dir, meta, &nets, device)?;
    let encoded = enc.z.size()[0] * enc.z.size()[1];
    enc = enc.frameskip(fs)?;
    // Standardised training: latents in unit scale (the raw ones kept for the health report),
    // the predictor converted to those units.
    let mut raw_z = None;
    let moments = if opts.standardize {
        let (mean, std) = latent_moments(&enc.z.f_narrow(0, 0, first_val)?)?;
        let z = enc.z.f_sub(&mean)?.f_div(&std)?;
        raw_z = Some(std::mem::replace(&mut enc.z, z));
        reparameterize(&nets, &mean, &std, false)?;
        Some((mean, std))
    } else {
        if opts.normalize {
            enc.weight = Some(inverse_variance(&enc.z.f_narrow(0, 0, first_val)?)?);
        }
        None
    };
    eprintln!(
        "encoded {encoded} frames in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (tr_ep, tr_t) = windows(0..first_val, steps, k);
    let (va_ep, va_t) = windows(first_val..n_ep, steps, k);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);

    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&nets.vs, cfg.lr)?;
    let val_loss = |nets: &JepaNets| -> Result<f64> {
        Ok(scored(nets, &enc, &va_ep, &va_t, k)?
            .f_mean(Kind::Double)?
            .double_value(&[]))
    };
    let ckpt = checkpoint_path(out);
    let initial_val = val_loss(&nets)?;
    let mut best = (f64::INFINITY, 0usize);
    let mut curve = vec![(0usize, f64::NAN, initial_val)];
    let bar = progress_bar(cfg.steps, progress);
    let deadline = started + std::time::Duration::from_secs_f64(cfg.time_limit_min * 60.0);
    let n_train = tr_ep.size()[0];
    let prioritized = if opts.priority > 0.0 {
        cfg.batch / 2
    } else {
        0
    };
    let mut cum = cumulative(&scored(&nets, &enc, &tr_ep, &tr_t, k)?, opts.priority)?;
    let (mut running, mut running_n, mut step) = (0.0, 0.0, 0usize);
    while step < cfg.steps {
        let mut idx: Vec<i64> = (0..cfg.batch - prioritized)
            .map(|_| rng.random_range(0..n_train))
            .collect();
        idx.extend(draw(&cum, prioritized, &mut rng));
        let idx = Tensor::from_slice(&idx);
        let (ep, t0) = (
            tr_ep.f_index_select(0, &idx)?,
            tr_t.f_index_select(0, &idx)?,
        );
        opt.set_lr(cosine_lr(cfg.lr, step, cfg.steps));
        let loss = window_losses(&nets, &enc, &ep, &t0, k)?.f_mean(Kind::Float)?;
        opt.zero_grad();
        loss.f_backward()?;
        opt.step();
        let lv = loss.double_value(&[]);
        if !lv.is_finite() {
            bail!("training diverged at step {step} (loss {lv}); lower --lr");
        }
        running += lv;
        running_n += 1.0;
        step += 1;
        bar.inc(1);
        let out_of_time = Instant::now() >= deadline;
        if step % cfg.eval_every == 0 || step == cfg.steps || out_of_time {
            let v = val_loss(&nets)?;
            curve.push((step, running / running_n, v));
            bar.set_message(format!("train {:.5} val {:.5}", running / running_n, v));
            if bar.is_hidden() {
                eprintln!(
                    "step {step}/{} train {:.5} val {v:.5} ({:.0} s)",
                    cfg.steps,
                    running / running_n,
                    started.elapsed().as_secs_f64()
                );
            }
            running = 0.0;
            running_n = 0.0;
            if v < best.0 {
                best = (v, step);
                nets.training = serde_json::json!({ "step": step, "val_loss": v, "config": cfg });
                save_raw(&nets, moments.as_ref(), &ckpt)?;
            }
            if out_of_time {
                tracing::warn!("time limit reached at step {step}");
                break;
            }
        }
        if prioritized > 0 && step % opts.refresh == 0 {
            cum = cumulative(&scored(&nets, &enc, &tr_ep, &tr_t, k)?, opts.priority)?;
        }
    }
    bar.finish_and_clear();
    let best_nets = JepaNets::load(&ckpt, device)?;
    // Latent health of the (unchanged) encoder: first frames of training and validation
    // episodes against their true states.
    let all_z = raw_z.as_ref().unwrap_or(&enc.z);
    let first = |r: std::ops::Range<i64>| -> Result<(Tensor, Tensor)> {
        let z = all_z.f_narrow(0, r.start, r.end - r.start)?;
        let s = enc.state.f_narrow(0, r.start, r.end - r.start)?;
        let l = z.size()[2];
        let sd = s.size()[2];
        Ok((z.f_reshape([-1, l])?, s.f_reshape([-1, sd])?))
    };
    let (ztr, ytr) = first(0..first_val.min(1024))?;
    let (zva, yva) = first(first_val..n_ep)?;
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
    let mut dataset = serde_json::json!({
        "episodes": meta.episodes,
        "steps": meta.steps,
        "collect": meta.collect,
        "refit_predictor_of": opts.base.display().to_string(),
        "base_training": base_training,
        "priority": opts.priority,
        "priority_refresh": opts.refresh,
        "normalize": opts.normalize || opts.standardize,
        "standardize": opts.standardize,
        "frameskip": fs,
    });
    if !meta.sources.is_empty() {
        // Several `--data` directories: each one's episodes and collection settings
        // (`collect` above is the first one's).
        dataset["datasets"] = serde_json::to_value(&meta.sources)?;
    }
    finish(best_nets, &report, cfg, dataset, out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameskip_reads_each_episode_as_phases_of_block_means() {
        // One episode of 5 actions and 6 frames, entries = their index.
        let f = |n: i64| Tensor::arange(n, (Kind::Float, Device::Cpu)).reshape([1, n, 1]);
        let enc = Encoded {
            z: f(6),
            actions: f(5),
            state: f(6) * 10.0,
            weight: None,
        };
        let e = enc.frameskip(2).unwrap();
        let v = |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap();
        // Two blocks per phase: frames 0, 2, 4 (actions 0-1, 2-3) and 1, 3, 5 (1-2, 3-4).
        assert_eq!(e.z.size(), [2, 3, 1]);
        assert_eq!(v(&e.z), [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        assert_eq!(v(&e.state), [0.0, 20.0, 40.0, 10.0, 30.0, 50.0]);
        assert_eq!(e.actions.size(), [2, 2, 1]);
        assert_eq!(v(&e.actions), [0.5, 2.5, 1.5, 3.5]);
        // Two episodes keep their phases together (episode i at rows 2i, 2i + 1).
        let two = Encoded {
            z: Tensor::cat(&[f(6), f(6) + 100.0], 0),
            actions: Tensor::cat(&[f(5), f(5)], 0),
            state: Tensor::cat(&[f(6), f(6)], 0),
            weight: None,
        }
        .frameskip(2)
        .unwrap();
        assert_eq!(v(&two.z.select(1, 0)), [0.0, 1.0, 100.0, 101.0]);
    }

    #[test]
    fn inverse_variance_weighs_each_entry_by_its_spread() {
        // Entry 0 varies with std 2, entry 1 with std 0.1, entry 2 never changes.
        let t = Tensor::arange(8, (Kind::Float, Device::Cpu))
            .f_remainder(2)
            .unwrap();
        let z =
            Tensor::stack(&[&t * 4.0 - 2.0, &t * 0.2 - 0.1, t.zeros_like()], 1).reshape([2, 4, 3]);
        let w = Vec::<f32>::try_from(inverse_variance(&z).unwrap()).unwrap();
        approx::assert_relative_eq!(w[0], 0.25, max_relative = 1e-5);
        approx::assert_relative_eq!(w[1], 100.0, max_relative = 1e-4);
        approx::assert_relative_eq!(w[2], 1e6, max_relative = 1e-4);
    }

    /// Networks with a 4-entry latent, 2 actions and a predictor of `layers` hidden layers.
    fn small_nets(layers: usize) -> JepaNets {
        let cfg = zplan_models::jepa::JepaConfig {
            latent_dim: 4,
            pred_hidden: 16,
            pred_layers: layers,
            ..zplan_models::jepa::JepaConfig::new(4, 2)
        };
        JepaNets::new(cfg, Device::Cpu).unwrap()
    }

    /// Latents with entries of very different scales and offsets, actions, and their
    /// per-entry moments.
    fn scaled_batch() -> (Tensor, Tensor, Tensor, Tensor) {
        tch::manual_seed(3);
        let scale = Tensor::from_slice(&[0.1f32, 2.0, 0.5, 1.0]);
        let shift = Tensor::from_slice(&[0.3f32, -1.0, 0.0, 5.0]);
        let z = Tensor::randn([64, 4], (Kind::Float, Device::Cpu)) * &scale + &shift;
        let a = Tensor::randn([64, 2], (Kind::Float, Device::Cpu));
        let (mean, std) = latent_moments(&z.reshape([8, 8, 4])).unwrap();
        (z, a, mean, std)
    }

    #[test]
    fn standardised_predictor_computes_the_same_function_in_raw_units() {
        for layers in [0, 2] {
            let nets = small_nets(layers);
            let (z, a, mean, std) = scaled_batch();
            let raw = nets.predict(&z, &a).unwrap();
            let before: Vec<(String, Tensor)> = nets
                .vs
                .variables()
                .into_iter()
                .map(|(n, t)| (n, t.detach_copy()))
                .collect();
            // In standardised units the same network maps z_n to z_n + f_n(z_n, a).
            reparameterize(&nets, &mean, &std, false).unwrap();
            let zn = (&z - &mean) / &std;
            let back = nets.predict(&zn, &a).unwrap() * &std + &mean;
            assert!(
                raw.allclose(&back, 1e-4, 1e-4, false),
                "{layers} hidden layers: {}",
                (&raw - &back).abs().max()
            );
            // Folding back restores the raw weights.
            reparameterize(&nets, &mean, &std, true).unwrap();
            let vars = nets.vs.variables();
            for (name, t) in before {
                assert!(vars[&name].allclose(&t, 1e-5, 1e-5, false), "{name}");
            }
        }
    }

    #[test]
    fn saving_a_standardised_predictor_writes_raw_weights_and_keeps_training_weights() {
        let nets = small_nets(1);
        let (z, a, mean, std) = scaled_batch();
        let zn = (&z - &mean) / &std;
        // Treat the fresh weights as standardised ones: the saved model must map raw z to
        // mean + std * (that network on z_n).
        let want = nets.predict(&zn, &a).unwrap() * &std + &mean;
        let training: Vec<(String, Tensor)> = nets
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach_copy()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        save_raw(&nets, Some(&(mean, std)), &path).unwrap();
        let loaded = JepaNets::load(&path, Device::Cpu).unwrap();
        let got = loaded.predict(&z, &a).unwrap();
        assert!(
            got.allclose(&want, 1e-4, 1e-4, false),
            "{}",
            (&got - &want).abs().max()
        );
        let vars = nets.vs.variables();
        for (name, then) in &training {
            assert!(vars[name].equal(then), "{name} changed");
        }
    }

    #[test]
    fn windows_cover_every_start_of_every_episode() {
        let (ep, t) = windows(3..5, 10, 4);
        let ep: Vec<i64> = Vec::try_from(&ep).unwrap();
        let t: Vec<i64> = Vec::try_from(&t).unwrap();
        assert_eq!(ep.len(), 14);
        assert_eq!(&ep[..7], &[3; 7]);
        assert_eq!(&ep[7..], &[4; 7]);
        assert_eq!(&t[..7], &[0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn draws_follow_the_weights() {
        let cum = cumulative(&Tensor::from_slice(&[0.0f32, 3.0, 1.0]), 1.0).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = draw(&cum, 4000, &mut rng);
        let count = |i: i64| d.iter().filter(|&&x| x == i).count() as f64 / 4000.0;
        assert!(count(0) < 0.01, "{}", count(0));
        assert!((count(1) - 0.75).abs() < 0.03, "{}", count(1));
        assert!((count(2) - 0.25).abs() < 0.03, "{}", count(2));
        // priority 0: uniform.
        let flat = cumulative(&Tensor::from_slice(&[0.0f32, 3.0, 1.0]), 0.0).unwrap();
        let d = draw(&flat, 3000, &mut rng);
        for i in 0..3 {
            let c = d.iter().filter(|&&x| x == i).count() as f64 / 3000.0;
            assert!((c - 1.0 / 3.0).abs() < 0.04, "{i}: {c}");
        }
    }
}
