//! The observation encoder of the native JEPA: one MLP over the whole (normalised)
//! observation, or a scene MLP and a proprio MLP whose latents are concatenated.

use super::config::JepaConfig;
use super::image::ConvNet;
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
///
/// A pixel model ([`JepaConfig::image`]) encodes the image with a CNN (`image_encoder.*`)
/// into the scene latent and its vector input (the proprio field) with the proprio MLP.
pub struct ObsEncoder {
    scene: Mlp,
    proprio: Option<ProprioBranch>,
    image: Option<ConvNet>,
}

struct ProprioBranch {
    mlp: Mlp,
    /// Scene and proprio field indices of a state model (a pixel model's vector input is
    /// all proprio).
    idx: Option<(Tensor, Tensor)>,
}

impl std::fmt::Debug for ObsEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsEncoder")
            .field("scene", &self.scene)
            .field("proprio", &self.proprio.as_ref().map(|p| &p.mlp))
            .field("image", &self.image)
            .finish()
    }
}

impl ObsEncoder {
    /// Creates the variables under `root` (`encoder`, and `proprio_encoder` with proprio
    /// fields) for a validated `config`, drawing initial weights from `rng`.
    pub(crate) fn new(root: &nn::Path<'_>, c: &JepaConfig, rng: &mut impl Rng) -> Result<Self> {
        if let Some(im) = &c.image {
            let image = ConvNet::new(
                &(root / "image_encoder"),
                im,
                c.latent_dim - c.proprio_latent_dim,
                rng,
            )?;
            let proprio = match c.encoder_dims().1 {
                Some(dims) => Some(ProprioBranch {
                    mlp: Mlp::new(
                        &(root / "proprio_encoder"),
                        &dims,
                        c.activation,
                        c.layer_norm,
                        rng,
                    )?,
                    idx: None,
                }),
                None => None,
            };
            // The scene MLP is unused by pixel models; an identity-sized placeholder is not
            // created (no variables), so `scene` is the CNN's output layer in all but name.
            return Ok(ObsEncoder {
                scene: Mlp::empty(),
                proprio,
                image: Some(image),
            });
        }
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
                image: None,
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
                idx: Some((index(&c.scene_fields())?, index(&c.proprio)?)),
            }),
            image: None,
        })
    }

    /// Latents of normalised observations `[B, obs_dim]`, in the caller's grad mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.image.is_some() {
            return Err(crate::ModelError::InvalidConfig(
                "a pixel JEPA encodes images: use forward_image".into(),
            ));
        }
        let Some(p) = &self.proprio else {
            return self.scene.forward(x);
        };
        let Some((scene_idx, proprio_idx)) = &p.idx else {
            return p.mlp.forward(x);
        };
        let pick = |idx: &Tensor, what: &str| {
            x.f_index_select(1, idx)
                .ctx(|| format!("encoder: selecting the {what} fields"))
        };
        let zs = self.scene.forward(&pick(scene_idx, "scene")?)?;
        let zp = p.mlp.forward(&pick(proprio_idx, "proprio")?)?;
        Tensor::f_cat(&[zs, zp], 1)
            .ctx(|| "encoder: concatenating scene and proprio latents".into())
    }

    /// Latents of a pixel model: images `[B, C, H, W]` (float in `[0, 1]`) through the CNN,
    /// and the normalised proprio vectors `x [B, P]` through the proprio MLP (ignored when
    /// the model has no proprio input), in the caller's grad mode.
    pub fn forward_image(&self, image: &Tensor, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_image_parts(image, x)?.0)
    }

    /// As [`forward_image`](Self::forward_image), with the keypoint maps' spreads of a
    /// keypoint head ([`ConvNet::forward_parts`]).
    pub fn forward_image_parts(
        &self,
        image: &Tensor,
        x: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let Some(conv) = &self.image else {
            return Err(crate::ModelError::InvalidConfig(
                "a state JEPA has no image encoder: use forward".into(),
            ));
        };
        let (zs, spread) = conv.forward_parts(image)?;
        match &self.proprio {
            None => Ok((zs, spread)),
            Some(p) => {
                let zp = p.mlp.forward(x)?;
                let z = Tensor::f_cat(&[zs, zp], 1)
                    .ctx(|| "encoder: concatenating image and proprio latents".into())?;
                Ok((z, spread))
            }
        }
    }

    /// The image encoder of a pixel model (to set its input normalisation).
    pub fn image_mut(&mut self) -> Option<&mut ConvNet> {
        self.image.as_mut()
    }

    /// Sizes `[in, hidden…, out]` of the scene MLP and, with proprio fields, the proprio MLP.
    pub fn dims(&self) -> (&[i64], Option<&[i64]>) {
        (
            self.scene.dims(),
            self.proprio.as_ref().map(|p| p.mlp.dims()),
        )
    }

    fn map(&self, f: impl Fn(&Mlp) -> Mlp, g: impl Fn(&ConvNet) -> ConvNet) -> ObsEncoder {
        ObsEncoder {
            scene: f(&self.scene),
            proprio: self.proprio.as_ref().map(|p| ProprioBranch {
                mlp: f(&p.mlp),
                idx: p
                    .idx
                    .as_ref()
                    .map(|(a, b)| (a.shallow_clone(), b.shallow_clone())),
            }),
            image: self.image.as_ref().map(g),
        }
    }

    /// A copy with every weight converted to `kind` (field indices stay integers).
    pub(crate) fn to_kind(&self, kind: tch::Kind) -> Result<ObsEncoder> {
        Ok(ObsEncoder {
            scene: self.scene.to_kind(kind)?,
            proprio: match &self.proprio {
                Some(p) => Some(ProprioBranch {
                    mlp: p.mlp.to_kind(kind)?,
                    idx: p
                        .idx
                        .as_ref()
                        .map(|(a, b)| (a.shallow_clone(), b.shallow_clone())),
                }),
                None => None,
            },
            image: self.image.as_ref().map(|c| c.to_kind(kind)).transpose()?,
        })
    }

    /// A copy sharing storage but cut from autograd (see [`Mlp`]).
    pub(crate) fn detached(&self) -> ObsEncoder {
        self.map(Mlp::detached, ConvNet::detached)
    }

    /// A second handle on the same tensors.
    pub(crate) fn shallow_clone(&self) -> ObsEncoder {
        self.map(Mlp::shallow_clone, ConvNet::shallow_clone)
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
