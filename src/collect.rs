//! `zplan collect`: exploration data for training world models.
//!
//! Episodes start from seeds in the collection range ([`crate::seeds::COLLECTION`], disjoint
//! from evaluation seeds) and are driven by colored-noise random actions (power-law exponent
//! `beta`: 0 = white jitter, 1-2 = smooth wandering that actually travels), held for
//! `action_repeat` control steps. Output: a chunked dataset ([`crate::dataset`]): chunk files
//! with every observed field (images as u8), the true state, the actions and the seeds, and
//! `meta.json` ([`DatasetMeta`]: scenario, observation spec, chunks, seeds, settings). Chunks
//! are collected and written one at a time, so memory stays bounded by one chunk.

use crate::dataset::{self, ChunkInfo, EpisodeData};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zplan_planner::ColoredNoise;
use zplan_sim::{Env, ObsSpec, ScenarioConfig};

/// How to collect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectConfig {
    /// Episodes to collect.
    pub episodes: u64,
    /// Control steps per episode.
    pub steps: u32,
    /// Base seed; episode seeds are `collection_seed(seed, i)`.
    pub seed: u64,
    /// Colored-noise exponent β.
    pub beta: f32,
    /// Noise scale as a fraction of each action's half range (values beyond are clipped).
    pub scale: f32,
    /// Control steps each sampled action is held.
    pub action_repeat: u32,
    /// Worker threads.
    pub workers: usize,
    /// Episodes per chunk file (`None`: as many as fit in about 64 MiB).
    #[serde(default)]
    pub chunk_episodes: Option<u64>,
    /// Fraction of episodes driven by MPC with the simulator-backed model instead of noise
    /// (spread evenly over the episodes); 0 = pure exploration noise.
    #[serde(default)]
    pub planner_fraction: f32,
    /// The planner-driven episodes' settings.
    #[serde(default)]
    pub planner: Option<PlannerDriven>,
}

/// How planner-driven episodes act: MPC with the simulator-backed model towards the episode's
/// goal, plus Gaussian action noise (so the data also shows near-misses and corrections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerDriven {
    /// Planner configuration.
    pub planner: zplan_planner::PlannerConfig,
    /// Its energy (the simulator model's latent is the observation).
    pub energy: zplan_planner::EnergyConfig,
    /// Receding-horizon settings.
    pub mpc: zplan_planner::MpcConfig,
    /// Standard deviation of the noise added to planned actions, in units of the half range.
    pub noise: f32,
    /// The world model the planner imagines with: `None` (or `sim`) is the simulator-backed
    /// model planning from the true state; a learned model (`jepa:PATH`, TorchScript) plans
    /// from observations only, as in evaluation, so the data shows the states that model's
    /// own plans reach (DAgger-style on-policy data, for refitting its predictor).
    #[serde(default)]
    pub model: Option<zplan_models::ModelSpec>,
}

impl CollectConfig {
    /// Whether episode `i` is planner-driven (evenly spread: `floor((i+1)f) > floor(i f)`).
    pub fn is_planner_episode(&self, i: u64) -> bool {
        let f = f64::from(self.planner_fraction);
        self.planner.is_some() && f > 0.0 && ((i + 1) as f64 * f).floor() > (i as f64 * f).floor()
    }
}

/// `meta.json` of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Format marker and version.
    pub format: String,
    /// The scenario the data comes from.
    pub scenario: ScenarioConfig,
    /// Names of the observed `state` field's entries (empty when the scenario observes no
    /// state vector; in format v1, the observation's names).
    pub obs_names: Vec<String>,
    /// The observation's fields (format v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<ObsSpec>,
    /// Names of the true-state entries stored as labels (format v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_names: Vec<String>,
    /// The chunk files, in episode order (format v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkInfo>,
    /// Peak resident memory of the collecting process, MiB (format v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Action bounds.
    pub action_low: Vec<f32>,
    /// Action bounds.
    pub action_high: Vec<f32>,
    /// Episodes `N`.
    pub episodes: u64,
    /// Steps per episode `T`.
    pub steps: u32,
    /// Settings used.
    pub collect: CollectConfig,
    /// Seed range the episode seeds were drawn from.
    pub seed_range: (u64, u64),
    /// Indices of the planner-driven episodes.
    #[serde(default)]
    pub planner_episodes: Vec<u64>,
    /// The datasets merged into this one ([`crate::train::read_metas`] with several
    /// directories), in episode order; empty for a dataset read from one directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<DatasetSource>,
}

/// One dataset of a merged [`DatasetMeta`]: where it was read and how it was collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSource {
    /// The directory, as given.
    pub dir: String,
    /// Its episodes.
    pub episodes: u64,
    /// Its collection settings.
    pub collect: CollectConfig,
}

pub use crate::dataset::{FORMAT, FORMAT_V1};

/// A learned world model driving planner episodes (`--planner-model`), shared by the workers.
type LearnedModel = std::sync::Arc<dyn zplan_models::WorldModel>;

/// Records the current observation and true state of `env` into `ep`.
fn record(ep: &mut EpisodeData, spec: &ObsSpec, env: &dyn Env) -> Result<()> {
    ep.push_observation(spec, &env.observe(), &env.state())
}

/// One episode driven by MPC with the simulator-backed model, with action noise.
fn planner_episode(
    sc: &ScenarioConfig,
    cfg: &CollectConfig,
    pd: &PlannerDriven,
    learned: Option<&LearnedModel>,
    seed: u64,
) -> Result<EpisodeData> {
    use std::sync::Arc;
    let mut env = sc.build()?;
    env.reset(seed)?;
    let spec = env.spec().clone();
    let obs_spec = spec.observation.clone();
    // The simulator-backed model plans from the true state (it is the oracle driving data
    // collection, not a model being evaluated); a learned model sees observations only.
    let model: Arc<dyn zplan_models::WorldModel> = match learned {
        Some(m) => m.clone(),
        None => Arc::new(zplan_models::SimModel::from_config(sc)?.with_threads(1)?),
    };
    let bounds =
        zplan_planner::ActionBounds::new(spec.action_low.clone(), spec.action_high.clone())?;
    let planner = pd.planner.build(bounds, pd.energy.clone(), seed)?;
    let mut mpc = zplan_planner::Mpc::new(model, planner, pd.mpc.clone())?;
    let observe = |env: &dyn Env| match learned {
        Some(_) => env.observe(),
        None => env.observe().with_true_state(env.state()),
    };
    let goal = match learned {
        Some(_) => env.goal_observation(),
        None => env.goal_observation().with_true_state(env.goal_state()),
    };
    mpc.reset_episode(&goal, seed)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x91A9_7E4D);
    let mut ep = EpisodeData::new(
        &obs_spec,
        spec.state_dim(),
        spec.action_dim(),
        cfg.steps as usize,
        seed,
    );
    record(&mut ep, &obs_spec, env.as_ref())?;
    while env.steps() < cfg.steps {
        let step = mpc.next_actions(&observe(env.as_ref()))?;
        for a in &step.actions {
            if env.steps() >= cfg.steps {
                break;
            }
            let noisy: Vec<f32> = a
                .iter()
                .enumerate()
                .map(|(d, &x)| {
                    let h = 0.5 * (spec.action_high[d] - spec.action_low[d]);
                    let n: f32 =
                        rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
                    (x + h * pd.noise * n).clamp(spec.action_low[d], spec.action_high[d])
                })
                .collect();
            env.step(&noisy)?;
            ep.actions.extend_from_slice(&noisy);
            record(&mut ep, &obs_spec, env.as_ref())?;
        }
    }
    Ok(ep)
}

fn collect_episode(
    sc: &ScenarioConfig,
    cfg: &CollectConfig,
    learned: Option<&LearnedModel>,
    index: u64,
) -> Result<EpisodeData> {
    let seed = crate::seeds::collection_seed(cfg.seed, index);
    if let (true, Some(pd)) = (cfg.is_planner_episode(index), cfg.planner.as_ref()) {
        return planner_episode(sc, cfg, pd, learned, seed);
    }
    let mut env = sc.build()?;
    env.reset(seed)?;
    let spec = env.spec().clone();
    let a_dim = spec.action_dim();
    let repeat = cfg.action_repeat.max(1) as usize;
    let n_blocks = (cfg.steps as usize).div_ceil(repeat);
    let noise = ColoredNoise::new(n_blocks, cfg.beta)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_C011_EC70);
    let mut white = Vec::new();
    let mut per_dim = vec![vec![0f32; n_blocks]; a_dim];
    // The collection stream (ChaCha8 + ziggurat) is kept as it was: the shipped models were
    // trained on what it draws.
    for d in per_dim.iter_mut() {
        white.clear();
        white.extend((0..n_blocks).map(|_| -> f32 {
            rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng)
        }));
        noise.color(&white, d);
    }
    // A random constant offset per episode widens the state coverage (not only zero-mean wiggles).
    let offsets: Vec<f32> = (0..a_dim).map(|_| rng.random_range(-0.3f32..0.3)).collect();
    let obs_spec = spec.observation.clone();
    let mut ep = EpisodeData::new(&obs_spec, spec.state_dim(), a_dim, cfg.steps as usize, seed);
    record(&mut ep, &obs_spec, env.as_ref())?;
    let mut a = vec![0f32; a_dim];
    for t in 0..cfg.steps as usize {
        for (d, ad) in a.iter_mut().enumerate() {
            let c = 0.5 * (spec.action_high[d] + spec.action_low[d]);
            let h = 0.5 * (spec.action_high[d] - spec.action_low[d]);
            let x = c + h * (cfg.scale * per_dim[d][t / repeat] + offsets[d]);
            *ad = x.clamp(spec.action_low[d], spec.action_high[d]);
        }
        env.step(&a)?;
        ep.actions.extend_from_slice(&a);
        record(&mut ep, &obs_spec, env.as_ref())?;
    }
    Ok(ep)
}

/// Collects a dataset into `out` (created). Deterministic for a given config.
pub fn collect(
    scenario: &ScenarioConfig,
    cfg: &CollectConfig,
    out: &Path,
    progress: bool,
) -> Result<DatasetMeta> {
    if cfg.episodes == 0 || cfg.steps == 0 {
        bail!("--episodes and --steps must be at least 1");
    }
    if !(0.0..=1.0).contains(&cfg.planner_fraction) {
        bail!(
            "--planner-fraction must be in [0, 1], got {}",
            cfg.planner_fraction
        );
    }
    // A learned planner model is loaded once (before anything is collected, so a model that
    // does not fit the scenario fails first) and shared by the workers.
    let learned: Option<LearnedModel> = match cfg.planner.as_ref().and_then(|p| p.model.as_ref()) {
        Some(m) if !matches!(m, zplan_models::ModelSpec::Sim) => {
            // One torch thread per worker: the workers already use every core.
            tch::set_num_threads(1);
            Some(
                zplan_models::load_model_with_threads(
                    m,
                    scenario,
                    zplan_models::DeviceChoice::Cpu,
                    1,
                )
                .with_context(|| format!("--planner-model {m}"))?,
            )
        }
        _ => None,
    };
    if let Some(pd) = &cfg.planner {
        pd.planner.validate()?;
        pd.energy.validate()?;
        pd.mpc.validate()?;
        if !(pd.noise >= 0.0 && pd.noise.is_finite()) {
            bail!("--planner-noise must be >= 0, got {}", pd.noise);
        }
    }
    if !(cfg.beta >= 0.0 && cfg.beta.is_finite() && cfg.scale > 0.0 && cfg.scale.is_finite()) {
        bail!(
            "--beta must be >= 0 and --scale > 0 (got {} and {})",
            cfg.beta,
            cfg.scale
        );
    }
    if cfg.chunk_episodes == Some(0) {
        bail!("--chunk-episodes must be at least 1");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let spec = scenario.spec();
    let obs_spec = spec.observation.clone();
    let (s_dim, a_dim, t) = (spec.state_dim(), spec.action_dim(), cfg.steps as usize);
    let per_chunk = cfg.chunk_episodes.unwrap_or_else(|| {
        let bytes = dataset::episode_bytes(&obs_spec, s_dim, a_dim, t).max(1);
        (dataset::DEFAULT_CHUNK_BYTES / bytes).max(1) as u64
    });
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.episodes)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut chunks = Vec::new();
    let mut first = 0u64;
    while first < cfg.episodes {
        let n = per_chunk.min(cfg.episodes - first);
        let episodes = collect_range(scenario, cfg, learned.as_ref(), first, n, &bar)?;
        let info = ChunkInfo {
            file: dataset::chunk_file(chunks.len()),
            first_episode: first,
            episodes: n,
        };
        dataset::write_chunk(&out.join(&info.file), &obs_spec, s_dim, a_dim, t, &episodes)?;
        chunks.push(info);
        first += n;
    }
    bar.finish_and_clear();
    let obs_names = obs_spec
        .field(zplan_obs::STATE)
        .map(|f| f.names.clone())
        .unwrap_or_default();
    let meta = DatasetMeta {
        format: FORMAT.into(),
        scenario: scenario.clone(),
        obs_names,
        observation: Some(obs_spec),
        state_names: spec.state_names.clone(),
        chunks,
        peak_rss_mib: dataset::peak_rss_mib(),
        action_low: spec.action_low.clone(),
        action_high: spec.action_high.clone(),
        episodes: cfg.episodes,
        steps: cfg.steps,
        collect: cfg.clone(),
        seed_range: (crate::seeds::COLLECTION.start, crate::seeds::COLLECTION.end),
        planner_episodes: (0..cfg.episodes)
            .filter(|&i| cfg.is_planner_episode(i))
            .collect(),
        sources: Vec::new(),
    };
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(meta)
}

/// Collects episodes `first..first + n` on `cfg.workers` threads, in episode order.
fn collect_range(
    scenario: &ScenarioConfig,
    cfg: &CollectConfig,
    learned: Option<&LearnedModel>,
    first: u64,
    n: u64,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<EpisodeData>> {
    let (tx, rx) = crossbeam::channel::unbounded::<u64>();
    for i in first..first + n {
        tx.send(i).ok();
    }
    drop(tx);
    let results: std::sync::Mutex<Vec<Option<EpisodeData>>> =
        std::sync::Mutex::new((0..n).map(|_| None).collect());
    let first_err: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..cfg.workers.max(1).min(n as usize) {
            let rx = rx.clone();
            let (results, first_err) = (&results, &first_err);
            s.spawn(move || {
                for i in rx.iter() {
                    match collect_episode(scenario, cfg, learned, i) {
                        Ok(ep) => {
                            if let Ok(mut r) = results.lock() {
                                r[(i - first) as usize] = Some(ep);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = first_err.lock() {
                                f.get_or_insert(e.context(format!("episode {i}")));
                            }
                            return;
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("collector worker panicked"))?
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .context("an episode is missing (a worker stopped)")
}
