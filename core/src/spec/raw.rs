//! The serde shape of a spec file (serde_yaml), with located errors.

use super::{Per, Reading};
use crate::error::{did_you_mean, ErrorKind, Pos, SpecError};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// An optarch spec: a first-order method written as a recurrence, unrolled into a network
/// (docs/SPEC.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "optarch spec")]
pub struct RawSpec {
    /// The method's name: letters, digits and `_` (names generated code and pictures).
    pub name: String,
    /// One line saying what the method is.
    #[serde(default)]
    pub summary: Option<String>,
    /// How `grad(v)` relates to the learned block B: `residual` (grad = -B, gradient descent
    /// is ResNet) or `objective` (grad = v - B).
    #[serde(default)]
    pub gradient: Option<Reading>,
    /// Named coefficients: a number, a schedule in `k` (a string), or a table (learnable,
    /// searchable, with a start for recursive schedules).
    #[serde(default)]
    pub params: IndexMap<String, RawParam>,
    /// The state sequences the step updates, e.g. `[z]` or `[z, y]`.
    pub state: Vec<String>,
    /// The state value the network's input is (default: the first state at index 0).
    #[serde(default)]
    pub input: Option<String>,
    /// Values before the first step, e.g. `z[-1]: z[0]`.
    #[serde(default)]
    pub init: IndexMap<String, Text>,
    /// One line per state value the step computes, e.g. `z[k+1]: z[k] - h * grad(z[k])`.
    pub step: IndexMap<String, Text>,
    /// The state sequence (or expression) the network returns.
    pub output: Text,
}

/// A parameter as written: a number, a schedule string, or a table.
#[derive(Debug)]
pub enum RawParam {
    Number(f64),
    Schedule(String),
    Table(ParamTable),
}

/// The table form of a parameter.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamTable {
    /// A fixed value.
    pub value: Option<f64>,
    /// A function of `k` (and `j` inside history sums), e.g. `(k - 1) / (k + 2)`.
    pub schedule: Option<String>,
    /// Values of a recursive schedule at its first indices, e.g. `{0: 1.0}`.
    pub start: Option<IndexMap<i64, f64>>,
    /// The starting value of a learnable coefficient.
    pub init: Option<f64>,
    /// Learn the coefficient with the network's weights.
    pub learn: Option<bool>,
    /// How many scalars a learnable coefficient has: `shared`, one per `step`, one per `edge`.
    pub per: Option<Per>,
    /// A search range `[low, high]`.
    pub range: Option<[f64; 2]>,
    /// The values a search tries.
    pub choices: Option<Vec<f64>>,
    /// The value outside a search, for a searchable parameter.
    pub default: Option<f64>,
    /// What the parameter means.
    pub doc: Option<String>,
}

/// An expression: a string, or a number written without quotes.
#[derive(Debug, Clone)]
pub struct Text(pub String);

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expression".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An expression such as `z[k] - h * grad(z[k])`, or a number.",
            "type": ["string", "number"]
        })
    }
}

impl JsonSchema for RawParam {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Param".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<ParamTable>();
        schemars::json_schema!({
            "description": "A number, a schedule in `k` (a string), or a table.",
            "anyOf": [{"type": "number"}, {"type": "string"}, table]
        })
    }
}

/// The JSON Schema of spec files, as editors with a YAML language server read it
/// (`schemas/spec.schema.json`, referenced by every shipped spec).
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(RawSpec).to_value()
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an expression such as `z[k] - h * grad(z[k])`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(format!("{v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawParam;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a number, a schedule string, or a table such as \
                     { schedule: ... } / { init: ..., learn: true } / { range: [a, b] } / { choices: [...] }",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawParam, E> {
                Ok(RawParam::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawParam, E> {
                Ok(RawParam::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawParam, E> {
                Ok(RawParam::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawParam, E> {
                Ok(RawParam::Schedule(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawParam, A::Error> {
                ParamTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawParam::Table)
            }
        }
        d.deserialize_any(V)
    }
}

const TOP_KEYS: &[&str] = &[
    "name", "summary", "gradient", "params", "state", "input", "init", "step", "output",
];
const PARAM_KEYS: &[&str] = &[
    "value", "schedule", "start", "init", "learn", "per", "range", "choices", "default", "doc",
];

/// Deserialises the top level, turning serde_yaml's errors into located spec errors.
pub fn parse(file: &str, text: &str) -> Result<RawSpec, SpecError> {
    serde_yaml::from_str::<RawSpec>(text).map_err(|e| classify(file, text, &e))
}

fn classify(file: &str, text: &str, e: &serde_yaml::Error) -> SpecError {
    let pos = e.location().map(|l| Pos {
        line: l.line(),
        column: l.column(),
    });
    let full = e.to_string();
    let msg = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    let backticked = |m: &str| -> Option<String> {
        let a = m.find('`')?;
        let b = m[a + 1..].find('`')?;
        Some(m[a + 1..a + 1 + b].to_string())
    };
    let after = |phrase: &str| msg.find(phrase).map(|i| &msg[i + phrase.len()..]);
    let (kind, hint) = if let Some(rest) = after("unknown field ") {
        let word = backticked(rest).unwrap_or_default();
        let keys = if PARAM_KEYS.iter().any(|k| rest.contains(&format!("`{k}`")))
            && !rest.contains("`step`")
        {
            PARAM_KEYS
        } else {
            TOP_KEYS
        };
        let hint = match did_you_mean(&word, keys.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the allowed keys here are: {}", keys.join(", ")),
        };
        (ErrorKind::UnknownKey, hint)
    } else if let Some(rest) = after("unknown variant ") {
        let word = backticked(rest).unwrap_or_default();
        let hint = match did_you_mean(&word, ["residual", "objective", "shared", "step", "edge"]) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "see docs/SPEC.md for the allowed values".into(),
        };
        (ErrorKind::InvalidValue, hint)
    } else if msg.contains("missing field") {
        let word = backticked(&msg).unwrap_or_default();
        let example = match word.as_str() {
            "name" => "name: my_method",
            "state" => "state: [z]",
            "step" => "step:\n  z[k+1]: z[k] - h * grad(z[k])",
            "output" => "output: z",
            _ => "",
        };
        (
            ErrorKind::MissingKey,
            format!("add `{example}` to the spec"),
        )
    } else if msg.contains("duplicate field") || msg.contains("duplicate entry") {
        (
            ErrorKind::Duplicate,
            "remove one of the two definitions".into(),
        )
    } else if msg.contains("invalid type")
        || msg.contains("invalid length")
        || msg.contains("invalid value")
    {
        (
            ErrorKind::WrongType,
            "see docs/SPEC.md: `state` is a list, `step`/`init`/`params` are mappings, \
             expressions are strings, numbers are numbers"
                .into(),
        )
    } else {
        (
            ErrorKind::YamlSyntax,
            "check indentation and quoting".into(),
        )
    };
    SpecError::new(kind, msg)
        .with_hint(hint)
        .at(file, text, pos)
}
