//! Scenario configuration: one RON-deserialisable enum over every scenario family.
//!
//! The file syntax is the family's variant name followed by its fields, every field optional:
//!
//! ```ron
//! TwoRooms(door_width: 0.6, max_steps: 150)
//! ```
//!
//! Adding a family takes a module with a config type implementing [`Scenario`] and one line in
//! the `scenario_families!` invocation below.

use crate::push::PushConfig;
use crate::reach::ReachConfig;
use crate::ron_locate::{FieldMap, Pos};
use crate::two_rooms::TwoRoomsConfig;
use crate::{Env, EnvSpec, Result, SimError};
use serde::de::{
    self, DeserializeOwned, Deserializer, EnumAccess, MapAccess, VariantAccess, Visitor,
};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// What a scenario family's configuration provides. Implemented by [`TwoRoomsConfig`],
/// [`ReachConfig`] and [`PushConfig`].
///
/// Configs are plain data: every field has a default (`Default` gives a solvable scenario),
/// unknown fields are rejected (`#[serde(deny_unknown_fields)]`), and [`Scenario::validate`]
/// checks ranges and consistency, returning [`SimError::InvalidConfig`] naming the field.
pub trait Scenario:
    Serialize + DeserializeOwned + Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// Family name, as in [`EnvSpec::kind`], e.g. `"two_rooms"`.
    const KIND: &'static str;
    /// Checks ranges and consistency. Range checks are written so that NaN fails them.
    fn validate(&self) -> Result<()>;
    /// The spec of the environment [`Scenario::build`] would return, without building it.
    fn spec(&self) -> EnvSpec;
    /// Validates, then builds the environment (not yet reset).
    fn build(&self) -> Result<Box<dyn Env>>;
}

macro_rules! scenario_families {
    ($( $(#[$doc:meta])* $variant:ident($config:ty), )+) => {
        /// A scenario of any family, as written in a RON file: `TwoRooms(...)`, `Reach(...)`,
        /// `Push(...)`.
        ///
        /// Serialises as a struct variant (`TwoRooms(door_width: 0.6, ..)` in RON,
        /// `{"TwoRooms": {"door_width": 0.6, ..}}` in JSON), so it can be embedded in other
        /// files and read back with default `ron` options.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ScenarioConfig {
            $( $(#[$doc])* $variant($config), )+
        }

        /// Variant names, in declaration order.
        const VARIANTS: &[&str] = &[$(stringify!($variant)),+];

        #[derive(Deserialize)]
        #[serde(variant_identifier)]
        enum Tag { $($variant),+ }

        impl ScenarioConfig {
            /// The family name (`"two_rooms"`, `"reach"`, `"push"`), as in [`EnvSpec::kind`].
            pub fn kind(&self) -> &'static str {
                match self { $(ScenarioConfig::$variant(_) => <$config as Scenario>::KIND,)+ }
            }

            /// Checks ranges and consistency (start and goal regions free and connected, door
            /// wider than the ball, ...). Errors are [`SimError::InvalidConfig`] naming the field.
            ///
            /// # Errors
            /// The first problem found.
            pub fn validate(&self) -> Result<()> {
                match self { $(ScenarioConfig::$variant(c) => c.validate(),)+ }
            }

            /// The spec of the environment this config builds, without building it.
            pub fn spec(&self) -> EnvSpec {
                match self { $(ScenarioConfig::$variant(c) => c.spec(),)+ }
            }

            /// Validates and builds the environment. Call [`Env::reset`] before stepping it.
            ///
            /// # Errors
            /// Validation errors, as [`ScenarioConfig::validate`].
            pub fn build(&self) -> Result<Box<dyn Env>> {
                match self { $(ScenarioConfig::$variant(c) => c.build(),)+ }
            }

            fn variant_name(&self) -> &'static str {
                match self { $(ScenarioConfig::$variant(_) => stringify!($variant),)+ }
            }
        }

        impl Serialize for ScenarioConfig {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                let variant = self.variant_name();
                let index = VARIANTS.iter().position(|v| *v == variant).unwrap_or(0) as u32;
                match self {
                    $(ScenarioConfig::$variant(c) => crate::serde_variant::serialize_as_struct_variant(
                        c, serializer, "ScenarioConfig", index, variant,
                    ),)+
                }
            }
        }

        impl<'de> Deserialize<'de> for ScenarioConfig {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                struct EnumVisitor;
                impl<'de> Visitor<'de> for EnumVisitor {
                    type Value = ScenarioConfig;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a scenario: one of ")?;
                        f.write_str(&VARIANTS.join(", "))
                    }
                    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> std::result::Result<Self::Value, A::Error> {
                        let (tag, variant) = data.variant::<Tag>()?;
                        match tag {
                            $(Tag::$variant => variant
                                .struct_variant(&[], StructVisitor::<$config>(PhantomData))
                                .map(ScenarioConfig::$variant),)+
                        }
                    }
                }
                deserializer.deserialize_enum("ScenarioConfig", VARIANTS, EnumVisitor)
            }
        }

        $(
            impl From<$config> for ScenarioConfig {
                fn from(c: $config) -> Self {
                    ScenarioConfig::$variant(c)
                }
            }
        )+
    };
}

scenario_families! {
    /// A point mass in two rooms joined by a door ([`crate::two_rooms`]).
    TwoRooms(TwoRoomsConfig),
    /// A planar N-link arm reaching for a point ([`crate::reach`]).
    Reach(ReachConfig),
    /// A pusher moving a block to a pose ([`crate::push`]).
    Push(PushConfig),
}

impl ScenarioConfig {
    /// Rewrites a state vector into what a camera image of the scene determines (for latent
    /// probes of pixel models): a square push block's yaw only modulo a quarter turn
    /// ([`PushConfig::identifiable_state`]); other families' states are left as they are.
    pub fn identifiable_state(&self, state: &mut [f32]) {
        if let ScenarioConfig::Push(c) = self {
            c.identifiable_state(state);
        }
    }

    /// Reads, parses and validates a scenario file.
    ///
    /// # Errors
    /// [`SimError::Io`] when the file cannot be read, [`SimError::Parse`] for malformed RON,
    /// [`SimError::Invalid`] for out-of-range values; the last two name the file, line, column
    /// and field.
    pub fn load(path: &Path) -> Result<ScenarioConfig> {
        let text = zplan_io::read_text(path, "a scenario file", zplan_io::MAX_CONFIG_BYTES)?;
        Self::from_ron_str(&text, &path.display().to_string())
    }

    /// Parses and validates RON text; `origin` names the text in errors (usually its file).
    ///
    /// `Option` fields may be written bare (`door_center: 1.0`), as the `implicit_some` RON
    /// extension is enabled.
    ///
    /// # Errors
    /// [`SimError::Parse`] or [`SimError::Invalid`], with line, column and field.
    pub fn from_ron_str(text: &str, origin: &str) -> Result<ScenarioConfig> {
        zplan_io::check_nesting(origin, text, zplan_io::MAX_NESTING)?;
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let config: ScenarioConfig = options.from_str(text).map_err(|e| {
            let pos = Pos {
                line: e.position.line,
                col: e.position.col,
            };
            SimError::Parse {
                origin: origin.to_string(),
                line: pos.line,
                col: pos.col,
                field: FieldMap::new(text).field_at(pos),
                message: e.code.to_string(),
            }
        })?;
        config.validate().map_err(|e| match e {
            SimError::InvalidConfig { field, message } => {
                let pos = FieldMap::new(text).locate(&field);
                SimError::Invalid {
                    origin: origin.to_string(),
                    line: pos.line,
                    col: pos.col,
                    field,
                    message,
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Pretty RON text that [`ScenarioConfig::from_ron_str`] reads back to an equal config.
    pub fn to_ron_string(&self) -> String {
        let pretty = ron::ser::PrettyConfig::default().struct_names(false);
        // Serialising plain data to a string cannot fail.
        ron::ser::to_string_pretty(self, pretty).unwrap_or_default()
    }
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig::TwoRooms(TwoRoomsConfig::default())
    }
}

/// Deserialises a family config from the fields of a struct variant.
struct StructVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for StructVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scenario's fields in parentheses, e.g. `TwoRooms(door_width: 0.6)`")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_family_with_defaults() {
        for (text, kind) in [
            ("TwoRooms()", "two_rooms"),
            ("Reach()", "reach"),
            ("Push()", "push"),
        ] {
            let c = ScenarioConfig::from_ron_str(text, "t.ron").unwrap();
            assert_eq!(c.kind(), kind);
            assert_eq!(c.spec().kind, kind);
        }
    }

    #[test]
    fn round_trips_through_ron() {
        let mut tr = TwoRoomsConfig {
            door_center: Some(crate::two_rooms::DoorCenter::Fixed(0.9)),
            ..Default::default()
        };
        tr.walls.push(crate::two_rooms::WallSegment {
            from: (0.5, 0.0),
            to: (0.5, 0.5),
            thickness: None,
        });
        let configs = [
            ScenarioConfig::TwoRooms(tr),
            ScenarioConfig::Reach(ReachConfig::default()),
            ScenarioConfig::Push(PushConfig {
                shape: crate::push::BlockShape::T,
                ..Default::default()
            }),
        ];
        for c in configs {
            let text = c.to_ron_string();
            assert!(
                text.starts_with(match &c {
                    ScenarioConfig::TwoRooms(_) => "TwoRooms(",
                    ScenarioConfig::Reach(_) => "Reach(",
                    ScenarioConfig::Push(_) => "Push(",
                }),
                "{text}"
            );
            assert_eq!(
                ScenarioConfig::from_ron_str(&text, "rt").unwrap(),
                c,
                "{text}"
            );
            // Plain `ron` without extensions reads it back too (as embedding files do).
            let plain: ScenarioConfig = ron::from_str(&text).unwrap();
            assert_eq!(plain, c);
        }
    }

    #[test]
    fn round_trips_through_json() {
        let c = ScenarioConfig::Push(PushConfig {
            max_steps: 9,
            ..Default::default()
        });
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.starts_with("{\"Push\":{"), "{text}");
        assert_eq!(serde_json::from_str::<ScenarioConfig>(&text).unwrap(), c);
        let value = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::from_value::<ScenarioConfig>(value).unwrap(), c);
        let err =
            serde_json::from_str::<ScenarioConfig>("{\"Push\":{\"max_stepz\":3}}").unwrap_err();
        assert!(err.to_string().contains("max_stepz"), "{err}");
    }

    #[test]
    fn embeds_in_other_structs() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Outer {
            name: String,
            scenario: ScenarioConfig,
        }
        let o = Outer {
            name: "x".into(),
            scenario: ScenarioConfig::Reach(ReachConfig::default()),
        };
        let text = ron::to_string(&o).unwrap();
        assert_eq!(ron::from_str::<Outer>(&text).unwrap(), o);
        let inline: Outer = ron::from_str("(name: \"y\", scenario: Push(max_steps: 7))").unwrap();
        match inline.scenario {
            ScenarioConfig::Push(p) => assert_eq!(p.max_steps, 7),
            other => panic!("{other:?}"),
        }
    }
}
