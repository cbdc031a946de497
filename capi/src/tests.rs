//! Unit tests of the C ABI, calling the `extern "C"` functions from Rust as C would: misuse
//! (NULL pointers, dead handles, wrong sizes, bad observations, bad RON, non-UTF-8 strings)
//! returns a status and a message, never a crash; and a controller on `reach` with the
//! simulator-backed model plans.

use super::*;
use crate::status::ZplanStatus as S;
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("capi/ has a parent")
        .to_path_buf()
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn reach_path() -> CString {
    c(repo()
        .join("scenarios/reach.ron")
        .to_str()
        .expect("UTF-8 path"))
}

fn scenarios_dir() -> CString {
    c(repo().join("scenarios").to_str().expect("UTF-8 path"))
}

fn last_error() -> String {
    // SAFETY: the function returns a NUL-terminated string valid until the next zplan call
    // on this thread; it is copied at once.
    unsafe { CStr::from_ptr(zplan_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// A cheap planner for reach: a few candidates, a short horizon.
const ENTRY: &str = r#"(
    name: "reach/sim",
    scenario: File("reach.ron"),
    model: Sim,
    planner: Cem(samples: 16, elites: 4, iterations: 2, horizon: 4, init_std: 0.8, momentum: 0.0),
    energy: (metric: L2, reduction: Sum),
    mpc: (replan_every: 2, action_block: 2),
)"#;

fn options() -> ZplanControllerOptions {
    ZplanControllerOptions {
        sim_threads: 1,
        ..zplan_controller_options_default()
    }
}

fn create_from_entry(entry: &str) -> (ZplanStatus, *mut ZplanController) {
    let (entry, base) = (c(entry), scenarios_dir());
    let mut out = null_mut();
    // SAFETY: valid NUL-terminated strings, options and output pointer for the call.
    let s = unsafe {
        zplan_controller_create_from_entry(entry.as_ptr(), base.as_ptr(), &options(), &mut out)
    };
    (s, out)
}

fn controller() -> *mut ZplanController {
    let (s, ctl) = create_from_entry(ENTRY);
    assert_eq!(s, S::Ok, "{}", last_error());
    assert!(!ctl.is_null());
    ctl
}

fn env() -> *mut ZplanEnv {
    let path = reach_path();
    let mut out = null_mut();
    // SAFETY: a valid path string and output pointer.
    let s = unsafe { zplan_env_create(path.as_ptr(), &mut out) };
    assert_eq!(s, S::Ok, "{}", last_error());
    out
}

/// An observation field in Rust memory, to hand out as a `ZplanField`.
struct Buf {
    name: CString,
    dtype: i32,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Buf {
    fn f32(name: &str, values: &[f32]) -> Buf {
        Buf {
            name: c(name),
            dtype: ZplanDtype::F32 as i32,
            shape: vec![values.len()],
            data: values.iter().flat_map(|v| v.to_ne_bytes()).collect(),
        }
    }

    fn zeros(name: &str, dtype: ZplanDtype, shape: &[usize]) -> Buf {
        let size = match dtype {
            ZplanDtype::F32 => 4,
            ZplanDtype::U8 => 1,
        };
        Buf {
            name: c(name),
            dtype: dtype as i32,
            shape: shape.to_vec(),
            data: vec![0; size * shape.iter().product::<usize>()],
        }
    }

    fn values(&self) -> Vec<f32> {
        self.data
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn field(&mut self) -> ZplanField {
        ZplanField {
            name: self.name.as_ptr(),
            dtype: self.dtype,
            data: self.data.as_mut_ptr().cast(),
            shape: self.shape.as_ptr(),
            ndim: self.shape.len(),
        }
    }
}

fn fields(bufs: &mut [Buf]) -> Vec<ZplanField> {
    bufs.iter_mut().map(Buf::field).collect()
}

/// Pushes `bufs` to `ctl`.
fn push(ctl: *mut ZplanController, bufs: &mut [Buf]) -> ZplanStatus {
    let f = fields(bufs);
    // SAFETY: `f` points into `bufs`, alive for the call, shapes matching the data.
    unsafe { zplan_controller_push_observation(ctl, f.as_ptr(), f.len()) }
}

fn set_goal(ctl: *mut ZplanController, bufs: &mut [Buf]) -> ZplanStatus {
    let f = fields(bufs);
    // SAFETY: as in `push`.
    unsafe { zplan_controller_set_goal(ctl, f.as_ptr(), f.len(), 7) }
}

/// The env's observation (or goal) as a `state` buffer.
fn observe(env: *mut ZplanEnv, goal: bool) -> Buf {
    let mut b = Buf::zeros("state", ZplanDtype::F32, &[11]);
    let f = [b.field()];
    // SAFETY: `f` points into `b`, writable for 11 floats.
    let s = unsafe {
        if goal {
            zplan_env_goal_observation(env, f.as_ptr(), 1)
        } else {
            zplan_env_observe(env, f.as_ptr(), 1)
        }
    };
    assert_eq!(s, S::Ok, "{}", last_error());
    b
}

fn latest(ctl: *mut ZplanController, len: usize) -> (ZplanStatus, Vec<f32>) {
    let mut a = vec![f32::NAN; len];
    // SAFETY: `a` holds `len` writable floats.
    let s = unsafe { zplan_controller_latest_action(ctl, a.as_mut_ptr(), len) };
    (s, a)
}

fn destroy(ctl: *mut ZplanController) -> ZplanStatus {
    // SAFETY: any handle value is accepted.
    unsafe { zplan_controller_destroy(ctl) }
}

fn destroy_env(env: *mut ZplanEnv) -> ZplanStatus {
    // SAFETY: any handle value is accepted.
    unsafe { zplan_env_destroy(env) }
}

/// `status` is `want` and the last error contains every one of `parts`.
#[track_caller]
fn expect_err(status: ZplanStatus, want: ZplanStatus, parts: &[&str]) {
    let msg = last_error();
    assert_eq!(status, want, "message: {msg}");
    for p in parts {
        assert!(msg.contains(p), "`{msg}` lacks `{p}`");
    }
}

#[test]
fn plans_reach_with_the_simulator_model_within_a_second() {
    let env = env();
    let ctl = controller();
    let mut info = ZplanControllerInfo {
        num_fields: 0,
        action_dim: 0,
        state_dim: 0,
        needs_true_state: false,
        control_period_ms: 0.0,
        deadline_ms: 0.0,
        action_block: 0,
        lookahead: 0,
    };
    // SAFETY: valid handle and output pointer.
    assert_eq!(unsafe { zplan_controller_info(ctl, &mut info) }, S::Ok);
    assert_eq!(
        (info.num_fields, info.action_dim, info.state_dim),
        (1, 3, 11)
    );
    assert!(info.needs_true_state);
    assert_eq!(info.action_block, 2);
    assert_eq!(info.lookahead, 1);
    assert!((info.control_period_ms - 50.0).abs() < 1e-9);
    assert!((info.deadline_ms - 40.0).abs() < 1e-6, "80 % of 50 ms");
    let mut field = std::mem::MaybeUninit::<ZplanFieldInfo>::uninit();
    // SAFETY: valid handle and output pointer; read only after OK.
    let field = unsafe {
        assert_eq!(zplan_controller_field(ctl, 0, field.as_mut_ptr()), S::Ok);
        field.assume_init()
    };
    // SAFETY: the name stays valid while the controller lives.
    let name = unsafe { CStr::from_ptr(field.name) };
    assert_eq!(name.to_str(), Ok("state"));
    assert_eq!(field.dtype, ZplanDtype::F32);
    assert_eq!(
        (field.ndim, field.shape[0], field.shape[1], field.numel),
        (1, 11, 0, 11)
    );

    assert_eq!(latest(ctl, 3).0, S::NoActionYet, "no goal yet");
    let mut goal = [observe(env, true)];
    assert_eq!(set_goal(ctl, &mut goal), S::Ok, "{}", last_error());
    assert_eq!(latest(ctl, 3).0, S::NoActionYet, "no observation yet");
    let started = Instant::now();
    let mut action = None;
    while started.elapsed() < Duration::from_secs(1) {
        let mut obs = [observe(env, false)];
        assert_eq!(push(ctl, &mut obs), S::Ok, "{}", last_error());
        let (s, a) = latest(ctl, 3);
        if s == S::Ok {
            action = Some(a);
            break;
        }
        assert_eq!(s, S::NoActionYet);
        std::thread::sleep(Duration::from_millis(5));
    }
    let action = action.expect("an action within a second");
    assert!(
        action.iter().all(|a| (-1.0..=1.0).contains(a)),
        "{action:?}"
    );
    // The action drives the simulation.
    let mut steps = 0u32;
    let mut distance = f32::NAN;
    let mut success = true;
    // SAFETY: valid handles and pointers.
    unsafe {
        assert_eq!(zplan_env_step(env, action.as_ptr(), 3), S::Ok);
        assert_eq!(zplan_env_steps(env, &mut steps), S::Ok);
        assert_eq!(zplan_env_distance_to_goal(env, &mut distance), S::Ok);
        assert_eq!(zplan_env_success(env, &mut success), S::Ok);
    }
    assert_eq!(steps, 1);
    assert!(distance.is_finite() && distance > 0.0);

    let mut stats = ZplanControllerStats::default();
    // SAFETY: valid handle and output pointer.
    assert_eq!(unsafe { zplan_controller_stats(ctl, &mut stats) }, S::Ok);
    assert!(stats.plans >= 1 && stats.observations >= 1, "{stats:?}");
    let mut report = ZplanControllerReport::default();
    // SAFETY: valid handle and output pointer.
    assert_eq!(unsafe { zplan_controller_stop(ctl, &mut report) }, S::Ok);
    assert!(report.stats.plans >= 1, "{report:?}");
    assert_eq!(report.stats.errors, 0);
    assert!(report.latency_p50_ms.is_finite() && report.latency_p50_ms > 0.0);
    assert!(report.latency_max_ms >= report.latency_p99_ms);
    assert!(report.plan_time_p50_ms.is_finite());
    // Stopped: stats and stop still answer, planning calls say so.
    let mut again = ZplanControllerReport::default();
    // SAFETY: valid handle and pointers.
    unsafe {
        assert_eq!(zplan_controller_stop(ctl, &mut again), S::Ok);
        assert_eq!(zplan_controller_stats(ctl, &mut stats), S::Ok);
    }
    assert_eq!(again, report);
    assert_eq!(stats, report.stats);
    let mut obs = [observe(env, false)];
    expect_err(push(ctl, &mut obs), S::Stopped, &["stopped"]);
    expect_err(latest(ctl, 3).0, S::Stopped, &["stopped"]);
    expect_err(set_goal(ctl, &mut obs), S::Stopped, &["stopped"]);

    assert_eq!(destroy(ctl), S::Ok);
    assert_eq!(destroy_env(env), S::Ok);
}

#[test]
fn goals_switch_and_the_deadline_changes_at_runtime() {
    let env = env();
    // Parts instead of an entry; the true state travels as an extra field.
    let (scenario, model, planner) = (
        reach_path(),
        c("sim"),
        c("Cem(samples: 16, elites: 4, iterations: 2, horizon: 4)"),
    );
    let mpc = c("(replan_every: 1, deadline_ms: Some(30.0))");
    let mut ctl = null_mut();
    // SAFETY: valid strings (energy NULL: default), options and output pointer.
    let s = unsafe {
        zplan_controller_create(
            scenario.as_ptr(),
            model.as_ptr(),
            planner.as_ptr(),
            null(),
            mpc.as_ptr(),
            &options(),
            &mut ctl,
        )
    };
    assert_eq!(s, S::Ok, "{}", last_error());
    let mut info = std::mem::MaybeUninit::<ZplanControllerInfo>::uninit();
    // SAFETY: valid handle and output pointer; read after OK.
    let info = unsafe {
        assert_eq!(zplan_controller_info(ctl, info.as_mut_ptr()), S::Ok);
        info.assume_init()
    };
    assert!(
        (info.deadline_ms - 30.0).abs() < 1e-6,
        "from the MPC settings"
    );
    assert_eq!(info.action_block, 1);

    let goal_with_state = |env| {
        let mut b = [
            Buf::zeros("state", ZplanDtype::F32, &[11]),
            Buf::zeros(ZPLAN_TRUE_STATE_FIELD, ZplanDtype::F32, &[11]),
        ];
        let f = fields(&mut b);
        // SAFETY: `f` points into `b`, writable for the fields' sizes.
        assert_eq!(
            unsafe { zplan_env_goal_observation(env, f.as_ptr(), 2) },
            S::Ok
        );
        b
    };
    let mut goal = goal_with_state(env);
    assert_eq!(
        goal[0].values(),
        goal[1].values(),
        "reach observes its whole state"
    );
    assert_eq!(set_goal(ctl, &mut goal), S::Ok, "{}", last_error());
    // SAFETY: valid handle.
    unsafe {
        expect_err(
            zplan_controller_set_deadline(ctl, -1.0),
            S::InvalidArgument,
            &["deadline_ms = -1"],
        );
        expect_err(
            zplan_controller_set_deadline(ctl, 0.0),
            S::InvalidArgument,
            &["positive"],
        );
        expect_err(
            zplan_controller_set_deadline(ctl, f64::NAN),
            S::InvalidArgument,
            &["NaN"],
        );
        assert_eq!(zplan_controller_set_deadline(ctl, 45.0), S::Ok);
    }
    let wait_for_action = || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            let mut obs = [observe(env, false)];
            assert_eq!(push(ctl, &mut obs), S::Ok, "{}", last_error());
            if latest(ctl, 3).0 == S::Ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    };
    assert!(wait_for_action());
    // A new goal: no action for it until it is planned for.
    // SAFETY: valid handle.
    assert_eq!(unsafe { zplan_env_reset(env, 3) }, S::Ok);
    let mut goal = goal_with_state(env);
    assert_eq!(set_goal(ctl, &mut goal), S::Ok);
    assert!(wait_for_action(), "an action for the new goal");
    let mut info = std::mem::MaybeUninit::<ZplanControllerInfo>::uninit();
    // SAFETY: valid handle and output pointer; read after OK.
    let info = unsafe {
        assert_eq!(zplan_controller_info(ctl, info.as_mut_ptr()), S::Ok);
        info.assume_init()
    };
    assert!((info.deadline_ms - 45.0).abs() < 1e-6);
    // Destroy stops the running controller.
    assert_eq!(destroy(ctl), S::Ok);
    expect_err(
        destroy(ctl),
        S::InvalidHandle,
        &["zplan_controller_destroy", "not a live controller handle"],
    );
    assert_eq!(destroy_env(env), S::Ok);
}

#[test]
fn null_pointers_are_refused_for_every_pointer_argument() {
    let env = env();
    let ctl = controller();
    let (path, entry, base) = (reach_path(), c(ENTRY), scenarios_dir());
    let (sim, cem) = (c("sim"), c("Cem(samples: 16, elites: 4, horizon: 4)"));
    let mut a = [0f32; 3];
    let mut b = [0f32; 3];
    let mut state = Buf::zeros("state", ZplanDtype::F32, &[11]);
    let good = state.field();
    let null_name = ZplanField {
        name: null(),
        ..good
    };
    let null_data = ZplanField {
        data: null_mut(),
        ..good
    };
    let null_shape = ZplanField {
        shape: null(),
        ..good
    };
    let mut env_out = null_mut();
    let mut ctl_out = null_mut();
    let mut u = 0u32;
    let mut x = 0f32;
    let mut flag = false;
    // SAFETY: every non-NULL pointer is valid for the call; NULLs are what is tested.
    unsafe {
        expect_err(
            zplan_env_create(null(), &mut env_out),
            S::NullPointer,
            &["zplan_env_create", "`scenario_path` is NULL"],
        );
        expect_err(
            zplan_env_create(path.as_ptr(), null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_env_destroy(null_mut()),
            S::NullPointer,
            &["`env` is NULL"],
        );
        expect_err(
            zplan_env_info(null_mut(), null_mut()),
            S::NullPointer,
            &["`env` is NULL"],
        );
        expect_err(
            zplan_env_info(env, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_env_field(env, 0, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_env_action_bounds(env, null_mut(), b.as_mut_ptr(), 3),
            S::NullPointer,
            &["`low` is NULL"],
        );
        expect_err(
            zplan_env_action_bounds(env, a.as_mut_ptr(), null_mut(), 3),
            S::NullPointer,
            &["`high` is NULL"],
        );
        expect_err(
            zplan_env_reset(null_mut(), 0),
            S::NullPointer,
            &["`env` is NULL"],
        );
        for f in [zplan_env_observe, zplan_env_goal_observation] {
            expect_err(f(env, null(), 1), S::NullPointer, &["`fields` is NULL"]);
            expect_err(
                f(env, &null_name, 1),
                S::NullPointer,
                &["`fields[0].name` is NULL"],
            );
            expect_err(
                f(env, &null_data, 1),
                S::NullPointer,
                &["`fields[0].data` is NULL"],
            );
            expect_err(
                f(env, &null_shape, 1),
                S::NullPointer,
                &["`fields[0].shape` is NULL"],
            );
        }
        expect_err(
            zplan_env_step(env, null(), 3),
            S::NullPointer,
            &["`action` is NULL"],
        );
        expect_err(
            zplan_env_success(env, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_env_distance_to_goal(env, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_env_steps(env, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        // Nothing was written through the non-NULL outputs of failed calls.
        assert_eq!((u, x, flag), (0, 0.0, false));
        assert_eq!(zplan_env_steps(env, &mut u), S::Ok);
        assert_eq!(zplan_env_distance_to_goal(env, &mut x), S::Ok);
        assert_eq!(zplan_env_success(env, &mut flag), S::Ok);

        expect_err(
            zplan_controller_create_from_entry(null(), base.as_ptr(), null(), &mut ctl_out),
            S::NullPointer,
            &["`entry_ron` is NULL"],
        );
        expect_err(
            zplan_controller_create_from_entry(entry.as_ptr(), base.as_ptr(), null(), null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_controller_create(
                null(),
                sim.as_ptr(),
                cem.as_ptr(),
                null(),
                null(),
                null(),
                &mut ctl_out,
            ),
            S::NullPointer,
            &["`scenario_path` is NULL"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                null(),
                cem.as_ptr(),
                null(),
                null(),
                null(),
                &mut ctl_out,
            ),
            S::NullPointer,
            &["`model` is NULL"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                null(),
                null(),
                null(),
                null(),
                &mut ctl_out,
            ),
            S::NullPointer,
            &["`planner_ron` is NULL"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                null(),
                null(),
                null(),
                null_mut(),
            ),
            S::NullPointer,
            &["`out` is NULL"],
        );
        assert!(ctl_out.is_null(), "a failed create sets *out to NULL");
        expect_err(
            zplan_controller_destroy(null_mut()),
            S::NullPointer,
            &["`ctl` is NULL"],
        );
        expect_err(
            zplan_controller_info(ctl, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_controller_field(ctl, 0, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_controller_set_goal(ctl, null(), 1, 0),
            S::NullPointer,
            &["`fields` is NULL"],
        );
        expect_err(
            zplan_controller_set_goal(ctl, &null_name, 1, 0),
            S::NullPointer,
            &["`fields[0].name` is NULL"],
        );
        expect_err(
            zplan_controller_push_observation(ctl, null(), 1),
            S::NullPointer,
            &["`fields` is NULL"],
        );
        expect_err(
            zplan_controller_push_observation(ctl, &null_data, 1),
            S::NullPointer,
            &["`fields[0].data` is NULL"],
        );
        expect_err(
            zplan_controller_push_observation(ctl, &null_shape, 1),
            S::NullPointer,
            &["`fields[0].shape` is NULL"],
        );
        expect_err(
            zplan_controller_latest_action(ctl, null_mut(), 3),
            S::NullPointer,
            &["`action` is NULL"],
        );
        expect_err(
            zplan_controller_set_deadline(null_mut(), 10.0),
            S::NullPointer,
            &["`ctl` is NULL"],
        );
        expect_err(
            zplan_controller_stats(ctl, null_mut()),
            S::NullPointer,
            &["`out` is NULL"],
        );
        expect_err(
            zplan_last_error_copy(null_mut(), 10, null_mut()),
            S::NullPointer,
            &[],
        );
        // A NULL report is allowed: stop without one.
        assert_eq!(zplan_controller_stop(ctl, null_mut()), S::Ok);
        expect_err(
            zplan_controller_stop(null_mut(), null_mut()),
            S::NullPointer,
            &["`ctl` is NULL"],
        );
        // Optional strings may be NULL: energy and MPC defaults, default options.
        assert_eq!(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                null(),
                null(),
                &options(),
                &mut ctl_out
            ),
            S::Ok,
            "{}",
            last_error()
        );
    }
    assert!(!ctl_out.is_null());
    assert_eq!(destroy(ctl_out), S::Ok);
    assert_eq!(destroy(ctl), S::Ok);
    assert_eq!(destroy_env(env), S::Ok);
}

#[test]
fn dead_and_foreign_handles_are_refused() {
    let env = env();
    let ctl = controller();
    assert_eq!(destroy(ctl), S::Ok);
    expect_err(
        destroy(ctl),
        S::InvalidHandle,
        &["`ctl` is not a live controller handle"],
    );
    let mut stats = ZplanControllerStats::default();
    let mut obs = [observe(env, false)];
    // SAFETY: valid output pointers; the handles are only looked up.
    unsafe {
        expect_err(
            zplan_controller_stats(ctl, &mut stats),
            S::InvalidHandle,
            &["zplan_controller_stats"],
        );
        expect_err(
            zplan_controller_set_deadline(ctl, 10.0),
            S::InvalidHandle,
            &[],
        );
        // An environment is not a controller, nor is a made-up value.
        expect_err(
            zplan_controller_stats(env.cast(), &mut stats),
            S::InvalidHandle,
            &[],
        );
        let made_up = std::ptr::without_provenance_mut::<ZplanController>(0xdead_beef);
        expect_err(
            zplan_controller_stats(made_up, &mut stats),
            S::InvalidHandle,
            &[],
        );
        expect_err(
            zplan_controller_stop(made_up, null_mut()),
            S::InvalidHandle,
            &[],
        );
        expect_err(
            zplan_env_reset(ctl.cast(), 1),
            S::InvalidHandle,
            &["`env` is not a live environment handle"],
        );
    }
    expect_err(push(ctl, &mut obs), S::InvalidHandle, &[]);
    expect_err(latest(ctl, 3).0, S::InvalidHandle, &[]);
    assert_eq!(destroy_env(env), S::Ok);
    expect_err(destroy_env(env), S::InvalidHandle, &["zplan_env_destroy"]);
    let mut info = std::mem::MaybeUninit::<ZplanEnvInfo>::uninit();
    // SAFETY: valid output pointer; the handle is only looked up.
    expect_err(
        unsafe { zplan_env_info(env, info.as_mut_ptr()) },
        S::InvalidHandle,
        &[],
    );
}

#[test]
fn wrong_buffer_sizes_are_refused() {
    let env = env();
    let ctl = controller();
    let mut goal = [observe(env, true)];
    assert_eq!(set_goal(ctl, &mut goal), S::Ok);
    expect_err(
        latest(ctl, 2).0,
        S::WrongSize,
        &["`len` is 2, but actions have 3 entries"],
    );
    expect_err(latest(ctl, 4).0, S::WrongSize, &[]);
    expect_err(latest(ctl, 0).0, S::WrongSize, &[]);
    let a = [0f32; 4];
    let (mut lo, mut hi) = ([0f32; 4], [0f32; 4]);
    let mut short = Buf::zeros("state", ZplanDtype::F32, &[10]);
    let f = [short.field()];
    // SAFETY: buffers at least as long as the lengths passed.
    unsafe {
        expect_err(
            zplan_env_step(env, a.as_ptr(), 2),
            S::WrongSize,
            &["zplan_env_step"],
        );
        expect_err(
            zplan_env_action_bounds(env, lo.as_mut_ptr(), hi.as_mut_ptr(), 4),
            S::WrongSize,
            &[],
        );
        assert_eq!(
            zplan_env_action_bounds(env, lo.as_mut_ptr(), hi.as_mut_ptr(), 3),
            S::Ok
        );
        expect_err(
            zplan_env_observe(env, f.as_ptr(), 1),
            S::WrongSize,
            &["fields[0] (`state`): the buffer is f32 [10], the field is f32 [11]"],
        );
        let nan = [0.0, f32::NAN, 0.0];
        expect_err(
            zplan_env_step(env, nan.as_ptr(), 3),
            S::InvalidArgument,
            &["action[1] is NaN"],
        );
    }
    assert_eq!(
        (lo[..3].to_vec(), hi[..3].to_vec()),
        (vec![-1.0; 3], vec![1.0; 3])
    );
    assert_eq!(short.values(), vec![0.0; 10], "nothing written on failure");
    assert_eq!(destroy(ctl), S::Ok);
    assert_eq!(destroy_env(env), S::Ok);
}

#[test]
fn observations_that_do_not_fit_the_spec_name_the_field() {
    let env = env();
    let ctl = controller();
    let good = observe(env, false).values();
    // Checked before the goal too: push says what is wrong with the observation first.
    expect_err(
        push(ctl, &mut [Buf::f32("state", &good)]),
        S::NoGoal,
        &["zplan_controller_set_goal first"],
    );
    let mut goal = [observe(env, true)];
    assert_eq!(set_goal(ctl, &mut goal), S::Ok);
    let short = &good[..10];
    expect_err(push(ctl, &mut [Buf::f32("state", short)]), S::InvalidObservation, &[
        "zplan_controller_push_observation: observation field `state`: expected f32 [11], got f32 [10]",
    ]);
    let mut as_u8 = Buf::zeros("state", ZplanDtype::U8, &[11]);
    expect_err(
        push(ctl, std::slice::from_mut(&mut as_u8)),
        S::InvalidObservation,
        &["expected f32 [11], got u8 [11]"],
    );
    let mut as_matrix = Buf::f32("state", &good);
    as_matrix.shape = vec![11, 1];
    expect_err(
        push(ctl, std::slice::from_mut(&mut as_matrix)),
        S::InvalidObservation,
        &["expected f32 [11], got f32 [11, 1]"],
    );
    expect_err(
        push(
            ctl,
            &mut [Buf::f32("state", &good), Buf::f32("velocity", &[1.0])],
        ),
        S::InvalidObservation,
        &["observation field `velocity` is not in the spec (state [11] f32"],
    );
    expect_err(
        push(ctl, &mut []),
        S::InvalidObservation,
        &["observation field `state` is missing"],
    );
    expect_err(
        push(ctl, &mut [Buf::f32(ZPLAN_TRUE_STATE_FIELD, &good)]),
        S::InvalidObservation,
        &["observation field `state` is missing"],
    );
    expect_err(
        push(
            ctl,
            &mut [Buf::f32("state", &good), Buf::f32("state", &good)],
        ),
        S::InvalidObservation,
        &["`state` is given twice"],
    );
    expect_err(
        push(
            ctl,
            &mut [
                Buf::f32("state", &good),
                Buf::f32(ZPLAN_TRUE_STATE_FIELD, short),
            ],
        ),
        S::InvalidObservation,
        &["`true_state`: expected f32 [11], got f32 [10]"],
    );
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    expect_err(
        push(ctl, &mut [Buf::f32("state", &nan)]),
        S::InvalidObservation,
        &["observation field `state`: entry 3 is NaN"],
    );
    let mut bad_dtype = Buf::f32("state", &good);
    bad_dtype.dtype = 7;
    expect_err(
        push(ctl, std::slice::from_mut(&mut bad_dtype)),
        S::InvalidArgument,
        &["dtype 7 is not a ZplanDtype"],
    );
    let mut deep = Buf::f32("state", &good);
    deep.shape = vec![1; ZPLAN_MAX_NDIM + 1];
    expect_err(
        push(ctl, std::slice::from_mut(&mut deep)),
        S::InvalidArgument,
        &["exceeds ZPLAN_MAX_NDIM"],
    );
    let mut bad_name = Buf::f32("state", &good);
    bad_name.name = CString::new(vec![b's', 0xff]).expect("no NUL");
    expect_err(
        push(ctl, std::slice::from_mut(&mut bad_name)),
        S::InvalidArgument,
        &["`fields[0].name` is not valid UTF-8"],
    );
    // The goal is checked the same way.
    expect_err(
        set_goal(ctl, &mut [Buf::f32("state", short)]),
        S::InvalidObservation,
        &[
            "zplan_controller_set_goal",
            "expected f32 [11], got f32 [10]",
        ],
    );
    // SAFETY: a count far beyond any observation is refused before anything is read.
    let huge =
        unsafe { zplan_controller_push_observation(ctl, goal[0].field().data.cast(), 1 << 40) };
    expect_err(huge, S::InvalidArgument, &["n_fields"]);
    // After all that, a good observation still works.
    assert_eq!(push(ctl, &mut [Buf::f32("state", &good)]), S::Ok);
    let mut stats = ZplanControllerStats::default();
    // SAFETY: valid handle and output pointer.
    assert_eq!(unsafe { zplan_controller_stats(ctl, &mut stats) }, S::Ok);
    assert_eq!(stats.observations, 1, "refused observations are not pushed");
    assert_eq!(destroy(ctl), S::Ok);
    assert_eq!(destroy_env(env), S::Ok);
}

#[test]
fn bad_configurations_are_refused_with_a_message_naming_the_problem() {
    // RON syntax: line and column.
    let (s, ctl) =
        create_from_entry("(name: \"x\",\n  scenario: File(\"reach.ron\"),, model: Sim)");
    expect_err(
        s,
        S::Config,
        &["zplan_controller_create_from_entry: entry_ron:2:"],
    );
    assert!(ctl.is_null());
    // An unknown field.
    let (s, _) = create_from_entry(&ENTRY.replace("model: Sim,", "model: Sim, modle: Sim,"));
    expect_err(s, S::Config, &["modle"]);
    // An invalid value names the field.
    let (s, _) = create_from_entry(&ENTRY.replace("elites: 4", "elites: 40"));
    expect_err(s, S::Config, &["entry `reach/sim`", "elites", "40"]);
    let (s, _) = create_from_entry(&ENTRY.replace("replan_every: 2", "replan_every: 3"));
    expect_err(s, S::Config, &["replan_every"]);
    // A missing scenario file, a missing model file.
    let (s, _) = create_from_entry(&ENTRY.replace("reach.ron", "nope.ron"));
    expect_err(s, S::Config, &["nope.ron"]);
    let (s, _) = create_from_entry(&ENTRY.replace("model: Sim", "model: Jepa(\"no/such/model\")"));
    expect_err(s, S::Model, &["no/such/model"]);
    // The trained JEPA loads from a path relative to the base directory.
    let (s, ctl) =
        create_from_entry(&ENTRY.replace("model: Sim", "model: Jepa(\"../models/trained/reach\")"));
    assert_eq!(s, S::Ok, "{}", last_error());
    assert_eq!(destroy(ctl), S::Ok);
    // The entry's `precision` is honoured: bf16 for a model with weights, refused for Sim.
    let (s, _) = create_from_entry(&ENTRY.replace("model: Sim,", "model: Sim, precision: Bf16,"));
    expect_err(s, S::Config, &["precision", "Sim"]);
    let (s, ctl) = create_from_entry(&ENTRY.replace(
        "model: Sim,",
        "model: Jepa(\"../models/trained/reach\"), precision: Bf16,",
    ));
    assert_eq!(s, S::Ok, "{}", last_error());
    let precision = crate::controller::controller_of(ctl)
        .map(|e| e.model_precision())
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(precision, zplan_models::Precision::Bf16);
    assert_eq!(destroy(ctl), S::Ok);

    let (path, sim, cem) = (
        reach_path(),
        c("sim"),
        c("Cem(samples: 16, elites: 4, horizon: 4)"),
    );
    let mut out = null_mut();
    let bad_planner = c("Cem(samples: 16, elites: 4, horizon: 4");
    let bad_energy = c("(metric: L3)");
    let bad_mpc = c("(action_block: 0)");
    let bad_model = c("what.ever");
    // SAFETY: valid strings and output pointer.
    unsafe {
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                bad_planner.as_ptr(),
                null(),
                null(),
                null(),
                &mut out,
            ),
            S::Config,
            &["planner_ron"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                bad_energy.as_ptr(),
                null(),
                null(),
                &mut out,
            ),
            S::Config,
            &["energy_ron", "L3"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                null(),
                bad_mpc.as_ptr(),
                null(),
                &mut out,
            ),
            S::Config,
            &["mpc_ron", "action_block"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                bad_model.as_ptr(),
                cem.as_ptr(),
                null(),
                null(),
                null(),
                &mut out,
            ),
            S::Config,
            &["model", "what.ever"],
        );
    }
    assert!(out.is_null());

    // Options.
    let entry = c(ENTRY);
    let base = scenarios_dir();
    let tpu = c("tpu");
    let cases: [(ZplanControllerOptions, &str); 7] = [
        (
            ZplanControllerOptions {
                control_period_ms: 0.0,
                ..options()
            },
            "control_period_ms = 0",
        ),
        (
            ZplanControllerOptions {
                control_period_ms: f64::INFINITY,
                ..options()
            },
            "control_period_ms = inf",
        ),
        (
            ZplanControllerOptions {
                deadline_ms: f64::NAN,
                ..options()
            },
            "deadline_ms = NaN",
        ),
        (
            ZplanControllerOptions {
                lookahead: 5000,
                ..options()
            },
            "lookahead = 5000",
        ),
        (
            ZplanControllerOptions {
                device: tpu.as_ptr(),
                ..options()
            },
            "options.device",
        ),
        (
            ZplanControllerOptions {
                action_block: 100_000,
                ..options()
            },
            "action_block = 100000",
        ),
        (
            ZplanControllerOptions {
                sim_threads: u32::MAX,
                ..options()
            },
            "sim_threads = 4294967295",
        ),
    ];
    for (opts, msg) in cases {
        // SAFETY: valid strings, options and output pointer.
        let s = unsafe {
            zplan_controller_create_from_entry(entry.as_ptr(), base.as_ptr(), &opts, &mut out)
        };
        expect_err(s, S::InvalidArgument, &[msg]);
    }

    // A scenario file with a bad value: file, line, column and field.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.ron");
    std::fs::write(&bad, "Reach(\n  links: 3,\n  control_dt: -1.0,\n)\n").expect("write");
    let bad = c(bad.to_str().expect("UTF-8"));
    let mut env = null_mut();
    // SAFETY: valid string and output pointer.
    let s = unsafe { zplan_env_create(bad.as_ptr(), &mut env) };
    expect_err(s, S::Config, &["bad.ron:3:", "control_dt"]);
    assert!(env.is_null());
}

#[test]
fn strings_that_are_not_utf8_are_refused() {
    let not_utf8 = CString::new(vec![b'(', 0xff, 0xfe, b')']).expect("no NUL");
    let mut ctl = null_mut();
    let mut env = null_mut();
    let (path, sim, cem) = (
        reach_path(),
        c("sim"),
        c("Cem(samples: 16, elites: 4, horizon: 4)"),
    );
    // SAFETY: NUL-terminated strings and valid output pointers.
    unsafe {
        expect_err(
            zplan_controller_create_from_entry(not_utf8.as_ptr(), null(), null(), &mut ctl),
            S::InvalidArgument,
            &["`entry_ron` is not valid UTF-8 (invalid byte at offset 1)"],
        );
        let entry = c(ENTRY);
        expect_err(
            zplan_controller_create_from_entry(entry.as_ptr(), not_utf8.as_ptr(), null(), &mut ctl),
            S::InvalidArgument,
            &["`base_dir`"],
        );
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                not_utf8.as_ptr(),
                null(),
                null(),
                &mut ctl,
            ),
            S::InvalidArgument,
            &["`energy_ron`"],
        );
        let opts = ZplanControllerOptions {
            device: not_utf8.as_ptr(),
            ..options()
        };
        expect_err(
            zplan_controller_create(
                path.as_ptr(),
                sim.as_ptr(),
                cem.as_ptr(),
                null(),
                null(),
                &opts,
                &mut ctl,
            ),
            S::InvalidArgument,
            &["`options.device`"],
        );
        expect_err(
            zplan_env_create(not_utf8.as_ptr(), &mut env),
            S::InvalidArgument,
            &["`scenario_path`"],
        );
    }
    assert!(ctl.is_null() && env.is_null());
}

#[test]
fn last_error_is_per_thread_and_copies_with_truncation() {
    // SAFETY: any handle value is accepted.
    let s = unsafe { zplan_env_reset(null_mut(), 0) };
    assert_eq!(s, S::NullPointer);
    let msg = last_error();
    assert_eq!(msg, "zplan_env_reset: `env` is NULL");
    // Another thread's failures do not touch this thread's message.
    std::thread::spawn(|| {
        assert_eq!(last_error(), "");
        // SAFETY: any handle value is accepted.
        let s = unsafe { zplan_controller_destroy(null_mut()) };
        assert_eq!(s, S::NullPointer);
        assert!(last_error().starts_with("zplan_controller_destroy"));
    })
    .join()
    .expect("thread");
    assert_eq!(last_error(), msg);
    // A successful call leaves it.
    let _env = env();
    assert_eq!(last_error(), msg);
    assert_eq!(destroy_env(_env), S::Ok);

    let mut buf = [0x55 as c_char; 64];
    let mut needed = 0usize;
    // SAFETY: `buf` has the lengths passed; `needed` is writable.
    unsafe {
        assert_eq!(
            zplan_last_error_copy(buf.as_mut_ptr(), buf.len(), &mut needed),
            S::Ok
        );
        assert_eq!(needed, msg.len() + 1);
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str(), Ok(msg.as_str()));
        assert_eq!(
            zplan_last_error_copy(buf.as_mut_ptr(), 5, &mut needed),
            S::WrongSize
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str(), Ok("zpla"));
        assert_eq!(
            zplan_last_error_copy(null_mut(), 0, &mut needed),
            S::WrongSize
        );
        assert_eq!(needed, msg.len() + 1);
    }
    // Copying never replaces the message it copies.
    assert_eq!(last_error(), msg);
}

#[test]
fn panics_become_a_status_and_a_message() {
    let s = status::ffi("zplan_test_function", || panic!("boom"));
    expect_err(
        s,
        S::Panic,
        &["zplan_test_function: internal error", "panic: boom"],
    );
    let s = status::ffi("zplan_test_function", || Ok(S::NoActionYet));
    assert_eq!(s, S::NoActionYet);
}

#[test]
fn status_names() {
    let name = |s: i32| {
        // SAFETY: static NUL-terminated strings.
        unsafe { CStr::from_ptr(zplan_status_name(s)) }
            .to_str()
            .map(str::to_string)
    };
    assert_eq!(name(S::Ok as i32).as_deref(), Ok("ZPLAN_STATUS_OK"));
    assert_eq!(
        name(S::InvalidHandle as i32).as_deref(),
        Ok("ZPLAN_STATUS_INVALID_HANDLE")
    );
    assert_eq!(
        name(S::Internal as i32).as_deref(),
        Ok("ZPLAN_STATUS_INTERNAL")
    );
    assert_eq!(name(-1).as_deref(), Ok("ZPLAN_STATUS_UNKNOWN"));
    assert_eq!(name(14).as_deref(), Ok("ZPLAN_STATUS_UNKNOWN"));
    for raw in 0..14 {
        let s = status::ZplanStatus::from_raw(raw).expect("every value up to 13 is a status");
        assert_eq!(s as i32, raw);
    }
}

#[test]
fn environment_describes_its_fields_and_resets_deterministically() {
    let env = env();
    let mut info = std::mem::MaybeUninit::<ZplanEnvInfo>::uninit();
    // SAFETY: valid handle and output pointer; read after OK.
    let info = unsafe {
        assert_eq!(zplan_env_info(env, info.as_mut_ptr()), S::Ok);
        info.assume_init()
    };
    assert_eq!(
        (
            info.num_fields,
            info.action_dim,
            info.state_dim,
            info.max_steps
        ),
        (1, 3, 11, 100)
    );
    assert!((info.control_dt - 0.1).abs() < 1e-6);
    let mut f = std::mem::MaybeUninit::<ZplanFieldInfo>::uninit();
    // SAFETY: valid handle and output pointer.
    expect_err(
        unsafe { zplan_env_field(env, 1, f.as_mut_ptr()) },
        S::InvalidArgument,
        &["field index 1 is out of range"],
    );
    // SAFETY: valid handle.
    assert_eq!(unsafe { zplan_env_reset(env, 11) }, S::Ok);
    let a = observe(env, false).values();
    // SAFETY: valid handle and action.
    unsafe {
        assert_eq!(zplan_env_step(env, [1.0f32, -1.0, 0.5].as_ptr(), 3), S::Ok);
    }
    assert_ne!(observe(env, false).values(), a);
    // SAFETY: valid handle.
    assert_eq!(unsafe { zplan_env_reset(env, 11) }, S::Ok);
    assert_eq!(observe(env, false).values(), a, "same seed, same start");
    // A subset of fields (here: only the true state) is fine for observe.
    let mut ts = [Buf::zeros(ZPLAN_TRUE_STATE_FIELD, ZplanDtype::F32, &[11])];
    let fs = fields(&mut ts);
    // SAFETY: `fs` points into `ts`.
    assert_eq!(unsafe { zplan_env_observe(env, fs.as_ptr(), 1) }, S::Ok);
    assert_eq!(ts[0].values(), a);
    assert_eq!(destroy_env(env), S::Ok);
}

/// The text of each element of `entries: [...]` in a suite file, as written (comments and
/// all): balanced parentheses, skipping `//` comments and strings.
fn entry_texts(suite: &str) -> Vec<String> {
    let start = suite.find("entries:").expect("an `entries:` list");
    let bytes = suite.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut begin, mut i) = (0usize, 0usize, start);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1 + usize::from(bytes[i] == b'\\');
                }
            }
            b'(' => {
                if depth == 0 {
                    begin = i;
                }
                depth += 1;
            }
            b')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(suite[begin..=i].to_string());
                }
            }
            b']' if depth == 0 => break,
            _ => {}
        }
        i += 1;
    }
    out
}

#[test]
fn every_entry_of_the_default_suite_creates_a_controller() {
    let suite = std::fs::read_to_string(repo().join("scenarios/default.ron")).expect("read");
    let entries = entry_texts(&suite);
    // As many entries as the suite parser finds: none skipped by the text splitter.
    let parsed = zplan::suite::Suite::parse(&suite, "scenarios/default.ron").expect("parse");
    assert_eq!(entries.len(), parsed.entries.len(), "{entries:#?}");
    assert!(entries.len() >= 10, "{entries:#?}");
    for (i, text) in entries.iter().enumerate() {
        // The struct name may be written too.
        let text = if i == 0 {
            format!("Entry{text}")
        } else {
            text.clone()
        };
        let (s, ctl) = create_from_entry(&text);
        assert_eq!(s, S::Ok, "{text}\n{}", last_error());
        assert_eq!(destroy(ctl), S::Ok);
    }
}
