//! Planner micro-benchmarks on a native JEPA network (`JepaConfig::new(11, 2)`: latent 64,
//! hidden 256, two hidden layers in encoder and predictor), CPU, float32.
//!
//! For CEM, iCEM and MPPI, at batch (samples) 256 and 1024 and horizon 5 and 16:
//! - `<planner>/iteration/b<B>_h<H>`: one iteration (a plan with a budget of one iteration:
//!   one sampling round, one batched rollout, one energy, one refit);
//! - `<planner>/plan/b<B>_h<H>`: one whole plan of 5 iterations (iCEM's population decays from
//!   `B` over them).
//!
//! `normals/<generator>/9600`: drawing the 9 600 standard normals of one 300 × 16 × 2 iteration
//! with the planners' [`zplan_planner::NormalStream`] and, for comparison, with the ChaCha8
//! stream and rand_distr's ziggurat the planners used before.
//!
//! Elites are 10 % of the samples. Every measured plan starts from a reset planner with no warm
//! start, so each repetition does the same work.
//!
//! libtorch's intra-op threads are set to `ZPLAN_BENCH_THREADS` (default 1): OpenMP workers
//! spin-wait, and on a shared machine more threads than free cores make small kernels ten
//! times slower, which would measure the machine's load instead of the planner.
//!
//! ```text
//! cargo bench --bench planner_iterations
//! ZPLAN_BENCH_THREADS=4 cargo bench --bench planner_iterations -- 'cem/plan'
//! ```

use criterion::{BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tch::{Device, Tensor};
use zplan_models::{JepaConfig, JepaModel, WorldModel};
use zplan_planner::{
    ActionBounds, Budget, CemConfig, EnergyConfig, ICemConfig, MppiConfig, PlannerConfig,
};

const OBS_DIM: i64 = 11;
const ACTION_DIM: i64 = 2;
const BATCHES: [usize; 2] = [256, 1024];
const HORIZONS: [usize; 2] = [5, 16];
const PLAN_ITERATIONS: u32 = 5;

/// A planner of `kind` with `samples` candidates, 10 % elites and `horizon` steps.
fn config(kind: &str, samples: usize, horizon: usize) -> PlannerConfig {
    let elites = (samples / 10).max(1);
    let iterations = PLAN_ITERATIONS;
    match kind {
        "cem" => PlannerConfig::Cem(CemConfig {
            samples,
            elites,
            iterations,
            horizon,
            ..CemConfig::default()
        }),
        "icem" => PlannerConfig::ICem(ICemConfig {
            samples,
            elites,
            iterations,
            horizon,
            ..ICemConfig::default()
        }),
        "mppi" => PlannerConfig::Mppi(MppiConfig {
            samples,
            elites,
            iterations,
            horizon,
            ..MppiConfig::default()
        }),
        other => unreachable!("unknown planner {other}"),
    }
}

/// Start and goal latents of two fixed observations.
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

fn bench_planner(c: &mut Criterion, model: &JepaModel, kind: &str) {
    let (z0, goal) = latents(model);
    let bounds = ActionBounds::symmetric(ACTION_DIM as usize, 1.0).expect("bounds");
    for (what, budget) in [
        ("iteration", Budget::iterations(1)),
        ("plan", Budget::iterations(PLAN_ITERATIONS)),
    ] {
        let mut group = c.benchmark_group(format!("{kind}/{what}"));
        for &b in &BATCHES {
            for &h in &HORIZONS {
                let cfg = config(kind, b, h);
                let mut planner = cfg
                    .build(bounds.clone(), EnergyConfig::default(), 7)
                    .expect("planner");
                // Latent steps predicted in the first iteration (iCEM's later ones are smaller).
                group.throughput(Throughput::Elements((b * h) as u64));
                group.bench_function(BenchmarkId::from_parameter(format!("b{b}_h{h}")), |bench| {
                    bench.iter(|| {
                        planner.reset();
                        planner
                            .plan(model, &z0, &goal, None, &budget)
                            .expect("plan")
                    })
                });
            }
        }
        group.finish();
    }
}

/// The planners' normal stream against ChaCha8 + ziggurat, 9 600 normals per call.
fn bench_normals(c: &mut Criterion) {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    const N: usize = 300 * 16 * 2;
    let mut group = c.benchmark_group("normals");
    group.throughput(Throughput::Elements(N as u64));
    let mut out = vec![0.0f32; N];
    let mut stream = zplan_planner::NormalStream::new(1);
    group.bench_function(BenchmarkId::new("normal_stream", N), |b| {
        b.iter(|| {
            stream.fill(&mut out);
            std::hint::black_box(&out);
        })
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    group.bench_function(BenchmarkId::new("chacha8_ziggurat", N), |b| {
        b.iter(|| {
            for x in out.iter_mut() {
                *x = StandardNormal.sample(&mut rng);
            }
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

fn main() {
    let threads = std::env::var("ZPLAN_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(1);
    tch::set_num_threads(threads);
    let _guard = tch::no_grad_guard();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench_normals(&mut c);
    let model = JepaModel::new(JepaConfig::new(OBS_DIM, ACTION_DIM), Device::Cpu).expect("JEPA");
    assert_eq!(model.latent_shape(), [64]);
    for kind in ["cem", "icem", "mppi"] {
        bench_planner(&mut c, &model, kind);
    }
    c.final_summary();
}
