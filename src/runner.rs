//! The closed-loop runner: episodes on a worker pool, flushed JSONL records, resume, shards.

use crate::results::{read_results, read_results_numbered, EpisodeRecord, ResultsWriter};
use crate::shard::Shard;
use crate::suite::LoadedSuite;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use zplan_models::{DeviceChoice, LoadOptions, Precision, WorldModel};
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
    /// Precision override of every learned model (`--precision`), if any; absent in
    /// manifests written before it existed.
    #[serde(default)]
    pub precision: Option<Precision>,
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
    /// libtorch intra-op threads per worker (`None` = cores / workers, at least 1). Small
    /// models plan faster on one: see README, "Plan latency and torch threads".
    pub torch_threads: Option<usize>,
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
    /// A SIGINT/SIGTERM stopped the run early (completed episodes are recorded; resume with
    /// `zplan run --resume DIR`).
    pub interrupted: bool,
}

/// Why an episode stopped without a record: the user asked the run to stop.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// An exclusive lock on a run directory (`run.lock`, `flock`), held while a run writes it. The
/// kernel releases it when the process ends, however it ends, so a killed run never leaves a
/// stale lock behind.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of `dir`, or says that another run holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join("run.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                bail!(
                    "{} is in use by another zplan run (it holds {}); wait for it to finish or choose another --out",
                    dir.display(),
                    path.display()
                );
            }
        }
        Ok(RunLock { _file: file })
    }
}

/// Checks the records of a run directory against its suite before they are trusted: every
/// record names an entry of the suite (index and name), an episode within the entry's count,
/// and the seed that episode must have; no (entry, episode) appears twice. Errors name the
/// file and line.
pub fn check_records(
    suite: &crate::suite::Suite,
    path: &Path,
    records: &[(usize, EpisodeRecord)],
) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for (line, r) in records {
        let at = || format!("{}:{line}", path.display());
        let Some(e) = suite.entries.get(r.entry_index) else {
            bail!(
                "{}: entry_index {} is not an entry of suite `{}` ({} entries)",
                at(),
                r.entry_index,
                suite.name,
                suite.entries.len()
            );
        };
        if e.name != r.entry {
            bail!(
                "{}: entry {} of the suite is `{}`, the record says `{}`",
                at(),
                r.entry_index,
                e.name,
                r.entry
            );
        }
        let n = suite.episodes_of(r.entry_index);
        if r.episode >= n {
            bail!(
                "{}: episode {} of `{}`, which has only {n} episodes (0..{n})",
                at(),
                r.episode,
                r.entry
            );
        }
        let seed = crate::seeds::evaluation_seed(suite.seed, e.seed_key(), r.episode);
        if r.seed != seed {
            bail!(
                "{}: episode {} of `{}` has seed {}, the suite gives it seed {seed}",
                at(),
                r.episode,
                r.entry,
                r.seed
            );
        }
        if let Some(first) = seen.insert(r.key(), *line) {
            bail!(
                "{}: episode {} of `{}` is recorded twice (first at line {first})",
                at(),
                r.episode,
                r.entry
            );
        }
    }
    Ok(())
}

/// Loads every model of the suite once, in its precision ([`LoadedSuite::precision`]),
/// checking shapes against the scenario and the energy's latent weights against the model;
/// errors name the entry. Shared by `zplan validate` and `zplan run`.
///
/// `sim_threads` is how many threads each simulator-backed model rolls out on: a runner with
/// `W` workers passes `cores / W` ([`torch_threads_for`]), so that workers × threads <= cores
/// counts the simulator's threads too.
pub fn check_models(
    suite: &LoadedSuite,
    device: DeviceChoice,
    sim_threads: usize,
) -> Result<Vec<Arc<dyn WorldModel>>> {
    suite
        .suite
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let ctx = || format!("{}: entry `{}`", suite.path.display(), e.name);
            let opts = LoadOptions {
                device,
                precision: suite.precision(i),
                sim_threads,
            };
            let model =
                zplan_models::load_model_with(&suite.models[i], &suite.scenarios[i].1, &opts)
                    .with_context(|| format!("{}: model", ctx()))?;
            e.energy.weights_for(model.as_ref()).with_context(ctx)?;
            let latent: i64 = model.latent_shape().iter().product();
            e.planner
                .check_memory(model.action_dim().max(0) as usize, latent.max(0) as usize)
                .with_context(ctx)?;
            if let Some(ms) = e.mpc.deadline_ms {
                warn_if_deadline_below_rollout(&ctx(), model.as_ref(), &e.planner, ms);
            }
            Ok(model)
        })
        .collect()
}

/// Times one batched rollout of the planner's population and warns when `deadline_ms` is
/// shorter: every plan would then stop before its first iteration and the robot would execute
/// its initial guess. A failed timing (e.g. a model that rejects an all-zero latent) warns
/// nothing.
fn warn_if_deadline_below_rollout(
    what: &str,
    model: &dyn WorldModel,
    planner: &zplan_planner::PlannerConfig,
    deadline_ms: f64,
) {
    let _guard = tch::no_grad_guard();
    let mut zshape = vec![planner.samples() as i64];
    zshape.extend(model.latent_shape());
    let opts = (tch::Kind::Float, model.device());
    let z0 = tch::Tensor::zeros(&zshape, opts);
    let actions = tch::Tensor::zeros(
        [
            planner.samples() as i64,
            planner.horizon() as i64,
            model.action_dim(),
        ],
        opts,
    );
    let _ = model.rollout(&z0, &actions); // warm-up
    let t = Instant::now();
    if model.rollout(&z0, &actions).is_ok() {
        let took = t.elapsed().as_secs_f64() * 1000.0;
        if took > deadline_ms {
            let msg = format!(
                "{what}: deadline_ms {deadline_ms} is below one batched rollout of {} samples × horizon {} ({took:.2} ms measured): plans would stop before their first iteration",
                planner.samples(),
                planner.horizon()
            );
            tracing::warn!("{msg}");
            eprintln!("warning: {msg}");
        }
    }
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

/// Runs one closed-loop episode into `rec` (which starts as [`blank_record`]). The planner sees
/// only observations (through the model's encoder); the simulator's success predicate and
/// distance are recorded, never acted upon. On an error `rec` keeps everything measured up to
/// it (steps, distance trace, plan latencies), so a failed episode still reports how far it got.
fn run_episode(
    ctx: &EntryCtx,
    rec: &mut EpisodeRecord,
    frames_out: Option<&mut Vec<Image>>,
) -> Result<()> {
    let started = Instant::now();
    let seed = rec.seed;
    let mut env: Box<dyn Env> = ctx.scenario.build()?;
    env.reset(seed)?;
    let spec = env.spec().clone();
    let bounds = ActionBounds::new(spec.action_low.clone(), spec.action_high.clone())?;
    let planner = ctx
        .entry
        .planner
        .build(bounds, ctx.entry.energy.clone(), seed)?;
    rec.planner = planner.name().to_string();
    let mut mpc = Mpc::new(ctx.model.clone(), planner, ctx.entry.mpc.clone())?;
    let goal = for_model(env.goal_observation(), ctx.model.as_ref(), || {
        env.goal_state()
    });
    mpc.reset_episode(&goal, seed)?;
    let max_steps = ctx.entry.max_steps.unwrap_or(spec.max_steps);
    rec.distance_trace.push(env.distance_to_goal() as f64);
    rec.first_success_step = env.success().then_some(0u32);
    let frame_every = (max_steps / 7).max(1);
    let mut frames = frames_out;
    if let Some(f) = frames.as_deref_mut() {
        f.push(film_frame(env.as_ref()));
    }
    let result = (|| -> Result<()> {
        while env.steps() < max_steps {
            if crate::interrupt::requested() {
                return Err(Interrupted.into());
            }
            let obs = for_model(env.observe(), ctx.model.as_ref(), || env.state());
            let step = mpc.next_actions(&obs)?;
            rec.plan_ms.push(step.plan_time.as_secs_f64() * 1000.0);
            rec.rollouts += step.output.rollouts;
            rec.deadline_hits += step.output.hit_deadline as u32;
            for a in &step.actions {
                if env.steps() >= max_steps {
                    break;
                }
                env.step(a)?;
                rec.distance_trace.push(env.distance_to_goal() as f64);
                if rec.first_success_step.is_none() && env.success() {
                    rec.first_success_step = Some(env.steps());
                }
                if let Some(f) = frames.as_deref_mut() {
                    if env.steps() % frame_every == 0 || env.steps() == max_steps {
                        f.push(film_frame(env.as_ref()));
                    }
                }
            }
        }
        Ok(())
    })();
    rec.plan_ms_p50 = crate::stats::percentile(&rec.plan_ms, 50.0).unwrap_or(f64::NAN);
    rec.plan_ms_p99 = crate::stats::percentile(&rec.plan_ms, 99.0).unwrap_or(f64::NAN);
    rec.steps = env.steps();
    rec.final_distance = env.distance_to_goal() as f64;
    rec.clipped = env.clipped_total();
    rec.wall_s = started.elapsed().as_secs_f64();
    // An episode that errored is a failure whatever state it stopped in.
    rec.success = result.is_ok() && env.success();
    result
}

/// The record of an episode before it runs: every measurement empty or NaN (`null` in the
/// file), not successful, no error yet.
fn blank_record(ctx: &EntryCtx, episode: u64, seed: u64) -> EpisodeRecord {
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
        plan_ms_p50: f64::NAN,
        plan_ms_p99: f64::NAN,
        plan_ms: Vec::new(),
        deadline_hits: 0,
        rollouts: 0,
        distance_trace: Vec::new(),
        clipped: 0,
        wall_s: f64::NAN,
        error: None,
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

/// Threads per worker so that `workers × threads <= cores` (at least 1): libtorch's intra-op
/// threads and a simulator-backed model's rollout threads.
pub fn torch_threads_for(workers: usize) -> i32 {
    (cores() / workers.max(1)).max(1) as i32
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs (or resumes) a suite into `opts.out`.
pub fn run_suite(suite: &LoadedSuite, opts: &RunOptions) -> Result<RunOutcome> {
    // Every model is loaded and probed before anything is written or run.
    let device = opts.device.unwrap_or(DeviceChoice::Auto);
    // Threads per worker: libtorch's and the simulator-backed model's pool alike.
    let per_worker = torch_threads_for(opts.workers.unwrap_or_else(cores)) as usize;
    let models = check_models(suite, device, per_worker)?;
    if let Some(w) = crate::info::bf16_emulation_warning(models.iter().map(|m| m.as_ref())) {
        eprintln!("{w}");
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let _lock = RunLock::acquire(&opts.out)?;
    let manifest_path = opts.out.join("run.json");
    let manifest = Manifest {
        suite_path: std::fs::canonicalize(&suite.path).unwrap_or_else(|_| suite.path.clone()),
        suite_hash: suite.text_hash(),
        shard: opts.shard,
        device: opts.device.map(|d| d.to_string()),
        precision: suite.precision_override,
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
        if old.precision != manifest.precision {
            let show = |p: Option<Precision>| {
                p.map_or("without --precision".to_string(), |p| {
                    format!("with --precision {p}")
                })
            };
            bail!(
                "{} was run {}, not {}: its records must not mix precisions; resume it without \
                 --precision (it repeats the run's own), or choose another --out",
                opts.out.display(),
                show(old.precision),
                show(manifest.precision)
            );
        }
    } else {
        std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest)?)?;
    }
    std::fs::write(opts.out.join("suite.ron"), &suite.text)?;

    let results_path = opts.out.join("results.jsonl");
    let previous = read_results_numbered(&results_path)?;
    check_records(&suite.suite, &results_path, &previous)?;
    let done: HashSet<(usize, u64)> = previous.iter().map(|(_, r)| r.key()).collect();
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
        .unwrap_or_else(cores)
        .clamp(1, todo.len().max(1));
    tch::set_num_threads(
        opts.torch_threads
            .map_or_else(|| torch_threads_for(workers), |t| t.max(1) as i32),
    );
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
                    if crate::interrupt::requested() {
                        return;
                    }
                    let ctx = &ctxs[ei];
                    let seed = crate::seeds::evaluation_seed(suite.seed, ctx.entry.seed_key(), ep);
                    let mut frames = Vec::new();
                    let want_frames = filmstrips && ep == 0;
                    let mut rec = blank_record(ctx, ep, seed);
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_episode(ctx, &mut rec, want_frames.then_some(&mut frames))
                    }));
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) if e.is::<Interrupted>() => return,
                        Ok(Err(e)) => rec.error = Some(format!("{e:#}")),
                        Err(p) => {
                            rec.success = false;
                            rec.error = Some(panic_message(p));
                        }
                    }
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
    let ran = records.len().saturating_sub(skipped);
    Ok(RunOutcome {
        ran,
        skipped,
        records,
        summary_md,
        interrupted: crate::interrupt::requested(),
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
    // Every directory must be a run of the same suite (shards of one run, or resumes of it).
    let mut first: Option<(PathBuf, Manifest, crate::suite::Suite, String)> = None;
    for d in dirs {
        let mpath = d.join("run.json");
        let text = zplan_io::read_text(&mpath, "a run manifest", zplan_io::MAX_CONFIG_BYTES)
            .with_context(|| format!("{}: not a zplan run directory", d.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a zplan run manifest", mpath.display()))?;
        match &first {
            None => {
                let spath = d.join("suite.ron");
                let stext =
                    zplan_io::read_text(&spath, "a suite file", zplan_io::MAX_CONFIG_BYTES)?;
                if crate::suite::text_hash(&stext) != m.suite_hash {
                    bail!(
                        "{}: does not match the suite hash in {} (edited after the run?)",
                        spath.display(),
                        mpath.display()
                    );
                }
                let suite = crate::suite::Suite::parse(&stext, &spath.display().to_string())?;
                first = Some((d.clone(), m, suite, stext));
            }
            Some((d0, m0, _, _)) if m0.suite_hash != m.suite_hash => bail!(
                "{} and {} are runs of different suites ({} with hash {}, {} with hash {}): only shards or resumes of one suite merge",
                d0.display(),
                d.display(),
                m0.suite_path.display(),
                m0.suite_hash,
                m.suite_path.display(),
                m.suite_hash
            ),
            Some(_) => {}
        }
    }
    let Some((_, manifest, suite, suite_text)) = first else {
        bail!("merge needs at least one run directory");
    };
    std::fs::create_dir_all(out)?;
    let _lock = RunLock::acquire(out)?;
    let mpath = out.join("run.json");
    if mpath.exists() {
        let old: Manifest = serde_json::from_str(&std::fs::read_to_string(&mpath)?)
            .with_context(|| format!("{}: not a zplan run manifest", mpath.display()))?;
        if old.suite_hash != manifest.suite_hash {
            bail!(
                "{} holds a run of another suite ({}); merge into a new directory",
                out.display(),
                old.suite_path.display()
            );
        }
    } else {
        // The merged directory is itself a run directory of the suite: it can be merged again.
        let merged = Manifest {
            shard: Shard::ALL,
            ..manifest
        };
        std::fs::write(&mpath, serde_json::to_string_pretty(&merged)?)?;
    }
    std::fs::write(out.join("suite.ron"), &suite_text)?;
    let mut all = Vec::new();
    for d in dirs {
        let p = d.join("results.jsonl");
        if !p.exists() {
            bail!(
                "{}: no results.jsonl (is this a zplan run directory?)",
                d.display()
            );
        }
        let recs = read_results_numbered(&p)?;
        check_records(&suite, &p, &recs)?;
        all.extend(recs.into_iter().map(|(_, r)| r));
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
        interrupted: false,
    })
}
