//! The planner trait and the config enum that builds any planner.

use crate::bounds::ActionBounds;
use crate::cem::{Cem, CemConfig};
use crate::energy::EnergyConfig;
use crate::error::Result;
use crate::gradient::{Gradient, GradientConfig};
use crate::icem::{ICem, ICemConfig};
use crate::mppi::{Mppi, MppiConfig};
use crate::plan::{Budget, Plan, PlanOutput};
use tch::Tensor;
use zplan_models::WorldModel;

/// Finds an action sequence whose predicted latents reach the goal latent.
///
/// Required: every method. Implementations own their energy, bounds and random stream, so
/// the same seed, model and inputs give the same plan (bitwise on CPU). They are `Send` so a
/// [`crate::Controller`] can run one on its own thread.
pub trait Planner: Send {
    /// Short identity (`"cem"`, `"icem"`, `"mppi"`, `"gradient"`).
    fn name(&self) -> &str;

    /// Number of planned actions.
    fn horizon(&self) -> usize;

    /// The action bounds every returned action lies in.
    fn bounds(&self) -> &ActionBounds;

    /// Action size.
    fn action_dim(&self) -> usize {
        self.bounds().dim()
    }

    /// Plans from `z0` `[1, *latent]` towards `z_goal` `[1, *latent]`.
    ///
    /// `warm_start` (typically the previous plan [`Plan::shifted`] by the executed steps)
    /// seeds the search; a different horizon is truncated or extended by repeating its last
    /// action. Anytime: see [`Budget`]. Errors on shape mismatches, model failures and when
    /// every candidate of an iteration has a non-finite energy.
    fn plan(
        &mut self,
        model: &dyn WorldModel,
        z0: &Tensor,
        z_goal: &Tensor,
        warm_start: Option<&Plan>,
        budget: &Budget,
    ) -> Result<PlanOutput>;

    /// Forgets warm state (iCEM's kept elites, MPPI's previous solution) and rewinds the
    /// random stream to the seed, so an episode does not depend on the episodes before it.
    fn reset(&mut self);

    /// Like [`Planner::reset`] with a new seed (e.g. one per episode).
    fn reseed(&mut self, seed: u64);
}

/// Any planner's settings, as a tagged enum for RON/JSON:
/// `Cem(samples: 300, elites: 30, iterations: 10, horizon: 8, init_std: 1.0, min_std: 0.05,
/// momentum: 0.1)`; omitted fields take their defaults, unknown fields are rejected.
///
/// Deserialisation accepts that struct-variant form in plain RON (no `unwrap_variant_newtypes`
/// extension needed) and `{"Cem": {...}}` in JSON; serialisation writes the same forms.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannerConfig {
    /// Cross-entropy method.
    Cem(CemConfig),
    /// Improved CEM with colored noise.
    ICem(ICemConfig),
    /// Model predictive path integral.
    Mppi(MppiConfig),
    /// Adam through the model's gradients.
    Gradient(GradientConfig),
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig::Cem(CemConfig::default())
    }
}

impl PlannerConfig {
    /// Range checks of the selected planner's config.
    pub fn validate(&self) -> Result<()> {
        match self {
            PlannerConfig::Cem(c) => c.validate(),
            PlannerConfig::ICem(c) => c.validate(),
            PlannerConfig::Mppi(c) => c.validate(),
            PlannerConfig::Gradient(c) => c.validate(),
        }
    }

    /// Planned actions.
    pub fn horizon(&self) -> usize {
        match self {
            PlannerConfig::Cem(c) => c.horizon,
            PlannerConfig::ICem(c) => c.horizon,
            PlannerConfig::Mppi(c) => c.horizon,
            PlannerConfig::Gradient(c) => c.horizon,
        }
    }

    /// Candidates per iteration (gradient: parallel restarts).
    pub fn samples(&self) -> usize {
        match self {
            PlannerConfig::Cem(c) => c.samples,
            PlannerConfig::ICem(c) => c.samples,
            PlannerConfig::Mppi(c) => c.samples,
            PlannerConfig::Gradient(c) => {
                c.samples.max(c.init_cem.as_ref().map_or(0, |i| i.samples))
            }
        }
    }

    /// Estimated peak bytes of one planning iteration for a model with `action_dim` action
    /// entries and `latent_numel` latent entries: the candidates' actions (sampled, clipped,
    /// on the model's device), their predicted latents with room for the model's activations,
    /// and the energies. Saturates instead of overflowing, so absurd sizes give a huge
    /// estimate, never a wrong small one.
    pub fn memory_estimate(&self, action_dim: usize, latent_numel: usize) -> u64 {
        let per_step = 4u64
            .saturating_mul(4)
            .saturating_mul(action_dim as u64)
            .saturating_add(4u64.saturating_mul(4).saturating_mul(latent_numel as u64))
            .saturating_add(8);
        let factor = if matches!(self, PlannerConfig::Gradient(_)) {
            3
        } else {
            1
        };
        zplan_io::bytes_of(&[
            self.samples() as u64,
            self.horizon() as u64,
            per_step,
            factor,
        ])
    }

    /// Refuses sizes whose [`PlannerConfig::memory_estimate`] exceeds the memory limit
    /// ([`zplan_io::memory_limit`]), with the estimate in the message.
    pub fn check_memory(&self, action_dim: usize, latent_numel: usize) -> Result<()> {
        zplan_io::check_memory(
            || {
                format!(
                    "planner `{}` with {} samples × horizon {} ({} action and {} latent entries per step)",
                    self.name(),
                    self.samples(),
                    self.horizon(),
                    action_dim,
                    latent_numel
                )
            },
            self.memory_estimate(action_dim, latent_numel),
        )
        .map_err(|e| crate::PlannerError::InvalidConfig {
            field: format!("{}.horizon", self.name()),
            message: e.to_string(),
        })
    }

    /// Configured iterations (gradient: steps; without its CEM initialisation).
    pub fn iterations(&self) -> u32 {
        match self {
            PlannerConfig::Cem(c) => c.iterations,
            PlannerConfig::ICem(c) => c.iterations,
            PlannerConfig::Mppi(c) => c.iterations,
            PlannerConfig::Gradient(c) => c.steps,
        }
    }

    /// Short name of the selected planner.
    pub fn name(&self) -> &'static str {
        match self {
            PlannerConfig::Cem(_) => "cem",
            PlannerConfig::ICem(_) => "icem",
            PlannerConfig::Mppi(_) => "mppi",
            PlannerConfig::Gradient(_) => "gradient",
        }
    }

    /// Builds the planner (validating everything first).
    pub fn build(
        &self,
        bounds: ActionBounds,
        energy: EnergyConfig,
        seed: u64,
    ) -> Result<Box<dyn Planner>> {
        Ok(match self {
            PlannerConfig::Cem(c) => Box::new(Cem::new(c.clone(), bounds, energy, seed)?),
            PlannerConfig::ICem(c) => Box::new(ICem::new(c.clone(), bounds, energy, seed)?),
            PlannerConfig::Mppi(c) => Box::new(Mppi::new(c.clone(), bounds, energy, seed)?),
            PlannerConfig::Gradient(c) => Box::new(Gradient::new(c.clone(), bounds, energy, seed)?),
        })
    }

    /// Parses RON (`Cem(samples: 300, ...)`) and validates. Texts above
    /// [`zplan_io::MAX_CONFIG_BYTES`] or nested deeper than [`zplan_io::MAX_NESTING`] are
    /// refused before parsing.
    pub fn from_ron_str(s: &str) -> Result<Self> {
        let cfg: Self = crate::error::parse_ron(s, "planner")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes RON in the form [`PlannerConfig::from_ron_str`] reads.
    pub fn to_ron_string(&self) -> String {
        ron::to_string(self).expect("planner configs always serialise")
    }
}

mod serde_impl {
    //! Struct-variant (de)serialisation of [`PlannerConfig`] over the variants' own derived
    //! struct impls, so `Cem(samples: 300)` parses in RON without extensions.
    use super::*;
    use serde::de::{self, EnumAccess, MapAccess, VariantAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::marker::PhantomData;

    const VARIANTS: &[&str] = &["Cem", "ICem", "Mppi", "Gradient"];

    #[derive(Deserialize)]
    enum Tag {
        Cem,
        #[serde(alias = "Icem")]
        ICem,
        Mppi,
        Gradient,
    }

    struct StructBody<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for StructBody<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("planner settings")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    fn body<'de, T: Deserialize<'de>, V: VariantAccess<'de>>(
        v: V,
        fields: &'static [&'static str],
    ) -> std::result::Result<T, V::Error> {
        v.struct_variant(fields, StructBody(PhantomData))
    }

    struct ConfigVisitor;

    impl<'de> Visitor<'de> for ConfigVisitor {
        type Value = PlannerConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a planner: Cem(..), ICem(..), Mppi(..) or Gradient(..)")
        }
        fn visit_enum<A: EnumAccess<'de>>(
            self,
            data: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let (tag, v) = data.variant::<Tag>()?;
            Ok(match tag {
                Tag::Cem => PlannerConfig::Cem(body(v, CEM_FIELDS)?),
                Tag::ICem => PlannerConfig::ICem(body(v, ICEM_FIELDS)?),
                Tag::Mppi => PlannerConfig::Mppi(body(v, MPPI_FIELDS)?),
                Tag::Gradient => PlannerConfig::Gradient(body(v, GRADIENT_FIELDS)?),
            })
        }
    }

    const CEM_FIELDS: &[&str] = &[
        "samples",
        "elites",
        "iterations",
        "horizon",
        "init_std",
        "min_std",
        "max_std",
        "momentum",
        "include_mean",
        "return_mode",
    ];
    const ICEM_FIELDS: &[&str] = &[
        "samples",
        "elites",
        "iterations",
        "horizon",
        "beta",
        "keep_elites",
        "decay",
        "init_std",
        "min_std",
        "max_std",
        "momentum",
        "include_mean",
        "return_mode",
    ];
    const MPPI_FIELDS: &[&str] = &[
        "samples",
        "elites",
        "iterations",
        "horizon",
        "temperature",
        "noise_std",
        "min_std",
        "max_std",
        "adapt_std",
        "shift",
        "include_mean",
        "return_mode",
    ];
    const GRADIENT_FIELDS: &[&str] = &[
        "steps", "horizon", "lr", "beta1", "beta2", "samples", "init_std", "init_cem",
    ];

    #[cfg(test)]
    pub(super) fn fields(cfg: &PlannerConfig) -> &'static [&'static str] {
        match cfg {
            PlannerConfig::Cem(_) => CEM_FIELDS,
            PlannerConfig::ICem(_) => ICEM_FIELDS,
            PlannerConfig::Mppi(_) => MPPI_FIELDS,
            PlannerConfig::Gradient(_) => GRADIENT_FIELDS,
        }
    }

    impl<'de> Deserialize<'de> for PlannerConfig {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            d.deserialize_enum("PlannerConfig", VARIANTS, ConfigVisitor)
        }
    }

    impl Serialize for PlannerConfig {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use zplan_sim::serde_variant::serialize_as_struct_variant as variant;
            const NAME: &str = "PlannerConfig";
            match self {
                PlannerConfig::Cem(c) => variant(c, s, NAME, 0, "Cem"),
                PlannerConfig::ICem(c) => variant(c, s, NAME, 1, "ICem"),
                PlannerConfig::Mppi(c) => variant(c, s, NAME, 2, "Mppi"),
                PlannerConfig::Gradient(c) => variant(c, s, NAME, 3, "Gradient"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written field lists of the RON (de)serialiser must match the structs.
    #[test]
    fn serialised_fields_are_the_known_fields() {
        let all = [
            PlannerConfig::Cem(CemConfig::default()),
            PlannerConfig::ICem(ICemConfig::default()),
            PlannerConfig::Mppi(MppiConfig::default()),
            PlannerConfig::Gradient(GradientConfig::default()),
        ];
        for cfg in all {
            let json = serde_json::to_value(&cfg).unwrap();
            let (_, body) = json.as_object().unwrap().iter().next().unwrap();
            let keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let known = serde_impl::fields(&cfg);
            let mut a = keys.clone();
            let mut b = known.to_vec();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{}", cfg.name());
        }
    }
}
