//! The simulator-backed world model: the planning upper bound.

use crate::error::TchContext;
use crate::util::{fmt_shape, to_vec_f32, Site};
use crate::{ModelError, ObsBatch, Result, WorldModel};
use crossbeam::channel::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
/// **Threads.** By default a rollout runs on the calling thread alone. [`SimModel::with_threads`]
/// `(n)` starts `n - 1` persistent worker threads (named `zplan-sim-<i>`), started once and
/// kept until the model is dropped: a rollout's batch is split into `n` contiguous chunks, the
/// calling thread steps the first and the workers the others. One model shared by several
/// planner threads shares one pool, so the threads a process runs stay bounded: zplan's runner
/// gives each simulator-backed model `cores / workers` threads, counting it in the
/// `workers × threads <= cores` rule with libtorch's.
///
/// Every chunk steps its own environment copy ([`Env::boxed_clone`], kept in a pool between
/// calls). Before every batch row the copy is [`Env::restore`]d to a base snapshot (which reuses
/// its allocations) and put into the row's state with [`Env::set_state`]. A row's result thus
/// depends only on its `z0` and actions, never on what the copy did before (contact caches,
/// warm-start impulses, counters): results are bit-identical whatever the number of threads.
pub struct SimModel {
    core: Arc<Core>,
    obs_spec: ObsSpec,
    state_shape: Vec<i64>,
    threads: usize,
    device: Device,
    /// Persistent workers for chunks 1.. of a rollout (`threads - 1` of them).
    pool: Option<Pool>,
}

/// What every thread of a rollout shares: the scenario copies and their base state.
struct Core {
    name: String,
    state_dim: usize,
    action_dim: usize,
    /// The state every row starts from before `set_state`.
    base: Snapshot,
    /// Environment copies are cloned from this one (never stepped itself).
    template: Box<dyn Env>,
    /// Idle copies; each chunk takes one per call and puts it back.
    envs: Mutex<Vec<Box<dyn Env>>>,
}

/// One chunk of a rollout for a pool worker: rows `first .. first + rows` of the batch.
struct Job {
    z0: Arc<Vec<f32>>,
    actions: Arc<Vec<f32>>,
    first: usize,
    rows: usize,
    horizon: usize,
    reply: Sender<(usize, Result<Vec<f32>>)>,
}

/// The persistent worker threads of one [`SimModel`].
struct Pool {
    jobs: Option<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(core: &Arc<Core>, workers: usize) -> Result<Self> {
        let (tx, rx) = channel::unbounded::<Job>();
        let mut pool = Pool {
            jobs: Some(tx),
            handles: Vec::with_capacity(workers),
        };
        for i in 0..workers {
            let (core, rx): (Arc<Core>, Receiver<Job>) = (core.clone(), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("zplan-sim-{}", i + 1))
                .spawn(move || {
                    for job in rx.iter() {
                        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut out = vec![0f32; job.rows * job.horizon * core.state_dim];
                            core.rollout_rows(
                                &job.z0,
                                &job.actions,
                                &mut out,
                                job.first,
                                job.horizon,
                            )
                            .map(|()| out)
                        }))
                        .unwrap_or_else(|_| {
                            Err(ModelError::Internal(
                                "a simulator worker thread panicked".into(),
                            ))
                        });
                        // The caller may have given up (an error in another chunk): ignore.
                        let _ = job.reply.send((job.first, out));
                    }
                })
                .map_err(|e| ModelError::Internal(format!("starting a simulator thread: {e}")));
            match handle {
                Ok(h) => pool.handles.push(h),
                // Dropping `pool` stops the workers already started.
                Err(e) => return Err(e),
            }
        }
        Ok(pool)
    }

    fn submit(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| ModelError::Internal("the simulator threads have stopped".into()))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker's loop.
        self.jobs.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for SimModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimModel")
            .field("name", &self.core.name)
            .field("state_shape", &self.state_shape)
            .field("action_dim", &self.core.action_dim)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl SimModel {
    /// Wraps an environment in any state: its current state becomes the base snapshot that
    /// every rollout row starts from, with the dynamic state then replaced by the row's `z0`
    /// (the goal and other settings are kept).
    ///
    /// Rollouts run on the calling thread; see [`SimModel::with_threads`] for more.
    pub fn new(env: Box<dyn Env>) -> Self {
        let spec = env.spec();
        let name = format!("sim:{}", spec.kind);
        let state_dim = spec.state_dim();
        let obs_spec = spec.observation.clone();
        let action_dim = spec.action_dim();
        SimModel {
            core: Arc::new(Core {
                name,
                state_dim,
                action_dim,
                base: env.snapshot(),
                template: env,
                envs: Mutex::new(Vec::new()),
            }),
            obs_spec,
            state_shape: vec![state_dim as i64],
            threads: 1,
            device: Device::Cpu,
            pool: None,
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

    /// Rolls out on `threads` threads: the calling thread and `threads - 1` persistent workers,
    /// started here and stopped when the model is dropped (at least 1; at most
    /// [`SimModel::MAX_THREADS`]). Results do not depend on it.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for 0 or more than [`SimModel::MAX_THREADS`];
    /// [`ModelError::Internal`] when the operating system refuses a thread.
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        if threads == 0 || threads > Self::MAX_THREADS {
            return Err(ModelError::InvalidConfig(format!(
                "SimModel threads must be in 1..={}, got {threads}",
                Self::MAX_THREADS
            )));
        }
        // Stop the old workers before starting new ones.
        self.pool = None;
        self.pool = if threads > 1 {
            Some(Pool::start(&self.core, threads - 1)?)
        } else {
            None
        };
        self.threads = threads;
        Ok(self)
    }

    /// The most threads [`SimModel::with_threads`] accepts.
    pub const MAX_THREADS: usize = 1024;

    /// Puts outputs of `encode` and `rollout` on `device` (the simulation itself runs on the CPU).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Number of threads a rollout runs on (the calling thread included).
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Core {
    fn take_env(&self) -> Box<dyn Env> {
        let pooled = self.envs.lock().unwrap_or_else(|p| p.into_inner()).pop();
        pooled.unwrap_or_else(|| self.template.boxed_clone())
    }

    fn put_env(&self, env: Box<dyn Env>) {
        self.envs
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
        let d = self.state_dim;
        let a = self.action_dim;
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
            let state = z0.get(row * d..(row + 1) * d).ok_or_else(|| {
                ModelError::Internal(format!("{}: batch row {row} is outside z0", self.name))
            })?;
            env.set_state(state).map_err(sim_err(format!(
                "{}: set_state for batch row {row}",
                self.name
            )))?;
            for t in 0..h {
                let act = actions
                    .get((row * h + t) * a..(row * h + t + 1) * a)
                    .ok_or_else(|| {
                        ModelError::Internal(format!(
                            "{}: step {t} of batch row {row} is outside the actions",
                            self.name
                        ))
                    })?;
                env.step(act).map_err(sim_err(format!(
                    "{}: step {t} of batch row {row}",
                    self.name
                )))?;
                let obs = env.state();
                let slot = out.get_mut((r * h + t) * d..(r * h + t + 1) * d);
                match slot {
                    Some(slot) if obs.len() == d => slot.copy_from_slice(&obs),
                    _ => {
                        return Err(Site {
                            model: &self.name,
                            method: "state",
                        }
                        .shape_err(
                            "output",
                            fmt_shape(&[d as i64]),
                            &[obs.len() as i64],
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
impl WorldModel for SimModel {
    fn name(&self) -> &str {
        &self.core.name
    }
    fn device(&self) -> Device {
        self.device
    }
    fn obs_spec(&self) -> &ObsSpec {
        &self.obs_spec
    }
    fn action_dim(&self) -> i64 {
        self.core.action_dim as i64
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
        let name = &self.core.name;
        let site = Site {
            model: name,
            method: "encode",
        };
        let obs = match obs.true_state() {
            Some(t) => t,
            None => match obs.field(STATE) {
                Some(t) if t.size().last().copied() == Some(self.state_shape[0]) => t,
                _ => return Err(ModelError::NoTrueState(name.clone())),
            },
        };
        let b = obs.size().first().copied().unwrap_or(-1);
        site.check_shape("the true state", obs, &[("B", b)], &self.state_shape)?;
        let _guard = tch::no_grad_guard();
        obs.f_to_kind(tch::Kind::Float)
            .and_then(|t| t.f_to_device(self.device))
            .and_then(|t| t.f_detach_copy())
            .ctx(|| format!("{name}: encode"))
    }

    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        let core = &self.core;
        let site = Site {
            model: &core.name,
            method: "rollout",
        };
        let b = z0.size().first().copied().unwrap_or(-1);
        site.check_shape("input `z0`", z0, &[("B", b)], &self.state_shape)?;
        let h = actions.size().get(1).copied().unwrap_or(-1);
        site.check_shape(
            "input `actions`",
            actions,
            &[("B", b), ("H", h)],
            &[core.action_dim as i64],
        )?;
        let (bu, hu, d) = (b as usize, h as usize, core.state_dim);
        let row_len = hu * d;
        let mut out = vec![0f32; bu * row_len];
        let chunks = self.threads.min(bu);
        match &self.pool {
            Some(pool) if chunks > 1 && hu > 0 => {
                let z0v = Arc::new(to_vec_f32(z0)?);
                let av = Arc::new(to_vec_f32(actions)?);
                let rows_per = bu.div_ceil(chunks);
                let (reply, replies) = channel::unbounded();
                let mut submitted = 0;
                for first in (rows_per..bu).step_by(rows_per) {
                    pool.submit(Job {
                        z0: z0v.clone(),
                        actions: av.clone(),
                        first,
                        rows: rows_per.min(bu - first),
                        horizon: hu,
                        reply: reply.clone(),
                    })?;
                    submitted += 1;
                }
                drop(reply);
                let mine = core.rollout_rows(&z0v, &av, &mut out[..rows_per * row_len], 0, hu);
                // Collect every reply before returning, so no worker still reads this call's
                // inputs; the first error wins.
                let mut result = mine;
                for _ in 0..submitted {
                    let (first, part) = replies.recv().map_err(|_| {
                        ModelError::Internal("a simulator thread stopped mid-call".into())
                    })?;
                    match part {
                        Ok(part) => {
                            let at = first * row_len;
                            if let Some(dst) = out.get_mut(at..at + part.len()) {
                                dst.copy_from_slice(&part);
                            }
                        }
                        Err(e) => {
                            if result.is_ok() {
                                result = Err(e);
                            }
                        }
                    }
                }
                result?;
            }
            _ if bu > 0 && hu > 0 => {
                core.rollout_rows(&to_vec_f32(z0)?, &to_vec_f32(actions)?, &mut out, 0, hu)?;
            }
            _ => {}
        }
        Tensor::f_from_slice(&out)
            .and_then(|t| t.f_reshape([b, h, d as i64]))
            .and_then(|t| t.f_to_device(self.device))
            .ctx(|| format!("{}: building the rollout tensor", core.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn model(threads: usize) -> SimModel {
        let config = zplan_sim::ScenarioConfig::default();
        SimModel::from_config(&config)
            .unwrap()
            .with_threads(threads)
            .unwrap()
    }

    /// The same rollout, bit for bit, on 1, 2 and 3 threads (uneven chunks included).
    #[test]
    fn threads_do_not_change_results() {
        let b = 7;
        let h = 5;
        let z0 = Tensor::from_slice(&[0.5f32, 0.4, 0.0, 0.0])
            .view([1, 4])
            .repeat([b, 1])
            .contiguous();
        let actions =
            Tensor::linspace(-1.0, 1.0, b * h * 2, (Kind::Float, Device::Cpu)).view([b, h, 2]);
        let bits = |t: Tensor| -> Vec<u32> {
            Vec::<f32>::try_from(t.reshape([-1]))
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let one = bits(model(1).rollout(&z0, &actions).unwrap());
        for threads in [2, 3] {
            let m = model(threads);
            for _ in 0..3 {
                assert_eq!(
                    bits(m.rollout(&z0, &actions).unwrap()),
                    one,
                    "{threads} threads"
                );
            }
        }
    }

    /// Workers start once and persist across rollouts (tests/threads.rs watches a whole suite
    /// run from outside the process).
    #[test]
    fn workers_persist_across_rollouts() {
        let m = model(3);
        assert_eq!(m.threads(), 3);
        let ids = |m: &SimModel| -> Vec<std::thread::ThreadId> {
            let pool = m.pool.as_ref().expect("3 threads have a pool");
            assert!(
                pool.handles.iter().all(|h| !h.is_finished()),
                "workers alive"
            );
            pool.handles.iter().map(|h| h.thread().id()).collect()
        };
        let before = ids(&m);
        assert_eq!(before.len(), 2);
        let z0 = Tensor::zeros([6, 4], (Kind::Float, Device::Cpu));
        let actions = Tensor::zeros([6, 4, 2], (Kind::Float, Device::Cpu));
        for _ in 0..5 {
            let _ = m.rollout(&z0, &actions).unwrap();
        }
        assert_eq!(ids(&m), before, "the same workers serve every rollout");
        assert!(model(1).pool.is_none(), "one thread: no pool");
    }

    #[test]
    fn thread_counts_are_checked() {
        let config = zplan_sim::ScenarioConfig::default();
        for bad in [0, SimModel::MAX_THREADS + 1] {
            let err = SimModel::from_config(&config)
                .unwrap()
                .with_threads(bad)
                .unwrap_err();
            assert!(err.to_string().contains("threads must be in 1..="), "{err}");
        }
    }
}
