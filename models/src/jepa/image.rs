//! The convolutional image encoder of pixel JEPA models.

use crate::error::TchContext;
use crate::util::fmt_shape;
use crate::{ModelError, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Sizes of the image encoder (stored in the sidecar as `JepaConfig.image`).
///
/// Images arrive as float32 `[B, C, H, W]` in `[0, 1]` (the u8 camera image scaled on the
/// model's device) and are first normalised per pixel with statistics of the training data
/// (`(x - mean) / std`, std floored; stored with the weights as non-trainable variables): a
/// scene whose background never changes then shows the moving bodies at full contrast. Then
/// a stack of 3 × 3 convolutions of stride 2 (padding 1) with ReLU, one per entry of
/// `widths`, each halving the image (rounding up). The [`ImageHead`] turns the last feature
/// map into the scene latent: flattened, mapped linearly and layer-normalised (`Linear`), or
/// spatial soft-argmax keypoints (`Keypoints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEncoderConfig {
    /// Image channels `C` (3 × frame history).
    pub channels: i64,
    /// Image height in pixels.
    pub height: i64,
    /// Image width in pixels.
    pub width: i64,
    /// Output channels of each stride-2 convolution.
    pub widths: Vec<i64>,
    /// Layer normalisation of the scene latent (default true). Small latents (a few entries,
    /// where per-sample normalisation would leave little of them) train without it.
    #[serde(default = "yes")]
    pub layer_norm: bool,
    /// How the last feature map becomes the scene latent (default `Linear`).
    #[serde(default)]
    pub head: ImageHead,
}

/// How the image encoder's last feature map becomes the scene latent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageHead {
    /// Flatten, a linear map to the scene latent, then layer normalisation when
    /// [`ImageEncoderConfig::layer_norm`] is set.
    #[default]
    Linear,
    /// Spatial soft-argmax keypoints (deep spatial autoencoders, Finn et al. 2016): a 1 × 1
    /// convolution to `count` maps, a softmax over the positions of each map, and the expected
    /// image coordinates `(x, y)` in `[-1, 1]` (x right, y down) of each; the scene latent is
    /// `[x_0, y_0, x_1, y_1, ...]`, `2 × count` entries. Latent distance is then distance in
    /// the image between where the keypoints sit, so it grows smoothly and monotonically as a
    /// tracked body moves away: the landscape an L2 planning energy needs. `layer_norm` is
    /// ignored.
    ///
    /// With `context > 0` the scene latent also holds `context` linear features of the whole
    /// feature map after the coordinates (`2 × count + context` entries): room for what is not
    /// a point, such as where a door is, which the keypoints then need not track.
    Keypoints {
        /// Number of keypoints.
        count: i64,
        /// Linear context features after the keypoints (default 0).
        #[serde(default, skip_serializing_if = "is_zero")]
        context: i64,
    },
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl ImageHead {
    /// The scene latent size the head writes, when fixed by the head (`Keypoints`: `2 × count`).
    pub fn latent(&self) -> Option<i64> {
        match self {
            ImageHead::Linear => None,
            ImageHead::Keypoints { count, context } => Some(2 * count + context),
        }
    }
}

fn yes() -> bool {
    true
}

impl ImageEncoderConfig {
    /// A `channels × height × width` encoder with convolutions of 16, 32 and 32 channels.
    pub fn new(channels: i64, height: i64, width: i64) -> Self {
        ImageEncoderConfig {
            channels,
            height,
            width,
            widths: vec![16, 32, 32],
            layer_norm: true,
            head: ImageHead::Linear,
        }
    }

    /// `(channels, height, width)` of the last feature map.
    pub fn feature_shape(&self) -> (i64, i64, i64) {
        let (mut h, mut w) = (self.height, self.width);
        for _ in &self.widths {
            h = (h + 1) / 2;
            w = (w + 1) / 2;
        }
        (self.widths.last().copied().unwrap_or(self.channels), h, w)
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the size.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(format!("JepaConfig.image.{m}")));
        for (name, v, max) in [
            ("channels", self.channels, 3 * 16),
            ("height", self.height, 512),
            ("width", self.width, 512),
        ] {
            if !(1..=max).contains(&v) {
                return bad(format!("{name} = {v} must be in 1..={max}"));
            }
        }
        if self.widths.is_empty() || self.widths.len() > 8 {
            return bad(format!(
                "widths has {} convolutions, expected 1..=8",
                self.widths.len()
            ));
        }
        if let Some(w) = self.widths.iter().find(|&&w| !(1..=1024).contains(&w)) {
            return bad(format!("widths entry {w} must be in 1..=1024"));
        }
        if let ImageHead::Keypoints { count, context } = self.head {
            if !(1..=256).contains(&count) {
                return bad(format!("head Keypoints count = {count} must be in 1..=256"));
            }
            if !(0..=1024).contains(&context) {
                return bad(format!(
                    "head Keypoints context = {context} must be in 0..=1024"
                ));
            }
        }
        Ok(())
    }

    /// Multiply-accumulates of one image through the convolutions (for FLOP counts).
    pub fn macs(&self) -> i64 {
        let (mut c, mut h, mut w) = (self.channels, self.height, self.width);
        let mut macs = 0;
        for &o in &self.widths {
            h = (h + 1) / 2;
            w = (w + 1) / 2;
            macs += o * h * w * c * 9;
            c = o;
        }
        if let ImageHead::Keypoints { count, context } = self.head {
            macs += (count + context) * h * w * c;
        }
        macs
    }
}

/// The image encoder's variables: `<path>.mean` and `<path>.inv_std` (per-pixel input
/// normalisation, not trained), `<path>.c<i>.{weight,bias}` per convolution,
/// then the head's: `<path>.out.{weight,bias}` and `<path>.norm.{weight,bias}` (`Linear`) or
/// `<path>.kp.{weight,bias}` (`Keypoints`, the 1 × 1 convolution) and, with context features,
/// `<path>.ctx.{weight,bias}`.
pub struct ConvNet {
    mean: Tensor,
    inv_std: Tensor,
    convs: Vec<(Tensor, Tensor)>,
    head: Head,
    config: ImageEncoderConfig,
    latent: i64,
}

/// The head's variables.
enum Head {
    Linear {
        out: (Tensor, Tensor),
        norm: (Tensor, Tensor),
    },
    Keypoints {
        kp: (Tensor, Tensor),
        ctx: Option<(Tensor, Tensor)>,
    },
}

impl std::fmt::Debug for ConvNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvNet")
            .field("config", &self.config)
            .field("latent", &self.latent)
            .finish()
    }
}

/// Uniform `±1/sqrt(fan_in)` values drawn from `rng` (PyTorch's default init range).
fn draw(rng: &mut impl Rng, count: i64, fan_in: i64) -> Vec<f32> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    (0..count)
        .map(|_| rng.random_range(-bound..bound))
        .collect()
}

/// The `weight` (of `shape`, drawn first) and `bias` (`shape[0]` entries) variables of a
/// layer with `fan_in` inputs under `path`, drawn from `rng`.
fn layer(
    path: &nn::Path<'_>,
    rng: &mut impl Rng,
    shape: &[i64],
    fan_in: i64,
) -> Result<(Tensor, Tensor)> {
    let what = || "creating the image encoder".to_string();
    let out = shape.first().copied().unwrap_or(0);
    let w = Tensor::f_from_slice(&draw(rng, shape.iter().product(), fan_in))
        .and_then(|t| t.f_reshape(shape))
        .ctx(what)?;
    let b = Tensor::f_from_slice(&draw(rng, out, fan_in)).ctx(what)?;
    Ok((
        path.f_var_copy("weight", &w).ctx(what)?,
        path.f_var_copy("bias", &b).ctx(what)?,
    ))
}

impl ConvNet {
    /// Creates the variables under `path` for a validated `config`, mapping to `latent`
    /// entries; weights are drawn from `rng`.
    pub(crate) fn new(
        path: &nn::Path<'_>,
        config: &ImageEncoderConfig,
        latent: i64,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        config.validate()?;
        if latent < 1 {
            return Err(ModelError::InvalidConfig(format!(
                "the image encoder needs a positive latent size, got {latent}"
            )));
        }
        let what = || "creating the image encoder".to_string();
        let shape = [config.channels, config.height, config.width];
        let mean = path.f_zeros_no_train("mean", &shape).ctx(what)?;
        let inv_std = path.f_ones_no_train("inv_std", &shape).ctx(what)?;
        let mut convs = Vec::with_capacity(config.widths.len());
        let mut c = config.channels;
        for (i, &o) in config.widths.iter().enumerate() {
            let fan_in = c * 9;
            let w = Tensor::f_from_slice(&draw(rng, o * fan_in, fan_in))
                .and_then(|t| t.f_reshape([o, c, 3, 3]))
                .ctx(what)?;
            let b = Tensor::f_from_slice(&draw(rng, o, fan_in)).ctx(what)?;
            let p = path / format!("c{i}");
            convs.push((
                p.f_var_copy("weight", &w).ctx(what)?,
                p.f_var_copy("bias", &b).ctx(what)?,
            ));
            c = o;
        }
        let (fc, fh, fw) = config.feature_shape();
        let head = match config.head {
            ImageHead::Linear => {
                let flat = fc * fh * fw;
                let out = layer(&(path / "out"), rng, &[latent, flat], flat)?;
                let np = path / "norm";
                let norm = (
                    np.f_ones("weight", &[latent]).ctx(what)?,
                    np.f_zeros("bias", &[latent]).ctx(what)?,
                );
                Head::Linear { out, norm }
            }
            ImageHead::Keypoints { count, context } => {
                if latent != 2 * count + context {
                    return Err(ModelError::InvalidConfig(format!(
                        "the image encoder's Keypoints head (count {count}, context {context}) \
                         writes {} scene latent entries, but the scene latent has {latent}",
                        2 * count + context
                    )));
                }
                let kp = layer(&(path / "kp"), rng, &[count, fc, 1, 1], fc)?;
                let ctx = if context > 0 {
                    let flat = fc * fh * fw;
                    Some(layer(&(path / "ctx"), rng, &[context, flat], flat)?)
                } else {
                    None
                };
                Head::Keypoints { kp, ctx }
            }
        };
        Ok(ConvNet {
            mean,
            inv_std,
            convs,
            head,
            config: config.clone(),
            latent,
        })
    }

    /// Latents `[B, latent]` of images `[B, C, H, W]` (float, in `[0, 1]`), in the caller's
    /// grad mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let size = x.size();
        if size.len() != 4 || size[1..] != [c.channels, c.height, c.width] {
            return Err(ModelError::ShapeMismatch {
                model: "jepa".into(),
                method: "encode",
                what: "input `image`".into(),
                expected: format!("[B, {}, {}, {}]", c.channels, c.height, c.width),
                actual: fmt_shape(&size),
            });
        }
        let what = || format!("image encoder on {}", fmt_shape(&size));
        let mut h = x
            .f_sub(&self.mean)
            .and_then(|t| t.f_mul(&self.inv_std))
            .ctx(what)?;
        for (w, b) in &self.convs {
            h = h
                .f_conv2d(w, Some(b), [2, 2], [1, 1], [1, 1], 1)
                .and_then(|t| t.f_relu())
                .ctx(what)?;
        }
        match &self.head {
            Head::Linear { out, norm } => {
                let z = h
                    .f_flatten(1, -1)
                    .and_then(|t| t.f_linear(&out.0, Some(&out.1)))
                    .ctx(what)?;
                if !self.config.layer_norm {
                    return Ok(z);
                }
                z.f_layer_norm([self.latent], Some(&norm.0), Some(&norm.1), 1e-5, false)
                    .ctx(what)
            }
            Head::Keypoints { kp, ctx: None } => soft_argmax(&h, kp).ctx(what),
            Head::Keypoints { kp, ctx: Some(ctx) } => {
                let points = soft_argmax(&h, kp).ctx(what)?;
                let features = h
                    .f_flatten(1, -1)
                    .and_then(|t| t.f_linear(&ctx.0, Some(&ctx.1)))
                    .ctx(what)?;
                Tensor::f_cat(&[points, features], 1).ctx(what)
            }
        }
    }

    fn try_map<E>(
        &self,
        f: impl Fn(&Tensor) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<ConvNet, E> {
        let pair = |p: &(Tensor, Tensor)| -> std::result::Result<(Tensor, Tensor), E> {
            Ok((f(&p.0)?, f(&p.1)?))
        };
        Ok(ConvNet {
            mean: f(&self.mean)?,
            inv_std: f(&self.inv_std)?,
            convs: self
                .convs
                .iter()
                .map(pair)
                .collect::<std::result::Result<Vec<_>, E>>()?,
            head: match &self.head {
                Head::Linear { out, norm } => Head::Linear {
                    out: pair(out)?,
                    norm: pair(norm)?,
                },
                Head::Keypoints { kp, ctx } => Head::Keypoints {
                    kp: pair(kp)?,
                    ctx: ctx.as_ref().map(pair).transpose()?,
                },
            },
            config: self.config.clone(),
            latent: self.latent,
        })
    }

    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> ConvNet {
        match self.try_map(|t| Ok::<_, std::convert::Infallible>(f(t))) {
            Ok(net) => net,
            Err(never) => match never {},
        }
    }

    /// Sets the per-pixel input normalisation from images `[N, C, H, W]` in `[0, 1]`: their
    /// mean, and `1 / max(std, min_std)`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for images of another shape, none, or non-finite values.
    pub fn set_norm_from(&mut self, images: &Tensor, min_std: f64) -> Result<()> {
        let c = &self.config;
        let size = images.size();
        if size.len() != 4 || size[0] < 1 || size[1..] != [c.channels, c.height, c.width] {
            return Err(ModelError::InvalidConfig(format!(
                "image statistics need images [N >= 1, {}, {}, {}], got {}",
                c.channels,
                c.height,
                c.width,
                fmt_shape(&size)
            )));
        }
        let _g = tch::no_grad_guard();
        let what = || "image statistics".to_string();
        let x = images
            .f_to_device(self.mean.device())
            .and_then(|t| t.f_to_kind(Kind::Float))
            .ctx(what)?;
        let mean = x.f_mean_dim(0, false, Kind::Float).ctx(what)?;
        let std = x
            .f_std_dim(0, false, false)
            .and_then(|s| s.f_clamp_min(min_std))
            .ctx(what)?;
        if !crate::util::all_finite(&mean)? || !crate::util::all_finite(&std)? {
            return Err(ModelError::InvalidConfig(
                "image statistics are not finite".into(),
            ));
        }
        self.mean.f_copy_(&mean).ctx(what)?;
        self.inv_std
            .f_copy_(&std.f_reciprocal().ctx(what)?)
            .ctx(what)?;
        Ok(())
    }

    /// A copy with every tensor (weights and input normalisation) converted to `kind`.
    pub(crate) fn to_kind(&self, kind: Kind) -> Result<ConvNet> {
        self.try_map(|t| crate::util::to_kind(t, kind))
    }

    /// A copy sharing storage but cut from autograd.
    pub(crate) fn detached(&self) -> ConvNet {
        self.map(Tensor::detach)
    }

    /// A second handle on the same tensors.
    pub(crate) fn shallow_clone(&self) -> ConvNet {
        self.map(Tensor::shallow_clone)
    }
}

/// Spatial soft-argmax of feature maps `h` `[B, C, H, W]`: a 1 × 1 convolution `kp` to `K`
/// maps, a softmax over the `H × W` positions of each, and the expected `(x, y)` in `[-1, 1]`
/// of each map, interleaved as `[B, 2K]`.
fn soft_argmax(h: &Tensor, kp: &(Tensor, Tensor)) -> std::result::Result<Tensor, tch::TchError> {
    let size = h.size();
    let (b, hh, ww) = (size[0], size[2], size[3]);
    let maps = h.f_conv2d(&kp.0, Some(&kp.1), [1, 1], [0, 0], [1, 1], 1)?;
    let k = maps.size()[1];
    let p = maps
        .f_reshape([b, k, hh * ww])?
        .f_softmax(-1, maps.kind())?
        .f_reshape([b, k, hh, ww])?;
    let opts = (maps.kind(), maps.device());
    // Cell centres in [-1, 1].
    let xs = Tensor::f_linspace(-1.0 + 1.0 / ww as f64, 1.0 - 1.0 / ww as f64, ww, opts)?;
    let ys = Tensor::f_linspace(-1.0 + 1.0 / hh as f64, 1.0 - 1.0 / hh as f64, hh, opts)?;
    let x = p
        .f_sum_dim_intlist(2, false, maps.kind())?
        .f_mul(&xs)?
        .f_sum_dim_intlist(-1, false, maps.kind())?;
    let y = p
        .f_sum_dim_intlist(3, false, maps.kind())?
        .f_mul(&ys)?
        .f_sum_dim_intlist(-1, false, maps.kind())?;
    Tensor::f_stack(&[x, y], 2)?.f_reshape([b, 2 * k])
}

/// u8 or float images `[B, C, H, W]` as float32 in `[0, 1]` on `device`.
pub(crate) fn image_float(x: &Tensor, device: tch::Device) -> Result<Tensor> {
    let on = x.f_to_device(device).ctx(|| "moving images".into())?;
    if on.kind() == Kind::Uint8 {
        on.f_to_kind(Kind::Float)
            .and_then(|t| t.f_div_scalar(255.0))
            .ctx(|| "scaling images to [0, 1]".into())
    } else {
        on.f_to_kind(Kind::Float).ctx(|| "images to float32".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use tch::Device;

    #[test]
    fn soft_argmax_finds_the_peak_at_its_cell_centre() {
        // One 8 x 4 (H x W) feature channel with a sharp peak at row 5, column 1; a 1 x 1
        // convolution with a large weight makes the softmax nearly one-hot.
        let mut h = vec![0.0f32; 8 * 4];
        h[5 * 4 + 1] = 1.0;
        let h = Tensor::from_slice(&h).reshape([1, 1, 8, 4]);
        let kp = (
            Tensor::from_slice(&[200.0f32]).reshape([1, 1, 1, 1]),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let z = Vec::<f32>::try_from(soft_argmax(&h, &kp).unwrap().reshape([-1])).unwrap();
        // Column 1 of 4: centre x = -1 + (2 * 1 + 1) / 4; row 5 of 8: y = -1 + 11 / 8.
        assert_abs_diff_eq!(z[0], -0.25, epsilon = 1e-4);
        assert_abs_diff_eq!(z[1], 0.375, epsilon = 1e-4);
        // A flat map sits in the middle.
        let flat = Tensor::zeros([2, 1, 8, 4], (Kind::Float, Device::Cpu));
        let z = soft_argmax(&flat, &kp).unwrap();
        assert_eq!(z.size(), [2, 2]);
        assert!(z.abs().max().double_value(&[]) < 1e-6);
    }
}
