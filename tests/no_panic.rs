//! The no-panic rule for the library crates (issue #16, item 9; CONTRIBUTING.md).
//!
//! Outside test code, the sources of `zplan-io`, `zplan-obs`, `zplan-sim`, `zplan-models` and
//! `zplan-planner` contain no `panic!`, `.unwrap()`, `.expect(`, `unreachable!`, `todo!`,
//! `unimplemented!`, `assert!`, `assert_eq!` or `assert_ne!` (`debug_assert!` is fine). Test code
//! is a `#[cfg(test)]` or `#[test]` item, a file declared by `#[cfg(test)] mod name;`, a doc
//! comment (doc examples may unwrap) and any other comment; string literals never count.
//!
//! A line that truly cannot fail may end with `// invariant: <why it cannot fail>`; that comment
//! is the reviewable escape hatch.
//!
//! Indexing (`v[i]`) cannot be told apart lexically from a bounds-checked use, so this test does
//! not report it; CONTRIBUTING.md states the rule that reviewers enforce instead.
//!
//! `ZPLAN_NO_PANIC_SKIP` (comma-separated path prefixes relative to the repository root, e.g.
//! `planner/src,models/src/parallel.rs`) skips files while a rewrite is under way elsewhere; it is
//! for local runs only, CI never sets it, and a run that uses it says so on stderr.

use std::path::{Path, PathBuf};

/// The library crates' source roots, relative to the repository root.
const LIBRARY_SOURCES: [&str; 7] = [
    "io/src",
    "obs/src",
    "sim/src",
    "models/src",
    "planner/src",
    "capi/src",
    "python/src",
];

/// A lexical scanner for panicking constructs in Rust source.
mod scanner {
    /// One panicking construct outside test code.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Finding {
        /// 1-based line number.
        pub line: usize,
        /// The construct, e.g. `.unwrap()`.
        pub what: &'static str,
        /// The source line, trimmed.
        pub text: String,
    }

    /// The result of scanning one file.
    #[derive(Debug, Default)]
    pub struct Scan {
        /// Findings outside test code without an `// invariant:` comment.
        pub findings: Vec<Finding>,
        /// Names of `#[cfg(test)] mod name;` declarations (their files are test code).
        pub test_modules: Vec<String>,
        /// The whole file is test code (`#![cfg(test)]`).
        pub whole_file_is_test: bool,
    }

    /// One source line split into code (comments removed, string contents blanked) and comments.
    #[derive(Debug, Default, Clone)]
    struct Line {
        code: String,
        comment: String,
    }

    /// Splits `src` into lines of code and comment text. String, byte-string, raw-string and char
    /// literals keep their quotes but lose their contents, so `"x.unwrap()"` is not code.
    fn split(src: &str) -> Vec<Line> {
        let chars: Vec<char> = src.chars().collect();
        let mut lines = vec![Line::default()];
        let mut i = 0;
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        // Pushes `c` to the current line's code or comment; a newline starts a new line.
        fn push(lines: &mut Vec<Line>, c: char, comment: bool) {
            if c == '\n' {
                lines.push(Line::default());
            } else if let Some(last) = lines.last_mut() {
                if comment {
                    last.comment.push(c);
                } else {
                    last.code.push(c);
                }
            }
        }
        // Skips a literal's contents up to `end` (exclusive), keeping only the newlines.
        fn blank(lines: &mut Vec<Line>, chars: &[char], from: usize, end: usize) {
            for &c in chars.get(from..end).unwrap_or(&[]) {
                if c == '\n' {
                    push(lines, c, false);
                }
            }
        }
        while let Some(&c) = chars.get(i) {
            let next = chars.get(i + 1).copied();
            let prev = if i == 0 {
                None
            } else {
                chars.get(i - 1).copied()
            };
            match (c, next) {
                ('/', Some('/')) => {
                    while let Some(&c) = chars.get(i) {
                        if c == '\n' {
                            break;
                        }
                        push(&mut lines, c, true);
                        i += 1;
                    }
                }
                ('/', Some('*')) => {
                    let mut depth = 0usize;
                    while let Some(&c) = chars.get(i) {
                        let n = chars.get(i + 1).copied();
                        if c == '/' && n == Some('*') {
                            depth += 1;
                            push(&mut lines, '/', true);
                            push(&mut lines, '*', true);
                            i += 2;
                        } else if c == '*' && n == Some('/') {
                            depth -= 1;
                            push(&mut lines, '*', true);
                            push(&mut lines, '/', true);
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            push(&mut lines, c, true);
                            i += 1;
                        }
                    }
                }
                ('"', _) => {
                    let mut j = i + 1;
                    while let Some(&c) = chars.get(j) {
                        if c == '\\' {
                            j += 2;
                        } else if c == '"' {
                            break;
                        } else {
                            j += 1;
                        }
                    }
                    push(&mut lines, '"', false);
                    blank(&mut lines, &chars, i + 1, j.min(chars.len()));
                    push(&mut lines, '"', false);
                    i = j + 1;
                }
                ('r', Some('"' | '#'))
                    if prev.is_none_or(|p| !is_ident(p))
                        || (prev == Some('b')
                            && (i < 2 || chars.get(i - 2).is_none_or(|&p| !is_ident(p)))) =>
                {
                    let mut hashes = 0;
                    let mut j = i + 1;
                    while chars.get(j) == Some(&'#') {
                        hashes += 1;
                        j += 1;
                    }
                    if chars.get(j) != Some(&'"') {
                        // A raw identifier such as `r#type`.
                        push(&mut lines, c, false);
                        i += 1;
                        continue;
                    }
                    let start = j + 1;
                    let mut k = start;
                    let end = loop {
                        match chars.get(k) {
                            None => break chars.len(),
                            Some('"') if (1..=hashes).all(|h| chars.get(k + h) == Some(&'#')) => {
                                break k;
                            }
                            Some(_) => k += 1,
                        }
                    };
                    push(&mut lines, 'r', false);
                    push(&mut lines, '"', false);
                    blank(&mut lines, &chars, start, end);
                    push(&mut lines, '"', false);
                    i = end + 1 + hashes;
                }
                ('\'', Some('\\')) => {
                    // An escaped char literal: skip to the closing quote.
                    let mut j = i + 2;
                    while let Some(&c) = chars.get(j) {
                        if c == '\'' || c == '\n' {
                            break;
                        }
                        j += 1;
                    }
                    push(&mut lines, '\'', false);
                    push(&mut lines, '\'', false);
                    i = j + 1;
                }
                ('\'', Some(_)) if chars.get(i + 2) == Some(&'\'') => {
                    // A one-character literal such as '"' or '{'.
                    push(&mut lines, '\'', false);
                    push(&mut lines, '\'', false);
                    i += 3;
                }
                _ => {
                    // Code, including lifetimes and labels.
                    push(&mut lines, c, false);
                    i += 1;
                }
            }
        }
        lines
    }

    /// Code characters with their 0-based line numbers, for attribute and brace matching.
    fn code_chars(lines: &[Line]) -> Vec<(char, usize)> {
        let mut out = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            out.extend(line.code.chars().map(|c| (c, n)));
            out.push(('\n', n));
        }
        out
    }

    /// Whether an attribute's text (whitespace removed, without `#[`/`]`) marks test-only code.
    fn is_test_attribute(attr: &str) -> bool {
        attr == "test" || attr == "cfg(test)" || attr.starts_with("cfg(all(test,")
    }

    /// Returns the index of the bracket matching the opener at `open`, if any.
    fn matching(code: &[(char, usize)], open: usize) -> Option<usize> {
        let (o, _) = *code.get(open)?;
        let c = match o {
            '[' => ']',
            '{' => '}',
            '(' => ')',
            _ => return None,
        };
        let mut depth = 0usize;
        for (k, &(ch, _)) in code.iter().enumerate().skip(open) {
            if ch == o {
                depth += 1;
            } else if ch == c {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
        }
        None
    }

    /// Marks test-only lines; returns `(is_test per line, test module names, whole file)`.
    fn test_lines(lines: &[Line]) -> (Vec<bool>, Vec<String>, bool) {
        let code = code_chars(lines);
        let mut test = vec![false; lines.len()];
        let mut modules = Vec::new();
        let mut whole = false;
        let mut braces = 0usize;
        let mut i = 0;
        while i < code.len() {
            let Some(&(c, line)) = code.get(i) else { break };
            if c != '#' {
                match c {
                    '{' => braces += 1,
                    '}' => braces = braces.saturating_sub(1),
                    _ => {}
                }
                i += 1;
                continue;
            }
            let inner = code.get(i + 1).map(|x| x.0) == Some('!');
            let open = if inner { i + 2 } else { i + 1 };
            if code.get(open).map(|x| x.0) != Some('[') {
                i += 1;
                continue;
            }
            let Some(close) = matching(&code, open) else {
                break;
            };
            let attr: String = code
                .get(open + 1..close)
                .unwrap_or(&[])
                .iter()
                .map(|x| x.0)
                .filter(|c| !c.is_whitespace())
                .collect();
            if !is_test_attribute(&attr) {
                i = close + 1;
                continue;
            }
            if inner {
                // `#![cfg(test)]`: the enclosing module (at the top of a file: the file) is test.
                if braces == 0 {
                    whole = true;
                    break;
                }
                let mut depth = 0usize;
                let mut j = close + 1;
                while let Some(&(ch, _)) = code.get(j) {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let end_line = code.get(j).map_or(lines.len(), |x| x.1);
                for flag in test.iter_mut().take(end_line + 1).skip(line) {
                    *flag = true;
                }
                i = j;
                continue;
            }
            // The item after the attribute ends at a `;` or at the brace matching its first `{`
            // outside parentheses and brackets.
            let mut depth = 0i64;
            let mut j = close + 1;
            let mut end = None;
            while let Some(&(ch, _)) = code.get(j) {
                match ch {
                    '(' | '[' => depth += 1,
                    ')' | ']' => depth -= 1,
                    ';' if depth == 0 => {
                        end = Some(j);
                        break;
                    }
                    '{' if depth == 0 => {
                        end = matching(&code, j);
                        break;
                    }
                    // The enclosing block ends first (an attribute on a last field or arm).
                    '}' if depth == 0 => {
                        end = Some(j.saturating_sub(1));
                        break;
                    }
                    _ => {}
                }
                j += 1;
            }
            let end = end.unwrap_or(code.len().saturating_sub(1));
            let end_line = code.get(end).map_or(lines.len(), |x| x.1);
            for flag in test.iter_mut().take(end_line + 1).skip(line) {
                *flag = true;
            }
            // `#[cfg(test)] mod name;` puts a whole file under test.
            let item: String = code
                .get(close + 1..=end)
                .unwrap_or(&[])
                .iter()
                .map(|x| x.0)
                .collect();
            let words: Vec<&str> = item
                .split(|c: char| c.is_whitespace() || c == ';')
                .filter(|w| !w.is_empty())
                .collect();
            if let [.., "mod", name] = words.as_slice() {
                if item.trim_end().ends_with(';') {
                    modules.push((*name).to_string());
                }
            }
            i = end + 1;
        }
        (test, modules, whole)
    }

    /// The panicking constructs: `(identifier, what must follow it, prefix required, label)`.
    const PATTERNS: [(&str, &[&str], bool, &str); 9] = [
        ("panic", &["!"], false, "panic!"),
        ("unwrap", &["(", ")"], true, ".unwrap()"),
        ("expect", &["("], true, ".expect("),
        ("unreachable", &["!"], false, "unreachable!"),
        ("todo", &["!"], false, "todo!"),
        ("unimplemented", &["!"], false, "unimplemented!"),
        ("assert", &["!"], false, "assert!"),
        ("assert_eq", &["!"], false, "assert_eq!"),
        ("assert_ne", &["!"], false, "assert_ne!"),
    ];

    /// The panicking constructs on one line of code (comments and string contents removed).
    fn constructs(code: &str) -> Vec<&'static str> {
        let chars: Vec<char> = code.chars().collect();
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        let mut found = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let starts_word = chars.get(i).is_some_and(|&c| is_ident(c))
                && (i == 0 || chars.get(i - 1).is_none_or(|&p| !is_ident(p)));
            if !starts_word {
                i += 1;
                continue;
            }
            let mut end = i;
            while chars.get(end).is_some_and(|&c| is_ident(c)) {
                end += 1;
            }
            let word: String = chars.get(i..end).unwrap_or(&[]).iter().collect();
            for (ident, follow, dotted, label) in PATTERNS {
                if word != ident {
                    continue;
                }
                if dotted {
                    let before = chars
                        .get(..i)
                        .unwrap_or(&[])
                        .iter()
                        .rev()
                        .find(|c| !c.is_whitespace());
                    if before != Some(&'.') {
                        continue;
                    }
                }
                let mut k = end;
                let ok = follow.iter().all(|tok| {
                    while chars.get(k).is_some_and(|c| c.is_whitespace()) {
                        k += 1;
                    }
                    let tok: Vec<char> = tok.chars().collect();
                    let hit = chars.get(k..k + tok.len()) == Some(tok.as_slice());
                    k += tok.len();
                    hit
                });
                if ok {
                    found.push(label);
                }
            }
            i = end;
        }
        found
    }

    /// Whether a line's comment is the `// invariant: <why>` escape hatch (with a reason).
    fn is_invariant(comment: &str) -> bool {
        comment
            .trim_start()
            .strip_prefix("//")
            .map(str::trim_start)
            .and_then(|c| c.strip_prefix("invariant:"))
            .is_some_and(|why| !why.trim().is_empty())
    }

    /// Scans one file's source for panicking constructs outside test code.
    pub fn scan(src: &str) -> Scan {
        let lines = split(src);
        let (test, test_modules, whole_file_is_test) = test_lines(&lines);
        let mut findings = Vec::new();
        if !whole_file_is_test {
            let originals: Vec<&str> = src.split('\n').collect();
            for (n, line) in lines.iter().enumerate() {
                if test.get(n).copied().unwrap_or(false) || is_invariant(&line.comment) {
                    continue;
                }
                for what in constructs(&line.code) {
                    findings.push(Finding {
                        line: n + 1,
                        what,
                        text: originals.get(n).map_or("", |l| l.trim()).to_string(),
                    });
                }
            }
        }
        Scan {
            findings,
            test_modules,
            whole_file_is_test,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn labels(src: &str) -> Vec<(usize, &'static str)> {
            scan(src)
                .findings
                .into_iter()
                .map(|f| (f.line, f.what))
                .collect()
        }

        #[test]
        fn finds_each_construct() {
            let src = "fn f(x: Option<u8>) -> u8 {\n\
                       let a = x.unwrap();\n\
                       let b = x.expect(\"b\");\n\
                       if a > b { panic!(\"no\") }\n\
                       assert!(a < 3);\n\
                       assert_eq!(a, 1);\n\
                       assert_ne!(a, 2);\n\
                       match a { 0 => unreachable!(), 1 => todo!(), _ => unimplemented!() }\n\
                       }\n";
            assert_eq!(
                labels(src),
                vec![
                    (2, ".unwrap()"),
                    (3, ".expect("),
                    (4, "panic!"),
                    (5, "assert!"),
                    (6, "assert_eq!"),
                    (7, "assert_ne!"),
                    (8, "unreachable!"),
                    (8, "todo!"),
                    (8, "unimplemented!"),
                ]
            );
        }

        #[test]
        fn near_misses_are_not_findings() {
            let src = "fn f(x: Option<u8>) -> u8 {\n\
                       debug_assert!(x.is_some());\n\
                       let y = x.unwrap_or(0) + x.unwrap_or_default();\n\
                       let z = x.expect_none_like();\n\
                       std::panic::catch_unwind(|| ());\n\
                       let my_panic = 1; let unwrap = 2;\n\
                       y\n\
                       }\n";
            assert_eq!(labels(src), vec![]);
        }

        #[test]
        fn construct_split_over_lines_is_found() {
            let src = "fn f(x: Option<u8>) -> u8 {\n    x\n        .unwrap()\n}\n";
            assert_eq!(labels(src), vec![(3, ".unwrap()")]);
        }

        #[test]
        fn test_module_is_ignored() {
            let src = "fn f() {}\n\
                       #[cfg(test)]\n\
                       mod tests {\n\
                           #[test]\n\
                           fn t() { panic!(\"x\"); Some(1).unwrap(); }\n\
                           fn nested() { if true { assert!(true); } }\n\
                       }\n\
                       fn g() { panic!(\"after\") }\n";
            assert_eq!(labels(src), vec![(8, "panic!")]);
        }

        #[test]
        fn test_function_and_cfg_all_test_are_ignored() {
            let src = "#[test]\nfn t() { None::<u8>.unwrap(); }\n\
                       #[cfg(all(test, feature = \"x\"))]\nfn h() { todo!() }\n\
                       #[cfg(test)]\nuse std::panic;\n\
                       fn g() { todo!() }\n";
            assert_eq!(labels(src), vec![(7, "todo!")]);
        }

        #[test]
        fn braces_in_strings_and_chars_do_not_end_a_test_module() {
            let src = "#[cfg(test)]\nmod tests {\n    fn t() { let _ = \"}\"; let _ = '}'; \
                       panic!(); }\n    fn u() { let _ = r#\"}\"#; panic!(); }\n}\n\
                       fn g() { panic!() }\n";
            assert_eq!(labels(src), vec![(6, "panic!")]);
        }

        #[test]
        fn cfg_test_mod_declaration_is_recorded() {
            let s = scan("#[cfg(test)]\nmod tests;\nfn g() {}\n");
            assert_eq!(s.test_modules, vec!["tests".to_string()]);
            assert!(s.findings.is_empty());
            assert!(scan("#![cfg(test)]\nfn g() { panic!() }\n").whole_file_is_test);
        }

        #[test]
        fn inner_cfg_test_covers_its_module_only() {
            let src =
                "mod a {\n    #![cfg(test)]\n    fn t() { panic!() }\n}\nfn g() { todo!() }\n";
            assert_eq!(labels(src), vec![(5, "todo!")]);
        }

        #[test]
        fn attribute_on_a_last_field_ends_at_the_closing_brace() {
            let src = "struct S {\n    #[cfg(test)]\n    a: u8\n}\nfn g() { todo!() }\n";
            assert_eq!(labels(src), vec![(5, "todo!")]);
        }

        #[test]
        fn comments_and_docs_are_ignored() {
            let src = "/// let x = y.unwrap();\n\
                       //! panic!(\"doc\")\n\
                       // x.unwrap() in a comment\n\
                       /* panic!() /* nested */ todo!() */\n\
                       fn g() {} // todo!() later\n";
            assert_eq!(labels(src), vec![]);
        }

        #[test]
        fn string_literals_are_ignored() {
            let src = "fn g() -> &'static str {\n\
                       let _ = \"x.unwrap() and panic!()\";\n\
                       let _ = \"escaped \\\" quote .unwrap()\";\n\
                       let _ = r#\"raw \" panic!() \"#;\n\
                       let _ = b\"assert!(x)\";\n\
                       let _ = '\"'; let _ = '\\''; \n\
                       \"todo!()\"\n\
                       }\n";
            assert_eq!(labels(src), vec![]);
        }

        #[test]
        fn a_multiline_string_keeps_line_numbers() {
            let src = "fn g() {\n    let _ = \"a\nb.unwrap()\nc\";\n    panic!()\n}\n";
            assert_eq!(labels(src), vec![(5, "panic!")]);
        }

        #[test]
        fn lifetimes_are_code() {
            let src = "fn g<'a>(x: &'a Option<u8>) -> u8 { x.unwrap() }\n";
            assert_eq!(labels(src), vec![(1, ".unwrap()")]);
        }

        #[test]
        fn invariant_comment_allows_a_line() {
            let src = "fn g(m: &std::sync::Mutex<u8>) {\n\
                       let _ = m.lock().unwrap(); // invariant: never poisoned, see above\n\
                       let _ = m.lock().unwrap(); // invariant:\n\
                       let _ = m.lock().unwrap(); // not an invariant: comment\n\
                       }\n";
            assert_eq!(labels(src), vec![(3, ".unwrap()"), (4, ".unwrap()")]);
        }
    }
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The files that `#[cfg(test)] mod name;` in `file` declares.
fn declared_test_files(file: &Path, names: &[String]) -> Vec<PathBuf> {
    let parent = file.parent().unwrap_or(Path::new("."));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = if matches!(stem, "lib" | "main" | "mod") {
        parent.to_path_buf()
    } else {
        parent.join(stem)
    };
    names
        .iter()
        .flat_map(|n| [dir.join(format!("{n}.rs")), dir.join(n).join("mod.rs")])
        .collect()
}

/// Findings (`path:line: construct: text`) in one crate's sources, minus skipped paths.
fn findings_in(root: &Path, crate_src: &str, skip: &[String]) -> Vec<String> {
    let files = rust_files(&root.join(crate_src));
    let mut test_files = Vec::new();
    let mut scans = Vec::new();
    for file in &files {
        let src =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let scan = scanner::scan(&src);
        test_files.extend(declared_test_files(file, &scan.test_modules));
        scans.push((file, scan));
    }
    let mut out = Vec::new();
    for (file, scan) in scans {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        if test_files.contains(file) || skip.iter().any(|s| rel.starts_with(s.as_str())) {
            continue;
        }
        for f in scan.findings {
            out.push(format!("{rel}:{}: {}: {}", f.line, f.what, f.text));
        }
    }
    out
}

/// Paths skipped for local runs (`ZPLAN_NO_PANIC_SKIP`); empty in CI.
fn skipped() -> Vec<String> {
    let skip: Vec<String> = std::env::var("ZPLAN_NO_PANIC_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if !skip.is_empty() {
        eprintln!("warning: ZPLAN_NO_PANIC_SKIP skips {skip:?}; the rule is not fully enforced");
    }
    skip
}

fn check(crate_src: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = findings_in(root, crate_src, &skipped());
    assert!(
        found.is_empty(),
        "{} panicking construct(s) in {crate_src} outside test code (see CONTRIBUTING.md, \
         \"No panics\"): return the crate's error, restructure, or end the line with \
         `// invariant: <why it cannot fail>`:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn io_has_no_panics() {
    check("io/src");
}

#[test]
fn obs_has_no_panics() {
    check("obs/src");
}

#[test]
fn sim_has_no_panics() {
    check("sim/src");
}

#[test]
fn models_has_no_panics() {
    check("models/src");
}

#[test]
fn planner_has_no_panics() {
    check("planner/src");
}

#[test]
fn capi_has_no_panics() {
    check("capi/src");
}

#[test]
fn python_bindings_have_no_panics() {
    check("python/src");
}

#[test]
fn every_library_crate_is_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let members: Vec<&str> = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members"))
        .and_then(|l| l.split_once('[')?.1.split_once(']'))
        .map(|(list, _)| {
            list.split(',')
                .map(|m| m.trim().trim_matches('"'))
                .collect()
        })
        .expect("a `members = [...]` line in the root Cargo.toml");
    for member in members.iter().filter(|m| !m.is_empty()) {
        let src = format!("{member}/src");
        assert!(
            LIBRARY_SOURCES.contains(&src.as_str()),
            "workspace member `{member}` is not checked by this test: add {src} to LIBRARY_SOURCES"
        );
    }
    for src in LIBRARY_SOURCES {
        assert!(
            !rust_files(&root.join(src)).is_empty(),
            "{src}: no Rust sources found"
        );
    }
}
