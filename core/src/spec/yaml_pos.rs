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
    Quoted,
    Block,
    Container,
}

/// Where a node of the document is.
#[derive(Clone, Debug)]
pub struct NodePos {
    pub key: Option<Pos>,
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
}

impl PosMap {
    /// The position of the node at `path`.
    pub fn get(&self, path: &[&str]) -> Option<&NodePos> {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.nodes.get(&key)
    }

    /// The file position of column `col` (0-based, characters) on line `line` (1-based) of the
    /// scalar at `path`; falls back to the value's start when the mapping is not exact.
    pub fn inside(&self, path: &[&str], text: &str, line: usize, col: usize) -> Option<Pos> {
        let node = self.get(path)?;
        let start = node.value;
        Some(match node.style {
            Style::Plain if line == 1 => Pos {
                line: start.line,
                column: start.column + col,
            },
            Style::Quoted if line == 1 => Pos {
                line: start.line,
                column: start.column + 1 + col,
            },
            Style::Block => {
                let file_line = start.line + line;
                let indent = text
                    .lines()
                    .nth(file_line.saturating_sub(1))
                    .map(|l| l.chars().count() - l.trim_start().chars().count())
                    .unwrap_or(0);
                Pos {
                    line: file_line,
                    column: indent + 1 + col,
                }
            }
            _ => start,
        })
    }
}

enum Frame {
    Map {
        path: Vec<String>,
        key: Option<(String, Pos)>,
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
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl Recv {
    /// The path of a value that starts now, and the key position if inside a mapping.
    fn value_path(&mut self) -> (Vec<String>, Option<Pos>) {
        match self.stack.last_mut() {
            None => (Vec::new(), None),
            Some(Frame::Map { path, key, .. }) => {
                let (k, kp) = key.take().unwrap_or_default();
                let mut p = path.clone();
                p.push(k);
                (p, Some(kp))
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

    fn record(&mut self, path: Vec<String>, key: Option<Pos>, value: Pos, style: Style) {
        self.map
            .nodes
            .entry(path)
            .or_insert(NodePos { key, value, style });
    }
}

impl MarkedEventReceiver for Recv {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let p = pos(mark);
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
                        *key = Some((text, p));
                    }
                } else {
                    let (path, key) = self.value_path();
                    let style = match style {
                        TScalarStyle::Plain => Style::Plain,
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Style::Quoted,
                        TScalarStyle::Literal | TScalarStyle::Folded => Style::Block,
                    };
                    if path.is_empty() {
                        self.map.has_root = true;
                    }
                    self.record(path, key, p, style);
                }
            }
            Event::Alias(_) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(("*alias".into(), p));
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
                        *key = Some(("?complex".into(), p));
                    }
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
    let mut recv = Recv {
        map: PosMap::default(),
        stack: Vec::new(),
        duplicate: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut recv, false) {
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
        assert_eq!(
            map.inside(&["step", "z[k+1]"], text, 1, 7),
            Some(Pos {
                line: 3,
                column: 18
            })
        );
        assert_eq!(
            map.inside(&["step", "y[k]"], text, 1, 0),
            Some(Pos {
                line: 4,
                column: 10
            })
        );
        assert!(map.root_is_map);
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
