//! Shipped suites give their simulator-backed "upper bound" entries at least the planner budget
//! of the learned entries they bound, on the same episodes (issue #16: an upper bound that
//! plans with less is no bound).

use std::path::PathBuf;
use zplan::suite::LoadedSuite;
use zplan_models::ModelSpec;
use zplan_planner::PlannerConfig;

/// Rollout steps one plan may spend: samples × iterations × horizon.
fn budget(p: &PlannerConfig) -> u64 {
    p.samples() as u64 * u64::from(p.iterations()) * p.horizon() as u64
}

#[test]
fn simulator_entries_get_at_least_the_learned_budget_on_the_same_episodes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("ron") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.lines().any(|l| l.trim_start().starts_with("Suite(")) {
            continue;
        }
        let suite = LoadedSuite::load(&path).unwrap();
        let entries = &suite.suite.entries;
        for (i, sim) in entries.iter().enumerate() {
            if suite.models[i] != ModelSpec::Sim {
                continue;
            }
            for (j, learned) in entries.iter().enumerate() {
                if suite.models[j] == ModelSpec::Sim || learned.seed_key() != sim.seed_key() {
                    continue;
                }
                assert!(
                    budget(&sim.planner) >= budget(&learned.planner),
                    "{}: `{}` plans with {} rollout steps, less than `{}`'s {}",
                    path.display(),
                    sim.name,
                    budget(&sim.planner),
                    learned.name,
                    budget(&learned.planner)
                );
                assert!(suite.suite.episodes_of(i) <= suite.suite.episodes_of(j));
                checked += 1;
            }
        }
    }
    // default.ron bounds reach, two_rooms and push.
    assert!(checked >= 3, "only {checked} upper bounds found");
}
