//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use zplan_sim::ScenarioConfig;

/// The scenario files this crate ships.
pub const SCENARIO_FILES: [&str; 5] = [
    "two_rooms.ron",
    "maze.ron",
    "reach.ron",
    "push.ron",
    "push_t.ron",
];

/// The repository's `scenarios/` folder.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

/// Every shipped scenario, loaded from its file.
pub fn shipped() -> Vec<(String, ScenarioConfig)> {
    SCENARIO_FILES
        .iter()
        .map(|f| {
            let path = scenarios_dir().join(f);
            let config = ScenarioConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            (f.to_string(), config)
        })
        .collect()
}

/// Deterministic pseudo-random actions in `[-1.3, 1.3]` (some clipped), `steps x dim`.
pub fn actions(seed: u64, steps: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..steps)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.6 - 1.3
                })
                .collect()
        })
        .collect()
}

/// Raw bits of an observation, for exact comparisons.
pub fn bits(obs: &[f32]) -> Vec<u32> {
    obs.iter().map(|v| v.to_bits()).collect()
}
