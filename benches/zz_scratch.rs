use std::time::Instant;
use tch::{Device, Kind, Tensor};
use zplan_models::{JepaConfig, JepaModel, WorldModel};
use zplan_planner::{Energy, EnergyConfig};
fn main() {
    let model = JepaModel::new(JepaConfig::new(11, 2), Device::Cpu).unwrap();
    let obs = Tensor::rand([1, 11], (Kind::Float, Device::Cpu));
    let z0 = model.encode(&obs).unwrap();
    let goal = model.encode(&(obs + 0.5)).unwrap();
    let zb = z0.expand([300, 64], false);
    let acts = Tensor::rand([300, 16, 2], (Kind::Float, Device::Cpu));
    let energy = Energy::new(EnergyConfig::default()).unwrap();
    let _g = tch::no_grad_guard();
    for rep in 0..5 {
        let t = Instant::now();
        let pred = model.rollout(&zb, &acts).unwrap();
        let tr = t.elapsed();
        let t = Instant::now();
        let e = energy.compute(&pred, &goal, &acts).unwrap();
        let v = Vec::<f32>::try_from(&e).unwrap();
        let te = t.elapsed();
        let t = Instant::now();
        let host: Vec<f32> = (0..9600).map(|i| (i as f32).sin()).collect();
        let up = Tensor::from_slice(&host).view([300, 16, 2]);
        let tu = t.elapsed();
        println!("rep {rep}: rollout {:?} energy+download {:?} upload {:?} ({} {:?} contiguous {})", tr, te, tu, v.len(), pred.size(), pred.is_contiguous());
        let _ = up;
    }
}
