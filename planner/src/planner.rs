//! The planner trait, and the registry of planners: [`PlannerConfig`], its serde, and the
//! public planner types, all generated from one `planners!` list.

use crate::bounds::ActionBounds;
use crate::cem::CemConfig;
use crate::energy::EnergyConfig;
use crate::error::Result;
use crate::gradient::GradientConfig;
use crate::icem::ICemConfig;
use crate::mppi::MppiConfig;
use crate::plan::{Budget, Plan, PlanOutput};
use crate::sampling::{SamplingPlanner, Settings};
use serde::de::{self, Deserializer, EnumAccess, MapAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
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

/// Generates, from one line per planner, [`PlannerConfig`] (variants, dispatch, serde) and the
/// public planner type of each line: a thin wrapper around [`SamplingPlanner`] with
/// `new(config, bounds, energy, seed)`, `config()` and [`Planner`].
macro_rules! planners {
    ($( $(#[$doc:meta])* $variant:ident($config:ty) $(alias $alias:literal)?, )+) => {
        /// Any planner's settings, as a tagged enum for RON/JSON:
        /// `Cem(samples: 300, elites: 30, iterations: 10, horizon: 8, init_std: 1.0,
        /// min_std: 0.05, momentum: 0.1)`; omitted fields take their defaults, unknown fields
        /// are rejected.
        ///
        /// Deserialisation accepts that struct-variant form in plain RON (no
        /// `unwrap_variant_newtypes` extension needed) and `{"Cem": {...}}` in JSON;
        /// serialisation writes the same forms.
        #[derive(Debug, Clone, PartialEq)]
        pub enum PlannerConfig {
            $( $(#[$doc])* $variant($config), )+
        }

        /// Variant names, in declaration order.
        const VARIANTS: &[&str] = &[$(stringify!($variant)),+];

        #[derive(Deserialize)]
        #[serde(variant_identifier)]
        enum Tag { $( $(#[serde(alias = $alias)])? $variant ),+ }

        impl PlannerConfig {
            /// Range checks of the selected planner's config.
            pub fn validate(&self) -> Result<()> {
                match self { $(PlannerConfig::$variant(c) => Settings::validate(c),)+ }
            }

            /// Planned actions.
            pub fn horizon(&self) -> usize {
                match self { $(PlannerConfig::$variant(c) => Settings::horizon(c),)+ }
            }

            /// Candidates per iteration (gradient: the larger of its parallel restarts and
            /// its CEM initialisation's samples).
            pub fn samples(&self) -> usize {
                match self { $(PlannerConfig::$variant(c) => Settings::samples(c),)+ }
            }

            /// Configured iterations (gradient: steps; without its CEM initialisation).
            pub fn iterations(&self) -> u32 {
                match self { $(PlannerConfig::$variant(c) => Settings::iterations(c),)+ }
            }

            /// Short name of the selected planner (`"cem"`), as [`Planner::name`].
            pub fn name(&self) -> &'static str {
                use crate::sampling::Strategy;
                match self {
                    $(PlannerConfig::$variant(_) =>
                        <<$config as Settings>::Strategy as Strategy>::NAME,)+
                }
            }

            fn memory_factor(&self) -> u64 {
                match self { $(PlannerConfig::$variant(c) => Settings::memory_factor(c),)+ }
            }

            fn fixed_memory(&self) -> u64 {
                match self { $(PlannerConfig::$variant(c) => Settings::fixed_memory(c),)+ }
            }

            /// Builds the planner (validating everything first).
            pub fn build(
                &self,
                bounds: ActionBounds,
                energy: EnergyConfig,
                seed: u64,
            ) -> Result<Box<dyn Planner>> {
                Ok(match self {
                    $(PlannerConfig::$variant(c) =>
                        Box::new($variant::new(c.clone(), bounds, energy, seed)?),)+
                })
            }

            /// The variant's index and name, as serde writes them.
            fn variant_index(&self) -> (u32, &'static str) {
                let name = match self { $(PlannerConfig::$variant(_) => stringify!($variant),)+ };
                let index = VARIANTS.iter().position(|v| *v == name).unwrap_or(0) as u32;
                (index, name)
            }
        }

        impl Serialize for PlannerConfig {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use zplan_sim::serde_variant::serialize_as_struct_variant as variant;
                let (index, name) = self.variant_index();
                match self {
                    $(PlannerConfig::$variant(c) => variant(c, s, "PlannerConfig", index, name),)+
                }
            }
        }

        impl<'de> Deserialize<'de> for PlannerConfig {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct ConfigVisitor;
                impl<'de> Visitor<'de> for ConfigVisitor {
                    type Value = PlannerConfig;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a planner: one of ")?;
                        f.write_str(&VARIANTS.join(", "))
                    }
                    fn visit_enum<A: EnumAccess<'de>>(
                        self,
                        data: A,
                    ) -> std::result::Result<Self::Value, A::Error> {
                        let (tag, v) = data.variant::<Tag>()?;
                        match tag {
                            $(Tag::$variant => v
                                .struct_variant(&[], StructBody::<$config>(PhantomData))
                                .map(PlannerConfig::$variant),)+
                        }
                    }
                }
                d.deserialize_enum("PlannerConfig", VARIANTS, ConfigVisitor)
            }
        }

        $(
            $(#[$doc])*
            ///
            #[doc = concat!("Built from [`", stringify!($config), "`]; a [`Planner`].")]
            pub struct $variant(
                pub(crate) SamplingPlanner<<$config as Settings>::Strategy>,
            );

            impl $variant {
                /// A validated planner; `seed` fixes its random stream.
                ///
                /// # Errors
                /// [`crate::PlannerError::InvalidConfig`] naming the first field out of range
                /// (config, bounds or energy).
                pub fn new(
                    config: $config,
                    bounds: ActionBounds,
                    energy: EnergyConfig,
                    seed: u64,
                ) -> Result<Self> {
                    Ok(Self(SamplingPlanner::new(config, bounds, energy, seed)?))
                }

                /// The config.
                pub fn config(&self) -> &$config {
                    crate::sampling::Strategy::config(&self.0.strategy)
                }
            }

            impl Planner for $variant {
                fn name(&self) -> &str {
                    self.0.name()
                }
                fn horizon(&self) -> usize {
                    self.0.horizon()
                }
                fn bounds(&self) -> &ActionBounds {
                    self.0.bounds()
                }
                fn plan(
                    &mut self,
                    model: &dyn WorldModel,
                    z0: &Tensor,
                    z_goal: &Tensor,
                    warm_start: Option<&Plan>,
                    budget: &Budget,
                ) -> Result<PlanOutput> {
                    self.0.plan(model, z0, z_goal, warm_start, budget)
                }
                fn reset(&mut self) {
                    self.0.reset()
                }
                fn reseed(&mut self, seed: u64) {
                    self.0.reseed(seed)
                }
            }

            impl From<$config> for PlannerConfig {
                fn from(c: $config) -> Self {
                    PlannerConfig::$variant(c)
                }
            }
        )+
    };
}

planners! {
    /// Cross-entropy method: sample around a diagonal Gaussian, refit it to the elites,
    /// repeat.
    Cem(CemConfig),
    /// Improved CEM (iCEM): colored noise along the horizon, elites kept across iterations
    /// and plans, a decaying population.
    ICem(ICemConfig) alias "Icem",
    /// Model predictive path integral (MPPI): an exponentially weighted average of sampled
    /// sequences.
    Mppi(MppiConfig),
    /// Adam on the actions through the model's gradients ([`WorldModel::supports_grad`]),
    /// clamped to the bounds after every step, optionally started from a few CEM iterations;
    /// returns the best sequence evaluated.
    Gradient(GradientConfig),
}

/// Deserialises a variant's body with the config's own derived struct impl.
struct StructBody<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for StructBody<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("planner settings")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig::Cem(CemConfig::default())
    }
}

impl PlannerConfig {
    /// Estimated peak bytes of one planning iteration for a model with `action_dim` action
    /// entries and `latent_numel` latent entries: the candidates' actions (sampled, clipped,
    /// on the model's device), their predicted latents with room for the model's activations,
    /// the energies, and the planner's fixed buffers (iCEM's noise matrix). Saturates instead
    /// of overflowing, so absurd sizes give a huge estimate, never a wrong small one.
    pub fn memory_estimate(&self, action_dim: usize, latent_numel: usize) -> u64 {
        let per_step = 4u64
            .saturating_mul(4)
            .saturating_mul(action_dim as u64)
            .saturating_add(4u64.saturating_mul(4).saturating_mul(latent_numel as u64))
            .saturating_add(8);
        zplan_io::bytes_of(&[
            self.samples() as u64,
            self.horizon() as u64,
            per_step,
            self.memory_factor(),
        ])
        .saturating_add(self.fixed_memory())
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
        // Serialising plain data to a string cannot fail.
        ron::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered planner round-trips through RON and JSON, and names itself.
    #[test]
    fn every_planner_round_trips() {
        let all = [
            PlannerConfig::Cem(CemConfig::default()),
            PlannerConfig::ICem(ICemConfig::default()),
            PlannerConfig::Mppi(MppiConfig::default()),
            PlannerConfig::Gradient(GradientConfig {
                init_cem: Some(CemConfig::default()),
                ..GradientConfig::default()
            }),
        ];
        assert_eq!(all.len(), VARIANTS.len());
        for cfg in all {
            let ron = cfg.to_ron_string();
            assert!(ron.starts_with(cfg.variant_index().1), "{ron}");
            assert_eq!(PlannerConfig::from_ron_str(&ron).unwrap(), cfg, "{ron}");
            let json = serde_json::to_string(&cfg).unwrap();
            assert_eq!(serde_json::from_str::<PlannerConfig>(&json).unwrap(), cfg);
            let planner = cfg
                .build(
                    ActionBounds::symmetric(2, 1.0).unwrap(),
                    EnergyConfig::default(),
                    0,
                )
                .unwrap();
            assert_eq!(planner.name(), cfg.name());
        }
        assert!(matches!(
            PlannerConfig::from_ron_str("Icem(samples: 20)").unwrap(),
            PlannerConfig::ICem(_)
        ));
    }
}
