//! `zplan train --refit-predictor`: the predictor of a trained pixel JEPA retrained on its
//! frozen latents lowers the validation loss, leaves the encoder bit for bit as it was, is
//! deterministic, can change the predictor's size, and refuses models and datasets that do
//! not fit with errors that say why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zplan::collect::collect;

mod common;
use zplan::refit::{refit_predictor, RefitOptions};
use zplan::train::{read_meta, read_metas, TrainConfig, TrainReport};
use zplan::train_pixels::train_pixels;
use zplan_sim::ScenarioConfig;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(dir: &Path, name: &str, episodes: u64) {
    let cfg = common::random_collect(episodes, 16, 5, Some(8));
    let scenario = ScenarioConfig::load(&root().join("scenarios").join(name)).unwrap();
    collect(&scenario, &cfg, dir, false).unwrap();
}

fn tiny(steps: usize) -> TrainConfig {
    TrainConfig {
        hidden: 32,
        layers: 1,
        rollout_steps: 3,
        batch: 16,
        steps,
        eval_every: 40,
        conv_widths: vec![8, 16],
        keypoints: 2,
        keypoint_std: 0.1,
        enc_layers: 0,
        proprio_latent_dim: 2,
        ..TrainConfig::default()
    }
}

fn opts(base: &Path) -> RefitOptions {
    RefitOptions {
        base: base.to_path_buf(),
        priority: 2.0,
        refresh: 50,
        hidden: None,
        layers: None,
        normalize: false,
        standardize: false,
        frameskip: None,
    }
}

/// The refit lowered the validation loss.
fn assert_learned(r: &TrainReport) {
    assert!(
        r.best_val_loss < r.initial_val_loss,
        "validation loss {} -> {}",
        r.initial_val_loss,
        r.best_val_loss
    );
}

fn tensors(path: &Path) -> BTreeMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn refitting_the_predictor_keeps_the_encoder_and_lowers_the_loss() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    data(&d, "push_pixels.ron", 24);
    let meta = read_meta(&d).unwrap();
    let base = tmp.path().join("base.safetensors");
    train_pixels(&d, &meta, &tiny(80), &base, tch::Device::Cpu, false).unwrap();

    let out = tmp.path().join("refit.safetensors");
    let r = refit_predictor(
        &d,
        &meta,
        &tiny(300),
        &opts(&base),
        &out,
        tch::Device::Cpu,
        false,
    )
    .unwrap();
    assert_learned(&r);
    let (a, b) = (tensors(&base), tensors(&out));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same architecture"
    );
    let mut predictor_moved = false;
    for (name, t) in &a {
        let same = t.equal(&b[name]);
        if name.starts_with("predictor.") {
            predictor_moved |= !same;
        } else {
            assert!(same, "`{name}` changed: the encoder must stay frozen");
        }
    }
    assert!(predictor_moved, "the predictor was not trained");
    // The report and sidecar say what the model was refit from.
    let sidecar = std::fs::read_to_string(out.with_extension("json")).unwrap();
    assert!(sidecar.contains("refit_predictor_of"), "{sidecar}");
    // It loads as a model of its scenario.
    zplan_models::load_model(
        &zplan_models::ModelSpec::Jepa(out.to_string_lossy().into_owned()),
        &ScenarioConfig::load(&root().join("scenarios/push_pixels.ron")).unwrap(),
        zplan_models::DeviceChoice::Cpu,
    )
    .unwrap();

    // Same seed, same weights.
    let again = tmp.path().join("again.safetensors");
    refit_predictor(
        &d,
        &meta,
        &tiny(300),
        &opts(&base),
        &again,
        tch::Device::Cpu,
        false,
    )
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());

    // A new predictor size starts a fresh predictor beside the same encoder.
    let wide = tmp.path().join("wide.safetensors");
    let mut o = opts(&base);
    o.hidden = Some(48);
    refit_predictor(&d, &meta, &tiny(60), &o, &wide, tch::Device::Cpu, false).unwrap();
    let w = tensors(&wide);
    let shapes = |m: &BTreeMap<String, tch::Tensor>| -> Vec<Vec<i64>> {
        m.iter()
            .filter(|(n, _)| n.starts_with("predictor."))
            .map(|(_, t)| t.size())
            .collect()
    };
    assert!(
        shapes(&w).iter().any(|s| s.contains(&48)),
        "{:?}",
        shapes(&w)
    );
    for (name, t) in &a {
        if !name.starts_with("predictor.") {
            assert!(t.equal(&w[name]), "`{name}` changed with a new predictor");
        }
    }

    // The loss in standardised latent units: another objective (another loss scale, other
    // weights), recorded in the report; still learns.
    let norm = tmp.path().join("norm.safetensors");
    let mut o = opts(&base);
    o.normalize = true;
    let n = refit_predictor(&d, &meta, &tiny(300), &o, &norm, tch::Device::Cpu, false).unwrap();
    assert_learned(&n);
    assert!(
        (n.initial_val_loss - r.initial_val_loss).abs() > 1e-3 * r.initial_val_loss,
        "normalised loss {} equals the raw one {}",
        n.initial_val_loss,
        r.initial_val_loss
    );
    let sidecar = std::fs::read_to_string(norm.with_extension("json")).unwrap();
    assert!(sidecar.contains("\"normalize\": true"), "{sidecar}");
    assert!(!tensors(&norm)["predictor.l0.weight"].equal(&b["predictor.l0.weight"]));

    // Standardised training (`--standardize-predictor`): at the start the same loss as the
    // normalised one (the same predictor, re-expressed in unit-scale latents), and it learns.
    let stdz = tmp.path().join("std.safetensors");
    let mut o = opts(&base);
    o.standardize = true;
    let s = refit_predictor(&d, &meta, &tiny(300), &o, &stdz, tch::Device::Cpu, false).unwrap();
    approx::assert_relative_eq!(s.initial_val_loss, n.initial_val_loss, max_relative = 1e-3);
    assert_learned(&s);
    let sidecar = std::fs::read_to_string(stdz.with_extension("json")).unwrap();
    assert!(sidecar.contains("\"standardize\": true"), "{sidecar}");
    // The saved weights are in raw units: a normalised refit starting from them sees the
    // standardised run's best validation loss as its initial one.
    let mut o = opts(&stdz);
    o.normalize = true;
    let again = tmp.path().join("again.safetensors");
    let g = refit_predictor(&d, &meta, &tiny(1), &o, &again, tch::Device::Cpu, false).unwrap();
    approx::assert_relative_eq!(g.initial_val_loss, s.best_val_loss, max_relative = 1e-3);

    // A predictor of two control steps per step (`--frameskip 2`): it learns on the episodes'
    // two phases, records its frameskip in the config and the dataset record, and loads as a
    // model whose rollouts keep one latent per control step.
    let fs2 = tmp.path().join("fs2.safetensors");
    let mut o = opts(&base);
    o.frameskip = Some(2);
    let f = refit_predictor(&d, &meta, &tiny(300), &o, &fs2, tch::Device::Cpu, false).unwrap();
    assert_learned(&f);
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fs2.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["config"]["frameskip"], 2, "{sidecar}");
    assert_eq!(sidecar["training"]["dataset"]["frameskip"], 2, "{sidecar}");
    assert_eq!(sidecar["training"]["dataset"]["episodes"], meta.episodes);
    let model = zplan_models::JepaModel::load(&fs2, tch::Device::Cpu).unwrap();
    let z0 = tch::Tensor::zeros(
        [3, model.config().latent_dim],
        (tch::Kind::Float, tch::Device::Cpu),
    );
    let actions = tch::Tensor::ones([3, 5, 2], (tch::Kind::Float, tch::Device::Cpu)) * 0.5;
    let zs = zplan_models::WorldModel::rollout(&model, &z0, &actions).unwrap();
    assert_eq!(zs.size(), [3, 5, model.config().latent_dim]);
    // Too few predictor steps per episode for the rollout loss, and a zero frameskip.
    for (k, want) in [(8, "--rollout-steps"), (0, "between 1 and 64")] {
        let mut o = opts(&base);
        o.frameskip = Some(k);
        let out = tmp.path().join("bad_fs.safetensors");
        let e = format!(
            "{:#}",
            refit_predictor(&d, &meta, &tiny(10), &o, &out, tch::Device::Cpu, false).unwrap_err()
        );
        assert!(e.contains("--frameskip") && e.contains(want), "{e}");
    }

    // Errors name what does not fit.
    let err = |base: PathBuf, data: &Path| -> String {
        let meta = read_meta(data).unwrap();
        let out = tmp.path().join("bad.safetensors");
        format!(
            "{:#}",
            refit_predictor(
                data,
                &meta,
                &tiny(10),
                &opts(&base),
                &out,
                tch::Device::Cpu,
                false
            )
            .unwrap_err()
        )
    };
    let state_model = root().join("models/trained/two_rooms.safetensors");
    let e = err(state_model, &d);
    assert!(e.contains("not a pixel JEPA"), "{e}");
    let other = tmp.path().join("other");
    data(&other, "two_rooms_pixels.ron", 4);
    let e = err(base.clone(), &other);
    assert!(
        e.contains("proprio") && e.contains("base.safetensors"),
        "{e}"
    );
    let e = err(tmp.path().join("missing.safetensors"), &d);
    assert!(e.contains("missing"), "{e}");
    let mut o = opts(&base);
    o.priority = f64::NAN;
    let e = format!(
        "{:#}",
        refit_predictor(&d, &meta, &tiny(10), &o, &out, tch::Device::Cpu, false).unwrap_err()
    );
    assert!(e.contains("--priority"), "{e}");

    // Several datasets of one scenario read as one (`--data A --data B`): the episodes of
    // both, chunk files by full path, planner-driven episodes renumbered; the refit trains on
    // all of them. Datasets of another scenario are refused, naming both directories.
    let more = tmp.path().join("more");
    data(&more, "push_pixels.ron", 8);
    let both = read_metas(&[d.clone(), more.clone()]).unwrap();
    assert_eq!(both.episodes, meta.episodes + 8);
    assert_eq!(both.chunks.len(), meta.chunks.len() + 1);
    assert_eq!(both.chunks.last().unwrap().first_episode, meta.episodes);
    assert!(Path::new(&both.chunks[0].file).is_absolute());
    let r2 = refit_predictor(
        &d,
        &both,
        &tiny(20),
        &opts(&base),
        &tmp.path().join("both.safetensors"),
        tch::Device::Cpu,
        false,
    )
    .unwrap();
    assert!(r2.best_val_loss.is_finite());
    // The sidecar names both datasets with their episodes and collection settings.
    assert_eq!(
        both.sources.iter().map(|s| s.episodes).collect::<Vec<_>>(),
        [meta.episodes, 8]
    );
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("both.json")).unwrap())
            .unwrap();
    let sources = &sidecar["training"]["dataset"]["datasets"];
    assert_eq!(sources.as_array().map(Vec::len), Some(2), "{sidecar}");
    assert_eq!(sources[1]["dir"], more.display().to_string());
    assert_eq!(sources[1]["episodes"], 8);
    assert!(read_metas(std::slice::from_ref(&d))
        .unwrap()
        .sources
        .is_empty());
    let e = format!("{:#}", read_metas(&[d.clone(), other.clone()]).unwrap_err());
    assert!(e.contains("differ") && e.contains("other"), "{e}");
    assert_eq!(
        read_metas(std::slice::from_ref(&d)).unwrap().chunks,
        meta.chunks
    );
}
