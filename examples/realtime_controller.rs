//! A fixed-rate robot control loop driving a scenario in real time through the planner's
//! embeddable [`Controller`]: every tick it pushes the observation and applies the latest
//! action without ever waiting for the planner, which replans on its own thread with a
//! deadline per plan.
//!
//! ```text
//! cargo run --release --example realtime_controller -- --scenario scenarios/reach.ron
//! cargo run --release --example realtime_controller -- --scenario scenarios/two_rooms.ron \
//!     --hz 20 --episodes 5 --model jepa:models/two_rooms
//! cargo run --release --example realtime_controller -- --scenario scenarios/reach.ron \
//!     --model jepa:models/trained/reach --rollout-threads 2
//! ```
//!
//! Prints per episode whether the goal was reached, and at the end the loop's missed ticks,
//! the planner's deadline misses and its latency percentiles (observation to published plan).
//! Every tick advances the simulation by one control period, so at `--hz 20` a scenario with
//! `control_dt = 0.1` runs at twice its physical speed.

use clap::Parser;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zplan_models::{load_model, DeviceChoice, ModelSpec, ParallelRollout, WorldModel};
use zplan_planner::{
    duration_percentile, ActionBounds, CemConfig, Controller, ControllerOptions, EnergyConfig,
    ICemConfig, Metric, PlannerConfig, Reduction,
};
use zplan_sim::ScenarioConfig;

#[derive(Parser, Debug)]
#[command(about = "Real-time MPC through zplan_planner::Controller")]
struct Args {
    /// Scenario file.
    #[arg(long, default_value = "scenarios/reach.ron")]
    scenario: PathBuf,
    /// World model: `sim` (the simulator itself), `torchscript:PATH` or `jepa:PATH`.
    #[arg(long, default_value = "sim")]
    model: String,
    /// Device for learned models: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Planner settings in RON, e.g. `Cem(samples: 64, elites: 8, horizon: 6)`; default: a
    /// preset for the scenario family.
    #[arg(long)]
    planner: Option<String>,
    /// Energy settings in RON; default: a preset for the scenario family.
    #[arg(long)]
    energy: Option<String>,
    /// Control-loop rate.
    #[arg(long, default_value_t = 20.0)]
    hz: f64,
    /// Per-plan deadline in milliseconds (default: 80 % of the period).
    #[arg(long)]
    deadline_ms: Option<f64>,
    /// Control steps each planned action is held.
    #[arg(long)]
    action_block: Option<usize>,
    /// Episodes to run.
    #[arg(long, default_value_t = 3)]
    episodes: u32,
    /// Seed of the first episode (evaluation seeds; keep them disjoint from training data).
    #[arg(long, default_value_t = 50_000)]
    seed: u64,
    /// Roll out groups of candidates on this many CPU threads at once
    /// (`zplan_models::ParallelRollout`); 1 = the planner thread alone.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    rollout_threads: u64,
}

/// Planner, energy and action block that suit a scenario family under a tight deadline: the
/// closed-loop test's settings (`planner/tests/closed_loop.rs`) with fewer samples, so that
/// one iteration fits the deadline (the anytime planner cuts later iterations as needed).
fn preset(kind: &str) -> (PlannerConfig, EnergyConfig, usize) {
    let sum_l2 = EnergyConfig {
        metric: Metric::L2,
        reduction: Reduction::Sum,
        ..EnergyConfig::default()
    };
    match kind {
        "two_rooms" => (
            PlannerConfig::ICem(ICemConfig {
                samples: 48,
                elites: 6,
                iterations: 3,
                horizon: 15,
                init_std: 0.8,
                beta: 2.5,
                ..ICemConfig::default()
            }),
            sum_l2,
            3,
        ),
        "push" => (
            PlannerConfig::ICem(ICemConfig {
                samples: 48,
                elites: 6,
                iterations: 3,
                horizon: 10,
                init_std: 0.8,
                beta: 2.0,
                ..ICemConfig::default()
            }),
            EnergyConfig {
                // push.ron observes poses: pusher x, y; block x, y, cos, sin
                latent_weights: vec![0.2, 0.2, 1.0, 1.0, 0.5, 0.5],
                ..sum_l2
            },
            2,
        ),
        _ => (
            PlannerConfig::Cem(CemConfig {
                samples: 32,
                elites: 6,
                iterations: 3,
                horizon: 5,
                init_std: 0.8,
                momentum: 0.0,
                ..CemConfig::default()
            }),
            sum_l2,
            2,
        ),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = ScenarioConfig::load(&args.scenario)?;
    let mut env = config.build()?;
    let spec = env.spec().clone();
    let model = load_model(
        &ModelSpec::from_str(&args.model)?,
        &config,
        DeviceChoice::from_str(&args.device)?,
    )?;
    let model: Arc<dyn WorldModel> = if args.rollout_threads > 1 {
        // One torch thread per candidate group, the planner thread's included.
        tch::set_num_threads(1);
        Arc::new(ParallelRollout::new(model, args.rollout_threads as usize)?)
    } else {
        model
    };
    let (mut planner, mut energy, mut block) = preset(config.kind());
    if let Some(p) = &args.planner {
        planner = PlannerConfig::from_ron_str(p)?;
    }
    if let Some(e) = &args.energy {
        energy = ron::from_str(e)?;
    }
    if let Some(b) = args.action_block {
        block = b;
    }
    let period = Duration::from_secs_f64(1.0 / args.hz);
    let deadline = args
        .deadline_ms
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
        .unwrap_or(period.mul_f64(0.8));
    let bounds = ActionBounds::new(spec.action_low.clone(), spec.action_high.clone())?;
    println!(
        "{} with model {} at {} Hz: planner {}, deadline {}, action block {block}",
        config.kind(),
        model.name(),
        args.hz,
        planner.to_ron_string(),
        ms(Some(deadline)),
    );

    env.reset(args.seed)?;
    let controller = Controller::spawn(
        model,
        &planner,
        energy,
        bounds.clone(),
        &env.goal_observation(),
        args.seed,
        ControllerOptions {
            control_dt: period,
            plan_deadline: deadline,
            iterations: None,
            action_block: block,
            lookahead: 1,
        },
    )?;

    let idle = bounds.centre_action();
    let (mut successes, mut ticks, mut late_ticks, mut no_plan) = (0u32, 0u64, 0u64, 0u64);
    for ep in 0..args.episodes {
        let seed = args.seed + u64::from(ep);
        if ep > 0 {
            env.reset(seed)?;
            controller.set_goal(&env.goal_observation(), seed);
        }
        let mut next = Instant::now();
        while !env.success() && env.steps() < spec.max_steps {
            controller.push_observation(&env.observe());
            let action = controller.latest_action().unwrap_or_else(|| {
                no_plan += 1;
                idle.clone()
            });
            env.step(&action)?;
            ticks += 1;
            next += period;
            let now = Instant::now();
            if now > next {
                // The tick itself overran its period: the loop missed its deadline.
                late_ticks += 1;
                next = now;
            } else {
                std::thread::sleep(next - now);
            }
        }
        let ok = env.success();
        successes += u32::from(ok);
        println!(
            "episode {ep} (seed {seed}): {} after {} steps, distance to goal {:.3}",
            if ok { "success" } else { "failure" },
            env.steps(),
            env.distance_to_goal()
        );
    }
    let report = controller.stop()?;
    let s = report.stats;
    println!(
        "success {successes}/{} | loop: {ticks} ticks, {late_ticks} overran the period, {no_plan} without a plan",
        args.episodes
    );
    println!(
        "planner: {} plans, {} deadline misses, {} observations replaced unplanned, {} errors{}",
        s.plans,
        s.deadline_misses,
        s.dropped_observations,
        s.errors,
        report
            .last_error
            .as_deref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    println!(
        "latency (observation to plan): p50 {} p95 {} p99 {}",
        ms(report.latency_percentile(50.0)),
        ms(report.latency_percentile(95.0)),
        ms(report.latency_percentile(99.0)),
    );
    println!(
        "plan compute: p50 {} p95 {}",
        ms(duration_percentile(&report.plan_times, 50.0)),
        ms(duration_percentile(&report.plan_times, 95.0)),
    );
    Ok(())
}
