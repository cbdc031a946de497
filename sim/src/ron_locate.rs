//! Finds fields in RON text, so errors can name a line, a column and a field.
//!
//! serde gives no positions for fields, and `ron` gives a position but no field path. This
//! module runs a small, forgiving scan of the text (it never fails, even on malformed input)
//! that tracks the path of the field being read — `door_width`, `start.x`, `walls[1].to` —
//! and records where each field (and list element) starts.

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Colon,
    Comma,
    Open(char),
    Close,
    Atom,
}

/// Splits `text` into tokens with their positions, skipping whitespace, comments and
/// `#![enable(..)]` attributes.
fn tokenize(text: &str) -> Vec<(Tok, Pos)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // Advances over `n` characters, keeping line and column right.
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if *i < chars.len() {
                if chars[*i] == '\n' {
                    *line += 1;
                    *col = 1;
                } else {
                    *col += 1;
                }
                *i += 1;
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    advance(&mut i, &mut line, &mut col, 2);
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    advance(&mut i, &mut line, &mut col, 2);
                    if depth == 0 {
                        break;
                    }
                } else {
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
        } else if c == '#' {
            // `#![enable(...)]`: skip to the bracket that closes it.
            let mut depth = 0i32;
            while i < chars.len() {
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, 1);
                if ch == '[' {
                    depth += 1;
                } else if ch == ']' {
                    depth -= 1;
                    if depth <= 0 {
                        break;
                    }
                }
            }
        } else if c == '"' {
            advance(&mut i, &mut line, &mut col, 1);
            while i < chars.len() && chars[i] != '"' {
                let n = if chars[i] == '\\' { 2 } else { 1 };
                advance(&mut i, &mut line, &mut col, n);
            }
            advance(&mut i, &mut line, &mut col, 1);
            out.push((Tok::Atom, pos));
        } else if c == '\'' {
            advance(&mut i, &mut line, &mut col, 1);
            while i < chars.len() && chars[i] != '\'' {
                let n = if chars[i] == '\\' { 2 } else { 1 };
                advance(&mut i, &mut line, &mut col, n);
            }
            advance(&mut i, &mut line, &mut col, 1);
            out.push((Tok::Atom, pos));
        } else if c.is_alphabetic() || c == '_' {
            let mut ident = String::new();
            if c == 'r' && next == Some('#') {
                advance(&mut i, &mut line, &mut col, 2);
            }
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                ident.push(chars[i]);
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Ident(ident), pos));
        } else if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_' | '-' | '+'))
            {
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Atom, pos));
        } else {
            let tok = match c {
                ':' => Tok::Colon,
                ',' => Tok::Comma,
                '(' | '[' | '{' => Tok::Open(c),
                ')' | ']' | '}' => Tok::Close,
                _ => Tok::Atom,
            };
            advance(&mut i, &mut line, &mut col, 1);
            out.push((tok, pos));
        }
    }
    out
}

struct Frame {
    open: char,
    key: Option<String>,
    index: usize,
}

fn path_of(frames: &[Frame]) -> String {
    let mut s = String::new();
    for f in frames {
        if f.open == '[' {
            s.push_str(&format!("[{}]", f.index));
        } else if let Some(k) = &f.key {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(k);
        }
    }
    s
}

/// The scan result: the start of every field and list element, with its path.
pub(crate) struct FieldMap {
    points: Vec<(String, Pos)>,
    /// Where the top-level value starts (the scenario's variant name).
    root: Pos,
    tokens: Vec<(Tok, Pos)>,
}

impl FieldMap {
    /// Scans `text`.
    pub(crate) fn new(text: &str) -> Self {
        let tokens = tokenize(text);
        let root = tokens
            .first()
            .map(|t| t.1)
            .unwrap_or(Pos { line: 1, col: 1 });
        let mut points = Vec::new();
        walk(&tokens, tokens.len(), |path, pos| points.push((path, pos)));
        FieldMap {
            points,
            root,
            tokens,
        }
    }

    /// Where `path` (e.g. `start.x`, `walls[1].to`) starts. A field absent from the text (left
    /// to its default) resolves to its closest present ancestor, or to the top-level value.
    pub(crate) fn locate(&self, path: &str) -> Pos {
        if let Some((_, p)) = self.points.iter().find(|(q, _)| q == path) {
            return *p;
        }
        let mut best: Option<(usize, Pos)> = None;
        for (q, p) in &self.points {
            let prefix = path.starts_with(q.as_str())
                && matches!(path[q.len()..].chars().next(), Some('.') | Some('['));
            if prefix && best.is_none_or(|(len, _)| q.len() > len) {
                best = Some((q.len(), *p));
            }
        }
        best.map(|b| b.1).unwrap_or(self.root)
    }

    /// The path of the field being read at `pos` (where a parser reported an error), if any.
    pub(crate) fn field_at(&self, pos: Pos) -> Option<String> {
        // Parsers report the position after the offending token: a bracket closing there has not
        // been read yet.
        let upto = self.tokens.iter().take_while(|t| t.1 < pos).count();
        let frames = walk(&self.tokens, upto, |_, _| {});
        let path = path_of(&frames);
        (!path.is_empty()).then_some(path)
    }
}

/// Runs the path-tracking scan over `tokens[..end]` (looking ahead past `end` to recognise a
/// key), reporting each field and list element start; returns the open frames at `end`.
fn walk(tokens: &[(Tok, Pos)], end: usize, mut report: impl FnMut(String, Pos)) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < end {
        match &tokens[i].0 {
            Tok::Ident(name) if matches!(tokens.get(i + 1), Some((Tok::Colon, _))) => {
                if let Some(top) = frames.last_mut() {
                    top.key = Some(name.clone());
                    report(path_of(&frames), tokens[i].1);
                }
                i += 2;
                continue;
            }
            Tok::Open(c) => {
                frames.push(Frame {
                    open: *c,
                    key: None,
                    index: 0,
                });
                if *c == '[' {
                    if let Some((t, p)) = tokens.get(i + 1) {
                        if *t != Tok::Close {
                            report(path_of(&frames), *p);
                        }
                    }
                }
            }
            Tok::Close => {
                frames.pop();
            }
            Tok::Comma => {
                if let Some(top) = frames.last_mut() {
                    top.index += 1;
                    top.key = None;
                    if top.open == '[' {
                        if let Some((t, p)) = tokens.get(i + 1) {
                            if *t != Tok::Close {
                                report(path_of(&frames), *p);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "// a comment\nTwoRooms(\n    door_width: 0.5, /* inline */\n    start: (x: (0.1, 0.2), y: (0.3, 0.4)),\n    walls: [\n        (from: (1.0, 0.0), to: (1.0, 1.0)),\n        (from: (2.0, 0.0), to: (2.0, 1.0)),\n    ],\n)\n";

    #[test]
    fn locates_fields_and_elements() {
        let m = FieldMap::new(TEXT);
        assert_eq!(m.locate("door_width"), Pos { line: 3, col: 5 });
        assert_eq!(m.locate("start.y"), Pos { line: 4, col: 28 });
        assert_eq!(m.locate("walls[1]"), Pos { line: 7, col: 9 });
        assert_eq!(m.locate("walls[1].to"), Pos { line: 7, col: 28 });
        // Defaulted fields resolve to their closest ancestor, or to the top-level value.
        assert_eq!(m.locate("start.z"), Pos { line: 4, col: 5 });
        assert_eq!(m.locate("room_width"), Pos { line: 2, col: 1 });
    }

    #[test]
    fn finds_the_field_at_a_position() {
        let m = FieldMap::new(TEXT);
        assert_eq!(
            m.field_at(Pos { line: 3, col: 17 }).as_deref(),
            Some("door_width")
        );
        assert_eq!(
            m.field_at(Pos { line: 4, col: 20 }).as_deref(),
            Some("start.x")
        );
        assert_eq!(
            m.field_at(Pos { line: 7, col: 33 }).as_deref(),
            Some("walls[1].to")
        );
        assert_eq!(m.field_at(Pos { line: 1, col: 1 }), None);
    }

    #[test]
    fn never_fails_on_garbage() {
        for text in [
            "",
            "(((",
            ")))",
            "\"unclosed",
            "/* open",
            "#![enable(",
            "a: b: c,,,]",
        ] {
            let m = FieldMap::new(text);
            let _ = m.locate("x.y[3]");
            let _ = m.field_at(Pos { line: 9, col: 9 });
        }
    }
}
