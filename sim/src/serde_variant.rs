//! Serialising an enum whose variants wrap config structs (`Enum::Variant(Config)`) as struct
//! variants (`Variant(field: ...)` in RON), the file syntax of scenario and planner configs.

use serde::ser::{
    self, Impossible, Serialize, SerializeStruct, SerializeStructVariant, Serializer,
};

const NOT_A_STRUCT: &str = "the settings of an enum variant must serialise as a struct";

/// Serialises `value` (a struct) as variant `variant` (number `index`) of the enum `enum_name`
/// through `serializer`, so `Enum::Variant(Config { a, b })` writes as `Variant(a: .., b: ..)`
/// instead of a newtype variant. Anything but a struct is an error.
///
/// # Errors
/// The serializer's errors, or a custom error when `value` is not a struct.
pub fn serialize_as_struct_variant<T: ?Sized + Serialize, S: Serializer>(
    value: &T,
    serializer: S,
    enum_name: &'static str,
    index: u32,
    variant: &'static str,
) -> Result<S::Ok, S::Error> {
    value.serialize(AsStructVariant {
        inner: serializer,
        enum_name,
        index,
        variant,
    })
}

/// A serializer adapter that turns the struct the inner value serialises into a struct
/// variant of the outer enum; any other shape is an error.
struct AsStructVariant<S> {
    inner: S,
    enum_name: &'static str,
    index: u32,
    variant: &'static str,
}

/// Forwards struct fields to a struct variant.
struct VariantFields<V>(V);

impl<V: SerializeStructVariant> SerializeStruct for VariantFields<V> {
    type Ok = V::Ok;
    type Error = V::Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> std::result::Result<(), V::Error> {
        self.0.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> std::result::Result<(), V::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> std::result::Result<V::Ok, V::Error> {
        self.0.end()
    }
}

macro_rules! not_a_struct {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            fn $method(self, $($arg: $ty),*) -> std::result::Result<$ret, S::Error> {
                $(let _ = $arg;)*
                Err(ser::Error::custom(NOT_A_STRUCT))
            }
        )*
    };
}

impl<S: Serializer> Serializer for AsStructVariant<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = VariantFields<S::SerializeStructVariant>;
    type SerializeStructVariant = Impossible<S::Ok, S::Error>;

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> std::result::Result<Self::SerializeStruct, S::Error> {
        self.inner
            .serialize_struct_variant(self.enum_name, self.index, self.variant, len)
            .map(VariantFields)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    not_a_struct! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_f32(v: f32) -> S::Ok;
        serialize_f64(v: f64) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_str(v: &str) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
        serialize_seq(len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(len: usize) -> Self::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: ?Sized + Serialize>(
        self,
        _value: &T,
    ) -> std::result::Result<S::Ok, S::Error> {
        Err(ser::Error::custom(NOT_A_STRUCT))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> std::result::Result<S::Ok, S::Error> {
        Err(ser::Error::custom(NOT_A_STRUCT))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> std::result::Result<S::Ok, S::Error> {
        Err(ser::Error::custom(NOT_A_STRUCT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Settings {
        a: u32,
        b: Option<f32>,
    }

    struct Wrapper<T>(T);

    impl<T: Serialize> Serialize for Wrapper<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_as_struct_variant(&self.0, s, "Kind", 1, "Fast")
        }
    }

    #[test]
    fn structs_become_struct_variants_and_other_shapes_fail() {
        let ok = ron::to_string(&Wrapper(Settings { a: 3, b: None })).unwrap();
        assert_eq!(ok, "Fast(a:3,b:None)");
        let err = ron::to_string(&Wrapper(7u32)).unwrap_err().to_string();
        assert!(err.contains("must serialise as a struct"), "{err}");
    }
}
