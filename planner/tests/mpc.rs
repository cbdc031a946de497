//! Receding-horizon control, action blocks and the threaded controller on a linear model.

mod common;

use common::{latent, LinearModel};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zplan_models::WorldModel;
use zplan_planner::*;

fn energy() -> EnergyConfig {
    EnergyConfig {
        metric: Metric::SquaredL2,
        reduction: Reduction::Sum,
        ..EnergyConfig::default()
    }
}

fn cem(horizon: usize) -> PlannerConfig {
    PlannerConfig::Cem(CemConfig {
        samples: 100,
        elites: 10,
        iterations: 6,
        horizon,
        ..CemConfig::default()
    })
}

fn bounds() -> ActionBounds {
    ActionBounds::symmetric(2, 1.0).unwrap()
}

const GOAL: [f32; 2] = [0.5, -0.3];

fn mpc(config: MpcConfig, horizon: usize) -> (Arc<LinearModel>, Mpc) {
    let model = Arc::new(LinearModel::reference());
    let planner = cem(horizon).build(bounds(), energy(), 1).unwrap();
    let mpc = Mpc::new(model.clone(), planner, config).unwrap();
    (model, mpc)
}

#[test]
fn closed_loop_reaches_the_goal() {
    let model = Arc::new(LinearModel::reference());
    let planner = PlannerConfig::Cem(CemConfig {
        horizon: 5,
        ..CemConfig::default()
    })
    .build(bounds(), energy(), 1)
    .unwrap();
    let mut mpc = Mpc::new(model.clone(), planner, MpcConfig::default()).unwrap();
    mpc.reset_episode(&zplan_models::Observation::state((GOAL).to_vec()), 3)
        .unwrap();
    let mut z = vec![0.2f32, 0.4];
    for _ in 0..8 {
        let a = mpc
            .act(&zplan_models::Observation::state((z).to_vec()))
            .unwrap();
        assert!(bounds().contains(&a));
        z = model.step(&z, &a);
    }
    assert!(
        (z[0] - GOAL[0]).abs() < 0.03 && (z[1] - GOAL[1]).abs() < 0.03,
        "{z:?}"
    );
    assert_eq!(mpc.latencies().len(), 8);
    assert!(duration_percentile(mpc.latencies(), 50.0).unwrap() > Duration::ZERO);
}

#[test]
fn replan_every_and_action_blocks() {
    let cfg = MpcConfig {
        replan_every: 4,
        action_block: 2,
        ..MpcConfig::default()
    };
    let (model, mut mpc) = mpc(cfg.clone(), 3);
    mpc.reset_episode(&zplan_models::Observation::state((GOAL).to_vec()), 3)
        .unwrap();
    let mut z = vec![0.2f32, 0.4];
    let mut calls = 0;
    for _ in 0..3 {
        let step = mpc
            .next_actions(&zplan_models::Observation::state((z).to_vec()))
            .unwrap();
        calls += 1;
        assert_eq!(step.actions.len(), 4);
        assert_eq!(step.output.plan.horizon(), 3);
        assert_eq!(step.actions[0], step.actions[1], "held for a block");
        assert_eq!(step.actions[2], step.actions[3]);
        for a in &step.actions {
            z = model.step(&z, a);
        }
    }
    assert_eq!(mpc.latencies().len(), calls);
    // act() replans every 4 steps.
    mpc.reset_episode(&zplan_models::Observation::state((GOAL).to_vec()), 3)
        .unwrap();
    for _ in 0..8 {
        mpc.act(&zplan_models::Observation::state((z).to_vec()))
            .unwrap();
    }
    assert_eq!(mpc.latencies().len(), 2);
    // replan_every beyond the plan is rejected.
    let planner = cem(1).build(bounds(), energy(), 1).unwrap();
    let err = Mpc::new(model, planner, cfg).err().unwrap();
    assert!(err.to_string().starts_with("mpc.replan_every"), "{err}");
}

#[test]
fn action_blocks_view_matches_repeated_actions() {
    let inner: Arc<dyn WorldModel> = Arc::new(LinearModel::reference());
    let blocks = ActionBlocks::new(inner.clone(), 3);
    let z0 = latent(&[0.2, 0.4]).repeat([2, 1]);
    let acts =
        tch::Tensor::from_slice(&[0.1f32, 0.2, -0.3, 0.4, 0.5, 0.6, 0.7, -0.8]).view([2, 2, 2]);
    let got = blocks.rollout(&z0, &acts).unwrap();
    assert_eq!(got.size(), vec![2, 2, 2]);
    let full = inner
        .rollout(&z0, &acts.repeat_interleave_self_int(3, 1, None))
        .unwrap();
    let want = full.index_select(1, &tch::Tensor::from_slice(&[2i64, 5]));
    assert!(got.allclose(&want, 1e-6, 1e-6, false));
}

#[test]
fn warm_start_is_the_shifted_previous_plan() {
    let cfg = MpcConfig {
        replan_every: 2,
        ..MpcConfig::default()
    };
    let (_, mut mpc) = mpc(cfg, 5);
    mpc.reset_episode(&zplan_models::Observation::state((GOAL).to_vec()), 3)
        .unwrap();
    let first = mpc
        .next_actions(&zplan_models::Observation::state(([0.2, 0.4]).to_vec()))
        .unwrap();
    // Rebuild with zero iterations but keep the previous plan: the output is the warm start.
    let prev = first.output.plan.clone();
    let planner = cem(5).build(bounds(), energy(), 1).unwrap();
    let mut p = planner;
    let out = p
        .plan(
            &LinearModel::reference(),
            &latent(&[0.3, 0.1]),
            &latent(&GOAL),
            Some(&prev.shifted(2)),
            &Budget::iterations(0),
        )
        .unwrap();
    let want = prev.shifted(2);
    for (a, b) in out.plan.actions().iter().zip(want.actions()) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn episodes_do_not_depend_on_earlier_episodes() {
    let (model, mut mpc) = mpc(MpcConfig::default(), 4);
    let run = |mpc: &mut Mpc, seed| {
        mpc.reset_episode(&zplan_models::Observation::state((GOAL).to_vec()), seed)
            .unwrap();
        let mut z = vec![0.0f32, 0.0];
        let mut bits = Vec::new();
        for _ in 0..4 {
            let a = mpc
                .act(&zplan_models::Observation::state((z).to_vec()))
                .unwrap();
            bits.extend(a.iter().map(|x| x.to_bits()));
            z = model.step(&z, &a);
        }
        bits
    };
    let a = run(&mut mpc, 10);
    let _ = run(&mut mpc, 11);
    let b = run(&mut mpc, 10);
    assert_eq!(a, b);
}

#[test]
fn observation_shape_is_checked() {
    let (_, mut mpc) = mpc(MpcConfig::default(), 4);
    assert!(mpc
        .reset_episode(
            &zplan_models::Observation::state(([0.0, 0.0, 0.0]).to_vec()),
            0
        )
        .is_err());
    assert!(
        mpc.next_actions(&zplan_models::Observation::state(([0.0, 0.0]).to_vec()))
            .is_err(),
        "no goal yet"
    );
}

#[test]
fn controller_tracks_the_goal_in_real_time_and_stops_cleanly() {
    common::single_threaded_torch();
    let model = Arc::new(LinearModel::reference());
    // 20 Hz with a 40 ms plan deadline (the plan itself takes a few ms): slack for a loaded
    // machine.
    let dt = Duration::from_millis(50);
    let options = ControllerOptions {
        control_dt: dt,
        plan_deadline: Duration::from_millis(40),
        ..ControllerOptions::default()
    };
    // A long horizon keeps a valid schedule when a loaded machine stalls the planner.
    let planner = PlannerConfig::Cem(CemConfig {
        horizon: 10,
        ..CemConfig::default()
    });
    let ctl = Controller::spawn(
        model.clone(),
        &planner,
        energy(),
        bounds(),
        &zplan_models::Observation::state((GOAL).to_vec()),
        7,
        options,
    )
    .unwrap();
    assert!(
        ctl.latest_action().is_none(),
        "no plan before the first observation"
    );
    let mut z = vec![0.2f32, 0.4];
    let mut acted = 0;
    let mut late_error = 0.0;
    let ticks = 40u32;
    let start = Instant::now();
    for k in 0..ticks {
        ctl.push_observation(&zplan_models::Observation::state((z).to_vec()));
        if let Some(a) = ctl.latest_action() {
            assert!(bounds().contains(&a));
            z = model.step(&z, &a);
            acted += 1;
        }
        if k >= ticks - 20 {
            late_error += ((z[0] - GOAL[0]).abs() + (z[1] - GOAL[1]).abs()) / 20.0;
        }
        let next = start + dt * (k + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let stats = ctl.stats();
    let report = ctl.stop().unwrap();
    println!(
        "{:?}, p50 {:?}, late mean L1 error {late_error}",
        report.stats,
        report.latency_percentile(50.0)
    );
    assert!(acted > 0 && report.stats.plans >= 3, "{:?}", report.stats);
    // Tracking quality is a real-time property: it holds when plans meet their deadlines.
    // A machine so loaded that they do not (CPU pressure from parallel builds stalls threads
    // for hundreds of milliseconds) says nothing about the controller.
    if report.stats.deadline_misses * 4 <= report.stats.plans {
        assert!(acted > 30, "acted {acted} times");
        // Starting 0.9 (L1) away.
        assert!(
            late_error < 0.2,
            "mean L1 error over the last 20 steps {late_error}"
        );
    } else {
        eprintln!(
            "overloaded machine ({:?}): tracking check skipped",
            report.stats
        );
    }
    assert_eq!(report.stats.observations, ticks as u64);
    assert_eq!(report.latencies.len() as u64, report.stats.plans);
    assert!(report.last_error.is_none());
    assert!(stats.plans <= report.stats.plans);
    assert!(report.latency_percentile(50.0).is_some());
}

#[test]
fn controller_calls_never_wait_for_the_planner() {
    // Every rollout sleeps 150 ms: pushing and reading must not wait for a plan.
    let mut slow = LinearModel::reference();
    slow.delay = Some(Duration::from_millis(150));
    let options = ControllerOptions {
        plan_deadline: Duration::from_millis(1),
        iterations: Some(1),
        ..ControllerOptions::default()
    };
    let ctl = Controller::spawn(
        Arc::new(slow),
        &cem(3),
        energy(),
        bounds(),
        &zplan_models::Observation::state((GOAL).to_vec()),
        1,
        options,
    )
    .unwrap();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        ctl.push_observation(&zplan_models::Observation::state(([0.0, 0.0]).to_vec()));
        let _ = ctl.latest_action();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = ctl.stop().unwrap();
    assert!(worst < Duration::from_millis(50), "a call took {worst:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.stats.dropped_observations > 0, "{:?}", report.stats);
    assert!(report.stats.deadline_misses > 0);
    assert!(report.stats.plans >= 1);
}

#[test]
fn controller_switches_goals_and_reports_errors() {
    let model = Arc::new(LinearModel::reference());
    let ctl = Controller::spawn(
        model,
        &cem(3),
        energy(),
        bounds(),
        &zplan_models::Observation::state((GOAL).to_vec()),
        7,
        ControllerOptions::default(),
    )
    .unwrap();
    ctl.set_goal(
        &zplan_models::Observation::state(([1.0, 2.0, 3.0]).to_vec()),
        1,
    ); // wrong size: an error on the planner thread
    ctl.set_goal(&zplan_models::Observation::state(([-0.5, 0.5]).to_vec()), 1);
    ctl.push_observation(&zplan_models::Observation::state(([0.0, 0.0]).to_vec()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctl.latest_action().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let a = ctl.latest_action().expect("a plan within 5 s");
    assert!(a[0] < 0.0 && a[1] > 0.0, "heads for the new goal: {a:?}");
    let report = ctl.stop().unwrap();
    assert_eq!(report.stats.errors, 1);
    assert!(report
        .last_error
        .unwrap()
        .contains("expected f32 [2] (2 values), got f32 with 3 values"));
    // Spawning with a bad goal fails up front.
    let model = Arc::new(LinearModel::reference());
    assert!(Controller::spawn(
        model,
        &cem(3),
        energy(),
        bounds(),
        &zplan_models::Observation::state(([0.0]).to_vec()),
        0,
        ControllerOptions::default()
    )
    .is_err());
}

#[test]
fn controller_deadline_changes_at_runtime_and_keeps_the_plan() {
    // Every rollout sleeps 20 ms: a plan takes at least that long.
    let mut slow = LinearModel::reference();
    slow.delay = Some(Duration::from_millis(20));
    let options = ControllerOptions {
        plan_deadline: Duration::from_secs(10),
        iterations: Some(1),
        ..ControllerOptions::default()
    };
    let ctl = Controller::spawn(
        Arc::new(slow),
        &cem(3),
        energy(),
        bounds(),
        &zplan_models::Observation::state((GOAL).to_vec()),
        1,
        options,
    )
    .unwrap();
    let obs = zplan_models::Observation::state(([0.0, 0.0]).to_vec());
    let wait_for_plans = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctl.stats().plans < n && Instant::now() < deadline {
            ctl.push_observation(&obs);
            std::thread::sleep(Duration::from_millis(5));
        }
        ctl.stats()
    };
    let before = wait_for_plans(2);
    assert!(before.plans >= 2, "{before:?}");
    assert_eq!(before.deadline_misses, 0, "a 10 s deadline: {before:?}");
    assert!(ctl.latest_action().is_some());
    ctl.set_plan_deadline(Duration::from_micros(1));
    // The plan in force is kept (a deadline is not a new goal).
    assert!(ctl.latest_action().is_some());
    let after = wait_for_plans(before.plans + 3);
    assert!(after.plans >= before.plans + 3, "{after:?}");
    assert!(
        after.deadline_misses >= 2,
        "plans of >= 20 ms miss a 1 µs deadline: {after:?}"
    );
    let report = ctl.stop().unwrap();
    assert_eq!(report.stats.errors, 0);
    assert!(report.last_error.is_none());
}
