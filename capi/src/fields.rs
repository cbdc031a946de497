//! Observations as arrays of named fields, and the checks on C arguments (strings, slices).

use crate::status::{Error, Result, ZplanStatus};
use std::ffi::{c_char, c_void, CStr, CString};
use zplan_obs::{fmt_shape, Dtype, FieldData, FieldSpec, ObsError, ObsSpec, Observation};

/// Most dimensions a field's shape may have (`ZplanFieldInfo::shape` has this many slots).
pub const ZPLAN_MAX_NDIM: usize = 8;

/// Name of the optional extra observation field that carries the true simulator state
/// (f32, shape `[state_dim]`; `#define`d in zplan.h by `cbindgen.toml`, which cannot export
/// string constants). Only the simulator-backed model (`Sim`) reads it, and it needs
/// it only when the scenario does not observe its whole state (pixel scenarios): an
/// environment fills it on request (`zplan_env_observe`, `zplan_env_goal_observation`), and a
/// controller attaches it to the observation or goal it is pushed with. Other models ignore it.
pub const ZPLAN_TRUE_STATE_FIELD: &str = "true_state";

/// Most fields one observation array may have (a guard against garbage counts).
const MAX_FIELDS: usize = 1024;

/// Element type of an observation field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZplanDtype {
    /// 32-bit float (`float`).
    F32 = 0,
    /// 8-bit unsigned integer (`uint8_t`; camera images, 0-255).
    U8 = 1,
}

impl From<Dtype> for ZplanDtype {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => ZplanDtype::F32,
            Dtype::U8 => ZplanDtype::U8,
        }
    }
}

/// One named observation field in caller memory: what `zplan_controller_push_observation`
/// and `zplan_controller_set_goal` read, and what `zplan_env_observe` and
/// `zplan_env_goal_observation` write.
///
/// `data` holds `shape[0] * ... * shape[ndim - 1]` elements of `dtype`, row-major (images
/// channel-major `[C, H, W]`); it needs no particular alignment. Functions that read an
/// observation never write through `data`. `dtype` is an `int32_t` holding a `ZplanDtype` value
/// (any other value is refused with `ZPLAN_STATUS_INVALID_ARGUMENT`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ZplanField {
    /// Field name, a NUL-terminated UTF-8 string (`"state"`, `"image"`, `"proprio"`, or
    /// `ZPLAN_TRUE_STATE_FIELD`).
    pub name: *const c_char,
    /// Element type: a `ZplanDtype` value.
    pub dtype: i32,
    /// The elements.
    pub data: *mut c_void,
    /// `ndim` dimensions (may be NULL when `ndim` is 0).
    pub shape: *const usize,
    /// Number of dimensions (at most `ZPLAN_MAX_NDIM`).
    pub ndim: usize,
}

/// Description of one observation field (`zplan_env_field`, `zplan_controller_field`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ZplanFieldInfo {
    /// Field name, NUL-terminated; owned by the handle it came from and valid until that
    /// handle is destroyed.
    pub name: *const c_char,
    /// Element type.
    pub dtype: ZplanDtype,
    /// Number of dimensions.
    pub ndim: usize,
    /// The dimensions; entries from `ndim` on are 0.
    pub shape: [usize; ZPLAN_MAX_NDIM],
    /// Number of elements (the product of the dimensions).
    pub numel: usize,
}

/// A slice from a C pointer and length (`arg` names the pointer in errors). A length of 0
/// needs no pointer.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len` initialised, aligned `T`
/// that stay valid and unmodified for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, arg: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::null(arg));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Error::invalid(format!(
            "`{arg}`: a length of {len} cannot be right"
        )));
    }
    // SAFETY: not NULL, and the caller guarantees `len` valid, aligned elements for `'a`; the
    // size fits `isize` (checked above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice from a C pointer and length.
///
/// # Safety
/// When `len > 0` and `ptr` is not NULL, `ptr` must point to `len` aligned `T` that nothing
/// else accesses during `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, arg: &str) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Error::null(arg));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Error::invalid(format!(
            "`{arg}`: a length of {len} cannot be right"
        )));
    }
    // SAFETY: not NULL, and the caller guarantees `len` aligned elements, exclusively ours for
    // `'a`; the size fits `isize` (checked above).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A required UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::null(arg));
    }
    // SAFETY: not NULL, and NUL-terminated and valid for `'a` by the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| {
        Error::invalid(format!(
            "`{arg}` is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// An optional UTF-8 string argument (NULL: `None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(ptr, arg) }.map(Some)
}

/// Writes `value` through the output pointer `out` (the argument called `arg`).
///
/// # Safety
/// `out` must be NULL or point to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, arg: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::null(arg));
    }
    // SAFETY: not NULL, and writable for a `T` by the caller's contract; `write` does not
    // drop the (possibly uninitialised) old value.
    unsafe { out.write(value) };
    Ok(())
}

/// The field names of `spec` as C strings (kept by handles for `ZplanFieldInfo::name`).
pub(crate) fn c_names(spec: &ObsSpec) -> Vec<CString> {
    spec.fields()
        .iter()
        .map(|f| CString::new(f.name.replace('\0', "\\0")).unwrap_or_default())
        .collect()
}

/// The description of field `index` of `spec`.
pub(crate) fn field_info(
    spec: &ObsSpec,
    names: &[CString],
    index: usize,
) -> Result<ZplanFieldInfo> {
    let (Some(f), Some(name)) = (spec.fields().get(index), names.get(index)) else {
        return Err(Error::invalid(format!(
            "field index {index} is out of range: the observation has {} field(s) ({spec})",
            spec.fields().len()
        )));
    };
    let mut shape = [0usize; ZPLAN_MAX_NDIM];
    if f.shape.len() > ZPLAN_MAX_NDIM {
        return Err(Error::new(
            ZplanStatus::Internal,
            format!(
                "field `{}` has {} dimensions, more than ZPLAN_MAX_NDIM ({ZPLAN_MAX_NDIM})",
                f.name,
                f.shape.len()
            ),
        ));
    }
    for (slot, d) in shape.iter_mut().zip(&f.shape) {
        *slot = *d;
    }
    Ok(ZplanFieldInfo {
        name: name.as_ptr(),
        dtype: f.dtype.into(),
        ndim: f.shape.len(),
        shape,
        numel: f.numel(),
    })
}

/// What a field called `name` must be: a field of `spec`, or the true-state field.
fn expected_field(spec: &ObsSpec, state_dim: usize, name: &str) -> Result<FieldSpec> {
    if name == ZPLAN_TRUE_STATE_FIELD {
        return Ok(FieldSpec::unnamed(ZPLAN_TRUE_STATE_FIELD, state_dim));
    }
    spec.field(name).cloned().ok_or_else(|| {
        Error::new(
            ZplanStatus::InvalidObservation,
            ObsError::Unexpected {
                field: name.to_string(),
                spec: format!("{spec}, or `{ZPLAN_TRUE_STATE_FIELD}` [{state_dim}] f32"),
            }
            .to_string(),
        )
    })
}

/// One caller field with its pointers checked.
struct Parsed<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    data: *mut c_void,
}

/// Checks the pointers, the name and the dtype of caller field `index`.
///
/// # Safety
/// `f.name` must be NULL or a NUL-terminated string, and `f.shape` NULL or `f.ndim` readable
/// `size_t`, both valid for `'a`.
unsafe fn parse_field<'a>(f: &ZplanField, index: usize) -> Result<Parsed<'a>> {
    // SAFETY: forwarded contract on `f.name`.
    let name = unsafe { str_arg(f.name, &format!("fields[{index}].name")) }?;
    let dtype = match f.dtype {
        0 => Dtype::F32,
        1 => Dtype::U8,
        other => {
            return Err(Error::invalid(format!(
                "fields[{index}] (`{name}`): dtype {other} is not a ZplanDtype \
                 (ZPLAN_DTYPE_F32 = 0, ZPLAN_DTYPE_U8 = 1)"
            )))
        }
    };
    if f.ndim > ZPLAN_MAX_NDIM {
        return Err(Error::invalid(format!(
            "fields[{index}] (`{name}`): ndim {} exceeds ZPLAN_MAX_NDIM ({ZPLAN_MAX_NDIM})",
            f.ndim
        )));
    }
    // SAFETY: forwarded contract on `f.shape` (`ndim` entries); `ndim` is small.
    let shape = unsafe { slice(f.shape, f.ndim, &format!("fields[{index}].shape")) }?;
    if f.data.is_null() {
        return Err(Error::null(&format!("fields[{index}].data")));
    }
    Ok(Parsed {
        name,
        dtype,
        shape,
        data: f.data,
    })
}

/// The caller's field array.
///
/// # Safety
/// `fields` must be NULL or point to `n` readable `ZplanField` valid for `'a`.
unsafe fn field_array<'a>(fields: *const ZplanField, n: usize) -> Result<&'a [ZplanField]> {
    if n > MAX_FIELDS {
        return Err(Error::invalid(format!(
            "n_fields = {n}: more than {MAX_FIELDS} fields cannot be right"
        )));
    }
    // SAFETY: forwarded contract.
    unsafe { slice(fields, n, "fields") }
}

/// Reads an observation from `n` caller fields and checks it against `spec` (every field
/// present once, with its dtype and shape, finite values); a [`ZPLAN_TRUE_STATE_FIELD`] field
/// of `[state_dim]` becomes the observation's true state.
///
/// # Safety
/// `fields` must be NULL or point to `n` `ZplanField` whose pointers satisfy the field
/// contract (NUL-terminated name; `ndim` shape entries; `data` readable for the elements the
/// shape gives, when the shape is the expected one).
pub(crate) unsafe fn read_observation(
    fields: *const ZplanField,
    n: usize,
    spec: &ObsSpec,
    state_dim: usize,
) -> Result<Observation> {
    // SAFETY: forwarded contract.
    let fields = unsafe { field_array(fields, n) }?;
    let mut obs = Observation::new();
    let mut seen: Vec<&str> = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        // SAFETY: forwarded contract on each field's name and shape.
        let p = unsafe { parse_field(f, i) }?;
        let bad = |msg: String| Error::new(ZplanStatus::InvalidObservation, msg);
        if seen.contains(&p.name) {
            return Err(bad(format!(
                "observation field `{}` is given twice (fields[{i}])",
                p.name
            )));
        }
        seen.push(p.name);
        let want = expected_field(spec, state_dim, p.name)?;
        if p.dtype != want.dtype || p.shape != want.shape.as_slice() {
            return Err(bad(ObsError::Mismatch {
                field: p.name.to_string(),
                expected: want.describe(),
                actual: format!("{} {}", p.dtype, fmt_shape(p.shape)),
            }
            .to_string()));
        }
        let numel = want.numel();
        let data = match p.dtype {
            Dtype::F32 => {
                let mut v = vec![0f32; numel];
                // SAFETY: the caller's shape equals the field's, so `data` holds `numel` f32
                // (the contract); it is copied bytewise (no alignment needed) into our own new
                // vector of the same size, which cannot overlap it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        p.data.cast::<u8>().cast_const(),
                        v.as_mut_ptr().cast::<u8>(),
                        std::mem::size_of_val(v.as_slice()),
                    )
                };
                FieldData::F32(v)
            }
            Dtype::U8 => {
                let mut v = vec![0u8; numel];
                // SAFETY: as above, `numel` bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        p.data.cast::<u8>().cast_const(),
                        v.as_mut_ptr(),
                        v.len(),
                    )
                };
                FieldData::U8(v)
            }
        };
        match (p.name == ZPLAN_TRUE_STATE_FIELD, data) {
            (true, FieldData::F32(v)) => {
                if let Some((index, value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                    return Err(bad(ObsError::NonFinite {
                        field: ZPLAN_TRUE_STATE_FIELD.to_string(),
                        index,
                        value: *value,
                    }
                    .to_string()));
                }
                obs = obs.with_true_state(v);
            }
            (_, data) => obs.insert(p.name, data),
        }
    }
    spec.check(&obs)
        .map_err(|e| Error::new(ZplanStatus::InvalidObservation, e.to_string()))?;
    Ok(obs)
}

/// Writes the fields the caller asks for from `source` (and `true_state` for
/// [`ZPLAN_TRUE_STATE_FIELD`]) into the caller's buffers, whose dtype and shape must be the
/// field's.
///
/// # Safety
/// `fields` must be NULL or point to `n` `ZplanField` whose pointers satisfy the field
/// contract, with `data` writable for the elements the shape gives (when the shape is the
/// expected one) and not aliasing anything else we access.
pub(crate) unsafe fn write_observation(
    fields: *const ZplanField,
    n: usize,
    spec: &ObsSpec,
    source: &Observation,
    true_state: &[f32],
) -> Result<()> {
    // SAFETY: forwarded contract.
    let fields = unsafe { field_array(fields, n) }?;
    // Check everything before writing anything.
    let mut parsed = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        // SAFETY: forwarded contract on each field's name and shape.
        let p = unsafe { parse_field(f, i) }?;
        let want = expected_field(spec, true_state.len(), p.name)?;
        if p.dtype != want.dtype || p.shape != want.shape.as_slice() {
            return Err(Error::new(
                ZplanStatus::WrongSize,
                format!(
                    "fields[{i}] (`{}`): the buffer is {} {}, the field is {}",
                    p.name,
                    p.dtype,
                    fmt_shape(p.shape),
                    want.describe()
                ),
            ));
        }
        let data = if p.name == ZPLAN_TRUE_STATE_FIELD {
            None
        } else {
            let d = source.get(p.name).ok_or_else(|| {
                Error::new(
                    ZplanStatus::Internal,
                    format!("the environment's observation lacks field `{}`", p.name),
                )
            })?;
            if d.len() != want.numel() || d.dtype() != want.dtype {
                return Err(Error::new(
                    ZplanStatus::Internal,
                    format!(
                        "the environment's field `{}` has {} {} values, its spec says {}",
                        p.name,
                        d.len(),
                        d.dtype(),
                        want.describe()
                    ),
                ));
            }
            Some(d)
        };
        parsed.push((p, data));
    }
    for (p, data) in parsed {
        let bytes: &[u8] = match data {
            None => bytes_of_f32(true_state),
            Some(FieldData::F32(v)) => bytes_of_f32(v),
            Some(FieldData::U8(v)) => v,
        };
        // SAFETY: the buffer's dtype and shape are the field's (checked above), so `data` is
        // writable for exactly `bytes.len()` bytes (the contract); bytewise, so no alignment
        // is needed; `bytes` is our own memory, which the caller's buffer cannot alias.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.data.cast::<u8>(), bytes.len()) };
    }
    Ok(())
}

/// The bytes of an f32 slice.
fn bytes_of_f32(v: &[f32]) -> &[u8] {
    // SAFETY: any initialised f32 is 4 initialised bytes, u8 has alignment 1, and the byte
    // length is the slice's size in memory; the borrow keeps `v` alive and unmodified.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}
