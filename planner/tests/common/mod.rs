//! A genuine (tiny) world model for planner tests: linear latent dynamics
//! `z_{t+1} = A z_t + B a_t`, with optional NaN regions and artificial latency.
#![allow(dead_code)]

use std::time::Duration;
use tch::{Device, Kind, Tensor};
use zplan_models::WorldModel;

/// `z_{t+1} = A z_t + B a_t` with `A` `[D, D]`, `B` `[D, A]` (row-major host copies, so the
/// model is `Sync`), latent = observation.
pub struct LinearModel {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub d: i64,
    pub n_act: i64,
    obs_shape: Vec<i64>,
    obs_spec: zplan_models::ObsSpec,
    /// Candidates whose first action's entry 0 exceeds this produce NaN latents.
    pub nan_above: Option<f32>,
    /// Sleep per rollout call (to test deadlines).
    pub delay: Option<Duration>,
}

impl LinearModel {
    pub fn new(a: Vec<f32>, b: Vec<f32>, d: usize, n_act: usize) -> Self {
        assert_eq!(a.len(), d * d);
        assert_eq!(b.len(), d * n_act);
        Self {
            a,
            b,
            d: d as i64,
            n_act: n_act as i64,
            obs_shape: vec![d as i64],
            obs_spec: zplan_models::state_spec(d),
            nan_above: None,
            delay: None,
        }
    }

    /// The reference problem: `A = 0.9 I`, `B = diag(0.5, 1)`, 2-D.
    pub fn reference() -> Self {
        Self::new(vec![0.9, 0.0, 0.0, 0.9], vec![0.5, 0.0, 0.0, 1.0], 2, 2)
    }

    /// Pure integrator `z' = z + a`.
    pub fn integrator(d: usize) -> Self {
        let mut eye = vec![0.0; d * d];
        for i in 0..d {
            eye[i * d + i] = 1.0;
        }
        Self::new(eye.clone(), eye, d, d)
    }

    /// One step on the host, for closed-loop tests.
    pub fn step(&self, z: &[f32], a: &[f32]) -> Vec<f32> {
        let (d, n) = (self.d as usize, self.n_act as usize);
        (0..d)
            .map(|i| {
                (0..d).map(|j| self.a[i * d + j] * z[j]).sum::<f32>()
                    + (0..n).map(|j| self.b[i * n + j] * a[j]).sum::<f32>()
            })
            .collect()
    }

    fn run(&self, z0: &Tensor, actions: &Tensor) -> Tensor {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let dev = z0.device();
        let a_t = Tensor::from_slice(&self.a)
            .view([self.d, self.d])
            .to_device(dev)
            .tr();
        let b_t = Tensor::from_slice(&self.b)
            .view([self.d, self.n_act])
            .to_device(dev)
            .tr();
        let h = actions.size()[1];
        let mut z = z0.to_kind(Kind::Float);
        let mut out = Vec::with_capacity(h as usize);
        for t in 0..h {
            z = z.matmul(&a_t) + actions.select(1, t).matmul(&b_t);
            out.push(z.shallow_clone());
        }
        let mut pred = Tensor::stack(&out, 1);
        if let Some(thr) = self.nan_above {
            let bad = actions
                .select(1, 0)
                .select(1, 0)
                .gt(f64::from(thr))
                .view([-1, 1, 1]);
            pred = pred.where_self(&bad.logical_not(), &Tensor::from(f32::NAN).to_device(dev));
        }
        pred
    }
}

impl WorldModel for LinearModel {
    fn name(&self) -> &str {
        "linear"
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn obs_spec(&self) -> &zplan_models::ObsSpec {
        &self.obs_spec
    }
    fn action_dim(&self) -> i64 {
        self.n_act
    }
    fn latent_shape(&self) -> &[i64] {
        &self.obs_shape
    }
    fn encode(&self, obs: &zplan_models::ObsBatch) -> zplan_models::Result<Tensor> {
        obs.float("state", "linear", Device::Cpu)
    }
    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        let _g = tch::no_grad_guard();
        Ok(self.run(z0, actions))
    }
    fn supports_grad(&self) -> bool {
        true
    }
    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> zplan_models::Result<Tensor> {
        Ok(self.run(z0, actions))
    }
}

pub fn latent(v: &[f32]) -> Tensor {
    Tensor::from_slice(v).view([1, v.len() as i64])
}

/// Timing-sensitive tests run libtorch single-threaded: on a loaded machine an OpenMP team
/// whose second thread is descheduled stalls every kernel for a scheduler time slice.
pub fn single_threaded_torch() {
    tch::set_num_threads(1);
}
