//! `load_model`: every kind of spec, checked against the scenario it is loaded for.

mod common;

use tch::Device;
use zplan_models::{
    inspect, load_model, load_model_for, DeviceChoice, JepaConfig, JepaNets, ModelError, ModelSpec,
};
use zplan_sim::ScenarioConfig;

fn two_rooms() -> ScenarioConfig {
    ScenarioConfig::default()
}

fn push() -> ScenarioConfig {
    ScenarioConfig::from(zplan_sim::PushConfig::default())
}

fn small_jepa(obs_dim: i64) -> JepaConfig {
    JepaConfig {
        latent_dim: 8,
        enc_hidden: 16,
        pred_hidden: 16,
        ..JepaConfig::new(obs_dim, 2)
    }
}

#[test]
fn sim_spec() {
    let model = load_model(&ModelSpec::Sim, &push(), DeviceChoice::Auto).unwrap();
    assert_eq!(model.name(), "sim:push");
    assert_eq!(model.obs_spec().fields()[0].shape, [11]);
    // Random states need not be valid push states: inspect reports the simulator's error, if
    // any, rather than panicking.
    match inspect(model.as_ref(), 4, 3) {
        Ok(report) => assert_eq!(report.latent_shape, vec![11]),
        Err(err) => assert!(matches!(err, ModelError::Sim { .. }), "{err}"),
    }
    let model = load_model(&ModelSpec::Sim, &two_rooms(), DeviceChoice::Cpu).unwrap();
    let report = inspect(model.as_ref(), 8, 4).unwrap();
    assert_eq!(report.latent_shape, vec![4]);
    assert!(report.latent_steps_per_s > 0.0);
    eprintln!("{report}");
    assert!(matches!(
        load_model_for(
            &ModelSpec::Sim,
            &zplan_models::state_spec(4),
            2,
            DeviceChoice::Cpu
        ),
        Err(ModelError::InvalidConfig(_))
    ));
}

#[test]
fn jepa_spec_checks_sizes_and_family() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tr");
    let mut nets = JepaNets::new(small_jepa(4), Device::Cpu).unwrap();
    nets.set_scenario(&two_rooms()).unwrap();
    nets.save(&path).unwrap();
    let spec = ModelSpec::Jepa(path.to_string_lossy().into_owned());

    let model = load_model(&spec, &two_rooms(), DeviceChoice::Cpu).unwrap();
    assert_eq!(model.latent_shape(), &[8]);
    let report = inspect(model.as_ref(), 16, 5).unwrap();
    assert_eq!(
        (report.batch, report.horizon, report.device.as_str()),
        (16, 5, "cpu")
    );

    // Another family: refused, naming both.
    let mut nets = JepaNets::new(small_jepa(4), Device::Cpu).unwrap();
    nets.set_scenario(&push()).unwrap();
    nets.save(&path).unwrap();
    let err = load_model(&spec, &two_rooms(), DeviceChoice::Cpu).unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, ModelError::Incompatible { .. }) && err.to_string().contains("`push`"),
        "{err}"
    );

    // Other sizes: refused, naming the quantity.
    JepaNets::new(small_jepa(6), Device::Cpu)
        .unwrap()
        .save(&path)
        .unwrap();
    let err = load_model(&spec, &two_rooms(), DeviceChoice::Cpu).unwrap_err();
    eprintln!("{err}");
    assert!(
        err.to_string().contains("observation field `state`")
            && err.to_string().contains("f32 [6]")
            && err.to_string().contains("f32 [4] expected"),
        "{err}"
    );
    assert!(load_model_for(&spec, &zplan_models::state_spec(6), 2, DeviceChoice::Cpu).is_ok());
    assert!(load_model_for(&spec, &zplan_models::state_spec(6), 3, DeviceChoice::Cpu).is_err());
}

#[test]
fn torchscript_spec() {
    common::init();
    let dir = common::models_dir();
    // vec.pt takes 4-d observations and 2-d actions: two_rooms.
    let spec = ModelSpec::TorchScript(dir.join("vec.pt").to_string_lossy().into_owned());
    let model = load_model(&spec, &two_rooms(), DeviceChoice::Cpu).unwrap();
    assert_eq!(model.latent_shape(), &[8]);
    let err = load_model(&spec, &push(), DeviceChoice::Cpu).unwrap_err();
    eprintln!("{err}");
    assert!(err.to_string().contains("[2, 11]"), "{err}");
    let spec: ModelSpec = format!("{}", dir.join("missing.pt").display())
        .parse()
        .unwrap();
    assert!(matches!(
        load_model(&spec, &two_rooms(), DeviceChoice::Cpu),
        Err(ModelError::NotFound { .. })
    ));
}
