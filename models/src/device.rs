//! Which device a model computes on.

use crate::{ModelError, Result};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// A device request from a config file or the command line.
///
/// Written as a string everywhere (`"auto"`, `"cpu"`, `"cuda"`, `"cuda:1"`), in RON, JSON and on
/// the command line. [`DeviceChoice::Auto`], the default, picks the first CUDA device when
/// libtorch sees one and the CPU otherwise: nothing in zplan hard-codes CUDA, so CPU-only
/// machines run the same files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when available, otherwise the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this index; an error when it does not exist.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolves the request against the devices libtorch sees.
    ///
    /// # Errors
    /// [`ModelError::Device`] when a CUDA device is requested that is not available.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(index) => {
                let count = if tch::Cuda::is_available() {
                    tch::Cuda::device_count()
                } else {
                    0
                };
                if (index as i64) < count {
                    Ok(Device::Cuda(index))
                } else {
                    Err(ModelError::Device(format!(
                        "cuda:{index} requested but libtorch sees {count} CUDA device(s); use `auto` or `cpu`"
                    )))
                }
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    /// Parses `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    ModelError::Device(format!(
                        "cannot parse `{s}`: expected auto, cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Human-readable device name: `cpu`, `cuda:0`, ...
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// The CPU's bfloat16 arithmetic units, read from the `flags` line of `/proc/cpuinfo`.
///
/// Without them libtorch still computes in bfloat16 on the CPU, by converting to float32 and
/// back around each operation: correct, but slower than float32. With AVX512-BF16 (Cooper
/// Lake, Sapphire Rapids and later Xeons, AMD Zen 4 and later) or AMX-BF16 (Sapphire Rapids
/// and later) oneDNN runs bf16 matrix products natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CpuBf16 {
    /// AVX512-BF16 (flag `avx512_bf16`): bf16 dot products in AVX-512 registers.
    pub avx512_bf16: bool,
    /// AMX-BF16 (flags `amx_bf16` and `amx_tile`): bf16 tile matrix multiplies.
    pub amx_bf16: bool,
}

impl CpuBf16 {
    /// The units of this machine's CPU: none when `/proc/cpuinfo` cannot be read (another
    /// operating system, a sandbox).
    pub fn detect() -> CpuBf16 {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| CpuBf16::from_cpuinfo(&text))
            .unwrap_or_default()
    }

    /// The units named by the first `flags` line of `/proc/cpuinfo` text (every core of a
    /// machine lists the same flags).
    pub fn from_cpuinfo(text: &str) -> CpuBf16 {
        let flags: Vec<&str> = text
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "flags").then_some(value)
            })
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default();
        let has = |f: &str| flags.contains(&f);
        CpuBf16 {
            avx512_bf16: has("avx512_bf16"),
            amx_bf16: has("amx_bf16") && has("amx_tile"),
        }
    }

    /// Whether bfloat16 runs on native units (either of them).
    pub fn native(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// One line for `zplan info` and warnings: `AVX512-BF16 no, AMX-BF16 no (bf16 runs
    /// emulated: expect it slower than fp32)`.
    pub fn summary(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let note = if self.native() {
            "bf16 matrix products run natively"
        } else {
            "bf16 runs emulated: expect it slower than fp32"
        };
        format!(
            "AVX512-BF16 {}, AMX-BF16 {} ({note})",
            yes(self.avx512_bf16),
            yes(self.amx_bf16)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), want);
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(
                matches!(bad.parse::<DeviceChoice>(), Err(ModelError::Device(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_is_a_string() {
        let json = serde_json::to_string(&DeviceChoice::Cuda(1)).unwrap();
        assert_eq!(json, "\"cuda:1\"");
        let back: DeviceChoice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, DeviceChoice::Cuda(1));
        assert!(serde_json::from_str::<DeviceChoice>("\"nope\"").is_err());
    }

    #[test]
    fn resolve_never_hard_codes_cuda() {
        assert_eq!(DeviceChoice::Cpu.resolve().unwrap(), Device::Cpu);
        let auto = DeviceChoice::Auto.resolve().unwrap();
        assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
        assert!(DeviceChoice::Cuda(1000).resolve().is_err());
    }

    #[test]
    fn bf16_units_from_cpuinfo_flags() {
        let epyc = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
                    flags\t\t: fpu sse sse2 avx avx2 fma sha_ni\n\nprocessor\t: 1\n";
        let none = CpuBf16::from_cpuinfo(epyc);
        assert_eq!(none, CpuBf16::default());
        assert!(!none.native());
        assert_eq!(
            none.summary(),
            "AVX512-BF16 no, AMX-BF16 no (bf16 runs emulated: expect it slower than fp32)"
        );
        let spr = "model name\t: Intel(R) Xeon(R) Platinum 8480+\n\
                   flags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n";
        let units = CpuBf16::from_cpuinfo(spr);
        assert!(units.avx512_bf16 && units.amx_bf16 && units.native());
        assert!(units.summary().starts_with("AVX512-BF16 yes, AMX-BF16 yes"));
        // Zen 4: AVX512-BF16 without AMX; `amx_bf16` alone (no tiles) does not count.
        let zen4 = CpuBf16::from_cpuinfo("flags : avx512f avx512_bf16 amx_bf16\n");
        assert_eq!((zen4.avx512_bf16, zen4.amx_bf16), (true, false));
        // A flag must match whole, not as a prefix of another.
        assert!(!CpuBf16::from_cpuinfo("flags : avx512_bf16x\n").avx512_bf16);
        assert_eq!(CpuBf16::from_cpuinfo(""), CpuBf16::default());
    }
}

/// Makes the calling thread's float arithmetic flush denormal (subnormal) numbers to zero, as
/// libtorch's `torch.set_flush_denormal(True)` does: on x86-64 it sets the FTZ and DAZ bits of
/// the SSE control register (MXCSR). Threads inherit the register from the thread that starts
/// them, so calling it first thing in `main` covers libtorch's worker pool and zplan's own
/// workers. It matters for CPU planning: a model whose weights or activations sink into the
/// denormal range (a flipped exponent bit, a badly scaled export) otherwise runs each affected
/// multiply-add through a microcode assist, about 100× slower. Results change only for values
/// below 1.2e-38 in magnitude, which flush to zero.
///
/// Returns whether flushing is now on (false on architectures where this is not implemented,
/// and when `ZPLAN_FLUSH_DENORMAL=0` asks to leave the default).
pub fn flush_denormals() -> bool {
    if std::env::var("ZPLAN_FLUSH_DENORMAL").is_ok_and(|v| v == "0") {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr`/`ldmxcsr` read and write only the calling thread's SSE control
        // register through a pointer to a live local; every x86-64 CPU has SSE2, and DAZ is
        // supported by every x86-64 CPU (it faults only on some early 32-bit Pentium 4s).
        // Changing rounding of subnormals does not break any invariant Rust relies on: no
        // safe code's memory safety depends on the value of a float.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ | DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
        true
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FPCR.FZ (bit 24) flushes denormal inputs and outputs on AArch64.
        let mut fpcr: u64;
        // SAFETY: reads and writes only the calling thread's FP control register.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod denormal_tests {
    #[test]
    fn flushing_zeroes_subnormal_products() {
        // On a fresh thread (so the test runner's other threads are unaffected).
        std::thread::spawn(|| {
            let x = std::hint::black_box(1e-39f32); // subnormal
            assert!(x * 1.0 > 0.0, "subnormals survive by default");
            if super::flush_denormals() {
                assert_eq!(std::hint::black_box(x) * 1.0, 0.0);
                let t = tch::Tensor::from_slice(&[1e-39f32]) * 1.0;
                assert_eq!(t.double_value(&[0]), 0.0);
            }
        })
        .join()
        .unwrap();
    }
}
