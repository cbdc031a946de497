//! Control steps per second of every shipped scenario, and the overhead of zplan's `Env::step`
//! over a bare rapier3d step of the same scene.
//!
//! For each scenario two variants run the same actions from the same state:
//! - `zplan`: `Env::step` (action checks, clipping, counters, then the physics substeps);
//! - `bare_rapier`: a copy of the scenario's Rapier world (`zplan_sim::physics::clone_world`)
//!   stepped directly, writing the same velocity command / motor targets by hand.
//!
//! `sim_restore_set_state/*` times what the simulator-backed world model does per batch row
//! before a rollout: `restore` a base snapshot, then `set_state`.
//!
//! Before the criterion groups, a quick interleaved timing prints the ratio
//! `zplan / bare_rapier` per scenario (target: <= 1.2; the work added to the physics is the
//! action check and clipping, so it stays near 1).
//!
//! ```text
//! cargo bench --bench sim_step
//! ```

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use zplan_sim::physics::clone_world;
use zplan_sim::rapier3d::prelude::*;
use zplan_sim::{Env, Push, Reach, ScenarioConfig, TwoRooms};

/// A fixed cycle of actions in `[-1, 1]`, so runs are repeatable and the robot keeps moving.
fn action_cycle(dim: usize) -> Vec<Vec<f32>> {
    (0..16)
        .map(|k| {
            (0..dim)
                .map(|i| (((k * 7 + i * 3) % 11) as f32 / 5.0 - 1.0) * 0.9)
                .collect()
        })
        .collect()
}

/// One scenario, ready to step both ways.
struct Case {
    name: &'static str,
    env: Box<dyn Env>,
    bare: Bare,
    actions: Vec<Vec<f32>>,
}

/// The same scene, stepped with rapier3d alone.
struct Bare {
    world: PhysicsWorld,
    substeps: u32,
    drive: Drive,
}

enum Drive {
    /// Set the body's linear velocity to `action * speed` before each substep.
    Velocity { body: RigidBodyHandle, speed: f32 },
    /// Set each joint's velocity-motor target to `action * speed` once per control step.
    Motors {
        root: MultibodyJointHandle,
        links: Vec<usize>,
        speed: f32,
        gain: f32,
    },
}

impl Bare {
    fn step(&mut self, a: &[f32]) {
        match &self.drive {
            Drive::Velocity { body, speed } => {
                let v = Vector::new(a[0] * speed, a[1] * speed, 0.0);
                for _ in 0..self.substeps {
                    self.world.bodies[*body].set_linvel(v, true);
                    self.world.step();
                }
            }
            Drive::Motors {
                root,
                links,
                speed,
                gain,
            } => {
                if let Some((mb, _)) = self.world.multibody_joints.get_mut(*root) {
                    for (k, &id) in links.iter().enumerate() {
                        if let Some(link) = mb.link_mut(id) {
                            link.joint.data.set_motor_velocity(
                                JointAxis::AngX,
                                a[k] * speed,
                                *gain,
                            );
                        }
                    }
                }
                for _ in 0..self.substeps {
                    self.world.step();
                }
            }
        }
    }
}

fn load(file: &str) -> ScenarioConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    ScenarioConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (name, file) in [
        ("two_rooms", "two_rooms.ron"),
        ("maze", "maze.ron"),
        ("reach", "reach.ron"),
        ("push", "push.ron"),
        ("push_t", "push_t.ron"),
    ] {
        let config = load(file);
        let substeps = config.spec().substeps;
        let (env, bare): (Box<dyn Env>, Bare) = match config {
            ScenarioConfig::TwoRooms(c) => {
                let speed = c.max_speed;
                let mut e = TwoRooms::new(c).unwrap();
                e.reset(0).unwrap();
                let drive = Drive::Velocity {
                    body: e.ball_handle(),
                    speed,
                };
                let bare = Bare {
                    world: clone_world(e.world()),
                    substeps,
                    drive,
                };
                (Box::new(e), bare)
            }
            ScenarioConfig::Reach(c) => {
                let (speed, gain) = (c.max_joint_speed, c.motor_gain);
                let mut e = Reach::new(c).unwrap();
                e.reset(0).unwrap();
                let handles = e.joint_handles().to_vec();
                let links = handles
                    .iter()
                    .map(|h| e.world().multibody_joints.get(*h).unwrap().1)
                    .collect();
                let drive = Drive::Motors {
                    root: handles[0],
                    links,
                    speed,
                    gain,
                };
                let bare = Bare {
                    world: clone_world(e.world()),
                    substeps,
                    drive,
                };
                (Box::new(e), bare)
            }
            ScenarioConfig::Push(c) => {
                let speed = c.max_speed;
                let mut e = Push::new(c).unwrap();
                e.reset(0).unwrap();
                let drive = Drive::Velocity {
                    body: e.handles().0,
                    speed,
                };
                let bare = Bare {
                    world: clone_world(e.world()),
                    substeps,
                    drive,
                };
                (Box::new(e), bare)
            }
        };
        let actions = action_cycle(env.spec().action_dim());
        out.push(Case {
            name,
            env,
            bare,
            actions,
        });
    }
    out
}

/// Interleaved timing of both variants and the printed ratio: rounds alternate which variant
/// runs first, and the median of the per-round ratios is reported (robust to a busy machine).
fn print_ratios() {
    println!("zplan Env::step vs bare rapier3d step of the same scene (median of 15 interleaved rounds):");
    for mut case in cases() {
        let n = 500;
        let mut ratios = Vec::new();
        let mut env_times = Vec::new();
        let mut bare_times = Vec::new();
        for round in 0..15 {
            let snap = case.env.snapshot();
            let world = clone_world(&case.bare.world);
            let time_env = |case: &mut Case| {
                let t = Instant::now();
                for k in 0..n {
                    black_box(
                        case.env
                            .step(&case.actions[k % case.actions.len()])
                            .unwrap(),
                    );
                }
                t.elapsed()
            };
            let time_bare = |case: &mut Case| {
                let t = Instant::now();
                for k in 0..n {
                    case.bare.step(&case.actions[k % case.actions.len()]);
                }
                t.elapsed()
            };
            let (te, tb) = if round % 2 == 0 {
                let te = time_env(&mut case);
                (te, time_bare(&mut case))
            } else {
                let tb = time_bare(&mut case);
                (time_env(&mut case), tb)
            };
            ratios.push(te.as_secs_f64() / tb.as_secs_f64());
            env_times.push(te);
            bare_times.push(tb);
            case.env.restore(&snap).unwrap();
            case.bare.world = world;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let per = |v: &[Duration]| {
            let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() / n as f64).collect();
            median(&mut s)
        };
        let (pe, pb) = (per(&env_times), per(&bare_times));
        println!(
            "  {:<10} zplan {:>8.2} us/step ({:>8.0} steps/s)   bare {:>8.2} us/step   ratio {:.3}",
            case.name,
            pe * 1e6,
            1.0 / pe,
            pb * 1e6,
            median(&mut ratios),
        );
    }
}

fn bench_steps(c: &mut Criterion) {
    for mut case in cases() {
        let mut group = c.benchmark_group(format!("sim_step/{}", case.name));
        group.throughput(Throughput::Elements(1));
        let actions = case.actions.clone();
        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("zplan", "control_step"), |b| {
            b.iter(|| {
                k = (k + 1) % actions.len();
                black_box(case.env.step(&actions[k]).unwrap())
            })
        });
        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("bare_rapier", "control_step"), |b| {
            b.iter(|| {
                k = (k + 1) % actions.len();
                case.bare.step(&actions[k]);
            })
        });
        group.finish();
    }
}

/// What the simulator-backed world model does per batch row before rolling out: restore a base
/// snapshot, then `set_state`.
fn bench_restore_set_state(c: &mut Criterion) {
    for mut case in cases() {
        let base = case.env.snapshot();
        for a in case.actions.clone() {
            case.env.step(&a).unwrap();
        }
        let state = case.env.state();
        c.bench_function(&format!("sim_restore_set_state/{}", case.name), |b| {
            b.iter(|| {
                case.env.restore(&base).unwrap();
                case.env.set_state(black_box(&state)).unwrap();
            })
        });
    }
}

fn main() {
    print_ratios();
    let mut criterion = Criterion::default().configure_from_args();
    bench_steps(&mut criterion);
    bench_restore_set_state(&mut criterion);
    criterion.final_summary();
}
