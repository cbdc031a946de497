//! Camera observations: no goal leakage, goal images, determinism, moving doors, frame history.

mod common;

use zplan_sim::ScenarioConfig;

fn load(name: &str) -> ScenarioConfig {
    ScenarioConfig::load(&common::scenarios_dir().join(name)).unwrap()
}

fn image(obs: &zplan_sim::Observation) -> Vec<u8> {
    obs.u8("image").expect("an image field").to_vec()
}

const PIXEL_FILES: [&str; 4] = [
    "two_rooms_pixels.ron",
    "reach_pixels.ron",
    "push_pixels.ron",
    "two_rooms_doors.ron",
];

#[test]
fn pixel_scenarios_observe_64px_rgb_and_the_spec_says_so() {
    for name in PIXEL_FILES {
        let config = load(name);
        let spec = config.spec();
        let f = spec.observation.field("image").unwrap();
        assert_eq!(f.shape, [3, 64, 64], "{name}");
        assert_eq!(f.dtype, zplan_sim::Dtype::U8, "{name}");
        let mut env = config.build().unwrap();
        env.reset(1).unwrap();
        let obs = env.observe();
        spec.observation.check(&obs).unwrap();
        spec.observation.check(&env.goal_observation()).unwrap();
        // Anti-aliased: some pixels are neither background nor a pure shape colour.
        let img = image(&obs);
        let distinct: std::collections::BTreeSet<[u8; 3]> = (0..64 * 64)
            .map(|k| [img[k], img[4096 + k], img[8192 + k]])
            .collect();
        assert!(distinct.len() > 4, "{name}: {} colours", distinct.len());
    }
    // Proprio where the robot has one.
    assert!(load("reach_pixels.ron")
        .spec()
        .observation
        .field("proprio")
        .is_some());
    assert!(load("push_pixels.ron")
        .spec()
        .observation
        .field("proprio")
        .is_some());
    assert!(load("two_rooms_pixels.ron")
        .spec()
        .observation
        .field("proprio")
        .is_none());
}

#[test]
fn images_do_not_show_the_goal() {
    // Same state, different goals (episodes of other seeds): bit-identical images.
    for name in PIXEL_FILES {
        let config = load(name);
        let mut a = config.build().unwrap();
        let mut b = config.build().unwrap();
        a.reset(11).unwrap();
        b.reset(12).unwrap();
        if name == "two_rooms_doors.ron" {
            // The door is part of the scene, not the goal: give both the same door.
            let mut s = b.state();
            *s.last_mut().unwrap() = *a.state().last().unwrap();
            b.set_state(&s).unwrap();
        }
        b.set_state(&a.state()).unwrap();
        a.set_state(&a.state()).unwrap();
        assert_ne!(a.goal_state(), b.goal_state(), "{name}: same goal");
        assert!(
            image(&a.observe()) == image(&b.observe()),
            "{name}: the goal leaks"
        );
    }
}

#[test]
fn the_goal_image_is_the_scene_in_the_goal_state() {
    for name in PIXEL_FILES {
        let config = load(name);
        let mut env = config.build().unwrap();
        env.reset(5).unwrap();
        let goal = image(&env.goal_observation());
        assert!(
            goal != image(&env.observe()),
            "{name}: the start already looks solved"
        );
        env.set_state(&env.goal_state()).unwrap();
        let at_goal = image(&env.observe());
        // Reach and push read angles back through cos/sin (the state vector) or the physics
        // body's rotation: a pixel may then round one level differently.
        let worst = goal
            .iter()
            .zip(&at_goal)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{name}: goal image differs by {worst} levels");
        if name.starts_with("two_rooms") {
            assert!(goal == at_goal, "{name}: goal image differs");
        }
    }
}

#[test]
fn renders_and_episodes_are_bit_identical_across_reruns() {
    for name in PIXEL_FILES {
        let run = || {
            let mut env = load(name).build().unwrap();
            env.reset(21).unwrap();
            let dim = env.spec().action_dim();
            let mut frames = vec![image(&env.observe())];
            for t in 0..15 {
                let a: Vec<f32> = (0..dim)
                    .map(|d| ((t * 7 + d) as f32 * 0.37).sin())
                    .collect();
                env.step(&a).unwrap();
                frames.push(image(&env.observe()));
            }
            (frames, env.state())
        };
        let (a, sa) = run();
        let (b, sb) = run();
        assert!(a == b, "{name}: frames differ between reruns");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&sa), bits(&sb), "{name}");
        // Motion shows: the first and last frames differ.
        assert!(a[0] != a[15], "{name}: nothing moved in the image");
    }
}

#[test]
fn sub_pixel_motion_changes_pixels() {
    let mut env = load("two_rooms_pixels.ron").build().unwrap();
    env.reset(3).unwrap();
    let s = env.state();
    let before = image(&env.observe());
    // 1 cm is about a sixth of a pixel at 64 px over the 4.2 m view.
    env.set_state(&[s[0] + 0.01, s[1]]).unwrap();
    assert!(before != image(&env.observe()));
}

#[test]
fn moving_doors_differ_per_episode_and_show_in_the_image() {
    let config = load("two_rooms_doors.ron");
    let mut env = config.build().unwrap();
    let mut doors = Vec::new();
    let mut images = Vec::new();
    for seed in 0..8 {
        env.reset(seed).unwrap();
        doors.push(*env.state().last().unwrap());
        // Put the ball at the same place each time: only the door differs.
        let mut s = env.state();
        s[0] = 0.5;
        s[1] = 1.0;
        env.set_state(&s).unwrap();
        images.push(image(&env.observe()));
        // The observed state vector says nothing about the door.
        assert_eq!(env.observe().f32("state").unwrap().len(), 2);
    }
    let (lo, hi) = doors
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &d| (a.min(d), b.max(d)));
    assert!(hi - lo > 0.3, "doors {doors:?}");
    assert!(doors.iter().all(|d| (0.4..=1.6).contains(d)), "{doors:?}");
    for i in 1..images.len() {
        assert!(
            images[0] != images[i],
            "door {} vs {} look the same",
            doors[0],
            doors[i]
        );
    }
    // The door is where the state says: in the column of the dividing wall (x = 2 m), the
    // pixel at the door's centre is floor, and the wall beside the door is wall-grey.
    let column = |img: &[u8], y: f32| {
        // View: x in [-0.1, 4.1] over 64 px (6.56 cm a pixel), centred vertically.
        let scale = 64.0 / 4.2;
        let i = ((2.0 + 0.1) * scale) as usize;
        let top = 32.0 - 1.1 * scale; // world y = 2.1 (outer wall's top) at this row
        let j = (top + (2.1 - y) * scale) as usize;
        img[j * 64 + i]
    };
    for (d, img) in doors.iter().zip(&images) {
        let floor = column(img, *d);
        let wall = column(img, if *d > 1.0 { 0.1 } else { 1.9 });
        assert!(
            floor > wall + 60,
            "door at {d}: centre {floor}, wall {wall}"
        );
    }
}

#[test]
fn frame_history_stacks_the_last_frames() {
    let text = "TwoRooms(observe_velocity: false, observation: (state: false, image: (width: 32, height: 32, history: 3)))";
    let config = ScenarioConfig::from_ron_str(text, "inline").unwrap();
    assert_eq!(
        config.spec().observation.field("image").unwrap().shape,
        [9, 32, 32]
    );
    let mut env = config.build().unwrap();
    env.reset(2).unwrap();
    let plane = 3 * 32 * 32;
    let first = image(&env.observe());
    // At a reset the history repeats the first frame.
    assert!(first[..plane] == first[plane..2 * plane]);
    assert!(first[..plane] == first[2 * plane..]);
    env.step(&[1.0, 0.0]).unwrap();
    let second = image(&env.observe());
    // Oldest first: the newest frame moved, the older ones are the start.
    assert!(second[..plane] == first[..plane]);
    assert!(second[2 * plane..] != first[2 * plane..]);
    env.step(&[1.0, 0.0]).unwrap();
    let third = image(&env.observe());
    assert!(third[plane..2 * plane] == second[2 * plane..]);
    // Snapshots keep the history.
    let snap = env.snapshot();
    env.step(&[0.0, 1.0]).unwrap();
    env.restore(&snap).unwrap();
    assert!(image(&env.observe()) == third);
}

#[test]
fn observation_settings_are_validated_with_positions() {
    for (text, field) in [
        ("TwoRooms(observation: (state: false))", "observation"),
        (
            "TwoRooms(observation: (image: Some((width: 8))))",
            "observation.image.width",
        ),
        (
            "TwoRooms(observation: (image: Some((height: 600))))",
            "observation.image.height",
        ),
        (
            "TwoRooms(observation: (image: Some((history: 0))))",
            "observation.image.history",
        ),
        (
            "TwoRooms(observation: (proprio: true))",
            "observation.proprio",
        ),
        ("TwoRooms(door_center: Range(1.6, 0.4))", "door_center"),
        ("TwoRooms(door_center: Range(0.1, 1.0))", "door_center"),
    ] {
        let e = ScenarioConfig::from_ron_str(text, "x.ron")
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("field `{field}`")), "{text}: {e}");
    }
    // Files that say nothing observe the state vector, as before.
    let spec = load("two_rooms.ron").spec();
    assert!(spec.observation.is_state_only());
    assert_eq!(spec.observation.fields()[0].names, spec.state_names);
}

#[test]
fn configs_with_observations_round_trip() {
    for name in PIXEL_FILES {
        let c = load(name);
        let text = c.to_ron_string();
        assert_eq!(
            ScenarioConfig::from_ron_str(&text, "rt").unwrap(),
            c,
            "{text}"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<ScenarioConfig>(&json).unwrap(),
            c,
            "{json}"
        );
    }
    // A fixed door is still written as a plain number.
    let c = ScenarioConfig::from_ron_str("TwoRooms(door_center: 1.2)", "x").unwrap();
    assert!(
        c.to_ron_string().contains("door_center: Some(1.2)"),
        "{}",
        c.to_ron_string()
    );
}

/// `camera_half_extent` frames the workspace: the same scene seen through a view of half
/// extent 0.5 m instead of the whole 2 × 2 m arena covers about (1.02 / 0.5)² ≈ 4× the pixels.
#[test]
fn push_camera_half_extent_magnifies_the_scene() {
    let text = std::fs::read_to_string(common::scenarios_dir().join("push_pixels.ron")).unwrap();
    let framed_text = text.replacen("Push(", "Push(camera_half_extent: Some(0.5), ", 1);
    let whole = ScenarioConfig::from_ron_str(&text, "push_pixels.ron").unwrap();
    let framed = ScenarioConfig::from_ron_str(&framed_text, "framed").unwrap();
    let drawn = |config: &ScenarioConfig| -> usize {
        let mut env = config.build().unwrap();
        env.reset(3).unwrap();
        let img = image(&env.observe());
        // Background pixels are the most common colour; count the rest (block and pusher)
        // away from the border, where the whole-arena view shows a margin of wall.
        let px: Vec<[u8; 3]> = (0..64 * 64)
            .filter(|k| (2..62).contains(&(k / 64)) && (2..62).contains(&(k % 64)))
            .map(|k| [img[k], img[4096 + k], img[8192 + k]])
            .collect();
        let mut counts = std::collections::BTreeMap::new();
        for p in &px {
            *counts.entry(*p).or_insert(0usize) += 1;
        }
        let bg = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, _)| *c)
            .unwrap();
        px.iter().filter(|p| **p != bg).count()
    };
    let (a, b) = (drawn(&whole), drawn(&framed));
    assert!(a > 20, "the block is drawn: {a} pixels");
    assert!(b > 3 * a, "framed view {b} pixels, whole arena {a}");
    // Larger than the arena's picture: refused, naming the field.
    let bad = text.replacen("Push(", "Push(camera_half_extent: Some(5.0), ", 1);
    let e = ScenarioConfig::from_ron_str(&bad, "bad.ron")
        .unwrap_err()
        .to_string();
    assert!(e.contains("camera_half_extent"), "{e}");
}
