//! The JSON Schemas of the spec and search-configuration formats (`schemas/*.schema.json`):
//! generated from the types that read the files, referenced by every shipped file (the YAML
//! language server's `# yaml-language-server: $schema=...` line), and every shipped file
//! validates against its schema while broken ones do not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A YAML file as the JSON a YAML language server validates: keys as strings.
fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap(),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        other => panic!("unsupported key {other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// `^-?\d+$`, the one pattern the schemas use (integer keys of `start:`).
fn matches(pattern: &str, s: &str) -> bool {
    assert_eq!(
        pattern, "^-?\\d+$",
        "the validator knows no other pattern: extend it"
    );
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        other => panic!("unknown type {other}"),
    }
}

/// A validator for the keywords schemars writes (draft 2020-12): enough to check the shipped
/// files, and loud about any keyword it does not know.
fn validate(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{at}: not allowed here"));
            return;
        }
        Value::Object(s) => s,
        other => panic!("not a schema: {other}"),
    };
    for (k, kv) in s {
        match k.as_str() {
            "$ref" => {
                let name = kv
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .unwrap_or_else(|| panic!("unsupported $ref {kv}"));
                validate(root, &root["$defs"][name], v, at, errors);
            }
            "type" => {
                let ok = match kv {
                    Value::String(t) => has_type(v, t),
                    Value::Array(ts) => ts.iter().any(|t| has_type(v, t.as_str().unwrap())),
                    _ => panic!("bad type {kv}"),
                };
                if !ok {
                    errors.push(format!("{at}: {v} is not of type {kv}"));
                }
            }
            "const" if v != kv => errors.push(format!("{at}: {v} is not {kv}")),
            "enum" if !kv.as_array().unwrap().contains(v) => {
                errors.push(format!("{at}: {v} is none of {kv}"))
            }
            "minimum" => {
                if let (Some(x), Some(m)) = (v.as_f64(), kv.as_f64()) {
                    if x < m {
                        errors.push(format!("{at}: {x} is below {m}"));
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(a) = v.as_array() {
                    let n = kv.as_u64().unwrap() as usize;
                    if (k == "minItems" && a.len() < n) || (k == "maxItems" && a.len() > n) {
                        errors.push(format!("{at}: {} items ({k} {n})", a.len()));
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        validate(root, kv, x, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in kv.as_array().unwrap() {
                        if !o.contains_key(r.as_str().unwrap()) {
                            errors.push(format!("{at}: {r} is missing"));
                        }
                    }
                }
            }
            "properties" | "patternProperties" => {}
            "additionalProperties" => {}
            "anyOf" | "oneOf" => {
                let passing = kv
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|alt| {
                        let mut e = Vec::new();
                        validate(root, alt, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if k == "anyOf" {
                    passing >= 1
                } else {
                    passing == 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {v} matches {passing} of the {k} alternatives"
                    ));
                }
            }
            "description" | "default" | "format" | "title" | "$schema" | "$defs" | "const"
            | "enum" => {}
            other => panic!("the validator does not know the keyword {other}: extend it"),
        }
    }
    // Objects: each key by its property, else a pattern, else additionalProperties.
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        let patterns = s.get("patternProperties").and_then(Value::as_object);
        if props.is_none() && patterns.is_none() && !s.contains_key("additionalProperties") {
            return;
        }
        for (key, x) in o {
            let here = format!("{at}.{key}");
            if let Some(p) = props.and_then(|p| p.get(key)) {
                validate(root, p, x, &here, errors);
            } else if let Some((_, p)) = patterns
                .into_iter()
                .flatten()
                .find(|(pat, _)| matches(pat, key))
            {
                validate(root, p, x, &here, errors);
            } else {
                match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{here}: unknown key"));
                    }
                    Some(extra) => validate(root, extra, x, &here, errors),
                    None => {}
                }
            }
        }
    }
}

fn errors_of(schema: &Value, yaml: &str) -> Vec<String> {
    let v = yaml_to_json(serde_yaml::from_str(yaml).unwrap());
    let mut errors = Vec::new();
    validate(schema, schema, &v, "$", &mut errors);
    errors
}

fn schema_file(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("schemas").join(name)).unwrap())
        .unwrap()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// `schemas/*.schema.json` are what `optarch schema` generates from the types today
/// (`OPTARCH_BLESS=1` writes them anew after a change of the formats).
#[test]
fn the_shipped_schemas_are_generated_from_the_types() {
    for (format, file) in [
        ("spec", "spec.schema.json"),
        ("search", "search.schema.json"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_optarch"))
            .args(["schema", format])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = root().join("schemas").join(file);
        if std::env::var("OPTARCH_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &out.stdout).unwrap();
            continue;
        }
        let shipped = std::fs::read(&path).unwrap();
        assert!(
            shipped == out.stdout,
            "{} is not what `optarch schema {format}` prints: run `optarch schema {format} -o \
             schemas/{file}` (or OPTARCH_BLESS=1 cargo test -p optarch-search --test schemas)",
            path.display()
        );
    }
}

/// Every shipped spec and search configuration names its schema on its first line (the YAML
/// language server's modeline, relative to the file) and validates against it.
#[test]
fn every_shipped_file_names_and_satisfies_its_schema() {
    let specs = root().join("specs");
    let mut checked = 0;
    for (dir, file) in [
        (specs.clone(), "spec.schema.json"),
        (specs.join("search"), "search.schema.json"),
    ] {
        let schema = schema_file(file);
        for path in yaml_files(&dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            let first = text.lines().next().unwrap_or("");
            let target = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{}: no schema line first: {first}", path.display()));
            let resolved = dir.join(target);
            assert!(
                resolved.ends_with(Path::new("schemas").join(file)) && resolved.is_file(),
                "{}: {target} is not schemas/{file}",
                path.display()
            );
            let errors = errors_of(&schema, &text);
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} files");
}

/// The schemas reject what the readers reject: unknown keys, wrong types, a missing key.
#[test]
fn broken_files_fail_their_schema() {
    let spec = schema_file("spec.schema.json");
    let good = "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - h * grad(z[k])\noutput: z\n\
                params:\n  h: 1.0\n  c: {init: 0.5, learn: true, per: step}\n  t: {schedule: 't[k-1]', start: {0: 1.0}}\n";
    assert_eq!(errors_of(&spec, good), Vec::<String>::new());
    for (bad, expect) in [
        (format!("{good}stepz: 1\n"), "$.stepz: unknown key"),
        (good.replace("name: gd\n", ""), "\"name\" is missing"),
        (good.replace("per: step", "per: layer"), "$.params.c"),
        (good.replace("state: [z]", "state: z"), "$.state"),
        (good.replace("{0: 1.0}", "{first: 1.0}"), "$.params.t"),
    ] {
        let errors = errors_of(&spec, &bad);
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{expect} not among {errors:#?}\n{bad}"
        );
    }
    let search = schema_file("search.schema.json");
    let good = "name: s\nbudget: {max_epochs: 2, trials: 4}\ncandidates:\n  - spec: specs/heavy_ball.yaml\n    grid: {beta: [0.5, 0.9]}\n";
    assert_eq!(errors_of(&search, good), Vec::<String>::new());
    for (bad, expect) in [
        (
            good.replace("max_epochs: 2", "max_epochs: two"),
            "$.budget.max_epochs",
        ),
        (
            format!("{good}trainer: {{lr: 0.1}}\n"),
            "$.trainer: unknown key",
        ),
        (
            format!("{good}train: {{run: {{threads: -1}}}}\n"),
            "$.train.run.threads",
        ),
        (
            format!("{good}executor: {{kind: pbs}}\n"),
            "$.executor.kind",
        ),
    ] {
        let errors = errors_of(&search, &bad);
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{expect} not among {errors:#?}\n{bad}"
        );
    }
}
