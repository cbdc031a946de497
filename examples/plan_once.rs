//! One plan from a scenario's start towards its goal, printed as JSON: the Rust-API reference
//! that the Python bindings' tests compare against (`python/tests/test_planner.py`), and a
//! small example of the planning API without MPC.
//!
//! ```text
//! cargo run --release --example plan_once -- scenarios/reach.ron sim \
//!     "Cem(samples: 64, elites: 8, iterations: 3, horizon: 5)" "(metric: L2)" 7 50000
//! ```
//!
//! Arguments: scenario file, model (`sim`, `torchscript:PATH`, `jepa:PATH`), planner RON,
//! energy RON, planner seed, episode seed. Prints `{"actions": [...], "horizon": H,
//! "action_dim": A, "best_energy": e, "energy_trace": [...]}`.
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::str::FromStr;
use zplan_models::{DeviceChoice, ModelSpec, ObsBatch};
use zplan_planner::{ActionBounds, Budget, EnergyConfig, PlannerConfig};
use zplan_sim::ScenarioConfig;

fn main() -> Result<()> {
    // One libtorch thread: the reference plan does not depend on the machine's core count.
    tch::set_num_threads(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, model, planner, energy, seed, episode] = args.as_slice() else {
        bail!("usage: plan_once SCENARIO MODEL PLANNER_RON ENERGY_RON SEED EPISODE_SEED");
    };
    let config = ScenarioConfig::load(Path::new(scenario))?;
    let spec = ModelSpec::from_str(model)?;
    let model = zplan_models::load_model_with_threads(&spec, &config, DeviceChoice::Cpu, 1)?;
    let planner = PlannerConfig::from_ron_str(planner)?;
    let energy = EnergyConfig::from_ron_str(energy)?;
    let seed: u64 = seed.parse().context("seed")?;
    let episode: u64 = episode.parse().context("episode seed")?;

    let mut env = config.build()?;
    env.reset(episode)?;
    let (mut obs, mut goal) = (env.observe(), env.goal_observation());
    if model.needs_true_state() {
        obs = obs.with_true_state(env.state());
        goal = goal.with_true_state(env.goal_state());
    }
    let encode = |o| -> Result<tch::Tensor> {
        let batch = ObsBatch::from_observations(model.obs_spec(), &[o], model.device())?;
        Ok(model.encode(&batch)?)
    };
    let (z0, zg) = (encode(&obs)?, encode(&goal)?);
    let env_spec = config.spec();
    let bounds = ActionBounds::new(env_spec.action_low, env_spec.action_high)?;
    let mut planner = planner.build(bounds, energy, seed)?;
    let out = planner.plan(model.as_ref(), &z0, &zg, None, &Budget::unlimited())?;
    let json = serde_json::json!({
        "actions": out.plan.actions(),
        "horizon": out.plan.horizon(),
        "action_dim": out.plan.action_dim(),
        "best_energy": out.best_energy,
        "energy_trace": out.energy_trace,
    });
    println!("{json}");
    Ok(())
}
