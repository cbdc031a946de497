//! Closed-loop solvability check: CEM model-predictive control with the true simulator as the
//! model, on a scenario file. Prints the success rate and mean final distance.
//!
//! ```text
//! cargo run --release -p zplan-sim --example cem_check -- scenarios/two_rooms.ron [episodes] [samples] [iterations] [horizon] [replan_every] [energy] [weights]
//! ```
//!
//! `energy` is `obs` (default: L2 distance between each predicted observation and the goal
//! observation, summed over the horizon, as goal-conditioned planners do) or `task` (the
//! scenario's `distance_to_goal`, summed). An optional last argument gives comma-separated
//! per-entry weights of the squared `obs` differences (missing entries weigh 1).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use zplan_sim::ScenarioConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let config = ScenarioConfig::load(Path::new(&arg(0, "scenarios/two_rooms.ron")))?;
    let episodes: u64 = arg(1, "20").parse()?;
    let samples: usize = arg(2, "100").parse()?;
    let iterations: usize = arg(3, "4").parse()?;
    let horizon: usize = arg(4, "15").parse()?;
    let replan: usize = arg(5, "1").parse()?;
    let task_energy = arg(6, "obs") == "task";
    let weights: Vec<f32> = match args.get(7) {
        Some(w) => w
            .split(',')
            .map(|x| x.trim().parse())
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let elites = (samples / 10).max(2);

    let mut env = config.build()?;
    let mut model = config.build()?;
    let a_dim = env.spec().action_dim();
    let max_steps = env.spec().max_steps as usize;
    let mut successes = 0;
    let mut final_dist = 0.0;
    let started = std::time::Instant::now();
    for ep in 0..episodes {
        let seed = 1_000_000 + ep;
        env.reset(seed)?;
        model.reset(seed)?;
        let goal = env.goal_state();
        let start_obs = env.state();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut mean = vec![0.0f32; horizon * a_dim];
        let mut plan = mean.clone();
        let mut k = replan;
        for _ in 0..max_steps {
            if env.success() {
                break;
            }
            if k >= replan {
                // Warm start: shift the previous mean by the executed steps.
                let shift = replan.min(horizon) * a_dim;
                mean.rotate_left(shift);
                let n = mean.len();
                mean[n - shift..].fill(0.0);
                let mut std = vec![0.8f32; horizon * a_dim];
                let base = env.snapshot();
                for _ in 0..iterations {
                    let mut scored: Vec<(f32, Vec<f32>)> = Vec::with_capacity(samples);
                    for s in 0..samples {
                        let cand: Vec<f32> = if s == 0 {
                            mean.clone()
                        } else {
                            mean.iter()
                                .zip(&std)
                                .map(|(m, sd)| {
                                    let z = normal(&mut rng);
                                    (m + sd * z).clamp(-1.0, 1.0)
                                })
                                .collect()
                        };
                        model.restore(&base)?;
                        let mut cost = 0.0;
                        for t in 0..horizon {
                            model.step(&cand[t * a_dim..(t + 1) * a_dim])?;
                            cost += if task_energy {
                                model.distance_to_goal()
                            } else {
                                let o = model.state();
                                let w = |i: usize| weights.get(i).copied().unwrap_or(1.0);
                                o.iter()
                                    .zip(&goal)
                                    .enumerate()
                                    .map(|(i, (a, b))| w(i) * (a - b) * (a - b))
                                    .sum::<f32>()
                                    .sqrt()
                            };
                        }
                        scored.push((cost, cand));
                    }
                    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
                    for i in 0..mean.len() {
                        let m: f32 =
                            scored[..elites].iter().map(|e| e.1[i]).sum::<f32>() / elites as f32;
                        let v: f32 = scored[..elites]
                            .iter()
                            .map(|e| (e.1[i] - m).powi(2))
                            .sum::<f32>()
                            / elites as f32;
                        mean[i] = m;
                        std[i] = v.sqrt().max(0.05);
                    }
                    plan.clone_from(&scored[0].1);
                }
                k = 0;
            }
            env.step(&plan[k * a_dim..(k + 1) * a_dim])?;
            k += 1;
        }
        let ok = env.success();
        successes += ok as u32;
        final_dist += env.distance_to_goal();
        println!(
            "episode {ep}: {} in {} steps, final distance {:.3}",
            if ok { "success" } else { "FAIL" },
            env.steps(),
            env.distance_to_goal()
        );
        if !ok {
            let short = |v: &[f32]| {
                v.iter()
                    .take(6)
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "    start [{}]  goal [{}]  end [{}]",
                short(&start_obs),
                short(&goal),
                short(&env.state())
            );
        }
    }
    println!(
        "{}: {successes}/{episodes} successes, mean final distance {:.3}, {:.1} s",
        config.kind(),
        final_dist / episodes as f32,
        started.elapsed().as_secs_f32()
    );
    Ok(())
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(1e-7);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}
