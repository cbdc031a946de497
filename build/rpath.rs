//! Shared build script for every crate that links libtorch.
//!
//! torch-sys puts no rpath on binaries, and the linker's `--as-needed` drops `libtorch_cuda`
//! because nothing references its symbols directly; then `Device::cuda_if_available()` silently
//! answers CPU. We embed an rpath to `$LIBTORCH/lib` and force `libtorch` (and `libtorch_cuda`
//! when present) to stay linked, so binaries, tests, benches and examples run from any
//! directory with no `LD_LIBRARY_PATH` and still find CUDA.
//!
//! It also records the libtorch version from the headers (`ZPLAN_LIBTORCH_VERSION`) and the
//! library folder (`ZPLAN_LIBTORCH_LIB`) for `zplan info`.
use std::path::{Path, PathBuf};

fn header_version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("include/torch/headeronly/version.h"))
        .or_else(|_| {
            std::fs::read_to_string(root.join("include/torch/csrc/api/include/torch/version.h"))
        })
        .ok()?;
    let field = |name: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("#define ")?.strip_prefix(name)?;
            let v = rest.trim();
            (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit())).then(|| v.to_string())
        })
    };
    Some(format!(
        "{}.{}.{}",
        field("TORCH_VERSION_MAJOR")?,
        field("TORCH_VERSION_MINOR")?,
        field("TORCH_VERSION_PATCH")?
    ))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!(
            "cargo:warning=LIBTORCH is not set: run scripts/setup.sh once (it writes .cargo/config.toml)"
        );
        println!("cargo:rustc-env=ZPLAN_LIBTORCH_VERSION=unknown");
        println!("cargo:rustc-env=ZPLAN_LIBTORCH_LIB=unknown");
        return;
    };
    let root = PathBuf::from(libtorch);
    let lib = root.join("lib");
    let version = header_version(&root).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ZPLAN_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=ZPLAN_LIBTORCH_LIB={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-arg=-L{}", lib.display());
    let mut keep = String::from("-Wl,--no-as-needed,-ltorch");
    if lib.join("libtorch_cuda.so").exists() {
        keep.push_str(",-ltorch_cuda");
    }
    keep.push_str(",--as-needed");
    println!("cargo:rustc-link-arg={keep}");
}
