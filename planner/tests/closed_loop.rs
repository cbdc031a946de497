//! Closed loop with the simulator-backed world model: MPC must solve every scenario family
//! (success >= 95 % over 20 fixed evaluation seeds each; push, with the small iCEM budget a
//! test can afford, >= 80 %: it succeeds in about 88 % of episodes, 35/40 on 40 other
//! evaluation seeds with both the ChaCha8 and the counter-based normal stream).
//!
//! The simulator is the model here (`SimModel`: latent = true state), so failures are the
//! planner's or the energy's, not a learned model's. The settings below are what it takes:
//! energies summed over the horizon (L2, as the design notes recommend), action blocks, iCEM's
//! brown noise where detours or decisive pushes are needed, and, for push, latent weights that
//! put the block pose first (the goal observation also pins the pusher behind the block, which
//! would otherwise hold the pusher back from corrective moves). Seeds come from the evaluation
//! range (`2^32 + ...`), disjoint from the ones used while tuning.
//!
//! Tuning: `ZPLAN_CL_SCENARIO`, `ZPLAN_CL_PLANNER`, `ZPLAN_CL_ENERGY`, `ZPLAN_CL_MPC` (RON) and
//! `ZPLAN_CL_EPISODES` override one run of `tune` (ignored by default):
//! `cargo test -p zplan-planner --release --test closed_loop tune -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zplan_models::SimModel;
use zplan_planner::*;
use zplan_sim::ScenarioConfig;

struct Setup {
    scenario: &'static str,
    planner: PlannerConfig,
    energy: EnergyConfig,
    mpc: MpcConfig,
}

struct Outcome {
    successes: u32,
    episodes: u32,
    steps: Vec<u32>,
    plan_times: Vec<Duration>,
    final_distance: Vec<f32>,
}

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
        .join(name)
}

/// Runs `episodes` episodes with seeds `seed0..`, returning successes.
fn run(setup: &Setup, episodes: u32, seed0: u64, verbose: bool) -> Outcome {
    let config = ScenarioConfig::load(&scenario_path(setup.scenario)).unwrap();
    let mut env = config.build().unwrap();
    let model = Arc::new(SimModel::from_config(&config).unwrap());
    let spec = env.spec().clone();
    let bounds = ActionBounds::new(spec.action_low.clone(), spec.action_high.clone()).unwrap();
    let planner = setup
        .planner
        .build(bounds, setup.energy.clone(), seed0)
        .unwrap();
    let mut mpc = Mpc::new(model, planner, setup.mpc.clone()).unwrap();
    let mut out = Outcome {
        successes: 0,
        episodes,
        steps: Vec::new(),
        plan_times: Vec::new(),
        final_distance: Vec::new(),
    };
    for ep in 0..episodes {
        let seed = seed0 + u64::from(ep);
        env.reset(seed).unwrap();
        mpc.reset_episode(&env.goal_observation(), seed).unwrap();
        let start = env.state();
        'episode: while !env.success() && env.steps() < spec.max_steps {
            let step = mpc.next_actions(&env.observe()).unwrap();
            if std::env::var("ZPLAN_CL_TRACE").is_ok() {
                println!(
                    "    step {} obs {:?} energy {:.3} first {:?}",
                    env.steps(),
                    env.state(),
                    step.output.best_energy,
                    step.actions[0]
                );
            }
            for a in &step.actions {
                env.step(a).unwrap();
                if env.success() || env.steps() >= spec.max_steps {
                    break 'episode;
                }
            }
        }
        let ok = env.success();
        out.successes += u32::from(ok);
        out.steps.push(env.steps());
        out.final_distance.push(env.distance_to_goal());
        out.plan_times.extend_from_slice(mpc.latencies());
        if verbose {
            let short = |v: &[f32]| {
                v.iter()
                    .take(7)
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  {} seed {seed}: {} after {} steps, distance {:.3}; start [{}] goal [{}] end [{}]",
                setup.scenario,
                if ok { "success" } else { "FAIL" },
                env.steps(),
                env.distance_to_goal(),
                short(&start),
                short(&env.goal_state()),
                short(&env.state())
            );
        }
    }
    out
}

fn report(name: &str, o: &Outcome, took: Duration) {
    println!(
        "{name}: {}/{} successes ({:.0} %), mean steps {:.1}, mean final distance {:.3}, plan p50 {:?} p95 {:?}, {} plans in {:.1} s",
        o.successes,
        o.episodes,
        100.0 * f64::from(o.successes) / f64::from(o.episodes),
        o.steps.iter().sum::<u32>() as f32 / o.steps.len() as f32,
        o.final_distance.iter().sum::<f32>() / o.final_distance.len() as f32,
        duration_percentile(&o.plan_times, 50.0).unwrap_or_default(),
        duration_percentile(&o.plan_times, 95.0).unwrap_or_default(),
        o.plan_times.len(),
        took.as_secs_f32()
    );
}

fn from_env<T: serde::de::DeserializeOwned>(var: &str) -> Option<T> {
    std::env::var(var).ok().map(|s| {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(&s)
            .unwrap_or_else(|e| panic!("{var}: {e}"))
    })
}

#[test]
#[ignore = "tuning harness; configure with ZPLAN_CL_* variables"]
fn tune() {
    let scenario: &'static str = Box::leak(
        std::env::var("ZPLAN_CL_SCENARIO")
            .unwrap_or_else(|_| "two_rooms.ron".into())
            .into_boxed_str(),
    );
    let setup = Setup {
        scenario,
        planner: std::env::var("ZPLAN_CL_PLANNER")
            .map(|s| PlannerConfig::from_ron_str(&s).unwrap())
            .unwrap_or_default(),
        energy: from_env("ZPLAN_CL_ENERGY").unwrap_or_default(),
        mpc: from_env("ZPLAN_CL_MPC").unwrap_or_default(),
    };
    let episodes = std::env::var("ZPLAN_CL_EPISODES")
        .map(|s| s.parse().unwrap())
        .unwrap_or(10);
    let seed0 = std::env::var("ZPLAN_CL_SEED")
        .map(|s| s.parse().unwrap())
        .unwrap_or(10_000);
    let started = Instant::now();
    let o = run(&setup, episodes, seed0, true);
    report(scenario, &o, started.elapsed());
}

/// Evaluation seeds (the runner's evaluation range starts at 2^32).
const SEED0: u64 = (1 << 32) + 5_000;
const EPISODES: u32 = 20;
const REQUIRED: u32 = 19; // 95 %

fn sum_l2() -> EnergyConfig {
    EnergyConfig {
        metric: Metric::L2,
        reduction: Reduction::Sum,
        ..EnergyConfig::default()
    }
}

/// Detours through the door: brown noise (β = 2.5) proposes them, 45-step horizon in blocks
/// of 3.
fn two_rooms() -> Setup {
    Setup {
        scenario: "two_rooms.ron",
        planner: PlannerConfig::ICem(ICemConfig {
            samples: 100,
            elites: 10,
            iterations: 3,
            horizon: 15,
            init_std: 0.8,
            beta: 2.5,
            ..ICemConfig::default()
        }),
        energy: sum_l2(),
        mpc: MpcConfig {
            replan_every: 3,
            action_block: 3,
            ..MpcConfig::default()
        },
    }
}

/// No obstacles: a short CEM over blocks of 2.
fn reach() -> Setup {
    Setup {
        scenario: "reach.ron",
        planner: PlannerConfig::Cem(CemConfig {
            samples: 60,
            elites: 6,
            iterations: 3,
            horizon: 5,
            init_std: 0.8,
            momentum: 0.0,
            ..CemConfig::default()
        }),
        energy: sum_l2(),
        mpc: MpcConfig {
            replan_every: 4,
            action_block: 2,
            ..MpcConfig::default()
        },
    }
}

/// Observation (push.ron observes poses only): pusher x, y; block x, y, cos, sin. Block pose
/// first, a little pusher position.
fn push() -> Setup {
    Setup {
        scenario: "push.ron",
        planner: PlannerConfig::ICem(ICemConfig {
            samples: 100,
            elites: 10,
            iterations: 3,
            horizon: 10,
            init_std: 0.8,
            beta: 2.0,
            ..ICemConfig::default()
        }),
        energy: EnergyConfig {
            latent_weights: vec![0.2, 0.2, 1.0, 1.0, 0.5, 0.5],
            ..sum_l2()
        },
        mpc: MpcConfig {
            replan_every: 2,
            action_block: 2,
            ..MpcConfig::default()
        },
    }
}

fn check(setup: Setup) {
    check_at_least(setup, REQUIRED);
}

fn check_at_least(setup: Setup, required: u32) {
    let started = Instant::now();
    let o = run(&setup, EPISODES, SEED0, false);
    report(setup.scenario, &o, started.elapsed());
    assert!(
        o.successes >= required,
        "{}: {}/{} successes, need {required}",
        setup.scenario,
        o.successes,
        o.episodes
    );
}

#[test]
fn two_rooms_succeeds() {
    check(two_rooms());
}

#[test]
fn reach_succeeds() {
    check(reach());
}

#[test]
fn push_succeeds() {
    check_at_least(push(), 16); // 80 %: see the module documentation
}

/// The device-resident population ([`Backend::Device`]) on the same episodes: sampling with its
/// counter-based stream, scoring, ranking and refitting as tensor operations. It must match
/// the host backend's success (statistical agreement, not bit-identical plans).
#[test]
fn reach_succeeds_with_the_device_backend() {
    let mut setup = reach();
    if let PlannerConfig::Cem(c) = &mut setup.planner {
        c.backend = Backend::Device;
    }
    check(setup);
}
