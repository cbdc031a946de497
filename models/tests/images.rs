//! The image contract for TorchScript models: one image field is passed as a float tensor
//! `[B, C, H, W]` in `[0, 1]`, several fields as a `Dict[str, Tensor]`; u8 observations are
//! scaled on the model's device; Rust and Python agree within 1e-5; mismatched fields, shapes
//! and dtypes are refused with errors naming them.

mod common;

use tch::{Device, Kind, Tensor};
use zplan_models::{
    check_fits, FieldSpec, ObsBatch, ObsSpec, Observation, TorchScriptModel, WorldModel,
};

fn reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(common::models_dir().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn image_spec(w: usize) -> ObsSpec {
    ObsSpec::new(vec![FieldSpec::image(w, w, 1)]).unwrap()
}

fn image_proprio_spec() -> ObsSpec {
    ObsSpec::new(vec![
        FieldSpec::image(64, 64, 1),
        FieldSpec::vector("proprio", vec!["px".into(), "py".into()]),
    ])
    .unwrap()
}

#[test]
fn image_tensor_model_matches_python() {
    common::init();
    let model = TorchScriptModel::load(
        common::models_dir().join("cnn.pt"),
        &image_spec(64),
        2,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.latent_shape(), [16]);
    let r = reference("cnn_ref.safetensors");
    // u8 images in, as the simulator renders them; the model's side scales them to [0, 1].
    let obs = ObsBatch::single("image", r["obs_image"].shallow_clone());
    assert_eq!(obs.field("image").unwrap().kind(), Kind::Uint8);
    let z = model.encode(&obs).unwrap();
    assert!(
        max_abs_diff(&z, &r["z"]) <= 1e-5,
        "{}",
        max_abs_diff(&z, &r["z"])
    );
    let zs = model.rollout(&z, &r["actions"]).unwrap();
    assert!(max_abs_diff(&zs, &r["rollout"]) <= 1e-5);
}

#[test]
fn dict_model_with_image_and_proprio_matches_python() {
    common::init();
    let model = TorchScriptModel::load(
        common::models_dir().join("cnn_dict.pt"),
        &image_proprio_spec(),
        2,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.latent_shape(), [4, 16]);
    let r = reference("cnn_dict_ref.safetensors");
    let obs = ObsBatch::single("image", r["obs_image"].shallow_clone())
        .with("proprio", r["obs_proprio"].shallow_clone())
        .unwrap();
    let z = model.encode(&obs).unwrap();
    assert!(max_abs_diff(&z, &r["z"]) <= 1e-5);
    let zs = model.rollout(&z, &r["actions"]).unwrap();
    assert!(max_abs_diff(&zs, &r["rollout"]) <= 1e-5);

    // The same through host observations (what the planner batches).
    let b = r["obs_image"].size()[0];
    let host: Vec<Observation> = (0..b)
        .map(|i| {
            let img = Vec::<u8>::try_from(r["obs_image"].get(i).reshape([-1])).unwrap();
            let p = Vec::<f32>::try_from(r["obs_proprio"].get(i)).unwrap();
            Observation::new().with("image", img).with("proprio", p)
        })
        .collect();
    let refs: Vec<&Observation> = host.iter().collect();
    let batch = ObsBatch::from_observations(model.obs_spec(), &refs, Device::Cpu).unwrap();
    let z2 = model.encode(&batch).unwrap();
    assert!(max_abs_diff(&z2, &r["z"]) <= 1e-5);
}

#[test]
fn mismatched_images_are_refused_naming_field_and_shapes() {
    common::init();
    let dir = common::models_dir();
    // A model of two stacked frames (6 channels) probed with the scenario's single frames fails
    // at load, naming the input it was given.
    let err = TorchScriptModel::load(dir.join("cnn_history2.pt"), &image_spec(64), 2, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encode") && err.contains("image [2, 3, 64, 64]"),
        "{err}"
    );
    // A dict model given a single image: the contract's input type does not match.
    let err = TorchScriptModel::load(dir.join("cnn_dict.pt"), &image_spec(64), 2, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encode"), "{err}");

    // A model that reads 64-px images does not fit a scenario that renders 32 px: the check
    // names the field, the scenario's shape and the model's.
    let model =
        TorchScriptModel::load(dir.join("cnn.pt"), &image_spec(64), 2, Device::Cpu).unwrap();
    let err = check_fits(&model, &image_spec(32), 2, "scenario `two_rooms`")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`image`") && err.contains("[3, 64, 64]") && err.contains("[3, 32, 32]"),
        "{err}"
    );
    // A state-only scenario has no image at all.
    let err = check_fits(
        &model,
        &zplan_models::state_spec(4),
        2,
        "scenario `two_rooms`",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`image`") && err.contains("absent"), "{err}");
    // An image of the wrong dtype.
    let mut f32_image = FieldSpec::image(64, 64, 1);
    f32_image.dtype = zplan_models::Dtype::F32;
    let err = check_fits(&model, &ObsSpec::new(vec![f32_image]).unwrap(), 2, "s")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("f32 [3, 64, 64]") && err.contains("u8 [3, 64, 64]"),
        "{err}"
    );

    // Observations of the wrong size never reach the model.
    let small = Observation::new().with("image", vec![0u8; 3 * 32 * 32]);
    let err = ObsBatch::from_observations(model.obs_spec(), &[&small], Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`image`") && err.contains("[3, 64, 64]"),
        "{err}"
    );
    let floats = Observation::new().with("image", vec![0f32; 3 * 64 * 64]);
    let err = ObsBatch::from_observations(model.obs_spec(), &[&floats], Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected u8") && err.contains("got f32"),
        "{err}"
    );
    // A batch that lacks the image.
    let err = model
        .encode(&ObsBatch::state(Tensor::zeros(
            [1, 4],
            (Kind::Float, Device::Cpu),
        )))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`image`"), "{err}");
}
