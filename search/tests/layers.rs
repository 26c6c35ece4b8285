//! The layers of optarch-core and optarch-search import one way (docs/ARCHITECTURE.md): a
//! module may use the modules listed before it under the same parent, its own ancestors and its
//! own descendants, never a module listed after it. A reference to a later sibling is an import
//! loop waiting to happen, and this test names the file and line.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each parent module's children, lowest layer first (`""` is the crate root).
const CORE: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "error", "malloc", "coef", "expr", "spec", "linear", "topology", "plan", "analysis",
            "theory", "render", "codegen", "unrolled", "device", "exec",
        ],
    ),
    ("spec", &["raw", "yaml_pos", "eval", "validate", "tests"]),
    (
        "render",
        &[
            "fixtures", "layout", "wrap", "svg", "png", "dot", "chart", "tests",
        ],
    ),
    (
        "exec",
        &["compute", "blocks", "plan", "arch", "python", "reference"],
    ),
];

const SEARCH: &[(&str, &[&str])] = &[
    (
        "",
        &["checks", "data", "train", "search", "report", "export"],
    ),
    (
        "data",
        &[
            "error",
            "rng",
            "read",
            "dataset",
            "augment",
            "batches",
            "cifar",
            "mnist",
            "download",
            "synthetic",
        ],
    ),
    (
        "train",
        &[
            "config",
            "record",
            "checkpoint",
            "progress",
            "sgd",
            "network",
            "run",
        ],
    ),
    (
        "search",
        &[
            "config",
            "ids",
            "candidate",
            "pool",
            "store",
            "rank",
            "strategy",
            "asha",
            "trial",
            "executor",
            "driver",
        ],
    ),
    (
        "search/executor",
        &["process", "forkserver", "local", "slurm"],
    ),
    ("search/driver", &["lock", "plan", "display", "setup"]),
    (
        "report",
        &[
            "stats", "chart", "model", "explore", "views", "format", "text", "html",
        ],
    ),
];

/// Every module of the crate under `src` (as paths like `search/driver/plan`), with its file.
fn modules(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "bin" {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
                path.pop();
            }
            out.push((path, p));
        }
    }
    out
}

/// The module paths a file refers to (`crate::a::b...` and `super::...`), with their lines,
/// before its tests. Only the components that name modules are kept.
fn references(
    module: &[String],
    file: &Path,
    known: &BTreeSet<Vec<String>>,
) -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(file).unwrap();
    let is_dir_module = matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("mod.rs" | "lib.rs")
    );
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        let words: Vec<&str> = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '{'))
            .filter(|w| !w.is_empty())
            .collect();
        for w in words {
            let parts: Vec<&str> = w.split("::").filter(|p| !p.is_empty()).collect();
            let (mut base, rest): (Vec<String>, &[&str]) = match parts.first() {
                Some(&"crate") => (Vec::new(), &parts[1..]),
                Some(&"super") => {
                    let ups = parts.iter().take_while(|p| **p == "super").count();
                    let mut b = module.to_vec();
                    let drop = if is_dir_module { ups } else { ups + 1 };
                    b.truncate(b.len().saturating_sub(drop));
                    (b, &parts[ups..])
                }
                _ => continue,
            };
            for p in rest {
                let p = p.trim_start_matches('{');
                let mut next = base.clone();
                next.push(p.to_string());
                if !known.contains(&next) {
                    break;
                }
                base = next;
            }
            out.push((i + 1, base));
        }
    }
    out
}

fn check(src: &Path, order: &[(&str, &[&str])]) -> Vec<String> {
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut problems = Vec::new();
    // Every module is placed in the order (a new module must be given its layer).
    for m in &known {
        let Some((name, parent)) = m.split_last() else {
            continue;
        };
        let parent = parent.join("/");
        match order.iter().find(|(p, _)| *p == parent) {
            Some((_, kids)) if kids.contains(&name.as_str()) => {}
            Some(_) => problems.push(format!(
                "{}: module `{}` has no place in the layer order of this test",
                src.display(),
                m.join("/")
            )),
            None => {}
        }
    }
    for (module, file) in &mods {
        for (line, target) in references(module, file, &known) {
            let k = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // An ancestor or a descendant: the module's own items.
            if k == module.len() || k == target.len() {
                continue;
            }
            let parent = module[..k].join("/");
            let Some((_, kids)) = order.iter().find(|(p, _)| *p == parent) else {
                continue;
            };
            let pos = |name: &str| kids.iter().position(|c| *c == name);
            let (from, to) = (pos(&module[k]), pos(&target[k]));
            if let (Some(from), Some(to)) = (from, to) {
                if to > from {
                    problems.push(format!(
                        "{}:{line}: `{}` uses `{}`, a layer above it",
                        file.display(),
                        module.join("/"),
                        target[..=k].join("/")
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = check(&root.join("../core/src"), CORE);
    problems.extend(check(&root.join("src"), SEARCH));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_reference_upward() {
    // A fake crate whose lowest layer reaches up: the check must say so.
    let tmp = std::env::temp_dir().join(format!("optarch-layers-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("b")).unwrap();
    std::fs::write(tmp.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(tmp.join("a.rs"), "use crate::b::c::Thing;\n").unwrap();
    std::fs::write(tmp.join("b/mod.rs"), "pub mod c;\n").unwrap();
    std::fs::write(
        tmp.join("b/c.rs"),
        "use super::super::a;\npub struct Thing;\n",
    )
    .unwrap();
    let problems = check(&tmp, &[("", &["a", "b"]), ("b", &["c"])]);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("a.rs:1: `a` uses `b`"), "{problems:?}");
}

/// The derive macro's dependency tree holds what the plan needs, not libtorch, the pictures'
/// rasteriser and font, or the theory's linear algebra (core's `torch`, `render` and `theory`
/// features are off there).
#[test]
fn the_macro_crate_builds_on_the_plan_alone() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "optarch-macros",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree.contains("optarch-core") && tree.contains("syn"),
        "{tree}"
    );
    for banned in ["tch ", "torch-sys", "resvg", "nalgebra", "dejavu", "fontdb"] {
        assert!(
            !tree.contains(banned),
            "{banned} in the macro crate's tree:\n{tree}"
        );
    }
}
