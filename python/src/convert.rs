//! Conversions between Python values (numpy arrays, torch tensors, dicts) and zplan's types,
//! and the mapping of zplan's errors onto Python exceptions.
//!
//! Inputs are read through `numpy.ascontiguousarray`, which is a no-op for a C-contiguous array
//! of the right dtype and views a CPU torch tensor without a copy; the values are then copied
//! once into zplan's own buffers (an [`Observation`] owns its fields). Outputs move their Rust
//! buffers into numpy without a copy (`PyArray::from_vec`).
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use zplan_obs::{Dtype, FieldData, FieldSpec, ObsSpec, Observation};

pyo3::create_exception!(
    _zplan,
    ZplanError,
    pyo3::exceptions::PyRuntimeError,
    "An error raised by zplan (model, planner, simulator, suite). The message is zplan's own."
);

/// Wraps any zplan error as [`ZplanError`] with zplan's message.
pub fn runtime<E: std::fmt::Display>(e: E) -> PyErr {
    ZplanError::new_err(e.to_string())
}

/// A bad argument: `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Planner errors: configuration and shape problems are the caller's arguments (`ValueError`),
/// the rest (model failures, all-non-finite energies) are [`ZplanError`].
pub fn planner_error(e: zplan_planner::PlannerError) -> PyErr {
    use zplan_planner::PlannerError as E;
    match &e {
        E::InvalidConfig { .. } | E::Shape(_) => value_error(e.to_string()),
        E::Model(m) => model_error_ref(m, e.to_string()),
        _ => runtime(e),
    }
}

/// Model errors: an observation or model that does not fit is a bad argument (`ValueError`).
pub fn model_error(e: zplan_models::ModelError) -> PyErr {
    let msg = e.to_string();
    model_error_ref(&e, msg)
}

fn model_error_ref(e: &zplan_models::ModelError, msg: String) -> PyErr {
    use zplan_models::ModelError as E;
    match e {
        E::Observation { .. }
        | E::MissingField { .. }
        | E::Incompatible { .. }
        | E::InvalidConfig(_)
        | E::ShapeMismatch { .. } => value_error(msg),
        _ => ZplanError::new_err(msg),
    }
}

/// Simulator errors: a bad action is a bad argument (`ValueError`).
pub fn sim_error(e: zplan_sim::SimError) -> PyErr {
    use zplan_sim::SimError as E;
    match &e {
        E::NonFiniteAction { .. } | E::Dimension { .. } | E::InvalidState { .. } => {
            value_error(e.to_string())
        }
        _ => runtime(e),
    }
}

/// `numpy` module.
fn numpy_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("numpy")
}

/// `value` as a C-contiguous numpy array (no copy when it already is one), with a message
/// naming `what` when it cannot be one.
fn as_array<'py>(value: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    let np = numpy_module(value.py())?;
    let arr = np
        .call_method1("ascontiguousarray", (value,))
        .map_err(|e| value_error(format!("{what}: not an array ({e})")))?;
    arr.cast_into::<PyUntypedArray>()
        .map_err(|_| value_error(format!("{what}: not an array")))
}

/// numpy dtype kind character (`'f'`, `'u'`, `'i'`, `'b'`, ...) and its name.
fn dtype_of(arr: &Bound<'_, PyUntypedArray>) -> (u8, String) {
    let d = arr.dtype();
    let name = d.str().map(|s| s.to_string()).unwrap_or_default();
    (d.kind(), name)
}

/// Reads `value` as float32 values: any real floating dtype is accepted (converted), other
/// dtypes are refused. Returns the values (flat, row-major) and the shape.
pub fn read_f32(value: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<f32>, Vec<usize>)> {
    let arr = as_array(value, what)?;
    let (kind, name) = dtype_of(&arr);
    if kind != b'f' {
        return Err(value_error(format!(
            "{what}: expected a float32 array (any float dtype is converted), got dtype {name}"
        )));
    }
    let shape = arr.shape().to_vec();
    let arr = if name == "float32" {
        arr
    } else {
        let np = numpy_module(value.py())?;
        np.call_method1("ascontiguousarray", (&arr, "float32"))?
            .cast_into::<PyUntypedArray>()
            .map_err(|_| value_error(format!("{what}: cannot convert to float32")))?
    };
    let typed = arr
        .cast::<PyArrayDyn<f32>>()
        .map_err(|_| value_error(format!("{what}: expected float32")))?;
    let ro = typed.readonly();
    let values = ro
        .as_slice()
        .map_err(|e| value_error(format!("{what}: {e}")))?
        .to_vec();
    Ok((values, shape))
}

/// Reads `value` as uint8 values (images); other dtypes are refused.
pub fn read_u8(value: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<u8>, Vec<usize>)> {
    let arr = as_array(value, what)?;
    let (_, name) = dtype_of(&arr);
    if name != "uint8" {
        return Err(value_error(format!(
            "{what}: expected a uint8 array (images are 0-255 bytes), got dtype {name}"
        )));
    }
    let shape = arr.shape().to_vec();
    let typed = arr
        .cast::<PyArrayDyn<u8>>()
        .map_err(|_| value_error(format!("{what}: expected uint8")))?;
    let ro = typed.readonly();
    let values = ro
        .as_slice()
        .map_err(|e| value_error(format!("{what}: {e}")))?
        .to_vec();
    Ok((values, shape))
}

fn fmt_shape(shape: &[usize]) -> String {
    zplan_obs::fmt_shape(shape)
}

/// Reads one field's value, checking dtype and shape against `field`. A vector field also
/// takes a flat array of the right length.
fn read_field(value: &Bound<'_, PyAny>, field: &FieldSpec, what: &str) -> PyResult<FieldData> {
    let what = format!("{what} field `{}`", field.name);
    let (data, shape) = match field.dtype {
        Dtype::F32 => {
            let (v, s) = read_f32(value, &what)?;
            (FieldData::F32(v), s)
        }
        Dtype::U8 => {
            let (v, s) = read_u8(value, &what)?;
            (FieldData::U8(v), s)
        }
    };
    let flat_ok = field.shape.len() == 1 && shape.len() == 1;
    if shape != field.shape && !(flat_ok && data.len() == field.numel()) {
        return Err(value_error(format!(
            "{what}: expected shape {}, got {}",
            fmt_shape(&field.shape),
            fmt_shape(&shape)
        )));
    }
    Ok(data)
}

/// Key of the true simulator state in an observation dict: read only by the
/// simulator-backed model (`load_model("sim")`), given by `Env.observe(true_state=True)`.
pub const TRUE_STATE: &str = "true_state";

/// Reads an observation for `spec`: a dict `{field: array}` with every field of the spec, or,
/// when the spec has a single field, that field's array alone. Values are checked (dtype,
/// shape, finiteness); a problem is a `ValueError` naming the field.
pub fn observation_from_py(
    value: &Bound<'_, PyAny>,
    spec: &ObsSpec,
    what: &str,
) -> PyResult<Observation> {
    let mut obs = Observation::new();
    let mut true_state = None;
    if let Ok(dict) = value.cast::<PyDict>() {
        for (k, v) in dict.iter() {
            let name: String = k
                .extract()
                .map_err(|_| value_error(format!("{what}: field names must be strings")))?;
            if name == TRUE_STATE && spec.field(TRUE_STATE).is_none() {
                let (state, _) = read_f32(&v, &format!("{what} `{TRUE_STATE}`"))?;
                true_state = Some(state);
                continue;
            }
            let field = spec.field(&name).ok_or_else(|| {
                value_error(format!(
                    "{what}: field `{name}` is not in the observation spec ({spec})"
                ))
            })?;
            obs.insert(&name, read_field(&v, field, what)?);
        }
    } else if let [field] = spec.fields() {
        obs.insert(&field.name, read_field(value, field, what)?);
    } else {
        return Err(value_error(format!(
            "{what}: expected a dict of fields ({spec})"
        )));
    }
    spec.check(&obs)
        .map_err(|e| value_error(format!("{what}: {e}")))?;
    Ok(match true_state {
        Some(state) => obs.with_true_state(state),
        None => obs,
    })
}

/// An observation as a dict of numpy arrays in each field's shape (images uint8
/// `[channels, height, width]`, vectors float32). The buffers move into numpy without a copy.
pub fn observation_to_py<'py>(
    py: Python<'py>,
    obs: Observation,
    spec: &ObsSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let mut fields: Vec<(String, FieldData)> = Vec::new();
    for (name, data) in obs.fields() {
        fields.push((name.to_string(), data.clone()));
    }
    for (name, data) in fields {
        let shape: Vec<usize> = spec
            .field(&name)
            .map_or_else(|| vec![data.len()], |f| f.shape.clone());
        let arr: Bound<'py, PyAny> = match data {
            FieldData::F32(v) => PyArray1::from_vec(py, v)
                .reshape(shape)
                .map_err(runtime)?
                .into_any(),
            FieldData::U8(v) => PyArray1::from_vec(py, v)
                .reshape(shape)
                .map_err(runtime)?
                .into_any(),
        };
        dict.set_item(name, arr)?;
    }
    Ok(dict)
}

/// A float32 numpy array of `shape` owning `values`.
pub fn f32_array<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, values)
        .reshape(shape.to_vec())
        .map_err(runtime)?
        .into_any())
}

/// Reads an action vector of `dim` finite float entries.
pub fn read_action(value: &Bound<'_, PyAny>, dim: usize, what: &str) -> PyResult<Vec<f32>> {
    let (v, shape) = read_f32(value, what)?;
    if v.len() != dim || shape.len() > 1 {
        return Err(value_error(format!(
            "{what}: expected {dim} action entries (shape [{dim}]), got shape {}",
            fmt_shape(&shape)
        )));
    }
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(value_error(format!(
            "{what}: entry {i} is {x}, expected a finite number"
        )));
    }
    Ok(v)
}

/// A `TypeError` for an argument of the wrong kind.
pub fn type_error(msg: impl Into<String>) -> PyErr {
    PyTypeError::new_err(msg.into())
}
