//! Seeded plans are bit-identical across refactorings: a hash of every plan's actions,
//! energies, trace and counts, for each planner on a fixed seed with a native JEPA model,
//! compared with hashes recorded before the planners shared one `SamplingPlanner`.
//!
//! The default suite's published numbers depend on CEM, iCEM and MPPI giving exactly these
//! plans. A deliberate change of a planner's algorithm updates its hash here, in the same
//! commit, with the reason.

use tch::{Device, Tensor};
use zplan_models::jepa::{JepaConfig, JepaModel};
use zplan_models::WorldModel;
use zplan_planner::*;

const OBS_DIM: i64 = 6;
const ACTION_DIM: i64 = 2;

/// FNV-1a over the bits of everything a plan output reports.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn f32s(&mut self, v: &[f32]) {
        for x in v {
            self.bytes(&x.to_bits().to_le_bytes());
        }
    }
    fn output(&mut self, out: &PlanOutput) {
        self.f32s(out.plan.actions());
        self.f32s(&[out.best_energy]);
        self.f32s(&out.energy_trace);
        self.bytes(&out.iterations.to_le_bytes());
        self.bytes(&out.rollouts.to_le_bytes());
    }
}

fn latent(model: &JepaModel, phase: f32) -> Tensor {
    let v: Vec<f32> = (0..OBS_DIM)
        .map(|i| (i as f32 * 0.7 + phase).sin())
        .collect();
    model
        .encode_state(&Tensor::from_slice(&v).view([1, OBS_DIM]))
        .unwrap()
}

/// Four plans per planner: a cold plan, two warm-started from the shifted previous plan (and
/// one without a warm start, MPPI's own shift), then a reseed and a cold plan again.
fn hash(config: &PlannerConfig) -> u64 {
    tch::set_num_threads(1);
    let model = JepaModel::new(JepaConfig::new(OBS_DIM, ACTION_DIM), Device::Cpu).unwrap();
    let (z0, goal) = (latent(&model, 0.0), latent(&model, 1.0));
    let bounds = ActionBounds::new(vec![-1.0, -0.5], vec![1.0, 2.0]).unwrap();
    let energy = EnergyConfig {
        metric: Metric::L2,
        reduction: Reduction::Sum,
        ..EnergyConfig::default()
    };
    let mut planner = config.build(bounds, energy, 11).unwrap();
    let mut h = Fnv::new();
    let budget = Budget::unlimited();
    let first = planner.plan(&model, &z0, &goal, None, &budget).unwrap();
    h.output(&first);
    let warm = first.plan.shifted(1);
    let second = planner
        .plan(&model, &z0, &goal, Some(&warm), &budget)
        .unwrap();
    h.output(&second);
    let third = planner.plan(&model, &z0, &goal, None, &budget).unwrap();
    h.output(&third);
    let warm = third.plan.shifted(2);
    let fourth = planner
        .plan(&model, &z0, &goal, Some(&warm), &budget)
        .unwrap();
    h.output(&fourth);
    planner.reseed(12);
    let fifth = planner
        .plan(&model, &z0, &goal, None, &Budget::iterations(2))
        .unwrap();
    h.output(&fifth);
    h.0
}

fn configs() -> Vec<(&'static str, PlannerConfig)> {
    let ron = |s: &str| PlannerConfig::from_ron_str(s).unwrap();
    vec![
        (
            "cem",
            ron("Cem(samples: 64, elites: 8, iterations: 4, horizon: 5)"),
        ),
        (
            "cem_best_low_init_std",
            ron(
                "Cem(samples: 48, elites: 6, iterations: 3, horizon: 4, init_std: 0.5, \
                 min_std: 0.1, include_mean: false, return_mode: Best)",
            ),
        ),
        (
            "icem",
            ron("ICem(samples: 64, elites: 8, iterations: 4, horizon: 6, beta: 2.0)"),
        ),
        (
            "icem_mean",
            ron(
                "ICem(samples: 40, elites: 5, iterations: 3, horizon: 5, beta: 1.0, \
                 include_mean: false, return_mode: Mean)",
            ),
        ),
        (
            "mppi",
            ron("Mppi(samples: 64, elites: 16, iterations: 4, horizon: 5, temperature: 0.1)"),
        ),
        (
            "mppi_best_fixed_std",
            ron(
                "Mppi(samples: 48, elites: 48, iterations: 3, horizon: 5, temperature: 0.5, \
                 adapt_std: false, shift: 2, return_mode: Best)",
            ),
        ),
        (
            "gradient",
            ron("Gradient(steps: 6, horizon: 5, samples: 4)"),
        ),
        (
            "gradient_init_cem",
            ron(
                "Gradient(steps: 4, horizon: 5, samples: 3, init_cem: Some((samples: 32, \
                 elites: 4, iterations: 2, horizon: 5)))",
            ),
        ),
    ]
}

/// Recorded when the planners' normals moved from ChaCha8 + ziggurat to the counter-based
/// [`NormalStream`] (issue #15: the sampler was most of the planner's own time on cheap
/// models), which changed every seeded plan once; before that, the hashes were those of the
/// code before the `SamplingPlanner` refactoring (commit ad17784). CPU, one torch thread.
const RECORDED: &[(&str, u64)] = &[
    ("cem", 0xc125c97acf15821b),
    ("cem_best_low_init_std", 0xb74624847f4532b5),
    ("icem", 0x942cc549134bbed7),
    ("icem_mean", 0xfb49203d1f47aea2),
    ("mppi", 0x00a522b1301e3153),
    ("mppi_best_fixed_std", 0xbd7d0f74a1e309fc),
    ("gradient", 0xa16dc5299335022e),
    ("gradient_init_cem", 0xb70d1199c668b035),
];

#[test]
fn seeded_plans_are_bit_identical_to_the_recorded_ones() {
    let mut report = String::new();
    let mut mismatches = Vec::new();
    for (name, config) in configs() {
        let got = hash(&config);
        report.push_str(&format!("        (\"{name}\", 0x{got:016x}),\n"));
        match RECORDED.iter().find(|(n, _)| *n == name) {
            Some(&(_, want)) if want != got => {
                mismatches.push(format!("{name}: 0x{got:016x} != recorded 0x{want:016x}"))
            }
            Some(_) => {}
            None => mismatches.push(format!("{name}: no recorded hash")),
        }
    }
    println!("{report}");
    assert!(mismatches.is_empty(), "{mismatches:#?}\n{report}");
}

/// The JEPA as an outside model would present it: every method forwarded except
/// `rollout_owned`, whose default marks results shared, so planners copy them before reading.
struct Outside(JepaModel);

impl WorldModel for Outside {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn device(&self) -> Device {
        self.0.device()
    }
    fn obs_spec(&self) -> &zplan_models::ObsSpec {
        self.0.obs_spec()
    }
    fn action_dim(&self) -> i64 {
        self.0.action_dim()
    }
    fn latent_shape(&self) -> &[i64] {
        self.0.latent_shape()
    }
    fn encode(&self, obs: &zplan_models::ObsBatch) -> zplan_models::Result<Tensor> {
        self.0.encode(obs)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        self.0.rollout(z0, actions)
    }
}

/// Reading a shared rollout by copy gives the same plans, bit for bit, as reading the JEPA's
/// exclusive rollout in place.
#[test]
fn copied_and_in_place_rollouts_plan_identically() {
    tch::set_num_threads(1);
    let jepa = || JepaModel::new(JepaConfig::new(OBS_DIM, ACTION_DIM), Device::Cpu).unwrap();
    let (own, outside) = (jepa(), Outside(jepa()));
    let (z0, goal) = (latent(&own, 0.0), latent(&own, 1.0));
    let a = Tensor::zeros([3, 4, ACTION_DIM], (tch::Kind::Float, Device::Cpu));
    let z = z0.expand([3, z0.size()[1]], false);
    assert!(own.rollout_owned(&z, &a).unwrap().host_f32().is_some());
    let shared = outside.rollout_owned(&z, &a).unwrap();
    assert!(!shared.is_exclusive() && shared.host_f32().is_none());
    for (name, config) in configs() {
        if matches!(config, PlannerConfig::Gradient(_)) {
            continue; // scores on the device through autograd, never on the host
        }
        let bounds = ActionBounds::symmetric(ACTION_DIM as usize, 1.0).unwrap();
        let mut p = config
            .build(bounds.clone(), EnergyConfig::default(), 3)
            .unwrap();
        let mut q = config.build(bounds, EnergyConfig::default(), 3).unwrap();
        let budget = Budget::unlimited();
        let x = p.plan(&own, &z0, &goal, None, &budget).unwrap();
        let y = q.plan(&outside, &z0, &goal, None, &budget).unwrap();
        let bits = |o: &PlanOutput| -> Vec<u32> {
            o.plan
                .actions()
                .iter()
                .chain(&o.energy_trace)
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&x), bits(&y), "{name}");
    }
}

/// The model is a genuine native JEPA: its rollout is what the hashes cover.
#[test]
fn the_hashed_model_is_a_native_jepa() {
    let model = JepaModel::new(JepaConfig::new(OBS_DIM, ACTION_DIM), Device::Cpu).unwrap();
    assert!(model.name().contains("jepa"), "{}", model.name());
}
