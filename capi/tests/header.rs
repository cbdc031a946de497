//! `include/zplan.h` is what cbindgen generates from the crate today.
//!
//! The header is committed, so C and C++ users need neither cbindgen nor a build script. This
//! test regenerates it in memory (with `cbindgen.toml`) and fails when the committed file
//! differs; `ZPLAN_BLESS=1 cargo test -p zplan-capi --test header` writes the new header
//! instead.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/zplan.h");
    let fresh = generate();
    if std::env::var_os("ZPLAN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write include/zplan.h");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(fresh.lines().count()));
        panic!(
            "{} is stale (first difference at line {}: committed {:?}, generated {:?}).\n\
             Regenerate it with:\n    ZPLAN_BLESS=1 cargo test -p zplan-capi --test header",
            path.display(),
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            fresh.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn header_declares_the_whole_api() {
    let header = generate();
    for name in [
        "ZPLAN_STATUS_OK",
        "ZPLAN_STATUS_NO_ACTION_YET",
        "ZPLAN_STATUS_INVALID_HANDLE",
        "ZPLAN_DTYPE_F32",
        "typedef struct ZplanController ZplanController;",
        "typedef struct ZplanEnv ZplanEnv;",
        "ZplanStatus zplan_controller_create_from_entry(",
        "ZplanStatus zplan_controller_push_observation(",
        "ZplanStatus zplan_controller_latest_action(",
        "ZplanStatus zplan_controller_set_deadline(",
        "const char *zplan_last_error_message(void);",
        "ZplanControllerOptions zplan_controller_options_default(void);",
        "#define ZPLAN_MAX_NDIM 8",
        "extern \"C\"",
    ] {
        assert!(header.contains(name), "zplan.h lacks `{name}`");
    }
    // cbindgen cannot export string constants; cbindgen.toml writes this one by hand.
    let define = format!(
        "#define ZPLAN_TRUE_STATE_FIELD \"{}\"",
        zplan_capi::ZPLAN_TRUE_STATE_FIELD
    );
    assert!(header.contains(&define), "zplan.h lacks `{define}`");
}
