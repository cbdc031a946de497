//! A plain multi-layer perceptron whose weights live in a [`tch::nn::VarStore`].

use super::config::Activation;
use crate::error::TchContext;
use crate::util::fmt_shape;
use crate::{ModelError, Result};
use rand::Rng;
use tch::{nn, Tensor};

/// One linear layer, optionally followed by layer norm (hidden layers only).
struct Dense {
    weight: Tensor,
    bias: Tensor,
    norm: Option<(Tensor, Tensor)>,
}

/// An MLP `dims[0] → dims[1] → … → dims[n]`: linear layers with (optional layer norm and) the
/// activation between them, none after the last.
///
/// Variables are named `<path>.l<i>.weight`, `<path>.l<i>.bias` and, with layer norm,
/// `<path>.ln<i>.weight`, `<path>.ln<i>.bias` (the names in the safetensors file). Forward runs in
/// the caller's grad mode: under `tch::no_grad` for inference, with grad for training.
pub struct Mlp {
    layers: Vec<Dense>,
    activation: Activation,
    dims: Vec<i64>,
}

impl std::fmt::Debug for Mlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mlp")
            .field("dims", &self.dims)
            .field("activation", &self.activation)
            .finish()
    }
}

impl Mlp {
    /// Creates the variables under `path`, initialised like PyTorch's `nn.Linear`
    /// (weights and biases uniform in `±1/sqrt(fan_in)`) but drawn from `rng`, so the result
    /// depends only on the seed (not on libtorch's global RNG).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for fewer than two sizes or a non-positive size.
    pub fn new(
        path: &nn::Path<'_>,
        dims: &[i64],
        activation: Activation,
        layer_norm: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if dims.len() < 2 || dims.iter().any(|&d| d <= 0) {
            return Err(ModelError::InvalidConfig(format!(
                "MLP sizes {} are invalid",
                fmt_shape(dims)
            )));
        }
        let n = dims.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let (fan_in, fan_out) = (dims[i], dims[i + 1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut draw = |count: i64| -> Vec<f32> {
                (0..count)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect()
            };
            let w = draw(fan_in * fan_out);
            let b = draw(fan_out);
            let what = || format!("creating layer {i} of MLP {}", fmt_shape(dims));
            let w = Tensor::f_from_slice(&w)
                .and_then(|t| t.f_reshape([fan_out, fan_in]))
                .ctx(what)?;
            let b = Tensor::f_from_slice(&b).ctx(what)?;
            let lp = path / format!("l{i}");
            let weight = lp.f_var_copy("weight", &w).ctx(what)?;
            let bias = lp.f_var_copy("bias", &b).ctx(what)?;
            let norm = if layer_norm && i + 1 < n {
                let np = path / format!("ln{i}");
                Some((
                    np.f_ones("weight", &[fan_out]).ctx(what)?,
                    np.f_zeros("bias", &[fan_out]).ctx(what)?,
                ))
            } else {
                None
            };
            layers.push(Dense { weight, bias, norm });
        }
        Ok(Mlp {
            layers,
            activation,
            dims: dims.to_vec(),
        })
    }

    /// An MLP without layers (the identity; a placeholder that owns no variables).
    pub(crate) fn empty() -> Mlp {
        Mlp {
            layers: Vec::new(),
            activation: Activation::default(),
            dims: Vec::new(),
        }
    }

    /// Applies the MLP to `x [..., dims[0]]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = self.layers.len();
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let what = || {
                format!(
                    "MLP {} layer {i} on input {}",
                    fmt_shape(&self.dims),
                    fmt_shape(&x.size())
                )
            };
            h = h.f_linear(&layer.weight, Some(&layer.bias)).ctx(what)?;
            if let Some((w, b)) = &layer.norm {
                h = h
                    .f_layer_norm([self.dims[i + 1]], Some(w), Some(b), 1e-5, false)
                    .ctx(what)?;
            }
            if i + 1 < n {
                h = match self.activation {
                    Activation::Gelu => h.f_gelu("none"),
                    Activation::Relu => h.f_relu(),
                    Activation::Silu => h.f_silu(),
                    Activation::Tanh => h.f_tanh(),
                }
                .ctx(what)?;
            }
        }
        Ok(h)
    }

    /// Sizes `[in, hidden…, out]`.
    pub fn dims(&self) -> &[i64] {
        &self.dims
    }

    /// A copy sharing storage with `self` but cut from autograd (`requires_grad = false`): what
    /// inference uses, so that it never records into the trainable variables.
    pub(crate) fn detached(&self) -> Mlp {
        Mlp {
            layers: self
                .layers
                .iter()
                .map(|l| Dense {
                    weight: l.weight.detach(),
                    bias: l.bias.detach(),
                    norm: l.norm.as_ref().map(|(w, b)| (w.detach(), b.detach())),
                })
                .collect(),
            activation: self.activation,
            dims: self.dims.clone(),
        }
    }

    /// A copy with every weight converted to `kind` (new storage unless it already is
    /// `kind`), for inference in another precision.
    pub(crate) fn to_kind(&self, kind: tch::Kind) -> Result<Mlp> {
        let cast = |t: &Tensor| crate::util::to_kind(t, kind);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(Dense {
                    weight: cast(&l.weight)?,
                    bias: cast(&l.bias)?,
                    norm: match &l.norm {
                        Some((w, b)) => Some((cast(w)?, cast(b)?)),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp {
            layers,
            activation: self.activation,
            dims: self.dims.clone(),
        })
    }

    /// A second handle on the same tensors (reference-count bumps only).
    pub(crate) fn shallow_clone(&self) -> Mlp {
        Mlp {
            layers: self
                .layers
                .iter()
                .map(|l| Dense {
                    weight: l.weight.shallow_clone(),
                    bias: l.bias.shallow_clone(),
                    norm: l
                        .norm
                        .as_ref()
                        .map(|(w, b)| (w.shallow_clone(), b.shallow_clone())),
                })
                .collect(),
            activation: self.activation,
            dims: self.dims.clone(),
        }
    }
}
