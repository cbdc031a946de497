//! Every shipped scenario file parses, validates and builds; malformed files give the
//! documented errors (file, line, column, field).

mod common;

use zplan_sim::{ScenarioConfig, SimError};

#[test]
fn every_shipped_file_parses_validates_and_builds() {
    for (name, config) in common::shipped() {
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let spec = config.spec();
        let mut env = config.build().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(env.spec(), &spec, "{name}");
        env.reset(0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(env.state().len(), spec.state_dim(), "{name}");
        assert_eq!(env.goal_state().len(), spec.state_dim(), "{name}");
        assert!(!env.success(), "{name}: episode starts solved");
    }
}

#[test]
fn every_scenario_file_in_the_folder_parses() {
    // Other files (suites) may live there too: only top-level scenario variants are checked.
    let mut n = 0;
    for entry in std::fs::read_dir(common::scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("ron") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let head = code.trim_start();
        if !["TwoRooms", "Reach", "Push"]
            .iter()
            .any(|v| head.starts_with(v))
        {
            continue;
        }
        ScenarioConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= common::SCENARIO_FILES.len());
}

#[test]
fn kinds_and_specs() {
    let kinds: Vec<_> = common::shipped().iter().map(|(_, c)| c.kind()).collect();
    assert_eq!(kinds, ["two_rooms", "two_rooms", "reach", "push", "push"]);
    for (name, c) in common::shipped() {
        let s = c.spec();
        assert!(
            s.action_low.iter().zip(&s.action_high).all(|(l, h)| l < h),
            "{name}"
        );
        approx::assert_relative_eq!(
            s.physics_dt * s.substeps as f32,
            s.control_dt,
            epsilon = 1e-6
        );
    }
}

fn parse_err(text: &str) -> SimError {
    ScenarioConfig::from_ron_str(text, "scenarios/x.ron").unwrap_err()
}

#[test]
fn unknown_field_is_reported_with_position_and_field() {
    let e = parse_err("TwoRooms(\n    door_width: 0.6,\n    door_widht: 0.5,\n)");
    let msg = e.to_string();
    match &e {
        SimError::Parse {
            origin,
            line,
            field,
            ..
        } => {
            assert_eq!(origin, "scenarios/x.ron");
            assert_eq!(*line, 3, "{msg}");
            assert_eq!(field.as_deref(), Some("door_widht"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(msg.starts_with("scenarios/x.ron:3:"), "{msg}");
    assert!(
        msg.contains("door_widht") && msg.contains("door_width"),
        "{msg}"
    );
}

#[test]
fn unknown_variant_is_reported() {
    let msg = parse_err("ThreeRooms(door_width: 0.6)").to_string();
    assert!(msg.starts_with("scenarios/x.ron:1:"), "{msg}");
    assert!(
        msg.contains("ThreeRooms") && msg.contains("TwoRooms"),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_the_field() {
    let e = parse_err("Reach(\n  links: 3,\n  link_length: \"long\",\n)");
    let msg = e.to_string();
    assert!(matches!(e, SimError::Parse { line: 3, .. }), "{msg}");
    assert!(msg.contains("field `link_length`"), "{msg}");
    let e = parse_err("Reach(links: 2.5)");
    assert!(e.to_string().contains("field `links`"), "{e}");
    let e = parse_err("Push(shape: Sphere)");
    assert!(
        e.to_string().contains("field `shape`") && e.to_string().contains("Sphere"),
        "{e}"
    );
    let e = parse_err("TwoRooms(start: (x: (0.3, 1.6), y: 7))");
    assert!(e.to_string().contains("field `start.y`"), "{e}");
}

#[test]
fn nan_and_negative_values_fail_validation_with_position() {
    let e = parse_err("TwoRooms(\n    room_width: 2.0,\n    door_width: -1,\n)");
    assert_eq!(
        e.to_string(),
        "scenarios/x.ron:3:5: field `door_width`: must be > 0 and < the wall length (2), got -1"
    );
    let e = parse_err("TwoRooms(\n  door_width: NaN,\n)");
    assert!(
        matches!(&e, SimError::Invalid { line: 2, col: 3, field, .. } if field == "door_width"),
        "{e}"
    );
    let e = parse_err("Push(\n  friction: -0.1,\n)");
    assert!(
        e.to_string()
            .starts_with("scenarios/x.ron:2:3: field `friction`:"),
        "{e}"
    );
    let e = parse_err("Reach(control_dt: inf)");
    assert!(e.to_string().contains("field `control_dt`"), "{e}");
    let e = parse_err("Reach(\n  goal_angles: (NaN, 1.0),\n)");
    assert!(
        e.to_string()
            .starts_with("scenarios/x.ron:2:3: field `goal_angles`"),
        "{e}"
    );
}

#[test]
fn nested_and_defaulted_fields_are_located() {
    // A nested field: the position of `y` inside `goal`.
    let e = parse_err("TwoRooms(\n  goal: (x: (2.4, 3.7), y: (0.3, 9.0)),\n)");
    assert!(
        e.to_string()
            .starts_with("scenarios/x.ron:2:25: field `goal.y`"),
        "{e}"
    );
    // A list element.
    let e = parse_err("TwoRooms(\n  walls: [\n    (from: (1, 0), to: (1, 1)),\n    (from: (1, 1), to: (1, 1)),\n  ],\n)");
    assert!(
        e.to_string()
            .starts_with("scenarios/x.ron:4:5: field `walls[1]`"),
        "{e}"
    );
    // A defaulted field made invalid by another one points at the scenario itself.
    let e = parse_err("// header\nTwoRooms(room_height: 0.5)");
    assert!(
        e.to_string()
            .starts_with("scenarios/x.ron:2:1: field `door_width`"),
        "{e}"
    );
}

#[test]
fn syntax_errors_and_missing_files() {
    let e = parse_err("TwoRooms(door_width: 0.6");
    assert!(matches!(e, SimError::Parse { line: 1, .. }), "{e}");
    let e = ScenarioConfig::load(std::path::Path::new("/nonexistent/zplan.ron")).unwrap_err();
    assert!(matches!(e, SimError::Input(_)), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/zplan.ron"), "{e}");
    // A directory is named as one, not as a missing file.
    let e = ScenarioConfig::load(std::path::Path::new("/tmp")).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
}

#[test]
fn duplicate_fields_are_rejected() {
    let e = parse_err("TwoRooms(door_width: 0.6, door_width: 0.7)");
    assert!(e.to_string().contains("door_width"), "{e}");
}

#[test]
fn round_trip_of_shipped_files() {
    for (name, c) in common::shipped() {
        let text = c.to_ron_string();
        let back =
            ScenarioConfig::from_ron_str(&text, &name).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, c, "{name}");
    }
}
