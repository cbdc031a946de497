//! The C++ example (`examples/cpp/realtime_controller.cpp`) and the C example in
//! `capi/README.md` build against `include/zplan.h` and `libzplan_capi.so` with the system's
//! compilers, and run: a 20 Hz loop on reach with the simulator-backed model, through the C ABI
//! only.
//!
//! A missing compiler fails the test with a message saying so; set `ZPLAN_SKIP_CPP=1` to skip
//! these tests on a machine without g++/gcc.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("capi/ has a parent")
        .to_path_buf()
}

fn skipped() -> bool {
    if std::env::var_os("ZPLAN_SKIP_CPP").is_some_and(|v| v == "1") {
        eprintln!("ZPLAN_SKIP_CPP=1: C/C++ example not built or run");
        return true;
    }
    false
}

/// The folder holding the `libzplan_capi.so` built with this test: `cargo test` writes it
/// next to the test executable (`target/<profile>/deps/`) and does not always copy it up to
/// `target/<profile>/` (where `cargo build` puts it), so `deps/` comes first and the profile
/// folder is the fallback.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's folder");
    let candidates: Vec<PathBuf> = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(Path::to_path_buf)
        .collect();
    candidates
        .iter()
        .find(|d| d.join("libzplan_capi.so").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libzplan_capi.so is in none of {candidates:?}: `cargo test -p zplan-capi` builds \
                 it with the library (crate-type cdylib); run `cargo build -p zplan-capi`"
            )
        })
}

/// Runs a compiler, failing clearly when it is missing or rejects the source.
fn compile(compiler: &str, args: &[&str]) {
    let out = Command::new(compiler)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{compiler}` ({e}): install it (Debian: apt-get install g++), or set \
             ZPLAN_SKIP_CPP=1 to skip the C/C++ example tests"
            )
        });
    assert!(
        out.status.success(),
        "{compiler} {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` in the repository root, killing it after `limit`.
fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("poll the example").is_some() {
            return child.wait_with_output().expect("the example's output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the example's output");
            panic!(
                "the example ran longer than {limit:?} and was killed; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn link_args(lib: &Path) -> Vec<String> {
    vec![
        format!("-L{}", lib.display()),
        "-lzplan_capi".into(),
        format!("-Wl,-rpath,{}", lib.display()),
    ]
}

#[test]
fn cpp_realtime_controller_runs_at_20_hz() {
    if skipped() {
        return;
    }
    let lib = library_dir();
    let dir = tempfile::tempdir().expect("a temp dir");
    let exe = dir.path().join("realtime_controller");
    let root = repo();
    let source = root.join("examples/cpp/realtime_controller.cpp");
    let include = root.join("capi/include");
    let mut args: Vec<String> = vec![
        "-std=c++17".into(),
        "-O2".into(),
        "-Wall".into(),
        "-Wextra".into(),
        "-Werror".into(),
        format!("-I{}", include.display()),
        source.display().to_string(),
        "-o".into(),
        exe.display().to_string(),
    ];
    args.extend(link_args(&lib));
    compile("g++", &args.iter().map(String::as_str).collect::<Vec<_>>());

    // Two episodes of reach, at most 4 s. The first-action limit is loose: a test binary is
    // built without full optimisation, and other tests may load the machine meanwhile.
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--seconds",
        "4",
        "--episodes",
        "2",
        "--sim-threads",
        "1",
        "--max-first-action-ms",
        "2000",
        "--max-missed-fraction",
        "0.5",
    ]);
    let out = run(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the example failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    assert!(summary.ends_with("result=OK"), "{summary}");
    let field = |k: &str| -> f64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{k}=` number in {summary}"))
    };
    assert!(field("ticks") >= 10.0, "{summary}");
    assert!(field("plans") >= 1.0, "{summary}");
    assert!(field("first_action_ms_max") > 0.0, "{summary}");
}

/// The first ```c block of capi/README.md.
fn readme_c_example() -> String {
    let readme =
        std::fs::read_to_string(repo().join("capi/README.md")).expect("read capi/README.md");
    let start = readme
        .find("```c\n")
        .expect("capi/README.md has a ```c block")
        + "```c\n".len();
    let len = readme[start..]
        .find("```")
        .expect("the ```c block is closed");
    readme[start..start + len].to_string()
}

#[test]
fn readme_c_example_builds_as_c11_and_runs() {
    if skipped() {
        return;
    }
    let lib = library_dir();
    let dir = tempfile::tempdir().expect("a temp dir");
    let source = dir.path().join("example.c");
    std::fs::write(&source, readme_c_example()).expect("write example.c");
    let exe = dir.path().join("example");
    let include = repo().join("capi/include");
    let mut args: Vec<String> = vec![
        "-std=c11".into(),
        "-Wall".into(),
        "-Wextra".into(),
        "-Werror".into(),
        format!("-I{}", include.display()),
        source.display().to_string(),
        "-o".into(),
        exe.display().to_string(),
    ];
    args.extend(link_args(&lib));
    compile("gcc", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(Command::new(&exe), Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README's C example failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("action"), "{stdout}");
}
