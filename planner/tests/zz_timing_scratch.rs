mod common;
use common::{latent, LinearModel};
use std::time::Instant;
use zplan_planner::*;
fn run() -> Vec<f64> {
    let model = LinearModel::reference();
    let cfg = PlannerConfig::Cem(CemConfig {
        horizon: 5,
        ..CemConfig::default()
    });
    let mut p = cfg
        .build(
            ActionBounds::symmetric(2, 1.0).unwrap(),
            EnergyConfig::default(),
            1,
        )
        .unwrap();
    let mut v = vec![];
    for _ in 0..30 {
        let t = Instant::now();
        p.plan(
            &model,
            &latent(&[0.2, 0.4]),
            &latent(&[0.5, -0.3]),
            None,
            &Budget::unlimited(),
        )
        .unwrap();
        v.push((t.elapsed().as_secs_f64() * 1e4).round() / 10.0);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    v
}
#[test]
fn timing() {
    println!("main threads {}", tch::get_num_threads());
    println!("main {:?}", run());
    let h = std::thread::spawn(|| {
        println!("spawned threads {}", tch::get_num_threads());
        run()
    });
    println!("spawned {:?}", h.join().unwrap());
    tch::set_num_threads(1);
    let h = std::thread::spawn(|| {
        println!("spawned after set(1) in main: {}", tch::get_num_threads());
        run()
    });
    println!("spawned {:?}", h.join().unwrap());
    let h = std::thread::spawn(|| {
        tch::set_num_threads(1);
        println!("spawned set(1) inside: {}", tch::get_num_threads());
        run()
    });
    println!("spawned {:?}", h.join().unwrap());
}
