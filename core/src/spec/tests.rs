//! The loader under hostile input: size, encoding and look-alike characters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::path::PathBuf;

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../specs")
        .join(name)
}

const NESTEROV: &str = "name: nesterov
params:
  h: 1.0
  beta: { schedule: \"(k - 1) / (k + 2)\" }
state: [z, y]
init:
  z[-1]: z[0]
step:
  y[k]: z[k] + beta[k] * (z[k] - z[k-1])
  z[k+1]: y[k] - h * grad(y[k])
output: z
";

fn at(line: usize, column: usize) -> Option<Pos> {
    Some(Pos { line, column })
}

#[test]
fn text_over_the_limit_is_refused_before_parsing() {
    // Valid YAML (a comment) just past the limit: refused on its length alone.
    let mut text = String::from(NESTEROV);
    text.push('#');
    text.push_str(&"x".repeat(MAX_SPEC_BYTES));
    let t = std::time::Instant::now();
    let e = load_str("big.yaml", &text).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.pos, None);
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "big.yaml: error[too-large]: the spec is larger than 1 MiB (1048576 bytes)"
        ),
        "{shown}"
    );
    assert!(e.hint.is_some());
    // At the limit it is read (and fails for other reasons, or none).
    let mut text = String::from(NESTEROV);
    text.push('#');
    text.push_str(&"x".repeat(MAX_SPEC_BYTES - NESTEROV.len() - 1));
    assert_eq!(text.len(), MAX_SPEC_BYTES);
    assert!(load_str("edge.yaml", &text).is_ok());
}

#[test]
fn files_are_read_no_further_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_SPEC_BYTES + 10]).unwrap();
    let e = load(&big).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.file, big.display().to_string());
    let io = read_file(&big).unwrap_err();
    assert_eq!(io.kind(), std::io::ErrorKind::FileTooLarge, "{io}");
    assert!(io.to_string().contains("1 MiB"), "{io}");
    // An endless file ends at once.
    if Path::new("/dev/zero").exists() {
        let e = load("/dev/zero").unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        assert!(
            e.to_string().starts_with("/dev/zero: error[too-large]"),
            "{e}"
        );
    }
    // Exactly at the limit: read whole.
    std::fs::write(&big, vec![b'#'; MAX_SPEC_BYTES]).unwrap();
    assert_eq!(read_text(&big).unwrap().len(), MAX_SPEC_BYTES);
    assert_eq!(load(&big).unwrap_err().kind, ErrorKind::Empty);
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("latin1.yaml");
    // `é` in Latin-1 on line 2, after `name: caf`.
    std::fs::write(&f, b"# a spec\nname: caf\xe9\nstate: [z]\n").unwrap();
    let e = load(&f).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Encoding, "{e}");
    assert_eq!(e.pos, at(2, 10), "{e}");
    assert!(e.message.contains("0xE9"), "{e}");
    assert!(e.to_string().contains("name: caf\u{FFFD}"), "{e}");
    // UTF-16 (with its byte order mark) is named as such.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("name: x\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    std::fs::write(&f, utf16).unwrap();
    let e = load(&f).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Encoding, "{e}");
    assert!(e.message.contains("UTF-16"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("UTF-8"), "{e}");
    assert_eq!(
        read_file(&f).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
}

#[test]
fn a_byte_order_mark_is_dropped_and_positions_stay_right() {
    for name in ["nesterov.yaml", "heavy_ball.yaml", "densenet.yaml"] {
        let path = shipped(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let plain = load_str(name, &text).unwrap();
        let with_bom = load_str(name, &format!("\u{FEFF}{text}")).unwrap();
        assert_eq!(plain, with_bom, "{name}");
        // From a file, too.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(name);
        std::fs::write(&f, format!("\u{FEFF}{text}")).unwrap();
        let spec = load(&f).unwrap();
        assert_eq!(spec.name, plain.name);
        assert_eq!(spec.step, plain.step);
    }
    // An error on the first line is at the same column with or without the mark.
    let bad = "name: x\nstate: [z]\nstep:\n  z[k+1]: w[k]\noutput: z\n";
    let a = load_str("t.yaml", bad).unwrap_err();
    let b = load_str("t.yaml", &format!("\u{FEFF}{bad}")).unwrap_err();
    assert_eq!(a.pos, at(4, 11));
    assert_eq!((a.kind, a.pos), (b.kind, b.pos));
    let bad = "nme: x\n";
    let a = load_str("t.yaml", bad).unwrap_err();
    let b = load_str("t.yaml", &format!("\u{FEFF}{bad}")).unwrap_err();
    assert_eq!((a.kind, a.pos), (b.kind, b.pos), "{a}\n{b}");
}

#[test]
fn nul_and_control_characters_are_reported_where_they_are() {
    // In an expression, in a comment, in a key, after non-ASCII text.
    for (text, pos) in [
        (NESTEROV.replace("z[k] + beta", "z[k] \0+ beta"), at(9, 14)),
        (format!("# ok\n# a \0 in a comment\n{NESTEROV}"), at(2, 5)),
        (NESTEROV.replace("z[-1]", "z[-\0]"), at(7, 6)),
        (format!("summary: \"αβγ\"\u{1b}\n{NESTEROV}"), at(1, 15)),
        (format!("{NESTEROV}\0"), at(12, 1)),
    ] {
        let e = load_str("t.yaml", &text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Encoding, "{e}");
        assert_eq!(e.pos, pos, "{e}");
        assert!(e.hint.is_some(), "{e}");
        if text.contains('\0') {
            assert!(e.message.contains("NUL"), "{e}");
        }
        // The caret display does not panic and shows the line.
        assert!(e.to_string().contains('^'), "{e}");
    }
    // Tabs and CRLF line ends are fine.
    assert!(load_str("t.yaml", &NESTEROV.replace('\n', "\r\n")).is_ok());
    assert!(load_str("t.yaml", &NESTEROV.replace("z[k] + beta", "z[k]\t+ beta")).is_ok());
}

/// Loads NESTEROV with `from` replaced by `to`; the error must point at `pos` and hint at
/// typing `ascii`.
fn look_alike(from: &str, to: &str, pos: Option<Pos>, kind: ErrorKind, ascii: &str) {
    assert!(NESTEROV.contains(from), "{from}");
    let text = NESTEROV.replacen(from, to, 1);
    let e = load_str("t.yaml", &text).unwrap_err();
    assert_eq!(e.kind, kind, "{to}: {e}");
    assert_eq!(e.pos, pos, "{to}: {e}");
    let hint = e.hint.as_deref().unwrap_or_default();
    assert!(hint.contains(ascii), "{to}: hint `{hint}` lacks `{ascii}`");
    assert!(e.message.contains("U+"), "{to}: {e}");
    // The caret sits under the character itself.
    let shown = e.to_string();
    let line = shown.lines().nth(2).unwrap();
    let caret = shown.lines().nth(3).unwrap();
    let col = caret.chars().position(|c| c == '^').unwrap();
    let under = line.chars().nth(col).unwrap();
    assert!(!under.is_ascii(), "{to}: caret under `{under}`:\n{shown}");
}

#[test]
fn look_alike_characters_get_the_ascii_to_type() {
    let bad = ErrorKind::BadExpression;
    // Line 9 is `  y[k]: z[k] + beta[k] * (z[k] - z[k-1])`; `-` at column 32, `*` at 24.
    look_alike("(z[k] - z", "(z[k] \u{2212} z", at(9, 32), bad, "`-`");
    look_alike("(z[k] - z", "(z[k] \u{2013} z", at(9, 32), bad, "`-`");
    look_alike("(z[k] - z", "(z[k] \u{2014} z", at(9, 32), bad, "`-`");
    look_alike("beta[k] * (", "beta[k] \u{00D7} (", at(9, 24), bad, "`*`");
    look_alike("beta[k] * (", "beta[k] \u{2217} (", at(9, 24), bad, "`*`");
    look_alike("beta[k] * (", "beta[k] \u{00B7} (", at(9, 24), bad, "`*`");
    look_alike("z[k] + beta", "z[k] +\u{00A0}beta", at(9, 15), bad, "space");
    // Line 10 is `  z[k+1]: y[k] - h * grad(y[k])`.
    look_alike("y[k] - h", "\u{201C}y[k] - h", at(10, 11), bad, "`\"`");
    look_alike("y[k] - h", "\u{2018}y[k] - h", at(10, 11), bad, "`'`");
    look_alike("grad(y[k])", "grad(y[k])\u{2019}", at(10, 32), bad, "`'`");
    look_alike("grad(y[k])", "grad(y[k])\u{201D}", at(10, 32), bad, "`\"`");
    // In a quoted schedule inside a flow mapping (line 4: `  beta: { schedule: "(k - 1) ...`).
    let sched = ErrorKind::BadSchedule;
    look_alike("(k - 1)", "(k \u{2212} 1)", at(4, 25), sched, "`-`");
    look_alike(
        "(k - 1) / (k + 2)",
        "if k \u{2264} 1 { 0 } else { 1 }",
        at(4, 27),
        sched,
        "`<=`",
    );
    look_alike(
        "(k - 1) / (k + 2)",
        "if k \u{2265} 1 { 1 } else { 0 }",
        at(4, 27),
        sched,
        "`>=`",
    );
    // In a key: `z[k−1]` on the left-hand side of an initial value (line 7: `  z[-1]: z[0]`).
    look_alike("z[-1]: z[0]", "z[\u{2212}1]: z[0]", at(7, 5), bad, "`-`");
}

#[test]
fn look_alikes_are_located_in_quoted_folded_and_block_values() {
    let cases = [
        // Double quotes, after an escape.
        (
            "  z[k+1]: \"y[k] \\t- h * grad(y[k])\"",
            "  z[k+1]: \"y[k] \\t- h \u{00D7} grad(y[k])\"",
            at(10, 23),
        ),
        // A plain value folded over two lines.
        (
            "  z[k+1]: y[k] - h * grad(y[k])",
            "  z[k+1]: y[k] -\n    h \u{00D7} grad(y[k])",
            at(11, 7),
        ),
        // A literal block.
        (
            "  z[k+1]: y[k] - h * grad(y[k])",
            "  z[k+1]: |\n    y[k]\n      \u{2212} h * grad(y[k])",
            at(12, 7),
        ),
    ];
    for (from, to, pos) in cases {
        let text = NESTEROV.replacen("  z[k+1]: y[k] - h * grad(y[k])", from, 1);
        assert!(load_str("t.yaml", &text).is_ok(), "{text}");
        let text = text.replacen(from, to, 1);
        let e = load_str("t.yaml", &text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadExpression, "{e}");
        assert_eq!(e.pos, pos, "{text}\n{e}");
    }
}

#[test]
fn other_non_ascii_characters_are_named() {
    let e = load_str("t.yaml", &NESTEROV.replacen("beta[k] *", "β[k] *", 1)).unwrap_err();
    assert_eq!(e.pos, at(9, 16), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("`beta`"), "{e}");
    let e = load_str("t.yaml", &NESTEROV.replacen("h * grad", "√h * grad", 1)).unwrap_err();
    assert_eq!(e.pos, at(10, 18), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("sqrt"), "{e}");
}

/// A spec of `lines` generated lines under `params:` (and a step using `uses`).
fn with_params(lines: impl Iterator<Item = String>, uses: &str) -> String {
    let mut s = String::from("name: x\nparams:\n");
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s.push_str(&format!(
        "state: [z]\nstep:\n  z[k+1]: z[k] - {uses} * grad(z[k])\noutput: z\n"
    ));
    s
}

#[test]
fn counts_of_states_params_and_initial_values_are_bounded() {
    use super::validate::{MAX_INIT, MAX_PARAMS, MAX_STATES};
    let ok = with_params((0..MAX_PARAMS).map(|i| format!("  p{i}: {i}")), "p1");
    assert!(load_str("t.yaml", &ok).is_ok());
    let many = with_params((0..=MAX_PARAMS).map(|i| format!("  p{i}: {i}")), "p1");
    let e = load_str("t.yaml", &many).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.pos, at(MAX_PARAMS + 3, 3), "{e}");

    let names: Vec<String> = (0..=MAX_STATES).map(|i| format!("s{i}")).collect();
    let text = format!(
        "name: x\nstate: [{}]\nstep:\n  s0[k+1]: s0[k]\noutput: s0\n",
        names.join(", ")
    );
    let e = load_str("t.yaml", &text).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.pos.map(|p| p.line), Some(2), "{e}");

    let init: Vec<String> = (1..=MAX_INIT + 1)
        .map(|i| format!("  z[-{i}]: z[0]"))
        .collect();
    let text = format!(
        "name: x\nstate: [z]\ninit:\n{}\nstep:\n  z[k+1]: z[k]\noutput: z\n",
        init.join("\n")
    );
    let e = load_str("t.yaml", &text).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(e.pos, at(MAX_INIT + 4, 3), "{e}");
}

#[test]
fn chains_of_schedules_are_bounded() {
    use super::validate::MAX_SCHEDULE_CHAIN;
    // p0 is a number; p1 uses p0, p2 uses p1, ...: the chain from p_n holds n schedules.
    let chain = |n: usize| {
        with_params(
            std::iter::once("  p0: 0.5".to_string())
                .chain((1..=n).map(|i| format!("  p{i}: \"p{} * 0.5 + k\"", i - 1))),
            &format!("p{n}"),
        )
    };
    assert!(load_str("t.yaml", &chain(MAX_SCHEDULE_CHAIN)).is_ok());
    let e = load_str("t.yaml", &chain(MAX_SCHEDULE_CHAIN + 1)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.message.contains("schedules"), "{e}");
    // Listed in the other order, and around a cycle: still refused, no stack overflow.
    let text = chain(200);
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2..203].reverse();
    let e = load_str("t.yaml", &lines.join("\n")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    let cyclic = with_params(
        (0..200).map(|i| format!("  p{i}: \"p{} + 1\"", (i + 1) % 200)),
        "p0",
    );
    let e = load_str("t.yaml", &cyclic).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    // A short cycle is the dry run's to name.
    let cyclic = with_params(
        ["  a: \"b + 1\"", "  b: \"a + 1\""]
            .map(String::from)
            .into_iter(),
        "a",
    );
    assert_eq!(
        load_str("t.yaml", &cyclic).unwrap_err().kind,
        ErrorKind::Cycle
    );
}

#[test]
fn a_megabyte_of_hostile_spec_loads_or_fails_quickly() {
    // Near the size limit: many schedules, a chain, a long name, many states.
    let fill = |head: &str, item: &dyn Fn(usize) -> String, tail: &str| {
        let mut s = String::from(head);
        let mut i = 0;
        while s.len() + tail.len() < MAX_SPEC_BYTES - 64 {
            s.push_str(&item(i));
            i += 1;
        }
        s.push_str(tail);
        s
    };
    let tail = "state: [z]\nstep:\n  z[k+1]: z[k] - p1 * grad(z[k])\noutput: z\n";
    let cases = [
        fill(
            "name: x\nparams:\n",
            &|i| format!("  p{i}: \"k + {i}\"\n"),
            tail,
        ),
        fill(
            "name: x\nparams:\n  p0: 1\n",
            &|i| format!("  p{}: \"p{i} + 1\"\n", i + 1),
            tail,
        ),
        fill(
            "name: x\nstate: [z]\nstep:\n  z[k+1]: cat(",
            &|_| "z[k], ".to_string(),
            "z[k])\noutput: z\n",
        ),
        fill(
            "name: x\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(",
            &|_| "a".to_string(),
            ")\noutput: z\n",
        ),
        fill("name: x\nstate: [z", &|i| format!(", s{i}"), "]\n"),
        fill("name: x\n", &|i| format!("# comment {i}\n"), tail),
        fill("name: x\nsummary: ", &|_| "y".to_string(), "\n"),
        fill("", &|_| "- ".to_string(), "x\n"),
        fill("a: ", &|_| "[".to_string(), "\n"),
    ];
    for text in cases {
        assert!(text.len() <= MAX_SPEC_BYTES);
        let t = std::time::Instant::now();
        let r = load_str("t.yaml", &text);
        let took = t.elapsed();
        // Generous for a debug build on a loaded machine; release takes a few milliseconds.
        assert!(
            took.as_secs_f64() < 20.0,
            "{took:?} for {}...: {:?}",
            &text[..60],
            r.map(|s| s.name)
        );
    }
}

/// The longest chains an expression may hold (512 operators: a sum of 500 terms, 500 minus
/// signs) load on a 2 MiB thread, the default for spawned threads, in a debug build.
#[test]
fn the_longest_chains_load_on_a_small_stack() {
    let n = crate::expr::MAX_OPERATORS - 12;
    let sum = vec!["z[k]"; n].join(" + ");
    let minus = format!("z[k] - {}grad(z[k])", "-".repeat(n));
    let sched = vec!["1e-3"; n].join(" + ");
    let nots = format!("if {}(k > 2) {{ 1 }} else {{ 0 }}", "!".repeat(n));
    let texts = [
        format!("name: a\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: \"{sum}\"\noutput: z\n"),
        format!("name: b\nstate: [z]\nstep:\n  z[k+1]: \"{minus}\"\noutput: z\n"),
        format!(
            "name: c\nparams:\n  s: \"{sched}\"\n  t: \"{nots}\"\nstate: [z]\nstep:\n  z[k+1]: z[k] - s * t * grad(z[k])\noutput: z\n"
        ),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            texts
                .iter()
                .map(|t| {
                    load_str("t.yaml", t)
                        .map(|s| s.name)
                        .map_err(|e| e.message.clone())
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    let names = handle.join().unwrap();
    assert_eq!(
        names,
        vec![Ok("a".to_string()), Ok("b".into()), Ok("c".into())]
    );
}
