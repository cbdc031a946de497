//! Receding-horizon control: plan, execute a few actions, replan from the shifted plan.

use crate::blocks::ActionBlocks;
use crate::error::{Check, PlannerError, Result};
use crate::plan::{Budget, Plan, PlanOutput};
use crate::planner::Planner;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};
use zplan_models::{ObsBatch, Observation, WorldModel};

/// Receding-horizon settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MpcConfig {
    /// Control steps executed between plans (DINO-WM executes 5 planned actions).
    pub replan_every: usize,
    /// Control steps each planned action is held; the planner's horizon counts blocks.
    /// `replan_every` must be a multiple of it.
    pub action_block: usize,
    /// Cap on iterations per plan (`None`: the planner's own count).
    pub iterations: Option<u32>,
    /// Wall-clock budget per plan in milliseconds (`None`: no deadline).
    pub deadline_ms: Option<f64>,
    /// Start each plan from the previous one, shifted by the executed steps.
    pub warm_start: bool,
}

impl Default for MpcConfig {
    fn default() -> Self {
        Self {
            replan_every: 1,
            action_block: 1,
            iterations: None,
            deadline_ms: None,
            warm_start: true,
        }
    }
}

impl MpcConfig {
    /// Parses RON (`(replan_every: 2, action_block: 2)`, as `--mpc` takes it) and validates;
    /// limits as [`crate::PlannerConfig::from_ron_str`].
    pub fn from_ron_str(s: &str) -> Result<Self> {
        let cfg: Self = crate::error::parse_ron(s, "mpc")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks naming the field; NaN fails.
    pub fn validate(&self) -> Result<()> {
        let c = Check::new("mpc");
        c.at_least_one("replan_every", self.replan_every)?;
        c.at_least_one("action_block", self.action_block)?;
        if self.replan_every % self.action_block != 0 {
            return c.fail(
                "replan_every",
                format!(
                    "{} must be a multiple of action_block ({})",
                    self.replan_every, self.action_block
                ),
            );
        }
        if self.iterations == Some(0) {
            return c.fail(
                "iterations",
                "0 would never refine a plan (the robot would execute the initial guess); omit it for the planner's own count",
            );
        }
        if let Some(ms) = self.deadline_ms {
            c.positive("deadline_ms", ms as f32)?;
        }
        Ok(())
    }

    /// [`MpcConfig::validate`] plus the checks against the planner's horizon (in actions of
    /// `action_block` control steps): `replan_every` must fit in one plan.
    pub fn validate_for_horizon(&self, horizon: usize) -> Result<()> {
        self.validate()?;
        let blocks = self.replan_every / self.action_block;
        if blocks > horizon {
            return Err(PlannerError::InvalidConfig {
                field: "mpc.replan_every".into(),
                message: format!(
                    "{} control steps exceed the plan ({} actions of {} steps)",
                    self.replan_every, horizon, self.action_block
                ),
            });
        }
        Ok(())
    }

    /// The per-plan budget starting now. A deadline beyond what the clock can represent is
    /// none; a negative or NaN `deadline_ms` (which [`MpcConfig::validate`] refuses) has
    /// already passed.
    pub fn budget(&self) -> Budget {
        let now = Instant::now();
        Budget {
            iterations: self.iterations,
            deadline: self.deadline_ms.and_then(|ms| {
                match Duration::try_from_secs_f64(ms / 1000.0) {
                    Ok(d) => now.checked_add(d),
                    Err(_) if ms > 0.0 => None,
                    Err(_) => Some(now),
                }
            }),
        }
    }
}

/// One replanning step of [`Mpc`].
#[derive(Debug, Clone)]
pub struct MpcStep {
    /// Control actions to execute now, in order (`replan_every` of them).
    pub actions: Vec<Vec<f32>>,
    /// Wall time of encoding the observation and planning.
    pub plan_time: Duration,
    /// The planner's full output (its plan counts blocks of `action_block` control steps).
    pub output: PlanOutput,
}

/// A receding-horizon controller: a model, a planner and the goal of the current episode.
///
/// Per episode: [`Mpc::reset_episode`] encodes and caches the goal and reseeds the planner;
/// then either call [`Mpc::act`] once per control step (it replans every `replan_every`
/// steps) or [`Mpc::next_actions`] once per replan and execute all the actions it returns.
pub struct Mpc {
    model: Arc<dyn WorldModel>,
    planning_model: Arc<dyn WorldModel>,
    planner: Box<dyn Planner>,
    config: MpcConfig,
    goal: Option<Tensor>,
    previous: Option<Plan>,
    queue: VecDeque<Vec<f32>>,
    latencies: Vec<Duration>,
}

impl Mpc {
    /// Checks that model, planner and config fit together.
    pub fn new(
        model: Arc<dyn WorldModel>,
        planner: Box<dyn Planner>,
        config: MpcConfig,
    ) -> Result<Self> {
        config.validate()?;
        if model.action_dim() != planner.action_dim() as i64 {
            return Err(PlannerError::Shape(format!(
                "model `{}` takes {} action entries, planner `{}` plans {}",
                model.name(),
                model.action_dim(),
                planner.name(),
                planner.action_dim()
            )));
        }
        config.validate_for_horizon(planner.horizon())?;
        let skip = model.frameskip();
        if skip > 1 && config.action_block % skip != 0 {
            tracing::warn!(
                model = model.name(),
                "the model predicts {skip} control steps per step but the MPC's action_block is {}: plans will score latents interpolated inside its steps (use an action_block that is a multiple of {skip})",
                config.action_block
            );
        }
        let planning_model: Arc<dyn WorldModel> = if config.action_block > 1 {
            Arc::new(ActionBlocks::new(model.clone(), config.action_block))
        } else {
            model.clone()
        };
        Ok(Self {
            model,
            planning_model,
            planner,
            config,
            goal: None,
            previous: None,
            queue: VecDeque::new(),
            latencies: Vec::new(),
        })
    }

    /// The config.
    pub fn config(&self) -> &MpcConfig {
        &self.config
    }

    /// The planner.
    pub fn planner(&self) -> &dyn Planner {
        self.planner.as_ref()
    }

    /// The world model (without the action-block view).
    pub fn model(&self) -> &Arc<dyn WorldModel> {
        &self.model
    }

    /// Encodes one observation into a latent `[1, *latent]` on the model's device. Only the
    /// fields the model reads ([`WorldModel::obs_spec`]) are batched and moved (u8 images as
    /// u8); an observation lacking one, or with one of the wrong size, is an error naming it.
    pub fn encode(&self, obs: &Observation) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let batch =
            ObsBatch::from_observations(self.model.obs_spec(), &[obs], self.model.device())?;
        Ok(self.model.encode(&batch)?.f_to_kind(Kind::Float)?)
    }

    /// Starts an episode: encodes and caches the goal, forgets the previous plan and reseeds
    /// the planner with `seed`, so the episode does not depend on earlier ones.
    pub fn reset_episode(&mut self, goal_obs: &Observation, seed: u64) -> Result<()> {
        let goal = self.encode(goal_obs)?;
        self.reset_episode_latent(goal, seed);
        Ok(())
    }

    /// Like [`Mpc::reset_episode`] with an already encoded goal latent `[1, *latent]`.
    pub fn reset_episode_latent(&mut self, goal_latent: Tensor, seed: u64) {
        self.goal = Some(goal_latent);
        self.previous = None;
        self.queue.clear();
        self.latencies.clear();
        self.planner.reseed(seed);
    }

    /// Replaces the goal mid-episode (keeps the warm start).
    pub fn set_goal_latent(&mut self, goal_latent: Tensor) {
        self.goal = Some(goal_latent);
    }

    /// Plans from `obs` and returns the next `replan_every` control actions; the next call
    /// warm-starts from this plan shifted by them.
    pub fn next_actions(&mut self, obs: &Observation) -> Result<MpcStep> {
        let executed = if self.previous.is_some() {
            self.config.replan_every
        } else {
            0
        };
        let mut step = self.plan_after(obs, executed, self.config.budget())?;
        step.actions.truncate(self.config.replan_every);
        Ok(step)
    }

    /// One control action per call; replans whenever the actions of the last plan are used
    /// up (every `replan_every` calls).
    pub fn act(&mut self, obs: &Observation) -> Result<Vec<f32>> {
        if self.queue.is_empty() {
            let step = self.next_actions(obs)?;
            self.queue.extend(step.actions);
        }
        self.queue
            .pop_front()
            .ok_or_else(|| PlannerError::Shape("the plan has no actions".into()))
    }

    /// Plans from `obs` after `executed` control steps of the previous plan were carried out
    /// (for the warm start), within `budget`. `actions` holds the whole plan in control
    /// steps. The low-level entry point for callers that keep their own clock
    /// ([`crate::Controller`]).
    pub fn plan_after(
        &mut self,
        obs: &Observation,
        executed: usize,
        budget: Budget,
    ) -> Result<MpcStep> {
        let started = Instant::now();
        let z0 = self.encode(obs)?;
        let mut step = self.plan_latent(&z0, executed, budget)?;
        step.plan_time = started.elapsed();
        if let Some(last) = self.latencies.last_mut() {
            *last = step.plan_time;
        }
        Ok(step)
    }

    /// Like [`Mpc::plan_after`] from an already encoded (or predicted) latent `[1, *latent]`.
    pub fn plan_latent(&mut self, z0: &Tensor, executed: usize, budget: Budget) -> Result<MpcStep> {
        let started = Instant::now();
        let goal = self.goal.as_ref().ok_or_else(|| {
            PlannerError::Shape("no goal: call reset_episode before planning".into())
        })?;
        let warm = if self.config.warm_start {
            self.previous
                .as_ref()
                .map(|p| p.shifted(executed.checked_div(self.config.action_block).unwrap_or(0)))
        } else {
            None
        };
        let output = self.planner.plan(
            self.planning_model.as_ref(),
            z0,
            goal,
            warm.as_ref(),
            &budget,
        )?;
        let plan_time = started.elapsed();
        tracing::trace!(
            planner = self.planner.name(),
            iterations = output.iterations,
            rollouts = output.rollouts,
            best_energy = output.best_energy,
            hit_deadline = output.hit_deadline,
            ms = plan_time.as_secs_f64() * 1e3,
            "plan"
        );
        self.latencies.push(plan_time);
        self.previous = Some(output.plan.clone());
        Ok(MpcStep {
            actions: self.control_actions(&output.plan),
            plan_time,
            output,
        })
    }

    /// The latent after applying control `actions` from `z` `[1, *latent]` with the model
    /// (used to plan from where the robot will be once already committed actions are done).
    pub fn predict(&self, z: &Tensor, actions: &[Vec<f32>]) -> Result<Tensor> {
        if actions.is_empty() {
            return Ok(z.shallow_clone());
        }
        let a = self.model.action_dim();
        let flat: Vec<f32> = actions.iter().flatten().copied().collect();
        if flat.len() as i64 != a * actions.len() as i64 {
            return Err(PlannerError::Shape(format!(
                "committed actions must have {a} entries each"
            )));
        }
        let _guard = tch::no_grad_guard();
        let acts = Tensor::f_from_slice(&flat)?
            .f_view([1, actions.len() as i64, a])?
            .f_to_device(self.model.device())?;
        let pred = self.model.rollout(z, &acts)?;
        Ok(pred.f_select(1, actions.len() as i64 - 1)?)
    }

    /// A plan's actions in control steps (each held for `action_block` steps).
    pub fn control_actions(&self, plan: &Plan) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(
            plan.horizon()
                .saturating_mul(self.config.action_block)
                .min(1 << 16),
        );
        for action in plan.actions().chunks(plan.action_dim()) {
            for _ in 0..self.config.action_block {
                out.push(action.to_vec());
            }
        }
        out
    }

    /// The most recent plan.
    pub fn last_plan(&self) -> Option<&Plan> {
        self.previous.as_ref()
    }

    /// Wall time of every plan since the episode started.
    pub fn latencies(&self) -> &[Duration] {
        &self.latencies
    }
}
