//! Native pixel JEPA models: a CNN image encoder (plus a proprio MLP) behind the same
//! `WorldModel` as the state JEPA; u8 images scaled on the device; save/load identical;
//! deterministic construction; clear errors for observations that do not fit.

mod common;

use tch::{Device, Kind, Tensor};
use zplan_models::jepa::ImageHead;
use zplan_models::{JepaConfig, JepaModel, JepaNets, ObsBatch, WorldModel};

fn config(proprio: i64) -> JepaConfig {
    JepaConfig {
        latent_dim: 12,
        pred_hidden: 16,
        inverse_hidden: 8,
        inverse_layers: 1,
        ..JepaConfig::pixels(3, 32, 32, proprio, 2)
    }
}

fn images(b: i64) -> Tensor {
    (Tensor::arange(b * 3 * 32 * 32, (Kind::Int64, Device::Cpu)).remainder(251))
        .to_kind(Kind::Uint8)
        .reshape([b, 3, 32, 32])
}

fn batch(b: i64, proprio: i64) -> ObsBatch {
    let mut o = ObsBatch::single("image", images(b));
    if proprio > 0 {
        let p = Tensor::linspace(-1.0, 1.0, b * proprio, (Kind::Float, Device::Cpu))
            .reshape([b, proprio]);
        o = o.with("proprio", p).unwrap();
    }
    o
}

#[test]
fn pixel_models_read_images_and_proprio() {
    common::init();
    let model = JepaModel::new(config(2), Device::Cpu).unwrap();
    assert_eq!(
        model.obs_spec().to_string(),
        "image [3, 32, 32] u8, proprio [2] f32"
    );
    assert_eq!(model.proprio_latent(), Some(4..12));
    let z = model.encode(&batch(5, 2)).unwrap();
    assert_eq!(z.size(), [5, 12]);
    // u8 images and the same images as floats in [0, 1] encode alike.
    let floats = ObsBatch::single("image", images(5).to_kind(Kind::Float) / 255.0)
        .with(
            "proprio",
            batch(5, 2).field("proprio").unwrap().shallow_clone(),
        )
        .unwrap();
    let z2 = model.encode(&floats).unwrap();
    assert!((z - z2).abs().max().double_value(&[]) < 1e-6);
    let a = Tensor::zeros([5, 3, 2], (Kind::Float, Device::Cpu));
    let zs = model
        .rollout(&model.encode(&batch(5, 2)).unwrap(), &a)
        .unwrap();
    assert_eq!(zs.size(), [5, 3, 12]);

    // Image-only models (two_rooms_pixels) have no proprio latent.
    let model = JepaModel::new(config(0), Device::Cpu).unwrap();
    assert_eq!(model.obs_spec().to_string(), "image [3, 32, 32] u8");
    assert_eq!(model.proprio_latent(), None);
    assert_eq!(model.encode(&batch(2, 0)).unwrap().size(), [2, 12]);
}

#[test]
fn save_and_load_give_identical_outputs_and_construction_is_deterministic() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pix.safetensors");
    let nets = JepaNets::new(config(2), Device::Cpu).unwrap();
    let before = nets
        .encode_images(
            &images(3),
            &Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)),
        )
        .unwrap();
    nets.save(&path).unwrap();
    let loaded = JepaModel::load(&path, Device::Cpu).unwrap();
    let after = loaded.encode(&batch(3, 2)).unwrap();
    let again = JepaModel::new(config(2), Device::Cpu)
        .unwrap()
        .encode(&batch(3, 2))
        .unwrap();
    let bits = |t: &Tensor| {
        Vec::<f32>::try_from(t.reshape([-1]))
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&after), bits(&again), "same seed, same weights");
    let zero_p = ObsBatch::single("image", images(3))
        .with("proprio", Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)))
        .unwrap();
    assert_eq!(bits(&loaded.encode(&zero_p).unwrap()), bits(&before));
    assert_eq!(loaded.config(), config(2));
}

#[test]
fn observations_that_do_not_fit_are_errors() {
    common::init();
    let model = JepaModel::new(config(2), Device::Cpu).unwrap();
    let no_image = ObsBatch::state(Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)));
    let e = model.encode(&no_image).unwrap_err().to_string();
    assert!(e.contains("`image`"), "{e}");
    let wrong = ObsBatch::single(
        "image",
        Tensor::zeros([2, 3, 16, 16], (Kind::Uint8, Device::Cpu)),
    )
    .with("proprio", Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)))
    .unwrap();
    let e = model.encode(&wrong).unwrap_err().to_string();
    assert!(
        e.contains("[2, 3, 16, 16]") && e.contains("[B, 3, 32, 32]"),
        "{e}"
    );
    let no_proprio = ObsBatch::single("image", images(2));
    let e = model.encode(&no_proprio).unwrap_err().to_string();
    assert!(e.contains("`proprio`"), "{e}");
    // Invalid sizes are refused when building.
    let mut bad = config(2);
    bad.image.as_mut().unwrap().widths.clear();
    assert!(JepaNets::new(bad, Device::Cpu)
        .unwrap_err()
        .to_string()
        .contains("widths"));
    let mut bad = config(2);
    bad.proprio_latent_dim = 0;
    assert!(JepaNets::new(bad, Device::Cpu)
        .unwrap_err()
        .to_string()
        .contains("proprio_latent_dim"));
}

/// A keypoint-head model (`ImageHead::Keypoints`): `count` keypoints of image + proprio.
fn keypoint_config(count: i64, proprio: i64) -> JepaConfig {
    let mut c = config(proprio);
    c.latent_dim = 2 * count + c.proprio_latent_dim;
    if let Some(im) = c.image.as_mut() {
        im.widths = vec![8, 16];
        im.head = ImageHead::Keypoints {
            count,
            context: 0,
            moment: 0,
            gain: 1.0,
            radius: 0.0,
            mask: false,
        };
    }
    c
}

#[test]
fn keypoint_heads_write_image_coordinates_and_round_trip() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kp.safetensors");
    let model = JepaModel::new(keypoint_config(3, 2), Device::Cpu).unwrap();
    let z = model.encode(&batch(4, 2)).unwrap();
    // 3 keypoints (6 entries) and the proprio latent (8).
    assert_eq!(z.size(), [4, 14]);
    // The scene latent is 3 (x, y) pairs inside the image, [-1, 1].
    let scene = z.narrow(1, 0, 6);
    assert!(scene.abs().max().double_value(&[]) <= 1.0, "{scene}");
    model.save(&path).unwrap();
    let loaded = JepaModel::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config(), keypoint_config(3, 2));
    let again = loaded.encode(&batch(4, 2)).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(z.reshape([-1])).unwrap(),
        Vec::<f32>::try_from(again.reshape([-1])).unwrap()
    );
    let zs = loaded
        .rollout(
            &again,
            &Tensor::zeros([4, 5, 2], (Kind::Float, Device::Cpu)),
        )
        .unwrap();
    assert_eq!(zs.size(), [4, 5, 14]);

    // The latent size must be what the head writes: named in the error.
    let mut bad = keypoint_config(3, 2);
    bad.latent_dim = 12;
    let err = JepaModel::new(bad, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("latent_dim = 12") && err.contains("writes 6"),
        "{err}"
    );
    let mut bad = keypoint_config(3, 0);
    if let Some(im) = bad.image.as_mut() {
        im.head = ImageHead::Keypoints {
            count: 0,
            context: 0,
            moment: 0,
            gain: 1.0,
            radius: 0.0,
            mask: false,
        };
    }
    let err = JepaModel::new(bad, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("count = 0"), "{err}");
}

#[test]
fn keypoint_context_features_follow_the_coordinates_and_round_trip() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kpc.safetensors");
    let mut config = keypoint_config(2, 2);
    config.latent_dim += 3;
    if let Some(im) = config.image.as_mut() {
        im.head = ImageHead::Keypoints {
            count: 2,
            context: 3,
            moment: 0,
            gain: 1.0,
            radius: 0.0,
            mask: false,
        };
    }
    let model = JepaModel::new(config.clone(), Device::Cpu).unwrap();
    let z = model.encode(&batch(4, 2)).unwrap();
    // 2 keypoints (4 entries), 3 context features, the proprio latent (8).
    assert_eq!(z.size(), [4, 15]);
    assert!(z.narrow(1, 0, 4).abs().max().double_value(&[]) <= 1.0);
    model.save(&path).unwrap();
    let loaded = JepaModel::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.config(), config);
    let again = loaded.encode(&batch(4, 2)).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(z.reshape([-1])).unwrap(),
        Vec::<f32>::try_from(again.reshape([-1])).unwrap()
    );
    // The latent size counts the context features: named in the error.
    let mut bad = config.clone();
    bad.latent_dim -= 3;
    let err = JepaModel::new(bad, Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("context: 3") && err.contains("writes 7"),
        "{err}"
    );
    // Sidecars written before context features existed read as context 0.
    let old: ImageHead = serde_json::from_str(r#"{"Keypoints": {"count": 2}}"#).unwrap();
    assert_eq!(
        old,
        ImageHead::Keypoints {
            count: 2,
            context: 0,
            moment: 0,
            gain: 1.0,
            radius: 0.0,
            mask: false
        }
    );
}
