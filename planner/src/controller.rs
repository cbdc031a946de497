//! A planner on its own thread, for embedding in a fixed-rate robot control loop.

use crate::bounds::ActionBounds;
use crate::energy::EnergyConfig;
use crate::error::{PlannerError, Result};
use crate::mpc::{Mpc, MpcConfig};
use crate::plan::Budget;
use crate::planner::PlannerConfig;
use crate::stats::duration_percentile;
use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use crossbeam::epoch::{self, Atomic, Owned};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zplan_models::{Observation, WorldModel};

/// How the controller thread plans.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerOptions {
    /// Period of the caller's control loop; [`Controller::latest_action`] steps through the
    /// latest plan at this rate.
    pub control_dt: Duration,
    /// Each plan must be published within this time of its observation's arrival (change it
    /// while running with [`Controller::set_plan_deadline`]).
    pub plan_deadline: Duration,
    /// Cap on iterations per plan (`None`: the planner's own count).
    pub iterations: Option<u32>,
    /// Control steps each planned action is held (see [`MpcConfig::action_block`]). With
    /// blocks longer than 1 the planner replans once per block (on the first observation at
    /// or after a block boundary), so its warm start stays aligned with time.
    pub action_block: usize,
    /// Delay compensation: control periods between an observation and the first action of
    /// the plan made from it. The planner predicts the state that far ahead with the actions
    /// already committed for those periods and plans from there, so a plan published within
    /// `lookahead · control_dt` starts exactly when its first action is due. 0 plans from the
    /// observed state (its first action is then already late when published).
    pub lookahead: usize,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            control_dt: Duration::from_millis(50),
            plan_deadline: Duration::from_millis(40),
            iterations: None,
            action_block: 1,
            lookahead: 1,
        }
    }
}

/// Counters of a running controller (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerStats {
    /// Observations pushed.
    pub observations: u64,
    /// Observations replaced by a newer one before the planner took them.
    pub dropped_observations: u64,
    /// Plans published.
    pub plans: u64,
    /// Plans published later than `plan_deadline` after their observation arrived.
    pub deadline_misses: u64,
    /// Plans that failed.
    pub errors: u64,
}

/// What a stopped controller reports.
#[derive(Debug, Clone, Default)]
pub struct ControllerReport {
    /// Final counters.
    pub stats: ControllerStats,
    /// Observation-arrival-to-publication latency of each plan (includes waiting for the
    /// planner to finish the previous plan).
    pub latencies: Vec<Duration>,
    /// Compute time of each plan (encode, prediction, planning).
    pub plan_times: Vec<Duration>,
    /// The last planning error, if any.
    pub last_error: Option<String>,
}

impl ControllerReport {
    /// Latency percentile (0–100).
    pub fn latency_percentile(&self, p: f64) -> Option<Duration> {
        duration_percentile(&self.latencies, p)
    }
}

/// A plan with the instant its first action is due, and the plan it replaces (still in force
/// until then).
#[derive(Clone)]
struct Published {
    /// Goal generation the plan was made for (see [`Controller::set_goal`]).
    generation: u64,
    t0: Instant,
    actions: Arc<Vec<Vec<f32>>>,
    before: Option<(Instant, Arc<Vec<Vec<f32>>>)>,
}

impl Published {
    /// The action scheduled at `now` for a loop of period `dt` (`None` for an empty plan,
    /// which planners never return).
    fn action_at(&self, now: Instant, dt: Duration) -> Option<&[f32]> {
        let (t0, actions) = match &self.before {
            // Before the new plan is due (by more than half a period), the old one holds.
            Some((t, a)) if later(now, dt / 2) < self.t0 => (*t, a),
            _ => (self.t0, &self.actions),
        };
        let dt = dt.as_secs_f64().max(1e-9);
        let k = (now.saturating_duration_since(t0).as_secs_f64() / dt).round() as usize;
        actions
            .get(k.min(actions.len().saturating_sub(1)))
            .map(Vec::as_slice)
    }
}

/// `at + d`, or `at` pushed as far as the clock allows when that overflows (a duration of
/// centuries), instead of panicking.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(u32::MAX.into())))
        .unwrap_or(at)
}

/// `d · n`, saturating.
fn times(d: Duration, n: usize) -> Duration {
    d.checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX)
}

/// A lock-free single-value slot: the planner swaps in a new plan, readers never wait.
struct Slot(Atomic<Published>);

impl Slot {
    fn publish(&self, p: Published) {
        let guard = epoch::pin();
        let old = self.0.swap(Owned::new(p), Ordering::AcqRel, &guard);
        if !old.is_null() {
            // SAFETY: `old` came from `Owned::new` in an earlier `publish` and this swap has
            // just unlinked it, so no later `read` can load it and no other `publish` can get
            // it back (each swap returns a pointer once). Readers that loaded it before are
            // pinned, and the epoch collector destroys it only after they unpin.
            unsafe { guard.defer_destroy(old) };
        }
    }

    fn read<R>(&self, f: impl FnOnce(&Published) -> R) -> Option<R> {
        let guard = epoch::pin();
        let shared = self.0.load(Ordering::Acquire, &guard);
        // SAFETY: the slot holds null or a pointer from `Owned::new`; a pointer is freed only
        // after `publish` unlinks it (deferred until every guard pinned before then, this one
        // included, is dropped) or in `drop` (which needs `&mut self`, impossible while this
        // `&self` borrow lives). So it is live for as long as `guard`, which outlives `f`.
        unsafe { shared.as_ref() }.map(f)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no `read` or `publish` of this slot is running, so no
        // guard protects the current pointer; it came from `Owned::new` and, never unlinked,
        // was never handed to `defer_destroy`, so it is freed exactly once, here. The
        // unprotected guard is sound because nothing else can access the slot concurrently.
        unsafe {
            let shared = self.0.load(Ordering::Relaxed, epoch::unprotected());
            if !shared.is_null() {
                drop(shared.into_owned());
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    observations: AtomicU64,
    dropped: AtomicU64,
    plans: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ControllerStats {
        ControllerStats {
            observations: self.observations.load(Ordering::Relaxed),
            dropped_observations: self.dropped.load(Ordering::Relaxed),
            plans: self.plans.load(Ordering::Relaxed),
            deadline_misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// An observation with its arrival time.
struct Stamped {
    obs: Observation,
    at: Instant,
}

enum Command {
    /// New goal observation, seed, generation.
    Goal(Observation, u64, u64),
    /// New per-plan deadline.
    Deadline(Duration),
    Stop,
}

/// What the planner thread does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Keep planning with the current schedule.
    Continue,
    /// A new goal: forget the plan in force (its schedule and warm start).
    NewGoal,
    /// Stop the thread.
    Stop,
}

/// A planner running on its own thread. The control loop pushes observations and reads the
/// action for "now" without ever blocking; the planner replans whenever an observation
/// arrives (dropping stale ones; at most once per control period, or per action block), each
/// plan with a deadline, and publishes it with the time its first action is due, so that
/// [`Controller::latest_action`] steps through it as time passes even when planning takes
/// several control periods.
///
/// Typical loop, once per control period: `push_observation(&obs)`, then
/// `latest_action()` (hold a safe action while it is `None`), then actuate.
pub struct Controller {
    obs_tx: Sender<Stamped>,
    obs_drain: Receiver<Stamped>,
    cmd_tx: Sender<Command>,
    slot: Arc<Slot>,
    counters: Arc<Counters>,
    generation: AtomicU64,
    control_dt: Duration,
    handle: Option<JoinHandle<ControllerReport>>,
}

impl Controller {
    /// Builds the planner and an [`Mpc`] around it, encodes the goal, and starts the thread.
    /// Configuration and goal errors are returned here, not from the thread.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        model: Arc<dyn WorldModel>,
        planner: &PlannerConfig,
        energy: EnergyConfig,
        bounds: ActionBounds,
        goal_obs: &Observation,
        seed: u64,
        options: ControllerOptions,
    ) -> Result<Controller> {
        let planner = planner.build(bounds, energy, seed)?;
        let mpc_config = MpcConfig {
            replan_every: options.action_block.max(1),
            action_block: options.action_block.max(1),
            iterations: options.iterations,
            deadline_ms: None,
            warm_start: true,
        };
        let mut mpc = Mpc::new(model, planner, mpc_config)?;
        mpc.reset_episode(goal_obs, seed)?;
        let (obs_tx, obs_rx) = channel::bounded::<Stamped>(1);
        let (cmd_tx, cmd_rx) = channel::unbounded::<Command>();
        let slot = Arc::new(Slot(Atomic::null()));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            mpc,
            obs_rx: obs_rx.clone(),
            cmd_rx,
            slot: slot.clone(),
            counters: counters.clone(),
            options: options.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("zplan-planner".into())
            .spawn(move || worker.run())
            .map_err(|e| PlannerError::Controller(format!("cannot start planner thread: {e}")))?;
        Ok(Controller {
            obs_tx,
            obs_drain: obs_rx,
            cmd_tx,
            slot,
            counters,
            generation: AtomicU64::new(0),
            control_dt: options.control_dt,
            handle: Some(handle),
        })
    }

    /// Hands the planner a new observation, replacing one it has not started on yet.
    /// Never blocks.
    pub fn push_observation(&self, obs: &Observation) {
        self.counters.observations.fetch_add(1, Ordering::Relaxed);
        let mut msg = Stamped {
            obs: obs.clone(),
            at: Instant::now(),
        };
        // bounded(1): at most a couple of rounds even if the planner takes one meanwhile.
        for _ in 0..4 {
            match self.obs_tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(m)) => {
                    if self.obs_drain.try_recv().is_ok() {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    msg = m;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The action the latest plan schedules for now: step `round((now − t0) / control_dt)` of
    /// the plan whose first action is due at `t0` (observation time + `lookahead` periods;
    /// rounding absorbs loop jitter), the previous plan's until then, and the last action once
    /// a plan runs out.
    /// `None` until the first plan is published. Never blocks.
    pub fn latest_action(&self) -> Option<Vec<f32>> {
        let now = Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        self.slot
            .read(|p| {
                (p.generation == generation)
                    .then(|| p.action_at(now, self.control_dt).map(<[f32]>::to_vec))
                    .flatten()
            })
            .flatten()
    }

    /// Switches to a new goal (encoded on the planner thread, which also reseeds and forgets
    /// the warm start). From now on [`Controller::latest_action`] answers `None` until a plan
    /// for this goal is published, never an action planned for the old one.
    pub fn set_goal(&self, goal_obs: &Observation, seed: u64) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let _ = self
            .cmd_tx
            .send(Command::Goal(goal_obs.clone(), seed, generation));
    }

    /// Changes the per-plan deadline ([`ControllerOptions::plan_deadline`]) from the next plan
    /// on; the plan in force and the warm start are kept. Never blocks. Deadline misses are
    /// counted against the deadline that applied to each plan.
    pub fn set_plan_deadline(&self, deadline: Duration) {
        let _ = self.cmd_tx.send(Command::Deadline(deadline));
    }

    /// Current counters.
    pub fn stats(&self) -> ControllerStats {
        self.counters.snapshot()
    }

    /// Stops the thread after its current plan and returns its report.
    pub fn stop(mut self) -> Result<ControllerReport> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<ControllerReport> {
        let _ = self.cmd_tx.send(Command::Stop);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| PlannerError::Controller("planner thread panicked".into())),
            None => Ok(ControllerReport::default()),
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

struct Worker {
    mpc: Mpc,
    obs_rx: Receiver<Stamped>,
    cmd_rx: Receiver<Command>,
    slot: Arc<Slot>,
    counters: Arc<Counters>,
    options: ControllerOptions,
}

impl Worker {
    fn run(mut self) -> ControllerReport {
        let mut report = ControllerReport::default();
        let mut current: Option<Published> = None;
        let mut generation = 0u64;
        let dt = self.options.control_dt.as_secs_f64().max(1e-9);
        loop {
            // Commands first (a goal sent before an observation applies to it).
            while let Ok(cmd) = self.cmd_rx.try_recv() {
                match self.command(cmd, &mut report, &mut generation) {
                    Flow::Stop => return self.finish(report),
                    Flow::NewGoal => current = None,
                    Flow::Continue => {}
                }
            }
            let obs = channel::select! {
                recv(self.cmd_rx) -> cmd => {
                    let flow = match cmd {
                        Ok(cmd) => self.command(cmd, &mut report, &mut generation),
                        Err(_) => Flow::Stop,
                    };
                    match flow {
                        Flow::Stop => break,
                        Flow::NewGoal => current = None,
                        Flow::Continue => {}
                    }
                    continue;
                }
                recv(self.obs_rx) -> obs => match obs {
                    Ok(obs) => obs,
                    Err(_) => break,
                },
            };
            if let Ok(cmd) = self.cmd_rx.try_recv() {
                // A command raced the observation: apply it, then plan.
                match self.command(cmd, &mut report, &mut generation) {
                    Flow::Stop => break,
                    Flow::NewGoal => current = None,
                    Flow::Continue => {}
                }
            }
            let t0 = later(
                obs.at,
                times(self.options.control_dt, self.options.lookahead),
            );
            let executed = current
                .as_ref()
                .map(|p: &Published| {
                    (t0.saturating_duration_since(p.t0).as_secs_f64() / dt).round() as usize
                })
                .unwrap_or(0);
            if current.is_some() && executed < self.options.action_block.max(1) {
                // Replan on block boundaries only, so the warm start stays aligned with time.
                continue;
            }
            let budget = Budget {
                iterations: self.options.iterations,
                deadline: obs.at.checked_add(self.options.plan_deadline),
            };
            let compute_started = Instant::now();
            let planned = self.mpc.encode(&obs.obs).and_then(|z| {
                // Delay compensation: start from where the committed actions will take us.
                let committed: Vec<Vec<f32>> = match &current {
                    Some(p) => (0..self.options.lookahead)
                        .filter_map(|j| {
                            p.action_at(
                                later(obs.at, times(self.options.control_dt, j)),
                                self.options.control_dt,
                            )
                            .map(<[f32]>::to_vec)
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let z = self.mpc.predict(&z, &committed)?;
                self.mpc.plan_latent(&z, executed, budget)
            });
            match planned {
                Ok(step) => {
                    let before = current.as_ref().map(|p| {
                        let now = Instant::now();
                        match &p.before {
                            Some((t, a)) if later(now, self.options.control_dt / 2) < p.t0 => {
                                (*t, a.clone())
                            }
                            _ => (p.t0, p.actions.clone()),
                        }
                    });
                    // Without a committed history the first plan starts at the observation.
                    let start = if current.is_some() { t0 } else { obs.at };
                    let published = Published {
                        generation,
                        t0: start,
                        actions: Arc::new(step.actions),
                        before,
                    };
                    self.slot.publish(published.clone());
                    current = Some(published);
                    let latency = obs.at.elapsed();
                    self.counters.plans.fetch_add(1, Ordering::Relaxed);
                    if latency > self.options.plan_deadline {
                        self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    }
                    report.latencies.push(latency);
                    report.plan_times.push(compute_started.elapsed());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller: planning failed");
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    report.last_error = Some(e.to_string());
                }
            }
        }
        self.finish(report)
    }

    /// Applies a command and says what the loop does next.
    fn command(
        &mut self,
        cmd: Command,
        report: &mut ControllerReport,
        generation: &mut u64,
    ) -> Flow {
        match cmd {
            Command::Goal(goal, seed, g) => {
                *generation = g;
                if let Err(e) = self.mpc.reset_episode(&goal, seed) {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    report.last_error = Some(e.to_string());
                }
                Flow::NewGoal
            }
            Command::Deadline(d) => {
                self.options.plan_deadline = d;
                Flow::Continue
            }
            Command::Stop => Flow::Stop,
        }
    }

    fn finish(&self, mut report: ControllerReport) -> ControllerReport {
        report.stats = self.counters.snapshot();
        report
    }
}
