//! The simulator-backed world model: the planning upper bound.

use crate::error::TchContext;
use crate::util::{fmt_shape, to_vec_f32, Site};
use crate::{ModelError, ObsBatch, Result, WorldModel};
use std::sync::Mutex;
use tch::{Device, Tensor};
use zplan_obs::{ObsSpec, STATE};
use zplan_sim::{Env, Snapshot};

/// A "world model" that is the simulator itself: the latent is the true simulator state
/// ([`Env::state`]), `encode` returns it and `rollout` steps copies of the physics world.
///
/// It is the oracle, and the one component allowed to read the true state: whatever the
/// scenario observes (state, images, proprio), `encode` reads the true state attached to the
/// observations ([`zplan_obs::Observation::with_true_state`], which zplan's runner attaches
/// for this model only; [`WorldModel::needs_true_state`] says so). Without one it falls back
/// to an observed `state` field when that is the whole true state (state-only scenarios).
///
/// It separates planning error from model error in reports: a planner that fails with this
/// model fails because of the planner or the energy, not because of a learned model.
///
/// Rollouts are spread over worker threads (crossbeam scoped threads, contiguous chunks of the
/// batch), each stepping its own environment copy ([`Env::boxed_clone`], kept in a pool between
/// calls). Before every batch row the copy is [`Env::restore`]d to a base snapshot (which reuses
/// its allocations) and put into the row's state with [`Env::set_state`]. A row's result thus
/// depends only on its `z0` and actions, never on what the copy did before (contact caches,
/// warm-start impulses, counters): results are bit-identical whatever the number of threads.
pub struct SimModel {
    name: String,
    obs_spec: ObsSpec,
    state_shape: Vec<i64>,
    action_dim: i64,
    threads: usize,
    device: Device,
    /// The state every row starts from before `set_state`.
    base: Snapshot,
    /// Environment copies are cloned from this one (never stepped itself).
    template: Box<dyn Env>,
    /// Idle copies; each worker takes one per call and puts it back.
    pool: Mutex<Vec<Box<dyn Env>>>,
}

impl std::fmt::Debug for SimModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimModel")
            .field("name", &self.name)
            .field("state_shape", &self.state_shape)
            .field("action_dim", &self.action_dim)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl SimModel {
    /// Wraps an environment in any state: its current state becomes the base snapshot that
    /// every rollout row starts from, with the dynamic state then replaced by the row's `z0`
    /// (the goal and other settings are kept).
    /// Uses [`std::thread::available_parallelism`] worker threads; see [`SimModel::with_threads`].
    pub fn new(env: Box<dyn Env>) -> Self {
        let spec = env.spec();
        let name = format!("sim:{}", spec.kind);
        let state_shape = vec![spec.state_dim() as i64];
        let obs_spec = spec.observation.clone();
        let action_dim = spec.action_dim() as i64;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        SimModel {
            name,
            obs_spec,
            state_shape,
            action_dim,
            threads,
            device: Device::Cpu,
            base: env.snapshot(),
            template: env,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Builds the scenario described by `config` (reset with seed 0) and wraps it.
    ///
    /// # Errors
    /// [`ModelError::Sim`] when the scenario cannot be built or reset.
    pub fn from_config(config: &zplan_sim::ScenarioConfig) -> Result<Self> {
        let mut env = config.build().map_err(|source| ModelError::Sim {
            context: "building the scenario".into(),
            cause: Box::new(source),
        })?;
        env.reset(0).map_err(|source| ModelError::Sim {
            context: "resetting the scenario".into(),
            cause: Box::new(source),
        })?;
        Ok(SimModel::new(env))
    }

    /// Sets the number of worker threads for rollouts (at least 1). Results do not depend on it.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for 0.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(ModelError::InvalidConfig(
                "SimModel needs at least one worker thread".into(),
            ));
        }
        self.threads = threads;
        Ok(self)
    }

    /// Puts outputs of `encode` and `rollout` on `device` (the simulation itself runs on the CPU).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Number of rollout worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn take_env(&self) -> Box<dyn Env> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        pooled.unwrap_or_else(|| self.template.boxed_clone())
    }

    fn put_env(&self, env: Box<dyn Env>) {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(env);
    }

    /// Rolls out rows `[first, first + out.len() / (h * d))` with a pooled environment copy,
    /// writing into `out`.
    fn rollout_rows(
        &self,
        z0: &[f32],
        actions: &[f32],
        out: &mut [f32],
        first: usize,
        h: usize,
    ) -> Result<()> {
        let mut env = self.take_env();
        let result = self.rollout_rows_with(env.as_mut(), z0, actions, out, first, h);
        self.put_env(env);
        result
    }

    fn rollout_rows_with(
        &self,
        env: &mut dyn Env,
        z0: &[f32],
        actions: &[f32],
        out: &mut [f32],
        first: usize,
        h: usize,
    ) -> Result<()> {
        let d = self.state_shape[0] as usize;
        let a = self.action_dim as usize;
        let rows = out.len() / (h * d).max(1);
        for r in 0..rows {
            let row = first + r;
            let sim_err = |context: String| {
                move |source| ModelError::Sim {
                    context,
                    cause: Box::new(source),
                }
            };
            env.restore(&self.base)
                .map_err(sim_err(format!("{}: restoring the base state", self.name)))?;
            env.set_state(&z0[row * d..(row + 1) * d])
                .map_err(sim_err(format!(
                    "{}: set_state for batch row {row}",
                    self.name
                )))?;
            for t in 0..h {
                let act = &actions[(row * h + t) * a..(row * h + t + 1) * a];
                env.step(act).map_err(sim_err(format!(
                    "{}: step {t} of batch row {row}",
                    self.name
                )))?;
                let obs = env.state();
                if obs.len() != d {
                    return Err(Site {
                        model: &self.name,
                        method: "state",
                    }
                    .shape_err(
                        "output",
                        fmt_shape(&[d as i64]),
                        &[obs.len() as i64],
                    ));
                }
                out[(r * h + t) * d..(r * h + t + 1) * d].copy_from_slice(&obs);
            }
        }
        Ok(())
    }
}

impl WorldModel for SimModel {
    fn name(&self) -> &str {
        &self.name
    }
    fn device(&self) -> Device {
        self.device
    }
    fn obs_spec(&self) -> &ObsSpec {
        &self.obs_spec
    }
    fn action_dim(&self) -> i64 {
        self.action_dim
    }
    fn latent_shape(&self) -> &[i64] {
        &self.state_shape
    }
    fn needs_true_state(&self) -> bool {
        true
    }

    fn rollout_owned(&self, z0: &Tensor, actions: &Tensor) -> Result<crate::Rollout> {
        let pred = self.rollout(z0, actions)?;
        // SAFETY: `rollout` returns a tensor built from its own host buffer
        // (`Tensor::f_from_slice`, then a reshape and device move of that only handle); the
        // model keeps no handle to it.
        Ok(unsafe { crate::Rollout::exclusive(pred) })
    }

    fn encode(&self, obs: &ObsBatch) -> Result<Tensor> {
        let site = Site {
            model: &self.name,
            method: "encode",
        };
        let obs = match obs.true_state() {
            Some(t) => t,
            None => match obs.field(STATE) {
                Some(t) if t.size().last().copied() == Some(self.state_shape[0]) => t,
                _ => return Err(ModelError::NoTrueState(self.name.clone())),
            },
        };
        let b = obs.size().first().copied().unwrap_or(-1);
        site.check_shape("the true state", obs, &[("B", b)], &self.state_shape)?;
        let _guard = tch::no_grad_guard();
        obs.f_to_kind(tch::Kind::Float)
            .and_then(|t| t.f_to_device(self.device))
            .and_then(|t| t.f_detach_copy())
            .ctx(|| format!("{}: encode", self.name))
    }

    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let site = Site {
            model: &self.name,
            method: "rollout",
        };
        let b = z0.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z0`", z0, &[("B", b)], &self.state_shape)?;
        let h = actions.size().get(1).copied().unwrap_or(-1);
        site.check_shape(
            "input `actions`",
            actions,
            &[("B", b), ("H", h)],
            &[self.action_dim],
        )?;
        let (bu, hu, d) = (b as usize, h as usize, self.state_shape[0] as usize);
        let z0v = to_vec_f32(z0)?;
        let av = to_vec_f32(actions)?;
        let mut out = vec![0f32; bu * hu * d];
        if bu > 0 && hu > 0 {
            let workers = self.threads.min(bu);
            let rows_per = bu.div_ceil(workers);
            let row_len = hu * d;
            if workers == 1 {
                self.rollout_rows(&z0v, &av, &mut out, 0, hu)?;
            } else {
                let results: Vec<Result<()>> = crossbeam::thread::scope(|s| {
                    let handles: Vec<_> = out
                        .chunks_mut(rows_per * row_len)
                        .enumerate()
                        .map(|(i, chunk)| {
                            let (z0v, av) = (&z0v, &av);
                            s.spawn(move |_| self.rollout_rows(z0v, av, chunk, i * rows_per, hu))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(ModelError::Internal(
                                    "a simulator worker thread panicked".into(),
                                ))
                            })
                        })
                        .collect()
                })
                .unwrap_or_else(|_| {
                    vec![Err(ModelError::Internal(
                        "a simulator worker thread panicked".into(),
                    ))]
                });
                results.into_iter().collect::<Result<Vec<()>>>()?;
            }
        }
        Tensor::f_from_slice(&out)
            .and_then(|t| t.f_reshape([b, h, d as i64]))
            .and_then(|t| t.f_to_device(self.device))
            .ctx(|| format!("{}: building the rollout tensor", self.name))
    }
}
