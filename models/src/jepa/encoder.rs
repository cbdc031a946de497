//! The observation encoder of the native JEPA: one MLP over the whole (normalised)
//! observation, or a scene MLP and a proprio MLP whose latents are concatenated.

use super::config::JepaConfig;
use super::mlp::Mlp;
use crate::error::TchContext;
use crate::Result;
use rand::Rng;
use tch::{nn, Tensor};

/// Encoder of normalised observations `[B, obs_dim]` → latents `[B, latent_dim]`.
///
/// Without proprio fields it is one MLP (variables `encoder.*`). With them
/// ([`JepaConfig::proprio`]) it is two MLPs of the same depth: the scene encoder (`encoder.*`)
/// reads every other field and writes the first `latent_dim - proprio_latent_dim` entries, the
/// proprio encoder (`proprio_encoder.*`) reads the proprio fields and writes the rest.
pub struct ObsEncoder {
    scene: Mlp,
    proprio: Option<ProprioBranch>,
}

struct ProprioBranch {
    mlp: Mlp,
    scene_idx: Tensor,
    proprio_idx: Tensor,
}

impl std::fmt::Debug for ObsEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsEncoder")
            .field("scene", &self.scene)
            .field("proprio", &self.proprio.as_ref().map(|p| &p.mlp))
            .finish()
    }
}

impl ObsEncoder {
    /// Creates the variables under `root` (`encoder`, and `proprio_encoder` with proprio
    /// fields) for a validated `config`, drawing initial weights from `rng`.
    pub(crate) fn new(root: &nn::Path<'_>, c: &JepaConfig, rng: &mut impl Rng) -> Result<Self> {
        let (scene_dims, proprio_dims) = c.encoder_dims();
        let scene = Mlp::new(
            &(root / "encoder"),
            &scene_dims,
            c.activation,
            c.layer_norm,
            rng,
        )?;
        let Some(proprio_dims) = proprio_dims else {
            return Ok(ObsEncoder {
                scene,
                proprio: None,
            });
        };
        let mlp = Mlp::new(
            &(root / "proprio_encoder"),
            &proprio_dims,
            c.activation,
            c.layer_norm,
            rng,
        )?;
        let index = |fields: &[usize]| {
            let v: Vec<i64> = fields.iter().map(|&i| i as i64).collect();
            Tensor::f_from_slice(&v)
                .and_then(|t| t.f_to_device(root.device()))
                .ctx(|| "encoder field indices".into())
        };
        Ok(ObsEncoder {
            scene,
            proprio: Some(ProprioBranch {
                mlp,
                scene_idx: index(&c.scene_fields())?,
                proprio_idx: index(&c.proprio)?,
            }),
        })
    }

    /// Latents of normalised observations `[B, obs_dim]`, in the caller's grad mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some(p) = &self.proprio else {
            return self.scene.forward(x);
        };
        let pick = |idx: &Tensor, what: &str| {
            x.f_index_select(1, idx)
                .ctx(|| format!("encoder: selecting the {what} fields"))
        };
        let zs = self.scene.forward(&pick(&p.scene_idx, "scene")?)?;
        let zp = p.mlp.forward(&pick(&p.proprio_idx, "proprio")?)?;
        Tensor::f_cat(&[zs, zp], 1)
            .ctx(|| "encoder: concatenating scene and proprio latents".into())
    }

    /// Sizes `[in, hidden…, out]` of the scene MLP and, with proprio fields, the proprio MLP.
    pub fn dims(&self) -> (&[i64], Option<&[i64]>) {
        (
            self.scene.dims(),
            self.proprio.as_ref().map(|p| p.mlp.dims()),
        )
    }

    fn map(&self, f: impl Fn(&Mlp) -> Mlp) -> ObsEncoder {
        ObsEncoder {
            scene: f(&self.scene),
            proprio: self.proprio.as_ref().map(|p| ProprioBranch {
                mlp: f(&p.mlp),
                scene_idx: p.scene_idx.shallow_clone(),
                proprio_idx: p.proprio_idx.shallow_clone(),
            }),
        }
    }

    /// A copy sharing storage but cut from autograd (see [`Mlp`]).
    pub(crate) fn detached(&self) -> ObsEncoder {
        self.map(Mlp::detached)
    }

    /// A second handle on the same tensors.
    pub(crate) fn shallow_clone(&self) -> ObsEncoder {
        self.map(Mlp::shallow_clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn proprio_fields_only_reach_the_proprio_latent() {
        let mut c = JepaConfig::new(5, 2);
        c.latent_dim = 6;
        c.enc_layers = 1;
        c.enc_hidden = 8;
        c.proprio = vec![3, 0];
        c.proprio_latent_dim = 2;
        c.validate().unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let enc = ObsEncoder::new(
            &vs.root(),
            &c,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
        assert_eq!(enc.dims().0, &[3, 8, 4]);
        assert_eq!(enc.dims().1, Some(&[2i64, 8, 2][..]));
        let x = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4, 0.5]).view([1, 5]);
        let z = enc.forward(&x).unwrap();
        assert_eq!(z.size(), vec![1, 6]);
        // Changing a proprio field (index 3) moves only the last two entries; changing a
        // scene field (index 1) only the first four.
        use tch::IndexOp;
        let diff = |i: i64| {
            let y = x.copy();
            let _ = y.i((.., i)).fill_(2.0);
            let d = (enc.forward(&y).unwrap() - &z).abs().view([6]);
            Vec::<f32>::try_from(d).unwrap()
        };
        let d = diff(3);
        assert!(
            d[..4].iter().all(|&v| v == 0.0) && d[4..].iter().any(|&v| v > 0.0),
            "{d:?}"
        );
        let d = diff(1);
        assert!(
            d[4..].iter().all(|&v| v == 0.0) && d[..4].iter().any(|&v| v > 0.0),
            "{d:?}"
        );
    }
}
