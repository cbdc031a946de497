//! Candidate-parallel rollouts on CPU: one planner, several cores.
//!
//! A sampling planner scores hundreds of candidates in one batched rollout. On a CPU with `T`
//! cores, libtorch's own (intra-op) threading splits each matrix product of that rollout, which
//! pays a fork/join per operation and scales poorly for the small matrices of a planning
//! model. [`ParallelRollout`] splits the *batch* instead: `T` contiguous groups of candidates
//! roll out at once on `T` threads, each running libtorch single-threaded, and the predictions
//! are concatenated in order. Candidates are independent, so the result is the same rollout,
//! and it is deterministic for a given number of threads.

use crate::{ModelError, Result, WorldModel};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tch::{Device, Tensor};

/// One group's rollout, answered on `reply`.
struct Job {
    z0: Tensor,
    actions: Tensor,
    reply: Sender<Result<Tensor>>,
}

/// How long a waiting thread polls before it sleeps: longer than the gap between a planner's
/// iterations (sampling, ranking, refit: tens of microseconds), so neither side pays a
/// wake-up from sleep (tens to hundreds of microseconds on a virtual machine) per call.
const SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// The next message, polling for [`SPIN`] before blocking; `None` once the sender is gone.
fn receive<T>(rx: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    use std::sync::mpsc::TryRecvError;
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if start.elapsed() < SPIN => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// A persistent worker: keeps its thread-local libtorch state (intra-op threads, grad mode,
/// allocator caches) warm between calls.
struct Worker {
    jobs: Mutex<Option<Sender<Job>>>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(model: Arc<dyn WorldModel>, index: usize) -> Result<Self> {
        let (tx, rx) = channel::<Job>();
        let handle = std::thread::Builder::new()
            .name(format!("zplan-rollout-{index}"))
            .spawn(move || {
                tch::set_num_threads(1);
                let _guard = tch::no_grad_guard();
                while let Some(job) = receive(&rx) {
                    // A panicking model becomes an error of this call; the worker lives on.
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        model.rollout(&job.z0, &job.actions)
                    }))
                    .unwrap_or_else(|_| {
                        Err(ModelError::Internal(
                            "the model panicked in a parallel rollout".into(),
                        ))
                    });
                    // The caller may have given up (an error in another group): ignore.
                    let _ = job.reply.send(out);
                }
            })
            .map_err(|e| ModelError::Internal(format!("starting a rollout thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            handle: Some(handle),
        })
    }

    fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| ModelError::Internal("a rollout thread has stopped".into()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the worker's loop.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A [`WorldModel`] whose CPU rollouts run as `threads` candidate groups in parallel.
///
/// A batch of `b` candidates is split into `min(threads, b / min_rows)` groups; `encode`,
/// `rollout_grad`, rollouts on other devices and batches too small to split go to the wrapped
/// model unchanged. `threads - 1` persistent workers (each sets one torch thread and no-grad
/// mode for itself) take the other groups while the calling thread rolls out the first; they
/// stop when the wrapper is dropped. Run the calling thread with one torch thread too
/// (`tch::set_num_threads(1)`): libtorch's intra-op pool is shared by the process, so more
/// would oversubscribe the cores. A model error or panic in a group is returned as this
/// call's error, and the workers keep serving.
pub struct ParallelRollout {
    inner: Arc<dyn WorldModel>,
    threads: usize,
    min_rows: i64,
    name: String,
    /// `threads - 1` workers; the calling thread rolls out the first group itself.
    workers: Vec<Worker>,
}

impl ParallelRollout {
    /// Candidates below which a group is not worth its own thread.
    pub const DEFAULT_MIN_ROWS: i64 = 16;

    /// Wraps `inner` to roll out on `threads >= 1` threads.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when `threads` is 0.
    pub fn new(inner: Arc<dyn WorldModel>, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(ModelError::InvalidConfig(
                "parallel rollout threads must be at least 1".into(),
            ));
        }
        let workers = (1..threads)
            .map(|i| Worker::spawn(inner.clone(), i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: inner.name().to_string(),
            inner,
            threads,
            min_rows: Self::DEFAULT_MIN_ROWS,
            workers,
        })
    }

    /// Sets the smallest candidate group worth a thread (at least 1).
    pub fn with_min_rows(mut self, rows: i64) -> Self {
        self.min_rows = rows.max(1);
        self
    }

    /// Number of candidate groups rolled out in parallel.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The wrapped model.
    pub fn inner(&self) -> &Arc<dyn WorldModel> {
        &self.inner
    }

    /// Whether a rollout of these inputs is split into groups (else the inner model runs it
    /// whole).
    fn splits(&self, z0: &Tensor, actions: &Tensor) -> bool {
        let b = actions.size().first().copied().unwrap_or(0);
        self.groups(b).len() >= 2
            && self.inner.device() == Device::Cpu
            && z0.size().first() == Some(&b)
    }

    /// `(start, len)` of each group of a batch of `b` candidates.
    fn groups(&self, b: i64) -> Vec<(i64, i64)> {
        let n = (self.threads as i64).min(b / self.min_rows).max(1);
        let (base, extra) = (b / n, b % n);
        let mut start = 0;
        (0..n)
            .map(|i| {
                let len = base + i64::from(i < extra);
                let g = (start, len);
                start += len;
                g
            })
            .collect()
    }
}

impl WorldModel for ParallelRollout {
    fn name(&self) -> &str {
        &self.name
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn obs_spec(&self) -> &zplan_obs::ObsSpec {
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
    fn precision(&self) -> crate::Precision {
        self.inner.precision()
    }
    fn frameskip(&self) -> usize {
        self.inner.frameskip()
    }
    fn supports_grad(&self) -> bool {
        self.inner.supports_grad()
    }
    fn encode(&self, obs: &crate::ObsBatch) -> Result<Tensor> {
        self.inner.encode(obs)
    }
    fn needs_true_state(&self) -> bool {
        self.inner.needs_true_state()
    }
    fn rollout_grad(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        self.inner.rollout_grad(z0, actions)
    }

    fn rollout_owned(&self, z0: &Tensor, actions: &Tensor) -> Result<crate::Rollout> {
        if !self.splits(z0, actions) {
            return self.inner.rollout_owned(z0, actions);
        }
        let pred = self.rollout(z0, actions)?;
        // SAFETY: a split rollout returns the fresh result of `Tensor::f_cat` over the groups'
        // results (a copy), to which neither this model nor the inner one keeps a handle.
        Ok(unsafe { crate::Rollout::exclusive(pred) })
    }

    fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
        if !self.splits(z0, actions) {
            return self.inner.rollout(z0, actions);
        }
        let b = actions.size().first().copied().unwrap_or(0);
        let groups = self.groups(b);
        let mut replies = Vec::with_capacity(groups.len() - 1);
        for (worker, &(start, len)) in self.workers.iter().zip(&groups[1..]) {
            let (reply, rx) = channel();
            worker.submit(Job {
                z0: z0.f_narrow(0, start, len)?,
                actions: actions.f_narrow(0, start, len)?,
                reply,
            })?;
            replies.push(rx);
        }
        let (start, len) = groups[0];
        let first = self.inner.rollout(
            &z0.f_narrow(0, start, len)?,
            &actions.f_narrow(0, start, len)?,
        );
        let parts: Vec<Result<Tensor>> = std::iter::once(first)
            .chain(replies.into_iter().map(|rx| {
                receive(&rx).unwrap_or_else(|| {
                    Err(ModelError::Internal(
                        "a rollout thread stopped mid-call".into(),
                    ))
                })
            }))
            .collect();
        let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Tensor::f_cat(&parts, 0)?)
    }
}

impl std::fmt::Debug for ParallelRollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelRollout")
            .field("inner", &self.name)
            .field("threads", &self.threads)
            .field("min_rows", &self.min_rows)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// A user model that panics on actions above 100 and otherwise predicts the running sum
    /// of the first action entry.
    struct Fragile(zplan_obs::ObsSpec);

    impl WorldModel for Fragile {
        fn name(&self) -> &str {
            "fragile"
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn obs_spec(&self) -> &zplan_obs::ObsSpec {
            &self.0
        }
        fn action_dim(&self) -> i64 {
            1
        }
        fn latent_shape(&self) -> &[i64] {
            &[1]
        }
        fn encode(&self, obs: &crate::ObsBatch) -> Result<Tensor> {
            Ok(obs.field("state").expect("state").shallow_clone())
        }
        fn rollout(&self, z0: &Tensor, actions: &Tensor) -> Result<Tensor> {
            assert!(
                actions.max().double_value(&[]) <= 100.0,
                "fragile model: action too large"
            );
            Ok(actions
                .f_cumsum(1, Kind::Float)?
                .f_add(&z0.f_unsqueeze(1)?)?)
        }
    }

    #[test]
    fn a_panicking_group_is_an_error_and_the_workers_live_on() {
        let par = ParallelRollout::new(Arc::new(Fragile(crate::state_spec(1))), 2)
            .unwrap()
            .with_min_rows(1);
        assert_eq!(par.groups(5), vec![(0, 3), (3, 2)]);
        let z0 = Tensor::zeros([4, 1], (Kind::Float, Device::Cpu));
        // Candidate 3 lands in the worker's group.
        let bad = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 500.0]).view([4, 1, 1]);
        let err = par.rollout(&z0, &bad).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        let good = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).view([4, 2, 1]);
        let out = Vec::<f32>::try_from(par.rollout(&z0, &good).unwrap().reshape([-1])).unwrap();
        assert_eq!(out, vec![1.0, 3.0, 3.0, 7.0, 5.0, 11.0, 7.0, 15.0]);
    }
}
