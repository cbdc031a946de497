//! CEM's two backends, written once and run on every device present: the CPU always, CUDA
//! when libtorch sees a GPU (skipped, and said so, otherwise).
//!
//! The host backend samples on the CPU and reads energies back each iteration; the device
//! backend keeps the population on the model's device and synchronises once per plan. They
//! use different random streams, so they agree statistically: both must solve the same
//! problems, within the bounds, with non-increasing energy traces.
use tch::{Device, Kind, Tensor};
use zplan_models::{state_spec, ObsBatch, ObsSpec, WorldModel};
use zplan_planner::*;

/// `z_{t+1} = z_t + a_t` on `device`; latent = the 2-D state.
struct Integrator {
    spec: ObsSpec,
    device: Device,
}

impl WorldModel for Integrator {
    fn name(&self) -> &str {
        "integrator"
    }
    fn device(&self) -> Device {
        self.device
    }
    fn obs_spec(&self) -> &ObsSpec {
        &self.spec
    }
    fn action_dim(&self) -> i64 {
        2
    }
    fn latent_shape(&self) -> &[i64] {
        &[2]
    }
    fn encode(&self, obs: &ObsBatch) -> zplan_models::Result<Tensor> {
        obs.float("state", "integrator", self.device)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        Ok(actions.cumsum(1, Kind::Float) + z0.unsqueeze(1))
    }
}

fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        d.push(Device::Cuda(0));
    } else {
        eprintln!("device_backend: no CUDA device, the CUDA cases are skipped");
    }
    d
}

fn cem(backend: Backend, samples: usize, iterations: u32) -> PlannerConfig {
    PlannerConfig::Cem(CemConfig {
        samples,
        elites: samples / 10,
        iterations,
        horizon: 4,
        backend,
        ..CemConfig::default()
    })
}

fn energy() -> EnergyConfig {
    EnergyConfig {
        metric: Metric::SquaredL2,
        reduction: Reduction::Sum,
        ..EnergyConfig::default()
    }
}

/// Plans towards `goal` with `backend` on `device`; returns the output.
fn plan_on(device: Device, backend: Backend, seed: u64, goal: [f32; 2]) -> PlanOutput {
    let model = Integrator {
        spec: state_spec(2),
        device,
    };
    let bounds = ActionBounds::symmetric(2, 1.0).unwrap();
    let mut p = cem(backend, 200, 8).build(bounds, energy(), seed).unwrap();
    let z0 = Tensor::from_slice(&[0.0f32, 0.0])
        .view([1, 2])
        .to_device(device);
    let zg = Tensor::from_slice(&goal).view([1, 2]).to_device(device);
    p.plan(&model, &z0, &zg, None, &Budget::unlimited())
        .unwrap()
}

#[test]
fn both_backends_solve_the_integrator_on_every_device() {
    let bounds = ActionBounds::symmetric(2, 1.0).unwrap();
    for device in devices() {
        for backend in [Backend::Host, Backend::Device] {
            for (seed, goal) in [(1, [0.5f32, -0.3]), (2, [-1.5, 0.8]), (3, [2.5, 2.5])] {
                let out = plan_on(device, backend, seed, goal);
                let first = out.plan.first();
                // The sum over the horizon is minimised by reaching the goal at once (clipped
                // to the bounds) and staying there.
                let want = [goal[0].clamp(-1.0, 1.0), goal[1].clamp(-1.0, 1.0)];
                for (f, w) in first.iter().zip(want) {
                    assert!(
                        (f - w).abs() < 0.15,
                        "{device:?} {backend:?} seed {seed}: first action {first:?}, want {want:?}"
                    );
                }
                assert!(bounds.contains(out.plan.actions()));
                assert_eq!(out.iterations, 8);
                assert_eq!(out.energy_trace.len(), 8);
                assert!(out.energy_trace.windows(2).all(|w| w[1] <= w[0]));
                assert!(out.best_energy.is_finite());
                assert_eq!(out.rollouts, 200 * 8);
            }
        }
    }
}

#[test]
fn the_device_backend_is_reproducible_and_seeded() {
    let a = plan_on(Device::Cpu, Backend::Device, 9, [0.4, 0.4]);
    let b = plan_on(Device::Cpu, Backend::Device, 9, [0.4, 0.4]);
    assert_eq!(a.plan.actions(), b.plan.actions());
    assert_eq!(a.energy_trace, b.energy_trace);
    let c = plan_on(Device::Cpu, Backend::Device, 10, [0.4, 0.4]);
    assert_ne!(a.plan.actions(), c.plan.actions());
}

#[test]
fn the_device_backend_continues_its_stream_and_rewinds_on_reset() {
    let model = Integrator {
        spec: state_spec(2),
        device: Device::Cpu,
    };
    let bounds = ActionBounds::symmetric(2, 1.0).unwrap();
    let mut p = cem(Backend::Device, 50, 2)
        .build(bounds, energy(), 5)
        .unwrap();
    let z0 = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
    let zg = Tensor::from_slice(&[0.3f32, 0.1]).view([1, 2]);
    let first = p
        .plan(&model, &z0, &zg, None, &Budget::unlimited())
        .unwrap();
    let second = p
        .plan(&model, &z0, &zg, None, &Budget::unlimited())
        .unwrap();
    assert_ne!(first.plan.actions(), second.plan.actions());
    p.reset();
    let again = p
        .plan(&model, &z0, &zg, None, &Budget::unlimited())
        .unwrap();
    assert_eq!(first.plan.actions(), again.plan.actions());
    // A warm start is honoured: the mean candidate starts there.
    let warm = Plan::new(vec![0.3, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 4, 2).unwrap();
    let out = p
        .plan(&model, &z0, &zg, Some(&warm), &Budget::iterations(1))
        .unwrap();
    assert!(
        out.best_energy < 1e-6,
        "warm start at the goal: {}",
        out.best_energy
    );
}

#[test]
fn the_device_backend_reports_all_non_finite_energies() {
    struct Nan(Integrator);
    impl WorldModel for Nan {
        fn name(&self) -> &str {
            "nan"
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn obs_spec(&self) -> &ObsSpec {
            self.0.obs_spec()
        }
        fn action_dim(&self) -> i64 {
            2
        }
        fn latent_shape(&self) -> &[i64] {
            &[2]
        }
        fn encode(&self, obs: &ObsBatch) -> zplan_models::Result<Tensor> {
            self.0.encode(obs)
        }
        fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
            Ok(self.0.rollout(z0, actions)? * f64::NAN)
        }
    }
    let model = Nan(Integrator {
        spec: state_spec(2),
        device: Device::Cpu,
    });
    let bounds = ActionBounds::symmetric(2, 1.0).unwrap();
    let mut p = cem(Backend::Device, 20, 2)
        .build(bounds, energy(), 1)
        .unwrap();
    let z = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
    let err = p
        .plan(&model, &z, &z, None, &Budget::unlimited())
        .unwrap_err();
    assert!(matches!(err, PlannerError::AllNonFinite { .. }), "{err}");
}

#[test]
fn backend_reads_from_ron() {
    let c = PlannerConfig::from_ron_str("Cem(samples: 100, backend: Device)").unwrap();
    assert!(matches!(
        c,
        PlannerConfig::Cem(CemConfig {
            backend: Backend::Device,
            ..
        })
    ));
    let c = PlannerConfig::from_ron_str("Cem(samples: 100)").unwrap();
    assert!(matches!(
        c,
        PlannerConfig::Cem(CemConfig {
            backend: Backend::Host,
            ..
        })
    ));
    let err = PlannerConfig::from_ron_str("Cem(backend: Gpu)").unwrap_err();
    assert!(err.to_string().contains("Gpu"), "{err}");
}
