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
    /// The CPU's bfloat16 units (AVX512-BF16, AMX-BF16), from `/proc/cpuinfo`.
    pub bf16_units: zplan_models::CpuBf16,
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
            bf16_units: zplan_models::CpuBf16::detect(),
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
        writeln!(f, "bf16 units      {}", self.bf16_units.summary())?;
        write!(f, "build profile   {}", self.build_profile)
    }
}

/// The one-line warning to print when one of `models` computes in bf16 on a CPU without bf16
/// units (it still works, emulated by libtorch, but slower than fp32); `None` otherwise.
pub fn bf16_emulation_warning<'a>(
    models: impl IntoIterator<Item = &'a dyn zplan_models::WorldModel>,
) -> Option<String> {
    let on_cpu = models
        .into_iter()
        .any(|m| m.precision() == zplan_models::Precision::Bf16 && m.device() == tch::Device::Cpu);
    let units = zplan_models::CpuBf16::detect();
    (on_cpu && !units.native()).then(|| format!("warning: bf16 on this CPU: {}", units.summary()))
}
