//! Same seed and same actions give bit-identical trajectories; snapshots, clones and
//! `set_state` from a common base continue identically; bad actions change nothing.

mod common;

use common::{actions, bits, shipped};
use zplan_sim::{Env, SimError};

/// Observation bits after each step of `acts`, starting from `reset(seed)`.
fn trajectory(env: &mut dyn Env, seed: u64, acts: &[Vec<f32>]) -> Vec<Vec<u32>> {
    env.reset(seed).unwrap();
    let mut out = vec![bits(&env.state())];
    for a in acts {
        env.step(a).unwrap();
        out.push(bits(&env.state()));
    }
    out
}

#[test]
fn same_seed_same_actions_bit_identical() {
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let acts = actions(7, 60, dim);
        let mut a = config.build().unwrap();
        let mut b = config.build().unwrap();
        // `b` has a history: resetting must erase it.
        b.reset(99).unwrap();
        for x in actions(3, 20, dim) {
            b.step(&x).unwrap();
        }
        let ta = trajectory(a.as_mut(), 5, &acts);
        let tb = trajectory(b.as_mut(), 5, &acts);
        assert_eq!(ta, tb, "{name}: trajectories differ");
        assert_eq!(bits(&a.goal_state()), bits(&b.goal_state()), "{name}");
        // Different seeds give different episodes.
        let tc = trajectory(b.as_mut(), 6, &acts);
        assert_ne!(ta[0], tc[0], "{name}: seeds 5 and 6 start identically");
    }
}

#[test]
fn snapshot_restore_continues_bit_identically() {
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let acts = actions(11, 80, dim);
        let mut env = config.build().unwrap();
        env.reset(1).unwrap();
        for a in &acts[..30] {
            env.step(a).unwrap();
        }
        let snap = env.snapshot();
        let (steps, clipped) = (env.steps(), env.clipped_total());
        let mut want = Vec::new();
        for a in &acts[30..] {
            env.step(a).unwrap();
            want.push(bits(&env.state()));
        }
        // Restore into the same environment, after it has moved on.
        env.restore(&snap).unwrap();
        assert_eq!(
            (env.steps(), env.clipped_total()),
            (steps, clipped),
            "{name}"
        );
        let again: Vec<_> = acts[30..]
            .iter()
            .map(|a| {
                env.step(a).unwrap();
                bits(&env.state())
            })
            .collect();
        assert_eq!(want, again, "{name}: restore into the same env diverged");
        // Restore into another environment built from the same config, with another episode.
        let mut other = config.build().unwrap();
        other.reset(77).unwrap();
        other.step(&vec![0.3; dim]).unwrap();
        other.restore(&snap).unwrap();
        let third: Vec<_> = acts[30..]
            .iter()
            .map(|a| {
                other.step(a).unwrap();
                bits(&other.state())
            })
            .collect();
        assert_eq!(want, third, "{name}: restore into a fresh env diverged");
        assert_eq!(bits(&other.goal_state()), bits(&env.goal_state()), "{name}");
    }
}

#[test]
fn boxed_clone_continues_bit_identically() {
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let acts = actions(5, 40, dim);
        let mut env = config.build().unwrap();
        env.reset(2).unwrap();
        for a in &acts[..10] {
            env.step(a).unwrap();
        }
        let mut copy = env.boxed_clone();
        assert_eq!(copy.steps(), env.steps());
        for a in &acts[10..] {
            env.step(a).unwrap();
            copy.step(a).unwrap();
            assert_eq!(bits(&env.state()), bits(&copy.state()), "{name}");
        }
        assert_eq!(env.success(), copy.success());
    }
}

#[test]
fn set_state_from_a_common_base_is_a_function_of_the_state() {
    // What the simulator-backed world model does: restore a base snapshot, set the state,
    // roll out. The result must not depend on what the environment did before.
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let acts = actions(13, 15, dim);
        let mut env = config.build().unwrap();
        env.reset(0).unwrap();
        let base = env.snapshot();
        for a in &acts {
            env.step(a).unwrap();
        }
        let state = env.state();
        let rollout = |env: &mut dyn Env| -> Vec<Vec<u32>> {
            env.restore(&base).unwrap();
            env.set_state(&state).unwrap();
            acts.iter()
                .map(|a| {
                    env.step(a).unwrap();
                    bits(&env.state())
                })
                .collect()
        };
        let first = rollout(env.as_mut());
        for a in actions(17, 25, dim) {
            env.step(&a).unwrap();
        }
        let mut copy = env.boxed_clone();
        assert_eq!(first, rollout(env.as_mut()), "{name}");
        assert_eq!(first, rollout(copy.as_mut()), "{name}: clone");
    }
}

#[test]
fn set_state_reproduces_the_observation() {
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let mut env = config.build().unwrap();
        env.reset(4).unwrap();
        for a in actions(19, 20, dim) {
            env.step(&a).unwrap();
        }
        let want = env.state();
        let mut other = config.build().unwrap();
        other.reset(8).unwrap();
        other.set_state(&want).unwrap();
        let got = other.state();
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            approx::assert_abs_diff_eq!(w, g, epsilon = 1e-5);
            let _ = i;
        }
        let _ = name;
    }
}

#[test]
fn bad_actions_leave_the_state_unchanged() {
    for (name, config) in shipped() {
        let dim = config.spec().action_dim();
        let mut env = config.build().unwrap();
        env.reset(3).unwrap();
        env.step(&vec![0.5; dim]).unwrap();
        let before = bits(&env.state());
        let (steps, clipped) = (env.steps(), env.clipped_total());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut a = vec![0.1; dim];
            a[dim - 1] = bad;
            let e = env.step(&a).unwrap_err();
            assert!(
                matches!(e, SimError::NonFiniteAction { index, .. } if index == dim - 1),
                "{name}: {e}"
            );
        }
        assert!(
            matches!(
                env.step(&vec![0.0; dim + 1]),
                Err(SimError::Dimension { .. })
            ),
            "{name}"
        );
        assert_eq!(bits(&env.state()), before, "{name}");
        assert_eq!(
            (env.steps(), env.clipped_total()),
            (steps, clipped),
            "{name}"
        );
        // Out-of-bounds actions are clipped and counted, and act like the bound.
        let mut twin = env.boxed_clone();
        let info = env.step(&vec![5.0; dim]).unwrap();
        assert_eq!(info.clipped as usize, dim, "{name}");
        assert_eq!(env.clipped_total(), clipped + dim as u64, "{name}");
        twin.step(&vec![1.0; dim]).unwrap();
        assert_eq!(bits(&env.state()), bits(&twin.state()), "{name}");
    }
}

#[test]
fn restore_rejects_foreign_snapshots() {
    let configs = shipped();
    let mut two_rooms = configs[0].1.build().unwrap();
    let mut maze = configs[1].1.build().unwrap();
    let reach = configs[2].1.build().unwrap();
    assert!(matches!(
        two_rooms.restore(&reach.snapshot()),
        Err(SimError::SnapshotMismatch(_))
    ));
    assert!(matches!(
        two_rooms.restore(&maze.snapshot()),
        Err(SimError::SnapshotMismatch(_))
    ));
    maze.reset(0).unwrap();
    assert!(maze.restore(&maze.snapshot()).is_ok());
}

#[test]
fn set_state_rejects_bad_states() {
    for (name, config) in shipped() {
        let mut env = config.build().unwrap();
        env.reset(0).unwrap();
        let mut obs = env.state();
        obs[0] = f32::NAN;
        assert!(
            matches!(
                env.set_state(&obs),
                Err(SimError::InvalidState { index: 0, .. })
            ),
            "{name}"
        );
        assert!(
            matches!(env.set_state(&obs[1..]), Err(SimError::Dimension { .. })),
            "{name}"
        );
    }
}
