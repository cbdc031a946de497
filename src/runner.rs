//! The closed-loop runner: episodes on a worker pool, flushed JSONL records, resume, shards.

use crate::results::{read_results, EpisodeRecord, ResultsWriter};
use crate::shard::Shard;
use crate::suite::LoadedSuite;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use zplan_models::{DeviceChoice, WorldModel};
use zplan_planner::{ActionBounds, Mpc};
use zplan_sim::{Env, Image};

/// What `zplan run` was asked to do; stored as `run.json` so `--resume` repeats it exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Absolute path of the suite file.
    pub suite_path: PathBuf,
    /// Hash of the suite text when the run started; resume refuses a changed suite.
    pub suite_hash: String,
    /// Shard of the suite this run covers.
    pub shard: Shard,
    /// Device override, if any.
    pub device: Option<String>,
    /// zplan version that started the run.
    pub zplan_version: String,
}

/// How to run a suite.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory (created).
    pub out: PathBuf,
    /// Which part of the suite to run.
    pub shard: Shard,
    /// Device override for every model (`None` = each model's default: CUDA if available).
    pub device: Option<DeviceChoice>,
    /// Parallel episode workers (`None` = CPU cores, at most the number of episodes).
    pub workers: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
    /// Render a filmstrip of episode 0 of each entry.
    pub filmstrips: bool,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every record of this run directory (previous and new).
    pub records: Vec<EpisodeRecord>,
    /// Episodes run by this invocation.
    pub ran: usize,
    /// Episodes skipped because a previous invocation recorded them.
    pub skipped: usize,
    /// The Markdown summary table.
    pub summary_md: String,
}

/// Loads every model of the suite once (checking shapes against the scenario, and the energy's
/// latent weights against the model); errors name the entry. Shared by `zplan validate` and
/// `zplan run`.
pub fn check_models(suite: &LoadedSuite, device: DeviceChoice) -> Result<Vec<Arc<dyn WorldModel>>> {
    suite
        .suite
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ctx = || format!("{}: entry `{}`", suite.path.display(), e.name);
            let model = zplan_models::load_model(&suite.models[i], &suite.scenarios[i].1, device)
                .with_context(|| format!("{}: model", ctx()))?;
            e.energy.weights_for(model.as_ref()).with_context(ctx)?;
            Ok(model)
        })
        .collect()
}

/// Compose frames left to right into one image.
fn filmstrip(frames: &[Image]) -> Option<Image> {
    let first = frames.first()?;
    let (w, h) = (first.width, first.height);
    let total_w = w * frames.len() as u32;
    let mut rgb = vec![255u8; (total_w * h * 3) as usize];
    for (k, f) in frames.iter().enumerate() {
        for y in 0..h as usize {
            let src = &f.rgb[y * w as usize * 3..(y + 1) * w as usize * 3];
            let off = (y * total_w as usize + k * w as usize) * 3;
            rgb[off..off + src.len()].copy_from_slice(src);
        }
    }
    Some(Image {
        width: total_w,
        height: h,
        rgb,
    })
}

/// Everything one episode needs, shared read-only across workers.
struct EntryCtx {
    index: usize,
    name: String,
    scenario_name: String,
    scenario: zplan_sim::ScenarioConfig,
    model: Arc<dyn WorldModel>,
    entry: crate::suite::Entry,
}

/// `obs` with `state` attached when `model` is the simulator-backed oracle (the one model that
/// reads the true state); every other model sees only the scenario's observation fields.
fn for_model(
    obs: zplan_sim::Observation,
    model: &dyn WorldModel,
    state: impl FnOnce() -> Vec<f32>,
) -> zplan_sim::Observation {
    if model.needs_true_state() {
        obs.with_true_state(state())
    } else {
        obs
    }
}

/// Height of a filmstrip frame in pixels.
const FRAME: u32 = 160;

/// A filmstrip frame: the top-down view with the goal marker, and below it, when the robot
/// has a camera, what it saw (the newest frame of its image observation, scaled up).
fn film_frame(env: &dyn Env) -> Image {
    let top = env.render(FRAME, FRAME);
    let spec = &env.spec().observation;
    let (Some(f), Some(pixels)) = (
        spec.field(zplan_obs::IMAGE),
        env.observe().u8(zplan_obs::IMAGE).map(<[u8]>::to_vec),
    ) else {
        return top;
    };
    let (c, h, w) = (f.shape[0], f.shape[1], f.shape[2]);
    let plane = h * w;
    // The newest frame is the last 3 channels.
    let newest = &pixels[(c - 3) * plane..c * plane];
    let scale = (FRAME as usize / w.max(h)).max(1);
    let (sw, sh) = (w * scale, h * scale);
    let mut rgb = top.rgb.clone();
    rgb.extend(std::iter::repeat_n(255u8, FRAME as usize * sh * 3));
    let x0 = (FRAME as usize - sw.min(FRAME as usize)) / 2;
    for y in 0..sh {
        for x in 0..sw.min(FRAME as usize) {
            let k = (y / scale) * w + x / scale;
            let o = ((FRAME as usize + y) * FRAME as usize + x0 + x) * 3;
            for ch in 0..3 {
                rgb[o + ch] = newest[ch * plane + k];
            }
        }
    }
    Image {
        width: FRAME,
        height: FRAME + sh as u32,
        rgb,
    }
}

/// Runs one closed-loop episode. The planner sees only observations (through the model's
/// encoder); the simulator's success predicate and distance are recorded, never acted upon.
fn run_episode(
    ctx: &EntryCtx,
    episode: u64,
    seed: u64,
    frames_out: Option<&mut Vec<Image>>,
) -> Result<EpisodeRecord> {
    let started = Instant::now();
    let mut env: Box<dyn Env> = ctx.scenario.build()?;
    env.reset(seed)?;
    let spec = env.spec().clone();
    let bounds = ActionBounds::new(spec.action_low.clone(), spec.action_high.clone())?;
    let planner = ctx
        .entry
        .planner
        .build(bounds, ctx.entry.energy.clone(), seed)?;
    let planner_name = planner.name().to_string();
    let mut mpc = Mpc::new(ctx.model.clone(), planner, ctx.entry.mpc.clone())?;
    let goal = for_model(env.goal_observation(), ctx.model.as_ref(), || {
        env.goal_state()
    });
    mpc.reset_episode(&goal, seed)?;
    let max_steps = ctx.entry.max_steps.unwrap_or(spec.max_steps);
    let mut plan_ms = Vec::new();
    let mut rollouts = 0u64;
    let mut deadline_hits = 0u32;
    let mut distance_trace = vec![env.distance_to_goal() as f64];
    let mut first_success = env.success().then_some(0u32);
    let frame_every = (max_steps / 7).max(1);
    let mut frames = frames_out;
    if let Some(f) = frames.as_deref_mut() {
        f.push(film_frame(env.as_ref()));
    }
    while env.steps() < max_steps {
        let obs = for_model(env.observe(), ctx.model.as_ref(), || env.state());
        let step = mpc.next_actions(&obs)?;
        plan_ms.push(step.plan_time.as_secs_f64() * 1000.0);
        rollouts += step.output.rollouts;
        deadline_hits += step.output.hit_deadline as u32;
        for a in &step.actions {
            if env.steps() >= max_steps {
                break;
            }
            env.step(a)?;
            distance_trace.push(env.distance_to_goal() as f64);
            if first_success.is_none() && env.success() {
                first_success = Some(env.steps());
            }
            if let Some(f) = frames.as_deref_mut() {
                if env.steps() % frame_every == 0 || env.steps() == max_steps {
                    f.push(film_frame(env.as_ref()));
                }
            }
        }
    }
    let p50 = crate::stats::percentile(&plan_ms, 50.0).unwrap_or(0.0);
    let p99 = crate::stats::percentile(&plan_ms, 99.0).unwrap_or(0.0);
    Ok(EpisodeRecord {
        entry: ctx.name.clone(),
        entry_index: ctx.index,
        scenario: ctx.scenario_name.clone(),
        model: ctx.model.name().to_string(),
        planner: planner_name,
        episode,
        seed,
        success: env.success(),
        steps: env.steps(),
        final_distance: env.distance_to_goal() as f64,
        first_success_step: first_success,
        plan_ms_p50: p50,
        plan_ms_p99: p99,
        plan_ms,
        deadline_hits,
        rollouts,
        distance_trace,
        clipped: env.clipped_total(),
        wall_s: started.elapsed().as_secs_f64(),
        error: None,
    })
}

fn error_record(ctx: &EntryCtx, episode: u64, seed: u64, msg: String) -> EpisodeRecord {
    EpisodeRecord {
        entry: ctx.name.clone(),
        entry_index: ctx.index,
        scenario: ctx.scenario_name.clone(),
        model: ctx.model.name().to_string(),
        planner: ctx.entry.planner.name().to_string(),
        episode,
        seed,
        success: false,
        steps: 0,
        final_distance: f64::NAN,
        first_success_step: None,
        plan_ms_p50: 0.0,
        plan_ms_p99: 0.0,
        plan_ms: Vec::new(),
        deadline_hits: 0,
        rollouts: 0,
        distance_trace: Vec::new(),
        clipped: 0,
        wall_s: 0.0,
        error: Some(msg),
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic (non-string payload)".into()
    }
}

/// Sets torch's intra-op threads so that `workers × threads <= cores`.
pub fn torch_threads_for(workers: usize) -> i32 {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / workers.max(1)).max(1) as i32
}

/// Runs (or resumes) a suite into `opts.out`.
pub fn run_suite(suite: &LoadedSuite, opts: &RunOptions) -> Result<RunOutcome> {
    // Every model is loaded and probed before anything is written or run.
    let device = opts.device.unwrap_or(DeviceChoice::Auto);
    let models = check_models(suite, device)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let manifest_path = opts.out.join("run.json");
    let manifest = Manifest {
        suite_path: std::fs::canonicalize(&suite.path).unwrap_or_else(|_| suite.path.clone()),
        suite_hash: suite.text_hash(),
        shard: opts.shard,
        device: opts.device.map(|d| d.to_string()),
        zplan_version: env!("CARGO_PKG_VERSION").into(),
    };
    if manifest_path.exists() {
        let old: Manifest = serde_json::from_str(&std::fs::read_to_string(&manifest_path)?)
            .with_context(|| format!("{}: not a zplan run manifest", manifest_path.display()))?;
        if old.suite_hash != manifest.suite_hash || old.shard != manifest.shard {
            bail!(
                "{} belongs to a different run (suite {} shard {}); choose another --out or --resume it",
                opts.out.display(),
                old.suite_path.display(),
                old.shard
            );
        }
    } else {
        std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest)?)?;
    }
    std::fs::write(opts.out.join("suite.ron"), &suite.text)?;

    let results_path = opts.out.join("results.jsonl");
    let previous = read_results(&results_path)?;
    let done: HashSet<(usize, u64)> = previous.iter().map(|r| r.key()).collect();
    let todo: Vec<(usize, u64)> = suite
        .all_episodes()
        .into_iter()
        .enumerate()
        .filter(|(g, _)| opts.shard.contains(*g as u64))
        .map(|(_, k)| k)
        .filter(|k| !done.contains(k))
        .collect();
    let skipped = done.len();

    let workers = opts
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .clamp(1, todo.len().max(1));
    tch::set_num_threads(torch_threads_for(workers));
    let ctxs: Vec<EntryCtx> = suite
        .suite
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| EntryCtx {
            index: i,
            name: e.name.clone(),
            scenario_name: suite.scenarios[i].0.clone(),
            scenario: suite.scenarios[i].1.clone(),
            model: models[i].clone(),
            entry: e.clone(),
        })
        .collect();

    tracing::info!(episodes = todo.len(), skipped, workers, shard = %opts.shard, "running suite {}", suite.suite.name);
    let writer = std::sync::Mutex::new(ResultsWriter::append(&results_path)?);
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(todo.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} episodes  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (tx, rx) = crossbeam::channel::unbounded::<(usize, u64)>();
    for k in &todo {
        tx.send(*k).ok();
    }
    drop(tx);
    let write_err: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    let threads = tch::get_num_threads();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let rx = rx.clone();
            let ctxs = &ctxs;
            let writer = &writer;
            let bar = &bar;
            let write_err = &write_err;
            let suite = &suite.suite;
            let out = &opts.out;
            let filmstrips = opts.filmstrips;
            s.spawn(move || {
                // Intra-op thread count and grad mode are per thread in libtorch.
                tch::set_num_threads(threads);
                let _guard = tch::no_grad_guard();
                for (ei, ep) in rx.iter() {
                    let ctx = &ctxs[ei];
                    let seed = crate::seeds::evaluation_seed(suite.seed, ctx.entry.seed_key(), ep);
                    let mut frames = Vec::new();
                    let want_frames = filmstrips && ep == 0;
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_episode(ctx, ep, seed, want_frames.then_some(&mut frames))
                    }));
                    let rec = match res {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => error_record(ctx, ep, seed, format!("{e:#}")),
                        Err(p) => error_record(ctx, ep, seed, panic_message(p)),
                    };
                    if let Some(img) = filmstrip(&frames) {
                        let p = out.join(format!("filmstrip_{}.png", sanitize(&ctx.name)));
                        if let Err(e) = img.save_png(&p) {
                            tracing::warn!("could not write {}: {e}", p.display());
                        }
                    }
                    bar.set_message(format!(
                        "{} ep {} {}",
                        ctx.name,
                        ep,
                        if rec.success { "ok" } else { "fail" }
                    ));
                    if let Err(e) = writer
                        .lock()
                        .map_err(|_| anyhow::anyhow!("writer poisoned"))
                        .and_then(|mut w| Ok(w.write(&rec)?))
                    {
                        write_err.lock().map(|mut g| *g = Some(e)).ok();
                        return;
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = write_err.into_inner().ok().flatten() {
        return Err(e.context(format!("writing {}", results_path.display())));
    }
    let records = read_results(&results_path)?;
    let summary_md = crate::report::write_report(&opts.out, &records)?;
    Ok(RunOutcome {
        ran: todo.len(),
        skipped,
        records,
        summary_md,
    })
}

/// File-name-safe version of an entry name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A fresh run directory under `runs/`: `runs/<suite>-<unix time>`.
pub fn default_out_dir(suite_name: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Path::new("runs").join(format!("{}-{t}", sanitize(suite_name)))
}

/// Merges the results of several run directories (e.g. shards) into `out` and reports.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<RunOutcome> {
    std::fs::create_dir_all(out)?;
    let mut all = Vec::new();
    for d in dirs {
        let p = d.join("results.jsonl");
        if !p.exists() {
            bail!(
                "{}: no results.jsonl (is this a zplan run directory?)",
                d.display()
            );
        }
        all.extend(read_results(&p)?);
        for f in std::fs::read_dir(d)? {
            let f = f?.path();
            if f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("filmstrip_"))
            {
                std::fs::copy(&f, out.join(f.file_name().unwrap_or_default()))?;
            }
        }
    }
    let merged = crate::report::canonical(&all);
    let mut w = ResultsWriter::append(&out.join("results.jsonl"))?;
    let existing: HashSet<_> = read_results(&out.join("results.jsonl"))?
        .iter()
        .map(|r| r.key())
        .collect();
    for r in merged.iter().filter(|r| !existing.contains(&r.key())) {
        w.write(r)?;
    }
    let records = read_results(&out.join("results.jsonl"))?;
    let summary_md = crate::report::write_report(out, &records)?;
    Ok(RunOutcome {
        ran: 0,
        skipped: records.len(),
        records,
        summary_md,
    })
}
