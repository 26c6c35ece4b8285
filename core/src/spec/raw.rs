//! The serde shape of a spec file (serde_yaml), with located errors.

use super::{Per, Reading};
use crate::error::{did_you_mean, ErrorKind, Pos, SpecError};
use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The top level of a spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub name: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub gradient: Option<Reading>,
    #[serde(default)]
    pub params: IndexMap<String, RawParam>,
    pub state: Vec<String>,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub init: IndexMap<String, Text>,
    pub step: IndexMap<String, Text>,
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamTable {
    pub value: Option<f64>,
    pub schedule: Option<String>,
    pub start: Option<IndexMap<i64, f64>>,
    pub init: Option<f64>,
    pub learn: Option<bool>,
    pub per: Option<Per>,
    pub range: Option<[f64; 2]>,
    pub choices: Option<Vec<f64>>,
    pub default: Option<f64>,
    pub doc: Option<String>,
}

/// An expression: a string, or a number written without quotes.
#[derive(Debug, Clone)]
pub struct Text(pub String);

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
