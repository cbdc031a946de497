//! Chunked datasets of typed observations: the files `zplan collect` writes and `zplan train`
//! reads.
//!
//! A dataset directory holds `meta.json` ([`crate::collect::DatasetMeta`], format
//! [`FORMAT`]) and chunk files `chunk-00000.safetensors`, `chunk-00001.safetensors`, ...,
//! each holding a contiguous range of episodes:
//!
//! | tensor | dtype | shape | what |
//! |---|---|---|---|
//! | `obs.<field>` | the field's (u8 for images) | `[n, T+1, *shape]` | every observed field, e.g. `obs.image`, `obs.proprio`, `obs.state` |
//! | `state` | f32 | `[n, T+1, S]` | the true simulator state (labels for probes and evaluation; never a model input) |
//! | `actions` | f32 | `[n, T, A]` | the actions taken |
//! | `seeds` | i64 | `[n]` | the episodes' reset seeds |
//!
//! Writers and readers hold one chunk at a time, so a dataset of any size (10 000 episodes of
//! 100 steps of 64 × 64 RGB is about 12 GB) is collected and read with bounded memory. Every
//! chunk is checked when read (tensors present, dtypes, shapes against `meta.json`, finite
//! floats), and errors name the chunk file and the tensor.
//!
//! The first format (`zplan-dataset-v1`: one `data.safetensors` with `obs [N, T+1, D]`,
//! `actions`, `seeds`) still loads ([`crate::train::load_dataset`]).

use anyhow::{bail, Context, Result};
use safetensors::{Dtype as StDtype, SafeTensors};

use std::path::{Path, PathBuf};
use zplan_obs::{Dtype, ObsSpec};

/// Format marker of chunked datasets in `meta.json`.
pub const FORMAT: &str = "zplan-dataset-v2";
/// Format marker of the first, single-file datasets.
pub const FORMAT_V1: &str = "zplan-dataset-v1";
/// Bytes a chunk aims at when the number of episodes per chunk is not given.
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;

/// One chunk's place in the dataset (listed in `meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkInfo {
    /// File name inside the dataset directory.
    pub file: String,
    /// Index of its first episode.
    pub first_episode: u64,
    /// Episodes in it.
    pub episodes: u64,
}

/// The file name of chunk `i`.
pub fn chunk_file(i: usize) -> String {
    format!("chunk-{i:05}.safetensors")
}

/// Bytes one episode of `steps` steps takes in a chunk.
pub fn episode_bytes(obs: &ObsSpec, state_dim: usize, action_dim: usize, steps: usize) -> usize {
    let per_frame: usize = obs
        .fields()
        .iter()
        .map(|f| {
            f.numel()
                * match f.dtype {
                    Dtype::F32 => 4,
                    Dtype::U8 => 1,
                }
        })
        .sum::<usize>()
        + 4 * state_dim;
    per_frame * (steps + 1) + 4 * action_dim * steps + 8
}

/// One collected episode, field by field (flat, in the spec's field order).
#[derive(Debug, Clone, Default)]
pub struct EpisodeData {
    /// Per observation field: f32 values (empty for u8 fields).
    pub f32_fields: Vec<Vec<f32>>,
    /// Per observation field: u8 values (empty for f32 fields).
    pub u8_fields: Vec<Vec<u8>>,
    /// True states, `(T+1) * S`.
    pub state: Vec<f32>,
    /// Actions, `T * A`.
    pub actions: Vec<f32>,
    /// Reset seed.
    pub seed: u64,
}

impl EpisodeData {
    /// An empty episode for `spec`'s fields, with room for `steps` steps allocated up front
    /// (exact sizes: buffers never grow, so chunk after chunk reuses the same memory).
    pub fn new(
        spec: &ObsSpec,
        state_dim: usize,
        action_dim: usize,
        steps: usize,
        seed: u64,
    ) -> Self {
        let frames = steps + 1;
        let mut f32_fields = Vec::with_capacity(spec.fields().len());
        let mut u8_fields = Vec::with_capacity(spec.fields().len());
        for f in spec.fields() {
            let (a, b) = match f.dtype {
                Dtype::F32 => (frames * f.numel(), 0),
                Dtype::U8 => (0, frames * f.numel()),
            };
            f32_fields.push(Vec::with_capacity(a));
            u8_fields.push(Vec::with_capacity(b));
        }
        EpisodeData {
            f32_fields,
            u8_fields,
            state: Vec::with_capacity(frames * state_dim),
            actions: Vec::with_capacity(steps * action_dim),
            seed,
        }
    }

    /// Appends one observation (checked against `spec`) and the true state it came with.
    pub fn push_observation(
        &mut self,
        spec: &ObsSpec,
        obs: &zplan_obs::Observation,
        state: &[f32],
    ) -> Result<()> {
        spec.check(obs)?;
        for (k, f) in spec.fields().iter().enumerate() {
            match obs.get(&f.name) {
                Some(zplan_obs::FieldData::F32(v)) => self.f32_fields[k].extend_from_slice(v),
                Some(zplan_obs::FieldData::U8(v)) => self.u8_fields[k].extend_from_slice(v),
                None => bail!("observation field `{}` missing", f.name),
            }
        }
        self.state.extend_from_slice(state);
        Ok(())
    }
}

/// Writes `episodes` (all of `steps` steps) as one chunk file: a safetensors file written
/// piece by piece from the episodes' own buffers, so writing copies nothing but the bytes.
pub fn write_chunk(
    path: &Path,
    spec: &ObsSpec,
    state_dim: usize,
    action_dim: usize,
    steps: usize,
    episodes: &[EpisodeData],
) -> Result<()> {
    use std::io::Write;
    let n = episodes.len();
    let t1 = steps + 1;
    // Tensor table: name, dtype, shape, byte length; data follows in this order.
    let mut table: Vec<(String, &str, Vec<usize>, usize)> = Vec::new();
    for f in spec.fields() {
        let mut shape = vec![n, t1];
        shape.extend_from_slice(&f.shape);
        let (dtype, size) = match f.dtype {
            Dtype::U8 => ("U8", 1),
            Dtype::F32 => ("F32", 4),
        };
        let len = shape.iter().product::<usize>() * size;
        table.push((format!("obs.{}", f.name), dtype, shape, len));
    }
    table.push((
        "state".into(),
        "F32",
        vec![n, t1, state_dim],
        4 * n * t1 * state_dim,
    ));
    table.push((
        "actions".into(),
        "F32",
        vec![n, steps, action_dim],
        4 * n * steps * action_dim,
    ));
    table.push(("seeds".into(), "I64", vec![n], 8 * n));
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape, len) in &table {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut text = serde_json::to_string(&serde_json::Value::Object(header))?.into_bytes();
    // Pad the header to 8 bytes, as the reference writer does, so data stays aligned.
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", path.display());
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&text).map_err(io)?;
    let write_f32 = |w: &mut std::io::BufWriter<std::fs::File>, v: &[f32]| -> Result<()> {
        for x in v {
            w.write_all(&x.to_le_bytes()).map_err(io)?;
        }
        Ok(())
    };
    for (k, f) in spec.fields().iter().enumerate() {
        let per_episode = t1 * f.numel();
        for e in episodes {
            let got = match f.dtype {
                Dtype::U8 => {
                    w.write_all(&e.u8_fields[k]).map_err(io)?;
                    e.u8_fields[k].len()
                }
                Dtype::F32 => {
                    write_f32(&mut w, &e.f32_fields[k])?;
                    e.f32_fields[k].len()
                }
            };
            if got != per_episode {
                bail!(
                    "{}: episode with seed {} has {got} values of `{}`, expected {per_episode}",
                    path.display(),
                    e.seed,
                    f.name
                );
            }
        }
    }
    for e in episodes {
        if e.state.len() != t1 * state_dim || e.actions.len() != steps * action_dim {
            bail!(
                "{}: episode with seed {} has {} state and {} action values, expected {} and {}",
                path.display(),
                e.seed,
                e.state.len(),
                e.actions.len(),
                t1 * state_dim,
                steps * action_dim
            );
        }
        write_f32(&mut w, &e.state)?;
    }
    for e in episodes {
        write_f32(&mut w, &e.actions)?;
    }
    for e in episodes {
        w.write_all(&(e.seed as i64).to_le_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}

/// One chunk, read and checked.
pub struct Chunk {
    /// Per observation field (spec order): `[n, T+1, *shape]`, u8 for images.
    pub fields: Vec<(String, tch::Tensor)>,
    /// True states `[n, T+1, S]`.
    pub state: tch::Tensor,
    /// Actions `[n, T, A]`.
    pub actions: tch::Tensor,
    /// Seeds `[n]`.
    pub seeds: tch::Tensor,
}

impl Chunk {
    /// The tensor of observation field `name`.
    pub fn field(&self, name: &str) -> Option<&tch::Tensor> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads chunk `info` of a dataset in `dir` and checks every tensor against the dataset's
/// description: names, dtypes, shapes, finite floats. Errors name the chunk file and tensor.
#[allow(clippy::too_many_arguments)]
pub fn read_chunk(
    dir: &Path,
    info: &ChunkInfo,
    spec: &ObsSpec,
    state_dim: usize,
    action_dim: usize,
    steps: usize,
) -> Result<Chunk> {
    let path: PathBuf = dir.join(&info.file);
    zplan_io::check_regular_file(&path)?;
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    zplan_io::check_memory(|| format!("{} ({size} bytes)", path.display()), size)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    chunk_from_bytes(&path, &bytes, info, spec, state_dim, action_dim, steps)
}

/// [`read_chunk`] for a chunk's bytes already in memory; `path` names the file in errors.
///
/// # Errors
/// A corrupt or truncated file, or a tensor that is missing, of the wrong dtype or shape, or
/// not finite, naming `path` and the tensor.
#[allow(clippy::too_many_arguments)]
pub fn chunk_from_bytes(
    path: &Path,
    bytes: &[u8],
    info: &ChunkInfo,
    spec: &ObsSpec,
    state_dim: usize,
    action_dim: usize,
    steps: usize,
) -> Result<Chunk> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable chunk (corrupt or truncated safetensors file): {e}",
            path.display()
        )
    })?;
    let n = info.episodes as usize;
    let t1 = steps + 1;
    let get = |name: &str, dtype: StDtype, shape: &[usize]| -> Result<tch::Tensor> {
        let v = st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("{}: missing tensor `{name}`", path.display()))?;
        if v.dtype() != dtype || v.shape() != shape {
            bail!(
                "{}: tensor `{name}` is {:?} {:?}, expected {:?} {:?}",
                path.display(),
                v.dtype(),
                v.shape(),
                dtype,
                shape
            );
        }
        let (kind, size): (tch::Kind, Vec<i64>) = (
            match dtype {
                StDtype::U8 => tch::Kind::Uint8,
                StDtype::I64 => tch::Kind::Int64,
                _ => tch::Kind::Float,
            },
            shape.iter().map(|&d| d as i64).collect(),
        );
        let t = tch::Tensor::f_from_data_size(v.data(), &size, kind)
            .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        if kind == tch::Kind::Float {
            if let Some(first) = first_non_finite(&t)? {
                bail!(
                    "{}: tensor `{name}` contains NaN or Inf (first at index {first:?}: episode {}, ...)",
                    path.display(),
                    info.first_episode + first.first().copied().unwrap_or(0) as u64
                );
            }
        }
        Ok(t)
    };
    let mut fields = Vec::with_capacity(spec.fields().len());
    for f in spec.fields() {
        let mut shape = vec![n, t1];
        shape.extend_from_slice(&f.shape);
        let dtype = match f.dtype {
            Dtype::U8 => StDtype::U8,
            Dtype::F32 => StDtype::F32,
        };
        fields.push((
            f.name.clone(),
            get(&format!("obs.{}", f.name), dtype, &shape)?,
        ));
    }
    Ok(Chunk {
        fields,
        state: get("state", StDtype::F32, &[n, t1, state_dim])?,
        actions: get("actions", StDtype::F32, &[n, steps, action_dim])?,
        seeds: get("seeds", StDtype::I64, &[n])?,
    })
}

/// The index of the first NaN or infinite value of a float tensor, if any.
///
/// # Errors
/// libtorch errors.
pub fn first_non_finite(t: &tch::Tensor) -> Result<Option<Vec<i64>>> {
    if t.numel() == 0 || t.f_isfinite()?.f_all()?.int64_value(&[]) == 1 {
        return Ok(None);
    }
    let bad = t.f_isfinite()?.logical_not().f_nonzero()?;
    Ok(Some(Vec::<i64>::try_from(bad.get(0)).unwrap_or_default()))
}

/// Peak resident memory of this process so far, in MiB (`getrusage`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `rusage` into the pointer it is given, which points to
    // valid, writable memory of the right size; the result is read only on success.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let usage = unsafe { usage.assume_init() };
    // Linux reports kilobytes.
    Some(usage.ru_maxrss as f64 / 1024.0)
}
