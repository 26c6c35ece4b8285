//! One fixture per error class: each names file, line and column, says what is wrong, hints
//! at the fix, and never panics. The expectation is the fixture's first line:
//! `# expect: <code> <line>:<column>|- <message fragment>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::error::ErrorKind;
use optarch_core::spec;
use std::path::PathBuf;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_message() {
    let mut classes = std::collections::BTreeSet::new();
    for path in fixtures() {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let mut parts = expect.splitn(3, ' ');
        let (code, at, fragment) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let err = spec::load(&path).expect_err(&format!("{} should be invalid", path.display()));
        assert_eq!(err.kind.code(), code, "{}: {err}", path.display());
        if at == "-" {
            assert_eq!(err.pos, None, "{}: {err}", path.display());
        } else {
            let (l, c) = at.split_once(':').unwrap();
            let pos = err
                .pos
                .unwrap_or_else(|| panic!("{}: no position in {err}", path.display()));
            assert_eq!(
                (pos.line, pos.column),
                (l.parse().unwrap(), c.parse().unwrap()),
                "{}: {err}",
                path.display()
            );
        }
        assert!(
            err.message.contains(fragment),
            "{}: `{}` lacks `{fragment}`",
            path.display(),
            err.message
        );
        assert!(
            err.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "{}: no hint",
            path.display()
        );
        let shown = err.to_string();
        assert!(shown.starts_with(&path.display().to_string()), "{shown}");
        assert!(shown.contains("hint:"), "{shown}");
        classes.insert(code.to_string());
    }
    for required in [
        ErrorKind::UnknownState,
        ErrorKind::UnknownParam,
        ErrorKind::FutureReference,
        ErrorKind::NonLinear,
        ErrorKind::MissingInit,
        ErrorKind::Cycle,
        ErrorKind::BadSchedule,
        ErrorKind::DivisionByZero,
        ErrorKind::YamlSyntax,
        ErrorKind::UnknownKey,
        ErrorKind::Duplicate,
        ErrorKind::WrongType,
        ErrorKind::Empty,
    ] {
        assert!(
            classes.contains(required.code()),
            "no fixture for {}",
            required.code()
        );
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let e = spec::load("/nonexistent/spec.yaml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().starts_with("/nonexistent/spec.yaml"));
}
