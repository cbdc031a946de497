//! two_rooms with `observe_velocity: false`: the observation is the ball position.

use approx::assert_relative_eq;
use zplan_sim::{Env, TwoRooms, TwoRoomsConfig};

#[test]
fn position_only_observation() {
    let cfg = TwoRoomsConfig {
        observe_velocity: false,
        ..TwoRoomsConfig::default()
    };
    let mut env = TwoRooms::new(cfg).unwrap();
    assert_eq!(env.spec().state_names, ["x", "y"]);
    env.reset(7).unwrap();
    assert_eq!(env.state().len(), 2);
    assert_eq!(env.goal_state().len(), 2);
    // set_state takes the 2-entry observation and puts the ball there.
    env.set_state(&[1.0, 1.0]).unwrap();
    let o = env.state();
    assert_relative_eq!(o[0], 1.0, epsilon = 1e-5);
    assert_relative_eq!(o[1], 1.0, epsilon = 1e-5);
    // A 4-entry state is the wrong size for this configuration.
    assert!(env.set_state(&[1.0, 1.0, 0.0, 0.0]).is_err());
    // Moving right at full speed for one control step (0.1 s at 1 m/s) moves 0.1 m.
    env.step(&[1.0, 0.0]).unwrap();
    assert_relative_eq!(env.state()[0], 1.1, epsilon = 1e-3);
    // Success is judged on the position: put the ball on the goal.
    let g = env.goal_state();
    env.set_state(&g).unwrap();
    assert!(env.success());
}
