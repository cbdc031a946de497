//! `zplan info`: what libtorch this binary runs on and what it can see.

use std::fmt;

/// Facts about the linked libtorch and the machine, as `zplan info` prints them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Info {
    /// zplan's own version.
    pub zplan_version: &'static str,
    /// libtorch version read from the headers zplan was built against.
    pub libtorch_version: &'static str,
    /// Path of the `libtorch.so` actually loaded by this process (from `/proc/self/maps`).
    pub libtorch_loaded: Option<String>,
    /// Whether libtorch can use CUDA on this machine.
    pub cuda_available: bool,
    /// Number of visible CUDA devices.
    pub cuda_devices: i64,
    /// Whether cuDNN is available.
    pub cudnn_available: bool,
    /// torch's intra-op thread count.
    pub torch_threads: i32,
    /// Logical CPU cores.
    pub cpu_cores: usize,
    /// `debug` or `release`.
    pub build_profile: &'static str,
}

fn loaded_libtorch() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch.so") || p.ends_with("/libtorch_cpu.so"))
        .map(|p| p.to_string())
}

impl Info {
    /// Queries libtorch (this initialises it, and CUDA if present).
    pub fn collect() -> Self {
        let cuda_devices = tch::Cuda::device_count();
        Info {
            zplan_version: env!("CARGO_PKG_VERSION"),
            libtorch_version: env!("ZPLAN_LIBTORCH_VERSION"),
            libtorch_loaded: loaded_libtorch(),
            cuda_available: tch::Cuda::is_available(),
            cuda_devices,
            cudnn_available: tch::Cuda::cudnn_is_available(),
            torch_threads: tch::get_num_threads(),
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "zplan           {}", self.zplan_version)?;
        writeln!(f, "libtorch        {}", self.libtorch_version)?;
        writeln!(
            f,
            "libtorch loaded {}",
            self.libtorch_loaded
                .as_deref()
                .unwrap_or("(not found in /proc/self/maps)")
        )?;
        writeln!(f, "cuda available  {}", self.cuda_available)?;
        writeln!(f, "cuda devices    {}", self.cuda_devices)?;
        writeln!(f, "cudnn available {}", self.cudnn_available)?;
        writeln!(f, "torch threads   {}", self.torch_threads)?;
        writeln!(f, "cpu cores       {}", self.cpu_cores)?;
        write!(f, "build profile   {}", self.build_profile)
    }
}
