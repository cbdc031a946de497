//! Python bindings for zplan, built with maturin into the `zplan` package (`python/zplan/`).
//!
//! This crate is the compiled core, `zplan._zplan`; the package adds the gymnasium
//! environments (`zplan.make`), `torch.jit.ScriptModule` loading and the docs. Every zplan
//! error becomes a Python exception carrying zplan's message: bad arguments (a wrong dtype or
//! shape, a non-finite action, an invalid config) raise `ValueError`, everything else raises
//! `zplan.ZplanError` (a `RuntimeError`). pyo3 turns a Rust panic into
//! `pyo3.PanicException` rather than unwinding into the interpreter; zplan's library code does
//! not panic on any input (CONTRIBUTING.md).
//!
//! The module links the libtorch of the torch installation it was built against (its rpath);
//! `zplan/__init__.py` imports torch first and checks that it is that very libtorch, so one
//! process holds one copy.
use pyo3::prelude::*;

mod convert;
mod env;
mod model;
mod planning;

/// Folder of the libtorch this module was built against.
#[pyfunction]
fn libtorch_lib_dir() -> &'static str {
    env!("ZPLAN_LIBTORCH_LIB")
}

/// Version of the libtorch this module was built against.
#[pyfunction]
fn libtorch_version() -> &'static str {
    env!("ZPLAN_LIBTORCH_VERSION")
}

/// Sets libtorch's intra-op thread count for this process (`torch.set_num_threads` does the
/// same on the shared libtorch).
#[pyfunction]
fn set_num_threads(n: i32) -> PyResult<()> {
    if n < 1 {
        return Err(convert::value_error(
            "set_num_threads: n must be at least 1",
        ));
    }
    tch::set_num_threads(n);
    Ok(())
}

/// Keeps glibc from returning large temporary buffers to the kernel after every planner
/// iteration and faulting them in again on the next (the `zplan` CLI does the same at start):
/// raises the mmap threshold to 64 MiB and the trim threshold to 256 MiB for the whole
/// process. `import zplan` calls it unless `ZPLAN_NO_MALLOPT=1`. Returns whether it applied
/// (glibc on Linux only).
#[pyfunction]
fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts thresholds of glibc's allocator; glibc serialises it
        // with the arena locks, so other threads allocating meanwhile are unaffected.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[pymodule]
fn _zplan(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ZplanError", m.py().get_type::<convert::ZplanError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<env::Env>()?;
    m.add_class::<model::Model>()?;
    m.add_class::<planning::Planner>()?;
    m.add_class::<planning::PlanResult>()?;
    m.add_class::<planning::Mpc>()?;
    m.add_class::<planning::Controller>()?;
    m.add_function(wrap_pyfunction!(model::load_model, m)?)?;
    m.add_function(wrap_pyfunction!(planning::run_suite, m)?)?;
    m.add_function(wrap_pyfunction!(libtorch_lib_dir, m)?)?;
    m.add_function(wrap_pyfunction!(libtorch_version, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(tune_allocator, m)?)?;
    Ok(())
}
