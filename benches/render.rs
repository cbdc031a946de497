//! Camera frames per second: how fast a scenario renders what the robot sees.
//!
//! For the shipped pixel scenarios (64 × 64 RGB, one frame), `render/<scenario>` times
//! `Env::observe()` on one thread: the channel-major, anti-aliased camera frame (a copy of the
//! cached background plus the moving bodies) and the observation around it (proprio, the
//! allocation). Throughput is in frames per second; the target is at least 20 000 frames/s on
//! one core for two_rooms and push. `step_observe/<scenario>` times a control step plus the
//! observation, the unit of data collection, beside `step/<scenario>` alone, so the cost of
//! the camera in collection is visible. The machine's CPU flags are printed first.
//!
//! ```text
//! cargo bench --bench render
//! ```

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use zplan_sim::{Env, ScenarioConfig};

const FILES: [&str; 4] = [
    "two_rooms_pixels",
    "push_pixels",
    "reach_pixels",
    "two_rooms_doors",
];

fn env(name: &str) -> Box<dyn Env> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.ron"));
    let mut env = ScenarioConfig::load(&path)
        .expect("scenario file")
        .build()
        .expect("build");
    env.reset(7).expect("reset");
    env
}

fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .split_whitespace()
        .filter(|f| {
            [
                "avx2",
                "avx512f",
                "avx512_bf16",
                "amx_tile",
                "fma",
                "sse4_2",
            ]
            .contains(f)
        })
        .collect();
    format!("{model} ({})", flags.join(" "))
}

fn main() {
    println!("cpu: {}", cpu_flags());
    let mut c = Criterion::default().configure_from_args();
    for name in FILES {
        let e = env(name);
        let mut g = c.benchmark_group("render");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter(|| black_box(e.observe())));
        g.finish();
    }
    for name in ["two_rooms_pixels", "push_pixels"] {
        let mut e = env(name);
        let dim = e.spec().action_dim();
        let mut k = 0u32;
        for (group, observe) in [("step_observe", true), ("step", false)] {
            let mut g = c.benchmark_group(group);
            g.throughput(Throughput::Elements(1));
            g.bench_function(name, |b| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    let a: Vec<f32> = (0..dim)
                        .map(|d| ((k as usize * 3 + d) as f32).sin())
                        .collect();
                    if e.steps() > 500 {
                        e.reset(7).expect("reset");
                    }
                    e.step(&a).expect("step");
                    observe.then(|| black_box(e.observe()))
                })
            });
            g.finish();
        }
    }
    c.final_summary();
}
