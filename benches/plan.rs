//! Planner cost on the CPU with a native JEPA network (latent 64, hidden 256, two hidden
//! layers; observation 11, action 2).
//!
//! - `plan_overhead`: one CEM plan (300 samples × horizon 16 × 5 iterations) against the same
//!   five raw batched rollouts done alone. Before criterion runs, an interleaved measurement
//!   prints the ratio (target ≤ 1.05) as a machine-readable last line:
//!   `plan_ms_median=… rollout_ms_median=… overhead=…`. It also splits the plans' own time
//!   into time inside `model.rollout` and the rest (sampling, upload, energy, read-back,
//!   refit): `inside_ratio` is plan time over the rollout time within it, a figure that a
//!   busy machine disturbs much less than two separately timed runs.
//! - `iteration`: one CEM / iCEM / MPPI iteration at batch 256 and 1024, horizon 5 and 16.
//!
//! libtorch's intra-op thread count is left at its default (all cores).
//!
//! ```text
//! cargo bench --bench plan
//! ```

use criterion::{BenchmarkId, Criterion};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use zplan_models::{JepaConfig, JepaModel, WorldModel};
use zplan_planner::{
    ActionBounds, Budget, CemConfig, EnergyConfig, ICemConfig, MppiConfig, PlannerConfig,
};

const OBS_DIM: i64 = 11;
const ACTION_DIM: i64 = 2;

fn jepa() -> JepaModel {
    JepaModel::new(JepaConfig::new(OBS_DIM, ACTION_DIM), Device::Cpu).expect("a JEPA model")
}

/// Start and goal latents from two fixed observations.
fn latents(model: &JepaModel) -> (Tensor, Tensor) {
    let obs = |phase: f32| {
        let v: Vec<f32> = (0..OBS_DIM)
            .map(|i| (i as f32 * 0.7 + phase).sin())
            .collect();
        Tensor::from_slice(&v).view([1, OBS_DIM])
    };
    (
        model.encode_state(&obs(0.0)).expect("encode"),
        model.encode_state(&obs(1.0)).expect("encode"),
    )
}

/// Passes everything to the JEPA model and adds up the wall time spent in `rollout`.
struct Timed {
    inner: JepaModel,
    rollout_ns: AtomicU64,
}

impl WorldModel for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn obs_spec(&self) -> &zplan_models::ObsSpec {
        self.inner.obs_spec()
    }
    fn action_dim(&self) -> i64 {
        self.inner.action_dim()
    }
    fn latent_shape(&self) -> &[i64] {
        self.inner.latent_shape()
    }
    fn proprio_latent(&self) -> Option<std::ops::Range<usize>> {
        self.inner.proprio_latent()
    }
    fn encode(&self, obs: &zplan_models::ObsBatch) -> zplan_models::Result<Tensor> {
        self.inner.encode(obs)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        let t = Instant::now();
        let out = self.inner.rollout(z0, actions);
        self.rollout_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
    /// The JEPA's own result (read in place by the planners), timed the same way.
    fn rollout_owned(
        &self,
        z0: &Tensor,
        actions: &Tensor,
    ) -> zplan_models::Result<zplan_models::Rollout> {
        let t = Instant::now();
        let out = self.inner.rollout_owned(z0, actions);
        self.rollout_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

fn bounds() -> ActionBounds {
    ActionBounds::symmetric(ACTION_DIM as usize, 1.0).expect("bounds")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn plan_overhead(c: &mut Criterion) {
    let (samples, horizon, iterations) = (300i64, 16i64, 5u32);
    let model = jepa();
    let (z0, goal) = latents(&model);
    let cfg = PlannerConfig::Cem(CemConfig {
        samples: samples as usize,
        elites: 30,
        iterations,
        horizon: horizon as usize,
        ..CemConfig::default()
    });
    let mut planner = cfg
        .build(bounds(), EnergyConfig::default(), 0)
        .expect("planner");
    let z_batch = z0.expand([samples, z0.size()[1]], false);
    let actions =
        Tensor::rand([samples, horizon, ACTION_DIM], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let mut plan = || {
        planner
            .plan(&model, &z0, &goal, None, &Budget::unlimited())
            .expect("plan")
    };
    let rollouts = || {
        for _ in 0..iterations {
            let pred = model.rollout(&z_batch, &actions).expect("rollout");
            // Same synchronisation point as the planner's energy read-back.
            let _ = pred.double_value(&[0, 0, 0]);
        }
    };
    // Interleaved, so both see the same machine state.
    for _ in 0..3 {
        plan();
        rollouts();
    }
    let (mut tp, mut tr) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        plan();
        tp.push(t.elapsed());
        let t = Instant::now();
        rollouts();
        tr.push(t.elapsed());
    }
    let (p, r) = (median(tp), median(tr));
    // Decomposition of the planner's own time.
    let timed = Timed {
        inner: jepa(),
        rollout_ns: AtomicU64::new(0),
    };
    let mut timed_planner = cfg
        .build(bounds(), EnergyConfig::default(), 0)
        .expect("planner");
    let mut inside = Vec::new();
    for _ in 0..15 {
        timed.rollout_ns.store(0, Ordering::Relaxed);
        let t = Instant::now();
        timed_planner
            .plan(&timed, &z0, &goal, None, &Budget::unlimited())
            .expect("plan");
        let total = t.elapsed().as_secs_f64();
        inside.push(total / (timed.rollout_ns.load(Ordering::Relaxed) as f64 * 1e-9));
    }
    inside.sort_by(f64::total_cmp);
    println!(
        "plan_ms_median={:.3} rollout_ms_median={:.3} overhead={:.3} inside_ratio={:.3}",
        p.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        p.as_secs_f64() / r.as_secs_f64(),
        inside[inside.len() / 2]
    );
    println!(
        "CEM plan {samples} samples x horizon {horizon} x {iterations} iterations vs {iterations} raw rollouts (JEPA latent 64, hidden 256, {} torch threads)",
        tch::get_num_threads()
    );

    let mut group = c.benchmark_group("plan_overhead");
    group.sample_size(20);
    group.bench_function("cem_plan_300x16x5", |b| b.iter(&mut plan));
    group.bench_function("raw_rollouts_5x300x16", |b| b.iter(rollouts));
    group.finish();
}

fn iteration(c: &mut Criterion) {
    let model = jepa();
    let (z0, goal) = latents(&model);
    let mut group = c.benchmark_group("iteration");
    group.sample_size(20);
    for batch in [256usize, 1024] {
        for horizon in [5usize, 16] {
            let configs = [
                PlannerConfig::Cem(CemConfig {
                    samples: batch,
                    elites: batch / 10,
                    horizon,
                    ..CemConfig::default()
                }),
                PlannerConfig::ICem(ICemConfig {
                    samples: batch,
                    elites: batch / 10,
                    horizon,
                    ..ICemConfig::default()
                }),
                PlannerConfig::Mppi(MppiConfig {
                    samples: batch,
                    elites: batch / 8,
                    horizon,
                    ..MppiConfig::default()
                }),
            ];
            for cfg in configs {
                let mut planner = cfg
                    .build(bounds(), EnergyConfig::default(), 0)
                    .expect("planner");
                let id = BenchmarkId::new(cfg.name(), format!("b{batch}_h{horizon}"));
                group.bench_function(id, |b| {
                    b.iter(|| {
                        planner
                            .plan(&model, &z0, &goal, None, &Budget::iterations(1))
                            .expect("plan")
                    })
                });
            }
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    plan_overhead(&mut c);
    iteration(&mut c);
    c.final_summary();
}
