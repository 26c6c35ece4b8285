//! Positions of YAML nodes, and duplicate-key detection, from yaml-rust2's marked event stream.
//!
//! serde_yaml gives typed deserialisation with located errors for syntax, types and unknown
//! keys; it does not expose where a value sits. This pass records, for every node path (e.g.
//! `["step", "z[k+1]"]`), where its key and value start and the value's scalar style, so that
//! errors found later inside an expression can point at the exact line and column.

use crate::error::{ErrorKind, Pos, SpecError};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How a scalar was written, which decides how columns inside it map to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    /// `'...'`: the marker is at the opening quote; `''` stands for one quote.
    SingleQuoted,
    /// `"..."`: the marker is at the opening quote; escapes such as `\u2212` are one character.
    DoubleQuoted,
    /// `|` or `>`: the marker is at the first character of the content (below the header).
    Block,
    Container,
}

/// Where a node of the document is.
#[derive(Clone, Debug)]
pub struct NodePos {
    pub key: Option<Pos>,
    /// How the key was written (`Plain` when there is no key).
    pub key_style: Style,
    pub value: Pos,
    pub style: Style,
}

/// Node positions by path.
#[derive(Clone, Debug, Default)]
pub struct PosMap {
    nodes: HashMap<Vec<String>, NodePos>,
    /// True when the document holds at least one node.
    pub has_root: bool,
    /// True when the root node is a mapping.
    pub root_is_map: bool,
    /// The byte offset of the start of each line of the text.
    line_starts: Vec<usize>,
}

impl PosMap {
    /// The position of the node at `path`.
    pub fn get(&self, path: &[&str]) -> Option<&NodePos> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.nodes.get(&key)
    }

    /// The file positions of the characters of `value`, the scalar at `path` as the YAML
    /// library decoded it (from `text`, the whole file).
    pub fn value_map(&self, path: &[&str], text: &str, value: &str) -> Option<ScalarMap> {
        let node = self.get(path)?;
        let rest = self.rest(text, node.value.line);
        Some(ScalarMap::new(rest, node.value, node.style, value))
    }

    /// The file positions of the characters of the key of `path` (its decoded text is the
    /// last element of `path`).
    pub fn key_map(&self, path: &[&str], text: &str) -> Option<ScalarMap> {
        let node = self.get(path)?;
        let key = node.key?;
        let rest = self.rest(text, key.line);
        Some(ScalarMap::new(rest, key, node.key_style, path.last()?))
    }

    /// `text` from the start of line `line` (1-based).
    fn rest<'a>(&self, text: &'a str, line: usize) -> &'a str {
        let at = self.line_starts.get(line.saturating_sub(1)).copied();
        at.and_then(|i| text.get(i..)).unwrap_or("")
    }
}

/// Maps positions inside a decoded scalar (1-based line, 0-based character column, as the
/// expression parser counts them) to file positions.
///
/// Built in one pass over the file from the scalar's start: YAML only folds line breaks,
/// drops indentation, quotes and escape syntax, so the scalar's characters other than spaces,
/// tabs and line breaks appear in the file in the same order. The n-th such character of the
/// decoded value is the n-th of the source (an escape such as `\u2212` counts as one, at its
/// backslash); a space or line break maps to the next character that is none. When the two
/// sequences disagree (a number YAML reformatted, an alias), every position falls back to the
/// scalar's start.
#[derive(Clone, Debug)]
pub struct ScalarMap {
    start: Pos,
    /// Character index of the start of each line of the decoded value.
    line_starts: Vec<usize>,
    /// The file position of each character of the decoded value.
    at: Vec<Pos>,
}

fn yaml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

impl ScalarMap {
    /// The map of `value`, a scalar of `style` whose node starts at `start`; `rest` is the
    /// text from the start of `start.line`.
    pub fn new(rest: &str, start: Pos, style: Style, value: &str) -> ScalarMap {
        let mut line_starts = vec![0];
        let chars: Vec<char> = value.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if *c == '\n' {
                line_starts.push(i + 1);
            }
        }
        let mut map = ScalarMap {
            start,
            line_starts,
            at: Vec::new(),
        };
        if matches!(style, Style::Container) {
            return map;
        }
        let mut src = SourceChars::new(rest, start, style);
        let mut at: Vec<Option<Pos>> = Vec::with_capacity(chars.len());
        for &c in &chars {
            if yaml_space(c) {
                at.push(None);
                continue;
            }
            match src.next_visible() {
                Some((sc, p)) if sc == c => at.push(Some(p)),
                _ => return map,
            }
        }
        // Spaces and line breaks take the position of the next visible character, or the
        // column after the last one.
        let mut next: Option<Pos> = None;
        let mut filled = vec![start; at.len()];
        for i in (0..at.len()).rev() {
            if let Some(p) = at[i] {
                next = Some(p);
            }
            filled[i] = match next {
                Some(p) => p,
                None => match at[..i].iter().rev().flatten().next() {
                    Some(p) => Pos {
                        line: p.line,
                        column: p.column + 1,
                    },
                    None => start,
                },
            };
        }
        map.at = filled;
        map
    }

    /// The file position of column `col` (0-based, characters) on line `line` (1-based) of the
    /// decoded value; past the end, the column after its last character.
    pub fn get(&self, line: usize, col: usize) -> Pos {
        let Some(&first) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.start;
        };
        let i = first.saturating_add(col);
        match self.at.get(i) {
            Some(p) => *p,
            None => match self.at.last() {
                Some(p) if i >= self.at.len() => Pos {
                    line: p.line,
                    column: p.column + 1,
                },
                _ => self.start,
            },
        }
    }
}

/// The characters of a scalar in the file, as the YAML library decodes them, with the file
/// position of each; spaces, tabs and line breaks are skipped.
struct SourceChars<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
    style: Style,
}

impl<'a> SourceChars<'a> {
    /// The characters from `start`; `rest` is the text from the start of `start.line`.
    fn new(rest: &'a str, start: Pos, style: Style) -> SourceChars<'a> {
        let mut it = SourceChars {
            chars: rest.chars().peekable(),
            line: start.line,
            column: 1,
            style,
        };
        // Skip to the start column.
        while it.column < start.column {
            if it.bump().is_none_or(|c| c == '\n') {
                break;
            }
        }
        match style {
            Style::SingleQuoted | Style::DoubleQuoted => {
                it.bump(); // the opening quote
            }
            Style::Plain | Style::Block | Style::Container => {}
        }
        it
    }

    /// The next character and its position, moving past it.
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// The next decoded character that is no YAML space, and where it is.
    fn next_visible(&mut self) -> Option<(char, Pos)> {
        loop {
            let p = Pos {
                line: self.line,
                column: self.column,
            };
            let c = self.bump()?;
            if yaml_space(c) {
                continue;
            }
            match (self.style, c) {
                (Style::SingleQuoted, '\'') => {
                    // `''` is one quote.
                    self.bump();
                    return Some(('\'', p));
                }
                (Style::DoubleQuoted, '\\') => {
                    let e = self.bump()?;
                    let decoded = match e {
                        '\n' | '\r' => continue, // an escaped line break
                        'x' => self.hex(2),
                        'u' => self.hex(4),
                        'U' => self.hex(8),
                        '0' => Some('\0'),
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        't' | '\t' => Some('\t'),
                        'n' => Some('\n'),
                        'v' => Some('\u{b}'),
                        'f' => Some('\u{c}'),
                        'r' => Some('\r'),
                        'e' => Some('\u{1b}'),
                        ' ' => Some(' '),
                        'N' => Some('\u{85}'),
                        '_' => Some('\u{a0}'),
                        'L' => Some('\u{2028}'),
                        'P' => Some('\u{2029}'),
                        other => Some(other),
                    };
                    match decoded {
                        Some(d) if yaml_space(d) => continue,
                        Some(d) => return Some((d, p)),
                        None => return None,
                    }
                }
                _ => return Some((c, p)),
            }
        }
    }

    /// The character of `n` hexadecimal digits.
    fn hex(&mut self, n: usize) -> Option<char> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self.bump()?.to_digit(16)?;
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        char::from_u32(v)
    }
}

enum Frame {
    Map {
        path: Vec<String>,
        key: Option<(String, Pos, Style)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: Vec<String>,
        index: usize,
    },
}

struct Recv {
    map: PosMap,
    stack: Vec<Frame>,
    duplicate: Option<(String, Pos, Pos)>,
    /// Where the document first nests deeper than [`MAX_DEPTH`]; later events are ignored.
    too_deep: Option<Pos>,
}

/// The deepest nesting of mappings and sequences a spec may have (a spec needs four).
pub const MAX_DEPTH: usize = 64;

fn style_of(style: TScalarStyle) -> Style {
    match style {
        TScalarStyle::Plain => Style::Plain,
        TScalarStyle::SingleQuoted => Style::SingleQuoted,
        TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
        TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
    }
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl Recv {
    /// The path of a value that starts now, and the key position if inside a mapping.
    fn value_path(&mut self) -> (Vec<String>, Option<(Pos, Style)>) {
        match self.stack.last_mut() {
            None => (Vec::new(), None),
            Some(Frame::Map { path, key, .. }) => {
                let (k, kp, ks) =
                    key.take()
                        .unwrap_or((String::new(), Pos::default(), Style::Plain));
                let mut p = path.clone();
                p.push(k);
                (p, Some((kp, ks)))
            }
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(index.to_string());
                *index += 1;
                (p, None)
            }
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn record(&mut self, path: Vec<String>, key: Option<(Pos, Style)>, value: Pos, style: Style) {
        self.map.nodes.entry(path).or_insert(NodePos {
            key: key.map(|k| k.0),
            key_style: key.map_or(Style::Plain, |k| k.1),
            value,
            style,
        });
    }
}

impl MarkedEventReceiver for Recv {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let p = pos(mark);
        if self.too_deep.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { key, seen, .. }) = self.stack.last_mut() {
                        if let Some(first) = seen.get(&text) {
                            if self.duplicate.is_none() {
                                self.duplicate = Some((text.clone(), *first, p));
                            }
                        } else {
                            seen.insert(text.clone(), p);
                        }
                        *key = Some((text, p, style_of(style)));
                    }
                } else {
                    let (path, key) = self.value_path();
                    if path.is_empty() {
                        self.map.has_root = true;
                    }
                    self.record(path, key, p, style_of(style));
                }
            }
            Event::Alias(_) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(("*alias".into(), p, Style::Plain));
                    }
                } else {
                    let (path, key) = self.value_path();
                    self.record(path, key, p, Style::Plain);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                if self.expecting_key() {
                    // A complex key: give it a synthetic name.
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(("?complex".into(), p, Style::Container));
                    }
                }
                if self.stack.len() >= MAX_DEPTH {
                    self.too_deep = Some(p);
                    return;
                }
                let (path, key) = self.value_path();
                if path.is_empty() {
                    self.map.has_root = true;
                    self.map.root_is_map = is_map;
                }
                let frame = if is_map {
                    Frame::Map {
                        path: path.clone(),
                        key: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Seq {
                        path: path.clone(),
                        index: 0,
                    }
                };
                self.stack.push(frame);
                self.record(path, key, p, Style::Container);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Scans `text`: positions of every node, or the first syntax error or duplicate key.
pub fn scan(file: &str, text: &str) -> Result<PosMap, SpecError> {
    let line_starts = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut recv = Recv {
        map: PosMap {
            line_starts,
            ..PosMap::default()
        },
        stack: Vec::new(),
        duplicate: None,
        too_deep: None,
    };
    // The events are pulled one by one rather than through `Parser::load`, which recurses
    // once per level of nesting (a line of 100 000 `- ` overflows the stack); the scan stops
    // at the end of the first document (serde_yaml refuses a second) or past `MAX_DEPTH`.
    let mut parser = Parser::new_from_str(text);
    let loaded = loop {
        match parser.next_token() {
            Ok((Event::DocumentEnd | Event::StreamEnd, _)) => break Ok(()),
            Ok((ev, mark)) => {
                recv.on_event(ev, mark);
                if recv.too_deep.is_some() {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(at) = recv.too_deep {
        return Err(SpecError::new(
            ErrorKind::TooLarge,
            format!("mappings and lists nest more than {MAX_DEPTH} deep here"),
        )
        .with_hint(
            "a spec nests at most four levels (params: beta: start: 0: 1.0); check the indentation",
        )
        .at(file, text, Some(at)));
    }
    if let Err(e) = loaded {
        let m = *e.marker();
        let msg = e.info().to_string();
        return Err(
            SpecError::new(ErrorKind::YamlSyntax, format!("YAML syntax error: {msg}"))
                .with_hint(
                    "check indentation (spaces, not tabs) and quote values that start with \
                 [ { * & ! | > ' \" % @ or a backtick",
                )
                .at(file, text, Some(pos(m))),
        );
    }
    if let Some((key, first, second)) = recv.duplicate {
        return Err(SpecError::new(
            ErrorKind::Duplicate,
            format!(
                "`{key}` is defined twice (first at line {}, column {})",
                first.line, first.column
            ),
        )
        .with_hint("remove one of the two definitions or rename it")
        .at(file, text, Some(second)));
    }
    Ok(recv.map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_value_positions() {
        let text = "name: x\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  y[k]: 'z[k]'\n";
        let map = scan("t.yaml", text).unwrap();
        let n = map.get(&["step", "z[k+1]"]).unwrap();
        assert_eq!(
            n.value,
            Pos {
                line: 3,
                column: 11
            }
        );
        assert_eq!(n.key, Some(Pos { line: 3, column: 3 }));
        let m = map
            .value_map(&["step", "z[k+1]"], text, "z[k] - grad(z[k])")
            .unwrap();
        assert_eq!(
            m.get(1, 7),
            Pos {
                line: 3,
                column: 18
            }
        );
        let m = map.value_map(&["step", "y[k]"], text, "z[k]").unwrap();
        assert_eq!(
            m.get(1, 0),
            Pos {
                line: 4,
                column: 10
            }
        );
        let m = map.key_map(&["step", "y[k]"], text).unwrap();
        assert_eq!(m.get(1, 2), Pos { line: 4, column: 5 });
        assert!(map.root_is_map);
    }

    /// The file position of the first `q` in the scalar `value` at `path`.
    fn q_at(text: &str, path: &[&str], value: &str) -> Pos {
        let map = scan("t.yaml", text).unwrap();
        let col = value.find('q').unwrap();
        let (line, col) = (
            value[..col].matches('\n').count() + 1,
            value[..col].rsplit('\n').next().unwrap().chars().count(),
        );
        map.value_map(path, text, value).unwrap().get(line, col)
    }

    #[test]
    fn positions_inside_folded_quoted_and_block_scalars() {
        let at = |line, column| Pos { line, column };
        // A plain scalar folded over two lines.
        let t = "s:\n  a: z[k] -\n     q * g\n";
        assert_eq!(q_at(t, &["s", "a"], "z[k] - q * g"), at(3, 6));
        // Double quotes with escapes: `\u2212` is one character, at its backslash.
        let t = "s:\n  a: \"z\\u2212 \\t q\"\n";
        assert_eq!(q_at(t, &["s", "a"], "z\u{2212} \t q"), at(2, 18));
        // An escaped line break.
        let t = "s:\n  a: \"z + \\\n    q\"\n";
        assert_eq!(q_at(t, &["s", "a"], "z + q"), at(3, 5));
        // Single quotes: `''` is one quote.
        let t = "s:\n  a: 'z''x q'\n";
        assert_eq!(q_at(t, &["s", "a"], "z'x q"), at(2, 12));
        // A literal block with a header comment and a more indented line.
        let t = "s:\n  a: | # q here is a comment\n    z[k]\n      + q\n";
        assert_eq!(q_at(t, &["s", "a"], "z[k]\n  + q\n"), at(4, 9));
        // A folded block.
        let t = "s:\n  a: >-\n    z[k]\n    + q\n";
        assert_eq!(q_at(t, &["s", "a"], "z[k] + q"), at(4, 7));
        // A non-ASCII character before the value on the same line.
        let t = "s:\n  \"\u{e9}\u{e9}\": z + q\n";
        assert_eq!(q_at(t, &["s", "\u{e9}\u{e9}"], "z + q"), at(2, 13));
        // A value that is not the source's characters (a reformatted number) falls back to
        // the value's start.
        let t = "s:\n  a: 1e3\n";
        let map = scan("t.yaml", t).unwrap();
        let m = map.value_map(&["s", "a"], t, "1000.0").unwrap();
        assert_eq!(m.get(1, 4), at(2, 6));
        // Past the end: the column after the last character.
        let m = map.value_map(&["s", "a"], t, "1e3").unwrap();
        assert_eq!(m.get(1, 3), at(2, 9));
        assert_eq!(m.get(7, 3), at(2, 6));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let t = format!("a: {}\n", "[".repeat(200));
        let e = scan("t.yaml", &t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 1,
                column: 4 + MAX_DEPTH - 1
            })
        );
        let t = format!("{}x\n", "- ".repeat(100_000));
        let e = scan("t.yaml", &t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    }

    #[test]
    fn finds_duplicates_and_syntax_errors() {
        let e = scan("t.yaml", "step:\n  z[k+1]: a\n  z[k+1]: b\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Duplicate);
        assert_eq!(e.pos, Some(Pos { line: 3, column: 3 }));
        let e = scan("t.yaml", "step: [a\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::YamlSyntax);
    }
}
