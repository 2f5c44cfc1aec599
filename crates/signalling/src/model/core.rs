//! The machinery every model type shares: the tri-state [`Field`], conversion from and to
//! `serde_json::Value` with the JSON path of a mistyped value, and the macros that declare
//! Graph objects and enums.
//!
//! Conversion goes through `Value` rather than serde's `#[serde(flatten)]` because flatten
//! buffers the whole object before looking at it: a type error deep inside would then surface
//! with no path and no position. Here every error names the property it is about.

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::model::ModelError;

/// A property of a Graph object: absent, explicitly `null`, or a value.
///
/// Graph responses are full of `"x": null`; keeping `null` apart from absence lets a parsed
/// object be written back exactly as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Field<T> {
    /// The property is not in the object.
    #[default]
    Absent,
    /// The property is present with the value `null`.
    Null,
    /// The property has a value.
    Value(T),
}

impl<T> Field<T> {
    /// True when the property is not in the object.
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    /// True when the property is present and `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    /// The value, if the property has one (absent and `null` both give `None`).
    pub fn get(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }

    /// Mutable access to the value, if the property has one.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }

    /// The value, consuming the field.
    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }
}

impl<T> From<T> for Field<T> {
    fn from(value: T) -> Self {
        Field::Value(value)
    }
}

impl<T> From<Option<T>> for Field<T> {
    /// `None` becomes [`Field::Absent`].
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Absent, Field::Value)
    }
}

/// Where a value sits in the document, built on the stack while descending so that a path is
/// only rendered when an error needs it.
#[derive(Debug, Clone, Copy)]
pub enum Path<'a> {
    /// The document itself.
    Root,
    /// A property of the object at `parent`.
    Key(&'a Path<'a>, &'a str),
    /// An element of the array at `parent`.
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// The path of property `key` below this one.
    pub fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    /// The path of element `index` below this one.
    pub fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    fn write(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Path::Index(parent, index) => {
                parent.write(out);
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }

    /// The path as `targets[0].identity.user.id`; empty for the root.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rendered = self.render();
        if rendered.is_empty() {
            f.write_str("(document root)")
        } else {
            f.write_str(&rendered)
        }
    }
}

/// Conversion from a JSON value, naming the path of whatever does not fit.
pub trait FromJson: Sized {
    /// Converts `value`, found at `at`.
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError>;
}

/// Conversion to a JSON value. Never fails: every model type has a JSON form.
pub trait ToJson {
    /// The JSON form of `self`.
    fn to_json(&self) -> Value;
}

/// The JSON kind of a value, for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<T: FromJson> FromJson for Field<T> {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::Null => Ok(Field::Null),
            other => T::from_json(other, at).map(Field::Value),
        }
    }
}

impl<T: ToJson> Field<T> {
    /// Inserts the property into `map` unless it is absent.
    pub(crate) fn put(&self, map: &mut Map<String, Value>, key: &str) {
        match self {
            Field::Absent => {}
            Field::Null => {
                map.insert(key.to_owned(), Value::Null);
            }
            Field::Value(v) => {
                map.insert(key.to_owned(), v.to_json());
            }
        }
    }
}

impl FromJson for String {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(ModelError::wrong_type(at, "a string", &other)),
        }
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl FromJson for bool {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(ModelError::wrong_type(at, "a boolean", &other)),
        }
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FromJson for i64 {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| ModelError::out_of_range(at, "a 64-bit integer")),
            other => Err(ModelError::wrong_type(at, "an integer", other)),
        }
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Value {
        Value::Number(Number::from(*self))
    }
}

impl FromJson for i32 {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| ModelError::out_of_range(at, "a 32-bit integer")),
            other => Err(ModelError::wrong_type(at, "an integer", other)),
        }
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Value {
        Value::Number(Number::from(*self))
    }
}

impl FromJson for Value {
    fn from_json(value: Value, _at: &Path<'_>) -> Result<Self, ModelError> {
        Ok(value)
    }
}

impl ToJson for Value {
    fn to_json(&self) -> Value {
        self.clone()
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item, &at.index(i)))
                .collect(),
            other => Err(ModelError::wrong_type(at, "an array", &other)),
        }
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        T::from_json(value, at).map(Box::new)
    }
}

impl<T: ToJson> ToJson for Box<T> {
    fn to_json(&self) -> Value {
        (**self).to_json()
    }
}

/// The `@odata.type` of an object without its leading `#`, if it has a string one.
pub(crate) fn odata_type_of(map: &Map<String, Value>) -> Option<&str> {
    match map.get("@odata.type") {
        Some(Value::String(s)) => Some(s.strip_prefix('#').unwrap_or(s)),
        _ => None,
    }
}

/// Compares a raw `@odata.type` (with or without `#`) with a qualified name such as
/// `microsoft.graph.call`. Graph treats type names case-insensitively.
pub(crate) fn odata_type_is(raw: &str, qualified: &str) -> bool {
    raw.strip_prefix('#')
        .unwrap_or(raw)
        .eq_ignore_ascii_case(qualified)
}

/// Declares a Graph object: a struct whose properties are all [`Field`]s, plus `extra` for the
/// properties the model does not know, with `FromJson`, `ToJson`, serde and `GraphType` impls.
/// Properties are written back in declaration order, then the unknown ones in input order.
macro_rules! graph_object {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $(
                $(#[$fattr:meta])*
                $key:literal => $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Default)]
        #[non_exhaustive]
        pub struct $name {
            $(
                $(#[$fattr])*
                pub $field: $crate::model::Field<$ty>,
            )*
            /// Properties the model does not know, kept so that they survive a round trip.
            pub extra: ::serde_json::Map<String, ::serde_json::Value>,
        }

        impl $crate::model::core::FromJson for $name {
            fn from_json(
                value: ::serde_json::Value,
                at: &$crate::model::core::Path<'_>,
            ) -> Result<Self, $crate::model::ModelError> {
                let ::serde_json::Value::Object(map) = value else {
                    return Err($crate::model::ModelError::wrong_type(at, "an object", &value));
                };
                let mut out = Self::default();
                for (key, value) in map {
                    match key.as_str() {
                        $(
                            $key => {
                                out.$field = $crate::model::core::FromJson::from_json(
                                    value,
                                    &at.key($key),
                                )?;
                            }
                        )*
                        _ => {
                            out.extra.insert(key, value);
                        }
                    }
                }
                Ok(out)
            }
        }

        impl $crate::model::core::ToJson for $name {
            fn to_json(&self) -> ::serde_json::Value {
                let mut map = ::serde_json::Map::new();
                $( self.$field.put(&mut map, $key); )*
                for (key, value) in &self.extra {
                    if !map.contains_key(key) {
                        map.insert(key.clone(), value.clone());
                    }
                }
                ::serde_json::Value::Object(map)
            }
        }

        $crate::model::core::graph_type_impls!($name);
    };
}

/// Declares a Graph string enum: the documented values plus `Unknown(String)` for values this
/// model does not know, which are written back verbatim.
macro_rules! graph_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident {
            $(
                $(#[$vattr:meta])*
                $variant:ident => $text:literal,
            )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$vattr])*
                $variant,
            )*
            /// A value this model does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every documented value, in the order the Graph documentation lists them.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),*];

            /// The value as Graph spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Unknown(s) => s,
                }
            }

            /// Maps Graph's spelling to a variant; anything else becomes `Unknown`.
            pub fn from_graph(text: &str) -> Self {
                match text {
                    $( $text => $name::$variant, )*
                    other => $name::Unknown(other.to_owned()),
                }
            }

            /// True for a documented value.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::model::core::FromJson for $name {
            fn from_json(
                value: ::serde_json::Value,
                at: &$crate::model::core::Path<'_>,
            ) -> Result<Self, $crate::model::ModelError> {
                match value {
                    ::serde_json::Value::String(s) => Ok(Self::from_graph(&s)),
                    other => Err($crate::model::ModelError::wrong_type(at, "a string", &other)),
                }
            }
        }

        impl $crate::model::core::ToJson for $name {
            fn to_json(&self) -> ::serde_json::Value {
                ::serde_json::Value::String(self.as_str().to_owned())
            }
        }

        $crate::model::core::graph_type_impls!($name);
    };
}

/// serde and `GraphType` impls for a type that has `FromJson` and `ToJson`.
macro_rules! graph_type_impls {
    ($name:ident) => {
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(
                    &$crate::model::core::ToJson::to_json(self),
                    serializer,
                )
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let value =
                    <::serde_json::Value as ::serde::Deserialize>::deserialize(deserializer)?;
                <Self as $crate::model::core::FromJson>::from_json(
                    value,
                    &$crate::model::core::Path::Root,
                )
                .map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }

        impl $crate::model::core::Sealed for $name {}

        impl $crate::model::GraphType for $name {
            fn from_json_value(
                value: ::serde_json::Value,
            ) -> Result<Self, $crate::model::ModelError> {
                <Self as $crate::model::core::FromJson>::from_json(
                    value,
                    &$crate::model::core::Path::Root,
                )
            }

            fn to_json_value(&self) -> ::serde_json::Value {
                $crate::model::core::ToJson::to_json(self)
            }
        }
    };
}

/// Keeps [`crate::model::GraphType`] implemented by this crate's model types only.
pub trait Sealed {}

pub(crate) use graph_enum;
pub(crate) use graph_object;
pub(crate) use graph_type_impls;
