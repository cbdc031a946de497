//! The RON strings users hand the planner crate (`--planner`, `--energy`, `--mpc`, suite
//! fields): limits before parsing, clean errors, and no panic afterwards (issue #16, item 3;
//! the fuzz target `planner_ron` in `fuzz/` and `tests/fuzz_inputs.rs` exercise them at large).

use std::time::{Duration, Instant};
use zplan_planner::{EnergyConfig, MpcConfig, PlannerConfig};

#[test]
fn deep_nests_are_refused_before_parsing() {
    let text = "Cem(".repeat(200_000);
    let t = Instant::now();
    let e = PlannerConfig::from_ron_str(&text).unwrap_err().to_string();
    assert_eq!(e, "planner: RON:1:260: brackets nest deeper than 64 levels");
    let e = EnergyConfig::from_ron_str(&"[".repeat(200_000))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "energy: RON:1:65: brackets nest deeper than 64 levels");
    let e = MpcConfig::from_ron_str(&"(".repeat(65))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "mpc: RON:1:65: brackets nest deeper than 64 levels");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn strings_parse_like_suite_fields_and_are_validated() {
    let e =
        EnergyConfig::from_ron_str("(metric: L2, reduction: Sum, proprio_weight: 0.5)").unwrap();
    assert_eq!(e.proprio_weight, Some(0.5)); // implicit_some, as in suite files
    let e = EnergyConfig::from_ron_str("(action_weight: -1.0)").unwrap_err();
    assert_eq!(
        e.to_string(),
        "energy.action_weight: -1 must be finite and >= 0"
    );
    let e = MpcConfig::from_ron_str("(replan_every: 3, action_block: 2)").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("mpc.replan_every: 3 must be a multiple"),
        "{e}"
    );
    let e = MpcConfig::from_ron_str("(replan_evry: 3)").unwrap_err();
    assert!(e.to_string().starts_with("mpc: "), "{e}");
}

/// Found while writing the fuzz target `planner_ron`: `deadline_ms: 1e30` passed validation (it is a
/// finite f32), and `budget()` then panicked in `Duration::from_secs_f64` ("value is either too
/// big or NaN"); a deadline the clock cannot represent is now no deadline.
#[test]
fn a_deadline_beyond_the_clock_is_no_deadline() {
    for ms in ["1e30", "3.0e38", "1.8446744073709552e22"] {
        let m = MpcConfig::from_ron_str(&format!("(deadline_ms: {ms})")).unwrap();
        assert!(m.budget().deadline.is_none(), "{ms}");
    }
    let m = MpcConfig::from_ron_str("(deadline_ms: 5.0)").unwrap();
    assert!(m.budget().deadline.is_some());
}
