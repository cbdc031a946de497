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
/// a stack of 3 × 3 convolutions (padding 1) with ReLU, one per entry of `widths`, of stride
/// 2 (each halving the image, rounding up) unless `strides` says 1 (full resolution). The [`ImageHead`] turns the last feature
/// map into the scene latent: flattened, mapped linearly and layer-normalised (`Linear`), or
/// spatial soft-argmax keypoints (`Keypoints`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEncoderConfig {
    /// Image channels `C` (3 × frame history).
    pub channels: i64,
    /// Image height in pixels.
    pub height: i64,
    /// Image width in pixels.
    pub width: i64,
    /// Output channels of each convolution.
    pub widths: Vec<i64>,
    /// Stride (1 or 2) of each convolution, one per entry of `widths`; empty (the default)
    /// means 2 for every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strides: Vec<i64>,
    /// Layer normalisation of the scene latent (default true). Small latents (a few entries,
    /// where per-sample normalisation would leave little of them) train without it.
    #[serde(default = "yes")]
    pub layer_norm: bool,
    /// How the last feature map becomes the scene latent (default `Linear`).
    #[serde(default)]
    pub head: ImageHead,
}

/// How the image encoder's last feature map becomes the scene latent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
    /// With `moment = n > 0` each keypoint also writes the orientation of its attention map:
    /// the normalised complex moment `E[dz^n] / E[|dz|^n]` (real, imaginary; at most 1 in
    /// modulus, -0.43 for a square at yaw 0 with `n = 4`) of the
    /// offsets `dz = (x - x̄) + i (y - ȳ)` from the keypoint, under the softmax. When the map
    /// covers a body's silhouette this is a function of the body's yaw with period `2π / n`
    /// (`n = 4` for a square, whose image repeats every quarter turn; `n = 2` for an elongated
    /// body) that a point keypoint cannot hold: the body's yaw as smooth latent entries. The
    /// moments follow all the coordinates: `[x_0, y_0, ..., re_0, im_0, ...]`.
    ///
    /// With `context > 0` the scene latent also holds `context` linear features of the whole
    /// feature map after the coordinates and moments (`2 × count + context` entries without
    /// moments): room for what is not a point, such as where a door is, which the keypoints
    /// then need not track.
    Keypoints {
        /// Number of keypoints.
        count: i64,
        /// Linear context features after the keypoints (default 0).
        #[serde(default, skip_serializing_if = "is_zero")]
        context: i64,
        /// Order of the orientation moment written per keypoint (default 0: none).
        #[serde(default, skip_serializing_if = "is_zero")]
        moment: i64,
        /// Gain on the keypoint maps' logits before the softmax (default 1). A large map (a
        /// full-resolution 64 × 64 one has 4096 cells) needs large logits to concentrate on a
        /// small body; the gain gets there in hundreds of optimiser steps instead of
        /// thousands (it scales the logits' learning rate alike).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        gain: f64,
        /// With `radius > 0` the moment describes a different map than the softmax: the
        /// sigmoid of the logits (a soft mask that weighs every cell the map scores high
        /// alike, where the softmax keeps only the highest few) inside a Gaussian window of
        /// this radius (image coordinates) around the keypoint, about the mask's own
        /// centroid. A keypoint that settles on a few pixels of a body's edge then still
        /// writes the shape of the whole body (default 0: the softmax about the keypoint).
        #[serde(default, skip_serializing_if = "is_zero_f64")]
        radius: f64,
        /// With `mask` the map is read as a soft mask instead of a softmax: the keypoint is the
        /// centroid of `sigmoid(gain × logits)` over the whole image, and the spread (and,
        /// with `radius = 0`, the moment) are that mask's about its centroid (default false).
        /// A softmax keeps only the few cells it scores highest, so a map on a body settles
        /// on part of it (one edge); a sigmoid scores every cell alike that looks like the
        /// body, so the mask is the body's silhouette. Its far tails (a background cell at
        /// 10⁻⁴ still counts, weighed by `|dz|^n`) swamp the whole-image moment, so a mask
        /// head's moment wants `radius > 0`: the window about the mask's centroid.
        #[serde(default, skip_serializing_if = "is_false")]
        mask: bool,
    },
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// How [`ConvNet::set_norm_from`] normalises the input images (a training choice; the model
/// stores the result per pixel either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageNorm {
    /// Each pixel by its own mean and std over the data (the default): a background that
    /// never changes becomes 0 and the moving bodies stand out at full contrast, but a body
    /// looks different where it often is (large std) than where it seldom is.
    #[default]
    Pixel,
    /// Each colour channel by its mean and std over all pixels: a body looks the same
    /// wherever it is, so a 1 × 1 map can score its colour everywhere alike (a mask head's
    /// silhouette).
    Channel,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl ImageHead {
    /// The scene latent size the head writes, when fixed by the head (`Keypoints`: `2 × count`,
    /// twice that with moments, plus the context features).
    pub fn latent(&self) -> Option<i64> {
        match self {
            ImageHead::Linear => None,
            ImageHead::Keypoints {
                count,
                context,
                moment,
                ..
            } => Some(2 * count * if *moment > 0 { 2 } else { 1 } + context),
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
            strides: Vec::new(),
            layer_norm: true,
            head: ImageHead::Linear,
        }
    }

    /// The stride of convolution `i` (2 unless `strides` says otherwise).
    pub fn stride(&self, i: usize) -> i64 {
        self.strides.get(i).copied().unwrap_or(2)
    }

    /// `(channels, height, width)` of the last feature map.
    pub fn feature_shape(&self) -> (i64, i64, i64) {
        let (mut h, mut w) = (self.height, self.width);
        for i in 0..self.widths.len() {
            let s = self.stride(i);
            h = (h + s - 1) / s;
            w = (w + s - 1) / s;
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
        if !self.strides.is_empty() && self.strides.len() != self.widths.len() {
            return bad(format!(
                "strides has {} entries for {} convolutions (widths); give one per convolution \
                 or none",
                self.strides.len(),
                self.widths.len()
            ));
        }
        if let Some(s) = self.strides.iter().find(|&&s| !(1..=2).contains(&s)) {
            return bad(format!("strides entry {s} must be 1 or 2"));
        }
        if let ImageHead::Keypoints {
            count,
            context,
            moment,
            gain,
            radius,
            mask: _,
        } = self.head
        {
            if !(gain.is_finite() && gain > 0.0 && gain <= 1000.0) {
                return bad(format!("head Keypoints gain = {gain} must be in (0, 1000]"));
            }
            if !(radius.is_finite() && (0.0..=2.0).contains(&radius)) {
                return bad(format!(
                    "head Keypoints radius = {radius} must be in [0, 2] (image coordinates)"
                ));
            }
            if !(0..=8).contains(&moment) || moment == 1 {
                return bad(format!(
                    "head Keypoints moment = {moment} must be 0 (none) or an order in 2..=8"
                ));
            }
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
        for (i, &o) in self.widths.iter().enumerate() {
            let s = self.stride(i);
            h = (h + s - 1) / s;
            w = (w + s - 1) / s;
            macs += o * h * w * c * 9;
            c = o;
        }
        if let ImageHead::Keypoints { count, context, .. } = self.head {
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
            ImageHead::Keypoints {
                count,
                context,
                moment,
                ..
            } => {
                let writes = config.head.latent().unwrap_or(0);
                if latent != writes {
                    return Err(ModelError::InvalidConfig(format!(
                        "the image encoder's {:?} head writes {writes} scene latent entries, \
                         but the scene latent has {latent}",
                        config.head
                    )));
                }
                let kp = layer(&(path / "kp"), rng, &[count, fc, 1, 1], fc)?;
                if moment > 0 {
                    // Non-negative weights: each map starts on the cells with the strongest
                    // features, the bodies that stand out of the normalised image, where the
                    // training signal can move it. A map that starts with the bodies
                    // suppressed sees no gradient from them once its softmax has sharpened.
                    let _g = tch::no_grad_guard();
                    let _ = kp.0.shallow_clone().f_abs_().ctx(what)?;
                }
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
        Ok(self.forward_parts(x)?.0)
    }

    /// Latents as [`forward`](Self::forward), with a keypoint head also each keypoint map's
    /// spread `E[|dz|^2]` about its keypoint, `[B, count]` (image coordinates in `[-1, 1]`):
    /// small when the map sits on one small body (the concentration penalty of training).
    pub fn forward_parts(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
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
        for (i, (w, b)) in self.convs.iter().enumerate() {
            let s = c.stride(i);
            h = h
                .f_conv2d(w, Some(b), [s, s], [1, 1], [1, 1], 1)
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
                    return Ok((z, None));
                }
                let z = z
                    .f_layer_norm([self.latent], Some(&norm.0), Some(&norm.1), 1e-5, false)
                    .ctx(what)?;
                Ok((z, None))
            }
            Head::Keypoints { kp, ctx: None } => {
                let (points, spread) = soft_argmax(&h, kp, self.read()).ctx(what)?;
                Ok((points, Some(spread)))
            }
            Head::Keypoints { kp, ctx: Some(ctx) } => {
                let (points, spread) = soft_argmax(&h, kp, self.read()).ctx(what)?;
                let features = h
                    .f_flatten(1, -1)
                    .and_then(|t| t.f_linear(&ctx.0, Some(&ctx.1)))
                    .ctx(what)?;
                let z = Tensor::f_cat(&[points, features], 1).ctx(what)?;
                Ok((z, Some(spread)))
            }
        }
    }

    /// How the keypoint head reads its maps.
    fn read(&self) -> MapReading {
        match self.config.head {
            ImageHead::Keypoints {
                moment,
                gain,
                radius,
                mask,
                ..
            } => MapReading {
                moment,
                gain,
                radius,
                mask,
            },
            ImageHead::Linear => MapReading {
                moment: 0,
                gain: 1.0,
                radius: 0.0,
                mask: false,
            },
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

    /// Sets the input normalisation from images `[N, C, H, W]` in `[0, 1]`: their mean and
    /// `1 / max(std, min_std)`, per pixel ([`ImageNorm::Pixel`]) or per channel over every
    /// pixel ([`ImageNorm::Channel`], stored per pixel all the same).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for images of another shape, none, or non-finite values.
    pub fn set_norm_from(&mut self, images: &Tensor, min_std: f64, norm: ImageNorm) -> Result<()> {
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
        let shape = [c.channels, c.height, c.width];
        let (mean, std) = match norm {
            ImageNorm::Pixel => (
                x.f_mean_dim(0, false, Kind::Float).ctx(what)?,
                x.f_std_dim(0, false, false).ctx(what)?,
            ),
            ImageNorm::Channel => {
                let dims = &[0i64, 2, 3][..];
                let m = x.f_mean_dim(dims, true, Kind::Float).ctx(what)?;
                let s = x.f_std_dim(dims, false, true).ctx(what)?;
                (
                    m.f_squeeze_dim(0)
                        .and_then(|t| t.f_expand(shape, false))
                        .ctx(what)?,
                    s.f_squeeze_dim(0)
                        .and_then(|t| t.f_expand(shape, false))
                        .ctx(what)?,
                )
            }
        };
        let std = std.f_clamp_min(min_std).ctx(what)?;
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

/// How [`soft_argmax`] reads each keypoint map (the fields of [`ImageHead::Keypoints`]).
#[derive(Debug, Clone, Copy)]
struct MapReading {
    /// Order of the moment written per keypoint (0: none).
    moment: i64,
    /// Gain on the logits.
    gain: f64,
    /// Radius of the window in which the moment reads the sigmoid mask (0: none).
    radius: f64,
    /// Read the sigmoid mask over the whole image instead of the softmax.
    mask: bool,
}

/// Spatial soft-argmax of feature maps `h` `[B, C, H, W]`: a 1 × 1 convolution `kp` to `K`
/// maps, a softmax over the `H × W` positions of each, and the expected `(x, y)` in `[-1, 1]`
/// of each map, interleaved as `[B, 2K]`; with `moment = n > 0`, followed by each map's
/// normalised complex moment of order `n` about its keypoint (real, imaginary), `[B, 4K]`.
/// The maps' logits are multiplied by `gain` first. With `radius > 0` the moment is that of
/// the mask `sigmoid(logits)` inside a Gaussian window of that radius around the keypoint,
/// about the mask's centroid; with `mask` the softmax is replaced by the mask
/// `sigmoid(logits)` normalised over the image (keypoint = its centroid), see
/// [`ImageHead::Keypoints`]. Also returns each map's spread `E[|dz|^2]` about its keypoint,
/// `[B, K]`.
fn soft_argmax(
    h: &Tensor,
    kp: &(Tensor, Tensor),
    read: MapReading,
) -> std::result::Result<(Tensor, Tensor), tch::TchError> {
    let MapReading {
        moment,
        gain,
        radius,
        mask,
    } = read;
    let size = h.size();
    let (b, hh, ww) = (size[0], size[2], size[3]);
    let mut maps = h.f_conv2d(&kp.0, Some(&kp.1), [1, 1], [0, 0], [1, 1], 1)?;
    if gain != 1.0 {
        maps = maps.f_mul_scalar(gain)?;
    }
    let k = maps.size()[1];
    let total = |t: &Tensor| t.f_sum_dim_intlist(&[2i64, 3][..], false, maps.kind());
    // A non-negative map divided by its mass, a distribution over the cells.
    let normalised = |m: &Tensor| -> std::result::Result<Tensor, tch::TchError> {
        Ok(m / (total(m)? + MASK_EPS).f_view([b, k, 1, 1])?)
    };
    // The distribution over cells whose mean is the keypoint: the softmax, or the sigmoid
    // mask normalised by its mass.
    let p = if mask {
        normalised(&maps.f_sigmoid()?)?
    } else {
        maps.f_reshape([b, k, hh * ww])?
            .f_softmax(-1, maps.kind())?
            .f_reshape([b, k, hh, ww])?
    };
    let opts = (maps.kind(), maps.device());
    // Cell centres in [-1, 1].
    let xs = Tensor::f_linspace(-1.0 + 1.0 / ww as f64, 1.0 - 1.0 / ww as f64, ww, opts)?;
    let ys = Tensor::f_linspace(-1.0 + 1.0 / hh as f64, 1.0 - 1.0 / hh as f64, hh, opts)?;
    // The marginals over columns [B, K, W] and rows [B, K, H].
    let (px, py) = (
        p.f_sum_dim_intlist(2, false, maps.kind())?,
        p.f_sum_dim_intlist(3, false, maps.kind())?,
    );
    let mean = |m: &Tensor, c: &Tensor| m.f_mul(c)?.f_sum_dim_intlist(-1, false, maps.kind());
    let (x, y) = (mean(&px, &xs)?, mean(&py, &ys)?);
    let points = Tensor::f_stack(&[&x, &y], 2)?.f_reshape([b, 2 * k])?;
    // E[x^2] - E[x]^2 + E[y^2] - E[y]^2 from the marginals (the moment about the keypoint
    // takes it from its own offsets below).
    let marginal_spread = || -> std::result::Result<Tensor, tch::TchError> {
        Ok(
            mean(&px, &xs.f_square()?)? - x.f_square()? + mean(&py, &ys.f_square()?)?
                - y.f_square()?,
        )
    };
    if moment == 0 {
        return Ok((points, marginal_spread()?));
    }
    // Offsets of every cell from a centre per map: dx [B, K, H, W], dy [B, K, H, W].
    let offsets =
        |cx: &Tensor, cy: &Tensor| -> std::result::Result<(Tensor, Tensor), tch::TchError> {
            let dx = xs.f_view([1, 1, 1, ww])? - cx.f_view([b, k, 1, 1])?;
            let dy = ys.f_view([1, 1, hh, 1])? - cy.f_view([b, k, 1, 1])?;
            Ok((
                dx.f_expand([b, k, hh, ww], false)?,
                dy.f_expand([b, k, hh, ww], false)?,
            ))
        };
    // The map whose shape the moment describes, and its centre: the softmax (or the mask)
    // about the keypoint, or (radius > 0) the sigmoid of the logits, a soft mask of every
    // cell the map scores high, inside a Gaussian window of that radius around the keypoint,
    // about its own centroid.
    let (q, dx, dy, about_keypoint) = if radius > 0.0 {
        let (wx, wy) = offsets(&x, &y)?;
        let window = (wx.f_square()? + wy.f_square()?)
            .f_mul_scalar(-0.5 / (radius * radius))?
            .f_exp()?;
        let q = normalised(&maps.f_sigmoid()?.f_mul(&window)?)?;
        let cx = total(&(&q * xs.f_view([1, 1, 1, ww])?))?;
        let cy = total(&(&q * ys.f_view([1, 1, hh, 1])?))?;
        let (dx, dy) = offsets(&cx, &cy)?;
        (q, dx, dy, false)
    } else {
        let (dx, dy) = offsets(&x, &y)?;
        (p.shallow_clone(), dx, dy, true)
    };
    // (dx + i dy)^n by repeated complex multiplication.
    let (mut re, mut im) = (dx.shallow_clone(), dy.shallow_clone());
    for _ in 1..moment {
        let r = &re * &dx - &im * &dy;
        im = &re * &dy + &im * &dx;
        re = r;
    }
    let expect = |t: &Tensor| (t * &q).f_sum_dim_intlist(&[2i64, 3][..], false, maps.kind());
    let r2 = dx.f_square()? + dy.f_square()?;
    // About the keypoint the spread is the map's E[|dz|^2] over the offsets just made.
    let spread = if about_keypoint {
        expect(&r2)?
    } else {
        marginal_spread()?
    };
    // E[|dz|^n] bounds |E[dz^n]|, whatever the map's tails; kept off zero: a map on one cell
    // has no orientation.
    let norm = expect(&r2.f_pow_tensor_scalar(moment as f64 / 2.0)?)? + MOMENT_EPS;
    let mre = expect(&re)? / &norm;
    let mim = expect(&im)? / &norm;
    let moments = Tensor::f_stack(&[mre, mim], 2)?.f_reshape([b, 2 * k])?;
    Ok((Tensor::f_cat(&[points, moments], 1)?, spread))
}

/// Added to a sigmoid mask's mass before it normalises the mask: keeps an all-but-empty
/// mask finite.
const MASK_EPS: f64 = 1e-12;

/// Added to `E[|dz|^n]` before it normalises the moment: keeps the ratio finite for a map
/// that has collapsed onto its keypoint (`|dz|` well below 0.01 everywhere), whose moment then
/// goes to 0.
const MOMENT_EPS: f64 = 1e-8;

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

    fn rd(moment: i64, gain: f64, radius: f64, mask: bool) -> MapReading {
        MapReading {
            moment,
            gain,
            radius,
            mask,
        }
    }

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
        let z = Vec::<f32>::try_from(
            soft_argmax(&h, &kp, rd(0, 1.0, 0.0, false))
                .unwrap()
                .0
                .reshape([-1]),
        )
        .unwrap();
        // Column 1 of 4: centre x = -1 + (2 * 1 + 1) / 4; row 5 of 8: y = -1 + 11 / 8.
        assert_abs_diff_eq!(z[0], -0.25, epsilon = 1e-4);
        assert_abs_diff_eq!(z[1], 0.375, epsilon = 1e-4);
        // A flat map sits in the middle.
        let flat = Tensor::zeros([2, 1, 8, 4], (Kind::Float, Device::Cpu));
        let (z, spread) = soft_argmax(&flat, &kp, rd(0, 1.0, 0.0, false)).unwrap();
        // Uniform over 8 x 4 cells: var x = (1 - 1/16) / 3, var y = (1 - 1/64) / 3.
        assert_abs_diff_eq!(
            spread.double_value(&[0, 0]),
            (1.0 - 1.0 / 16.0) / 3.0 + (1.0 - 1.0 / 64.0) / 3.0,
            epsilon = 1e-5
        );
        assert_eq!(z.size(), [2, 2]);
        assert!(z.abs().max().double_value(&[]) < 1e-6);
    }

    /// A 64 x 64 map that is 1 inside a square of half side 0.3 centred at `(cx, cy)` and
    /// turned by `yaw`, 0 elsewhere (image coordinates of cell centres in `[-1, 1]`).
    fn square_map(cx: f32, cy: f32, yaw: f32) -> Tensor {
        let n = 64;
        let mut h = vec![0.0f32; n * n];
        for (r, row) in h.chunks_mut(n).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                let (x, y) = (
                    -1.0 + (2 * c + 1) as f32 / n as f32 - cx,
                    -1.0 + (2 * r + 1) as f32 / n as f32 - cy,
                );
                let (u, w) = (
                    x * yaw.cos() + y * yaw.sin(),
                    -x * yaw.sin() + y * yaw.cos(),
                );
                if u.abs() <= 0.3 && w.abs() <= 0.3 {
                    *v = 1.0;
                }
            }
        }
        Tensor::from_slice(&h).reshape([1, 1, n as i64, n as i64])
    }

    #[test]
    fn the_fourth_moment_of_a_square_map_turns_four_times_as_fast_as_the_square() {
        // A 1 x 1 convolution of weight 1 and gain 100: the softmax is uniform on the square.
        let kp = (
            Tensor::from_slice(&[1.0f32]).reshape([1, 1, 1, 1]),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let moment = |cx: f32, cy: f32, yaw: f32| -> (f32, f32, f32, f32) {
            let (z, spread) =
                soft_argmax(&square_map(cx, cy, yaw), &kp, rd(4, 100.0, 0.0, false)).unwrap();
            // A uniform square of half side 0.3: E[|dz|^2] = 2 · 0.3² / 3.
            assert_abs_diff_eq!(spread.double_value(&[0, 0]), 0.06, epsilon = 0.005);
            assert_eq!(z.size(), [1, 4]);
            let v = Vec::<f32>::try_from(z.reshape([-1])).unwrap();
            (v[0], v[1], v[2], v[3])
        };
        let (x, y, re0, im0) = moment(0.3, -0.2, 0.0);
        assert_abs_diff_eq!(x, 0.3, epsilon = 0.02);
        assert_abs_diff_eq!(y, -0.2, epsilon = 0.02);
        // A uniform square's E[dz^4] / E[|dz|^4] is (2/5 - 6/9) / (2/5 + 2/9) = -0.43 at yaw 0.
        assert_abs_diff_eq!(re0, -0.43, epsilon = 0.03);
        assert_abs_diff_eq!(im0, 0.0, epsilon = 0.05);
        for yaw in [0.1f32, 0.3, -0.25] {
            let (_, _, re, im) = moment(0.3, -0.2, yaw);
            let turned = (im.atan2(re) - im0.atan2(re0) + 3.0 * std::f32::consts::PI)
                .rem_euclid(2.0 * std::f32::consts::PI)
                - std::f32::consts::PI;
            assert_abs_diff_eq!(turned, 4.0 * yaw, epsilon = 0.05);
            assert_abs_diff_eq!(re.hypot(im), re0.hypot(im0), epsilon = 0.03);
        }
        // A quarter turn looks the same, and so does the moment; moving the square does not
        // change it either.
        let (_, _, re, im) = moment(0.3, -0.2, std::f32::consts::FRAC_PI_2 + 0.2);
        let (_, _, re2, im2) = moment(-0.4, 0.1, 0.2);
        assert_abs_diff_eq!(re, re2, epsilon = 0.05);
        assert_abs_diff_eq!(im, im2, epsilon = 0.05);
    }

    #[test]
    fn a_windowed_mask_moment_sees_the_whole_body_from_a_keypoint_on_its_edge() {
        // Logits +10 on the square and -10 off it, and +30 more on a strip of its right edge:
        // the softmax keypoint sits on the strip, the sigmoid mask covers the whole square.
        let kp = (
            Tensor::from_slice(&[10.0f32]).reshape([1, 1, 1, 1]),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        for yaw in [0.0f32, 0.2] {
            let sq = square_map(0.0, 0.0, yaw) * 2.0 - 1.0;
            let edge = square_map(0.0, 0.0, yaw) - square_map(-0.06, 0.0, yaw);
            let h = sq + edge.clamp_min(0.0) * 3.0;
            let (z, _) = soft_argmax(&h, &kp, rd(4, 1.0, 0.6, false)).unwrap();
            let v = Vec::<f32>::try_from(z.reshape([-1])).unwrap();
            assert!(v[0] > 0.2, "keypoint on the edge strip: {v:?}");
            let (full, _) = soft_argmax(
                &(square_map(0.0, 0.0, yaw) * 2.0 - 1.0),
                &kp,
                rd(4, 1.0, 0.0, false),
            )
            .unwrap();
            let f = Vec::<f32>::try_from(full.reshape([-1])).unwrap();
            assert_abs_diff_eq!(v[2], f[2], epsilon = 0.05);
            assert_abs_diff_eq!(v[3], f[3], epsilon = 0.05);
        }
    }

    #[test]
    fn a_mask_head_reads_the_whole_silhouette_where_the_softmax_keeps_its_edge() {
        // Logits +10 on the square, -10 off it, and +30 more on a strip of its right edge.
        let kp = (
            Tensor::from_slice(&[10.0f32]).reshape([1, 1, 1, 1]),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        for (cx, cy, yaw) in [
            (0.0f32, 0.0f32, 0.0f32),
            (0.3, -0.2, 0.2),
            (-0.2, 0.1, -0.3),
        ] {
            let body = square_map(cx, cy, yaw);
            let edge = (&body - square_map(cx - 0.06, cy, yaw)).clamp_min(0.0);
            let h = &body * 2.0 - 1.0 + edge * 3.0;
            let (soft, _) = soft_argmax(&h, &kp, rd(4, 1.0, 0.0, false)).unwrap();
            let (masked, spread) = soft_argmax(&h, &kp, rd(4, 1.0, 0.0, true)).unwrap();
            let (clean, _) = soft_argmax(&(&body * 2.0 - 1.0), &kp, rd(4, 1.0, 0.0, true)).unwrap();
            let s = Vec::<f32>::try_from(soft.reshape([-1])).unwrap();
            let m = Vec::<f32>::try_from(masked.reshape([-1])).unwrap();
            let c = Vec::<f32>::try_from(clean.reshape([-1])).unwrap();
            // The softmax keypoint sits on the strip; the mask's centroid is the square's
            // centre, its spread the square's (2 · 0.3² / 3), its moment the clean square's.
            assert!(s[0] - cx > 0.2, "softmax on the edge: {s:?}");
            assert_abs_diff_eq!(m[0], cx, epsilon = 0.03);
            assert_abs_diff_eq!(m[1], cy, epsilon = 0.03);
            assert_abs_diff_eq!(spread.double_value(&[0, 0]), 0.06, epsilon = 0.006);
            assert_abs_diff_eq!(m[2], c[2], epsilon = 0.02);
            assert_abs_diff_eq!(m[3], c[3], epsilon = 0.02);
            assert_abs_diff_eq!(c[2].hypot(c[3]), 0.43, epsilon = 0.03);
            let turned = c[3].atan2(c[2]) - 0.0f32.atan2(-0.43);
            let turned = (turned + 3.0 * std::f32::consts::PI)
                .rem_euclid(2.0 * std::f32::consts::PI)
                - std::f32::consts::PI;
            assert_abs_diff_eq!(turned, 4.0 * yaw, epsilon = 0.06);
            // Faint tails far away (the mask at 1e-3 over the whole background) swamp the
            // whole-image moment (with the image's own square frame's, which equals the
            // square's only at yaw 0); a window about the centroid reads the body again.
            let faint = (&body * 2.0 - 1.0).clamp_min(-0.69);
            let (tails, _) = soft_argmax(&faint, &kp, rd(4, 1.0, 0.0, true)).unwrap();
            let t = Vec::<f32>::try_from(tails.reshape([-1])).unwrap();
            if yaw != 0.0 {
                assert!(
                    (t[2] - c[2]).hypot(t[3] - c[3]) > 0.1,
                    "tails {t:?} clean {c:?}"
                );
            }
            let read = |h: &Tensor| {
                let (z, _) = soft_argmax(h, &kp, rd(4, 1.0, 0.35, true)).unwrap();
                Vec::<f32>::try_from(z.reshape([-1])).unwrap()
            };
            let (w, wc) = (read(&faint), read(&(&body * 2.0 - 1.0)));
            assert_abs_diff_eq!(w[2], wc[2], epsilon = 0.04);
            assert_abs_diff_eq!(w[3], wc[3], epsilon = 0.04);
            assert!(wc[2].hypot(wc[3]) > 0.1, "windowed moment {wc:?}");
        }
        // Without a moment the mask head writes its centroid and spread alone.
        let body = square_map(0.3, -0.2, 0.0) * 2.0 - 1.0;
        let (z, _) = soft_argmax(&body, &kp, rd(0, 1.0, 0.0, true)).unwrap();
        assert_eq!(z.size(), [1, 2]);
        assert_abs_diff_eq!(z.double_value(&[0, 0]), 0.3, epsilon = 0.03);
    }

    #[test]
    fn strides_set_the_feature_map_and_bad_heads_are_named() {
        let mut c = ImageEncoderConfig::new(3, 64, 64);
        c.widths = vec![8, 16];
        c.strides = vec![1, 2];
        assert_eq!(c.feature_shape(), (16, 32, 32));
        assert!(c.validate().is_ok());
        assert_eq!(c.macs(), 8 * 64 * 64 * 3 * 9 + 16 * 32 * 32 * 8 * 9);
        c.strides = vec![1];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("strides has 1 entries for 2"), "{err}");
        c.strides = vec![1, 3];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("strides entry 3"), "{err}");
        c.strides.clear();
        for (moment, gain, what) in [(1, 1.0, "moment = 1"), (4, 0.0, "gain = 0")] {
            c.head = ImageHead::Keypoints {
                count: 1,
                context: 0,
                moment,
                gain,
                radius: 0.0,
                mask: false,
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        c.head = ImageHead::Keypoints {
            count: 2,
            context: 3,
            moment: 4,
            gain: 10.0,
            radius: 0.2,
            mask: true,
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.head.latent(), Some(2 * 2 * 2 + 3));
    }
}
