//! Helpers shared by the integration tests: the setup's python, generated model files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The python that carries the setup's torch: `$ZPLAN_PYTHON` (set by `.cargo/config.toml`),
/// else `python3`.
pub fn python() -> String {
    std::env::var("ZPLAN_PYTHON")
        .ok()
        .or_else(|| option_env!("ZPLAN_PYTHON").map(str::to_string))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// One torch thread per process: tests already run in parallel on a small machine.
pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| tch::set_num_threads(1));
}

pub fn export_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/export_example.py")
}

/// Writes `code` to `script` and runs `python script ARGS...` (TorchScript needs the source
/// of scripted classes in a file), panicking with python's stderr on failure.
pub fn run_python(script: &Path, code: &str, args: &[&str]) {
    std::fs::write(script, code).unwrap();
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}); set ZPLAN_PYTHON to a python with torch",
                python()
            )
        });
    assert!(
        out.status.success(),
        "python failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Python that generates every TorchScript file the tests use, in one process (importing torch
/// once): the example in two variants (with the `export_example.py` CLI) and broken modules.
const GENERATE: &str = r#"
import sys, os
import torch
from torch import nn
from typing import List

out, script = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(script))
import export_example as ex

ex.main(["--out", f"{out}/vec.pt", "--obs-shape", "4", "--action-dim", "2", "--latent-dim", "8",
         "--hidden", "32", "--layers", "2", "--reference", f"{out}/vec_ref.safetensors", "--seed", "3"])
ex.main(["--out", f"{out}/tok.pt", "--obs-shape", "2,3", "--action-dim", "2", "--latent-dim", "5",
         "--tokens", "3", "--hidden", "16", "--layers", "1", "--no-rollout",
         "--reference", f"{out}/tok_ref.safetensors", "--seed", "4"])

class Base(nn.Module):
    def __init__(self, obs=4, latent=8):
        super().__init__()
        self.enc = nn.Linear(obs, latent)
        self.pred = nn.Linear(latent + 2, latent)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)

class NoPredict(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)

class BadPredictShape(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.pred(torch.cat([z, a], -1))[:, :7]

class NanEncode(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs) * float("nan")
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, a], -1))

class InfPredict(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z / 0.0

class Double(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs).double()
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z

class BadRollout(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, a], -1))
    @torch.jit.export
    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z.unsqueeze(1).repeat(1, actions.size(1) + 1, 1)

class ScalarLatent(Base):
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs).sum(-1)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z

class WrongObs(Base):
    def __init__(self):
        super().__init__(obs=5)
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + self.pred(torch.cat([z, a], -1))

class Float32Constant(Base):
    # Fine in float32; in bfloat16 (precision bf16) the float32 matrix it creates meets
    # bfloat16 latents in a matmul, which libtorch refuses.
    @torch.jit.export
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self.enc(obs)
    @torch.jit.export
    def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + torch.cat([z, a], -1) @ torch.ones(10, 8)

for cls in [NoPredict, BadPredictShape, NanEncode, InfPredict, Double, BadRollout, ScalarLatent, WrongObs,
            Float32Constant]:
    torch.jit.save(torch.jit.script(cls().eval()), f"{out}/{cls.__name__}.pt")

# Image models (the image contract): one image field -> a tensor; image + proprio -> a dict.
import export_cnn_example as cnn
cnn.main(["--out", f"{out}/cnn.pt", "--image", "3,64,64", "--latent-dim", "16", "--seed", "5",
          "--reference", f"{out}/cnn_ref.safetensors"])
cnn.main(["--out", f"{out}/cnn_dict.pt", "--image", "3,64,64", "--proprio", "2", "--latent-dim", "16",
          "--tokens", "4", "--seed", "6", "--reference", f"{out}/cnn_dict_ref.safetensors"])
cnn.main(["--out", f"{out}/cnn_history2.pt", "--image", "6,64,64", "--latent-dim", "8", "--seed", "7"])

# A pickled (not scripted) model and a text file: neither is TorchScript.
torch.save(Base(), f"{out}/pickled.pt")
with open(f"{out}/text.pt", "w") as f:
    f.write("this is not a model\n")
"#;

/// Directory holding every generated model file (generated once per test process).
pub fn models_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory per test binary, so binaries run in parallel never race on the files.
        let exe = std::env::current_exe().unwrap();
        let binary = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("zplan-models-{binary}"));
        std::fs::create_dir_all(&dir).unwrap();
        run_python(
            &dir.join("generate.py"),
            GENERATE,
            &[dir.to_str().unwrap(), export_script().to_str().unwrap()],
        );
        dir
    })
}
