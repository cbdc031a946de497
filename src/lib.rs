//! zplan: a latent-space planning engine for robots.
//!
//! This root crate is the closed-loop runner behind the `zplan` CLI: scenario suites, reports,
//! sharding and merging. The building blocks live in `zplan-sim` (Rapier scenarios),
//! `zplan-models` (world models on libtorch) and `zplan-planner` (CEM-family planners, MPC).
pub mod bench;
pub mod collect;
pub mod dataset;
pub mod info;
pub mod interrupt;
pub mod plots;
pub mod refit;
pub mod report;
pub mod results;
pub mod runner;
pub mod seeds;
pub mod shard;
pub mod stats;
pub mod suite;
pub mod train;
pub mod train_pixels;
