//! Every reset is valid (nothing interpenetrates, the goal is free and reachable), success
//! predicates are right on constructed states, and renders show the scene.

mod common;

use proptest::prelude::*;
use zplan_sim::rapier3d::parry::query;
use zplan_sim::rapier3d::prelude::*;
use zplan_sim::{
    Env, Push, PushConfig, Reach, ReachConfig, ScenarioConfig, TwoRooms, TwoRoomsConfig,
};

fn two_rooms_configs() -> Vec<TwoRoomsConfig> {
    common::shipped()
        .into_iter()
        .filter_map(|(_, c)| match c {
            ScenarioConfig::TwoRooms(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn push_configs() -> Vec<PushConfig> {
    common::shipped()
        .into_iter()
        .filter_map(|(_, c)| match c {
            ScenarioConfig::Push(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Smallest distance between colliders of different bodies, by Rapier's own geometry, ignoring
/// pairs that involve `skip` (a body resting on it, like the block on the ground).
fn min_gap(world: &PhysicsWorld, skip: Option<RigidBodyHandle>) -> f32 {
    let colliders: Vec<_> = world.colliders.iter().collect();
    let mut min = f32::INFINITY;
    for (i, (_, a)) in colliders.iter().enumerate() {
        for (_, b) in &colliders[i + 1..] {
            if a.parent() == b.parent()
                || (skip.is_some() && (a.parent() == skip || b.parent() == skip))
            {
                continue;
            }
            let d = query::distance(a.position(), a.shape(), b.position(), b.shape()).unwrap();
            min = min.min(d.distance);
        }
    }
    min
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn two_rooms_resets_are_valid(seed in any::<u64>()) {
        for config in two_rooms_configs() {
            let r = config.ball_radius;
            let mut env = TwoRooms::new(config).unwrap();
            env.reset(seed).unwrap();
            let o = env.state();
            let (p, g) = ([o[0], o[1]], env.goal());
            prop_assert!(env.wall_clearance(p) >= r, "start {p:?} in a wall");
            prop_assert!(env.wall_clearance(g) >= r, "goal {g:?} in a wall");
            prop_assert!(env.connected(p, g), "goal {g:?} unreachable from {p:?}");
            prop_assert!(min_gap(env.world(), None) >= 0.0);
            prop_assert!(!env.success());
            // Velocities (when observed) start at rest.
            prop_assert!(o[2..].iter().all(|v| *v == 0.0), "{o:?}");
        }
    }

    #[test]
    fn reach_resets_are_valid(seed in any::<u64>()) {
        let mut env = Reach::new(ReachConfig::default()).unwrap();
        env.reset(seed).unwrap();
        let reach: f32 = env.config().lengths().iter().sum();
        let t = env.target();
        prop_assert!(t[0].hypot(t[1]) <= reach + 1e-5);
        let fk = zplan_sim::reach::forward_kinematics(&env.config().lengths(), env.goal_angles());
        prop_assert_eq!(fk, t);
        prop_assert!(env.distance_to_goal() >= env.config().min_goal_distance - 1e-5);
        let o = env.state();
        for k in 0..3 {
            prop_assert_eq!(o[3 * k + 2], 0.0);
            prop_assert!((o[3 * k].hypot(o[3 * k + 1]) - 1.0).abs() < 1e-5);
        }
        // Reachable: the goal configuration itself solves the task.
        let goal = env.goal_state();
        env.set_state(&goal).unwrap();
        prop_assert!(env.success());
    }

    #[test]
    fn push_resets_are_valid(seed in any::<u64>()) {
        for config in push_configs() {
            let mut env = Push::new(config).unwrap();
            env.reset(seed).unwrap();
            let o = env.state();
            let pose = env.block_pose();
            let goal = env.goal_pose();
            prop_assert!(env.pusher_block_gap([o[0], o[1]], pose) > 0.0);
            prop_assert!(env.pusher_block_gap(env.pusher_start(), goal) > 0.0);
            prop_assert!(env.pusher_block_gap(env.pusher_goal(), goal) > 0.0);
            let pg = env.pusher_goal();
            prop_assert!(env.pusher_block_gap(pg, goal) < 0.01, "goal pusher not touching the goal block");
            prop_assert!(env.inside_arena(pose) && env.inside_arena(goal));
            let (_, block) = env.handles();
            // The pusher clears the block, and the block only touches the ground.
            prop_assert!(min_gap(env.world(), None).is_finite());
            let ground = env.world().colliders.iter().find(|(_, c)| c.parent() != Some(block) && c.parent() != Some(env.handles().0)).and_then(|(_, c)| c.parent());
            prop_assert!(min_gap(env.world(), ground) > 0.0);
            prop_assert!(!env.success());
            let d = (goal[0] - pose[0]).hypot(goal[1] - pose[1]);
            prop_assert!(d >= env.config().goal_distance.0 - 1e-4 && d <= env.config().goal_distance.1 + 1e-4);
        }
    }
}

#[test]
fn success_predicates_on_constructed_states() {
    for (name, config) in common::shipped() {
        let mut env = config.build().unwrap();
        env.reset(21).unwrap();
        let goal = env.goal_state();
        env.set_state(&goal).unwrap();
        assert!(
            env.success(),
            "{name}: goal state is not a success ({})",
            env.distance_to_goal()
        );
        assert!(
            env.distance_to_goal() < 1e-4,
            "{name}: {}",
            env.distance_to_goal()
        );
        // Move the relevant position by 0.2 m: far outside every tolerance.
        let mut far = goal.clone();
        match config {
            ScenarioConfig::TwoRooms(_) => far[0] -= 0.2,
            ScenarioConfig::Reach(_) => {
                // Rotate the first joint by 0.5 rad: the end effector moves by ~0.4 m or more.
                let (c, s) = (far[0], far[1]);
                let q = s.atan2(c) + 0.5;
                far[0] = q.cos();
                far[1] = q.sin();
            }
            ScenarioConfig::Push(_) => {
                let names = &env.spec().state_names;
                let i = names.iter().position(|n| n == "block_x").unwrap();
                far[i] += 0.2
            }
        }
        env.set_state(&far).unwrap();
        assert!(!env.success(), "{name}: far state counted as a success");
        assert!(env.distance_to_goal() > 0.1, "{name}");
    }
}

#[test]
fn renders_are_sized_deterministic_and_show_the_goal() {
    for (name, config) in common::shipped() {
        let mut env = config.build().unwrap();
        env.reset(1).unwrap();
        let a = env.render(96, 64);
        assert_eq!(
            (a.width, a.height, a.rgb.len()),
            (96, 64, 96 * 64 * 3),
            "{name}"
        );
        assert_eq!(a, env.boxed_clone().render(96, 64), "{name}");
        let colours: std::collections::HashSet<[u8; 3]> =
            a.rgb.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        assert!(colours.len() >= 4, "{name}: only {} colours", colours.len());
        // Moving the robot changes the picture.
        let dim = env.spec().action_dim();
        for _ in 0..5 {
            env.step(&vec![1.0; dim]).unwrap();
        }
        assert_ne!(a, env.render(96, 64), "{name}");
        assert_eq!(env.render(0, 0).rgb.len(), 0);
    }
}
