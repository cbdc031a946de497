//! Defensive input for zplan.
//!
//! Every file a user hands zplan (scenario and suite RON, model sidecars, run records) is read
//! through [`read_text`]: it names what the path is when it is not a regular file (a folder, a
//! FIFO, a device, a symbolic-link loop), refuses files above a size limit before reading them,
//! drops a UTF-8 byte-order mark, reports invalid UTF-8 with its byte offset, and refuses
//! bracket nesting deeper than [`MAX_NESTING`] in one linear pass, before any parser sees the
//! text (parsers recurse, and some backtrack: a 200 000-deep nest must not take seconds).
//!
//! Sizes that drive allocations (planner horizons and populations, episode counts, model
//! dimensions, dataset shapes) are checked with [`check_memory`] against [`memory_limit`]:
//! half the machine's memory, or `ZPLAN_MEMORY_LIMIT` (`8GiB`, `512MiB`, bytes). The refusal
//! carries the estimate, so a user sees why, and the process never aborts on an allocation.

use std::fmt;
use std::path::Path;

/// Largest config file read (scenario, suite, sidecar): 4 MiB. The shipped ones are < 10 KiB.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Deepest bracket nesting (`(`, `[`, `{`) accepted in a config text. The deepest shipped file
/// nests 6 levels.
pub const MAX_NESTING: usize = 64;

/// A refused input. Every message names the file (or the setting) and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist.
    #[error("{path}: not found")]
    NotFound {
        /// The path.
        path: String,
    },
    /// The path exists but is not a regular file.
    #[error("{path}: is {kind}, not a regular file")]
    NotAFile {
        /// The path.
        path: String,
        /// What it is ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// Reading failed for another reason.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The file is larger than the limit for its kind.
    #[error("{path}: {size} bytes, more than the {limit}-byte limit for {what}")]
    TooLarge {
        /// The path.
        path: String,
        /// What the file was read as.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8.
    #[error("{path}: not valid UTF-8 at byte {offset} (line {line})")]
    NotUtf8 {
        /// The path.
        path: String,
        /// Byte offset of the first invalid byte.
        offset: usize,
        /// 1-based line of that byte.
        line: usize,
    },
    /// Brackets nest deeper than the limit.
    #[error("{path}:{line}:{col}: brackets nest deeper than {limit} levels")]
    TooDeep {
        /// The path (or a description of the string).
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        col: usize,
        /// The limit.
        limit: usize,
    },
    /// A size would need more memory than allowed.
    #[error("{what} needs about {} (estimate), more than the limit of {} (half this machine's memory; set ZPLAN_MEMORY_LIMIT to change it)", Bytes(*.needed), Bytes(*.limit))]
    TooMuchMemory {
        /// What would be allocated, with the sizes that drive it.
        what: String,
        /// The estimate in bytes (saturating).
        needed: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// `ZPLAN_MEMORY_LIMIT` is not a size.
    #[error("ZPLAN_MEMORY_LIMIT={value}: expected a size such as 8GiB, 512MiB or 1000000 (bytes)")]
    BadLimit {
        /// The value given.
        value: String,
    },
}

/// Bytes, printed with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut x = self.0 as f64;
        let mut u = 0;
        while x >= 1024.0 && u + 1 < UNITS.len() {
            x /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{x:.1} {}", UNITS[u])
        }
    }
}

/// What a path is, when it is not a regular file; `Ok(())` for a regular file (after
/// following symbolic links).
pub fn check_regular_file(path: &Path) -> Result<(), InputError> {
    let p = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(InputError::NotAFile {
            path: p,
            kind: kind_of(&m.file_type()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link exists as a link but not as a target.
            if std::fs::symlink_metadata(path).is_ok() {
                Err(InputError::NotAFile {
                    path: p,
                    kind: "a symbolic link to nothing",
                })
            } else {
                Err(InputError::NotFound { path: p })
            }
        }
        Err(e) if is_loop(&e) => Err(InputError::NotAFile {
            path: p,
            kind: "a symbolic-link loop",
        }),
        Err(source) => Err(InputError::Io {
            path: p,
            cause: source,
        }),
    }
}

fn is_loop(e: &std::io::Error) -> bool {
    // ELOOP is 40 on Linux, 62 on macOS and the BSDs.
    matches!(e.raw_os_error(), Some(40) | Some(62))
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads a config text: a regular file of at most `limit` bytes, UTF-8 (a leading byte-order
/// mark is dropped), nested at most [`MAX_NESTING`] brackets deep. `what` names the kind of
/// file in the size error ("a scenario file").
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String, InputError> {
    check_regular_file(path)?;
    let p = path.display().to_string();
    let io = |source| InputError::Io {
        path: p.clone(),
        cause: source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limit {
        return Err(InputError::TooLarge {
            path: p,
            what: what.into(),
            size,
            limit,
        });
    }
    use std::io::Read;
    let mut bytes = Vec::with_capacity(size as usize);
    // `take` guards against a file that grows between the check and the read.
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    text_from_bytes(&p, bytes, what, limit)
}

/// The checks [`read_text`] applies once a file's bytes are read, for text that arrives as
/// bytes (a fuzzer, a network peer, an in-memory test): at most `limit` bytes, UTF-8 (a
/// leading byte-order mark is dropped, invalid UTF-8 is reported with its byte offset), nested
/// at most [`MAX_NESTING`] brackets deep. `origin` names the text in errors, `what` the kind
/// of file in the size error.
pub fn text_from_bytes(
    origin: &str,
    bytes: Vec<u8>,
    what: &str,
    limit: u64,
) -> Result<String, InputError> {
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge {
            path: origin.into(),
            what: what.into(),
            size: bytes.len() as u64,
            limit,
        });
    }
    let text = decode(origin, bytes)?;
    check_nesting(origin, &text, MAX_NESTING)?;
    Ok(text)
}

/// UTF-8 text of `bytes` without a leading byte-order mark; invalid UTF-8 is reported with its
/// byte offset in the file (the mark counted) and line.
pub fn decode(path: &str, mut bytes: Vec<u8>) -> Result<String, InputError> {
    let bom = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
        3
    } else {
        0
    };
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        InputError::NotUtf8 {
            path: path.into(),
            offset: offset + bom,
            line,
        }
    })
}

/// Refuses `text` when its brackets (`(`, `[`, `{`) nest deeper than `limit`, in one pass.
/// Brackets inside string literals (`"..."`, with `\` escapes) and `//` or `/* */` comments do
/// not count. Unbalanced brackets are left to the parser to report.
pub fn check_nesting(path: &str, text: &str, limit: usize) -> Result<(), InputError> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
        }
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                    col += 1;
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        col = 0;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                col += 1;
                let mut prev = ' ';
                for c in chars.by_ref() {
                    col += 1;
                    if c == '\n' {
                        line += 1;
                        col = 0;
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > limit {
                    return Err(InputError::TooDeep {
                        path: path.into(),
                        line,
                        col,
                        limit,
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The memory budget for one allocation-driving input: `ZPLAN_MEMORY_LIMIT` if set, else half
/// of the machine's physical memory (8 GiB where it cannot be read).
pub fn memory_limit() -> Result<u64, InputError> {
    if let Ok(v) = std::env::var("ZPLAN_MEMORY_LIMIT") {
        return parse_size(&v).ok_or(InputError::BadLimit { value: v });
    }
    Ok(physical_memory().map(|m| m / 2).unwrap_or(8 << 30))
}

/// Physical memory in bytes (Linux: `/proc/meminfo`).
pub fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses `8GiB`, `512MiB`, `64KiB`, `2GB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let x: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024f64.powi(2),
        "g" | "gb" | "gib" => 1024f64.powi(3),
        "t" | "tb" | "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let v = x * mult;
    (v.is_finite() && v >= 1.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Product of sizes in bytes, saturating at `u64::MAX` (an estimate never overflows).
pub fn bytes_of(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |a, &b| a.saturating_mul(b))
}

/// Refuses an input whose estimated memory `needed` exceeds [`memory_limit`]. `what` names the
/// setting and its sizes (`"planner horizon 4294967296 × 300 samples × 2 action dims"`).
pub fn check_memory(what: impl FnOnce() -> String, needed: u64) -> Result<(), InputError> {
    let limit = memory_limit()?;
    if needed > limit {
        return Err(InputError::TooMuchMemory {
            what: what(),
            needed,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deep_nesting_is_refused_fast_with_a_position() {
        let text = "[".repeat(200_000);
        let t = std::time::Instant::now();
        let e = check_nesting("x.ron", &text, MAX_NESTING).unwrap_err();
        assert!(t.elapsed().as_secs_f64() < 0.5);
        assert_eq!(
            e.to_string(),
            "x.ron:1:65: brackets nest deeper than 64 levels"
        );
        check_nesting("x.ron", &"[".repeat(64), MAX_NESTING).unwrap();
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "(".repeat(100);
        let text = format!("(a: \"{deep}\\\"{deep}\", // {deep}\n /* {deep} */ b: 1)");
        check_nesting("x", &text, 4).unwrap();
        let e = check_nesting("x", "(\n  [\n   {(", 3).unwrap_err();
        assert_eq!(e.to_string(), "x:3:5: brackets nest deeper than 3 levels");
    }

    #[test]
    fn non_regular_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path(), "a suite", MAX_CONFIG_BYTES).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is a directory, not a regular file"),
            "{e}"
        );
        let missing = dir.path().join("nope.ron");
        let e = read_text(&missing, "a suite", MAX_CONFIG_BYTES).unwrap_err();
        assert!(e.to_string().ends_with("nope.ron: not found"), "{e}");
        #[cfg(unix)]
        {
            let a = dir.path().join("a");
            let b = dir.path().join("b");
            std::os::unix::fs::symlink(&a, &b).unwrap();
            std::os::unix::fs::symlink(&b, &a).unwrap();
            let e = read_text(&a, "a suite", MAX_CONFIG_BYTES).unwrap_err();
            assert!(e.to_string().contains("symbolic-link loop"), "{e}");
            let dangling = dir.path().join("d");
            std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
            let e = read_text(&dangling, "a suite", MAX_CONFIG_BYTES).unwrap_err();
            assert!(e.to_string().contains("symbolic link to nothing"), "{e}");
            let e = read_text(Path::new("/dev/zero"), "a suite", MAX_CONFIG_BYTES).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
    }

    #[test]
    fn size_bom_and_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.ron");
        std::fs::write(&p, b"\xEF\xBB\xBF(a: 1)").unwrap();
        assert_eq!(read_text(&p, "a suite", 100).unwrap(), "(a: 1)");
        let e = read_text(&p, "a suite", 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: 9 bytes, more than the 4-byte limit for a suite",
                p.display()
            )
        );
        std::fs::write(&p, b"(a:\n 1, \xFF)").unwrap();
        let e = read_text(&p, "a suite", 100).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("not valid UTF-8 at byte 8 (line 2)"),
            "{e}"
        );
    }

    #[test]
    fn text_from_bytes_applies_the_file_checks() {
        let e = text_from_bytes("b.ron", b"\xEF\xBB\xBF(a:\n\xC3)".to_vec(), "x", 100).unwrap_err();
        // The offset counts the byte-order mark: it is a position in the file as written.
        assert_eq!(e.to_string(), "b.ron: not valid UTF-8 at byte 7 (line 2)");
        let e = text_from_bytes("b.ron", vec![b'['; 100], "a suite", 99).unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.ron: 100 bytes, more than the 99-byte limit for a suite"
        );
        let e = text_from_bytes("b.ron", vec![b'{'; 65], "a suite", 100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.ron:1:65: brackets nest deeper than 64 levels"
        );
        assert_eq!(
            text_from_bytes("b.ron", b"\xEF\xBB\xBF()".to_vec(), "x", 100).unwrap(),
            "()"
        );
    }

    #[test]
    fn memory_estimates_saturate_and_are_refused() {
        assert_eq!(bytes_of(&[1 << 40, 1 << 40]), u64::MAX);
        let e = check_memory(|| "horizon 4294967296".into(), u64::MAX).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("horizon 4294967296 needs about 16.0 EiB"),
            "{msg}"
        );
        check_memory(|| unreachable!(), 1024).unwrap();
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0"), None);
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(12).to_string(), "12 B");
    }

    proptest! {
        /// The scan never panics and finds the true depth of bracket-only texts.
        #[test]
        fn nesting_depth_matches(s in "[\\[\\](){}a\"\\\\/*\n]{0,200}") {
            let _ = check_nesting("p", &s, 8);
        }

        #[test]
        fn depth_of_pure_nests(n in 0usize..200) {
            let t = "(".repeat(n) + &")".repeat(n);
            prop_assert_eq!(check_nesting("p", &t, 100).is_ok(), n <= 100);
        }
    }
}
