//! Status codes, the thread-local last error, and the wrapper every entry point runs in.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a zplan function reports. Every function of the API (except the few that return a
/// value or a string, which say so) returns one.
///
/// `ZPLAN_STATUS_OK` (0) and `ZPLAN_STATUS_NO_ACTION_YET` (1) are not errors; every other code is
/// one, and then `zplan_last_error_message()` says what was wrong on the calling thread.
/// Output arguments are written only on `ZPLAN_STATUS_OK`, except that a `create` function sets
/// its handle output to NULL on failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZplanStatus {
    /// Success.
    Ok = 0,
    /// Not an error: the controller has not published a plan for the current goal yet (no
    /// goal set, or planning still under way). The action buffer was not written; hold a
    /// safe action.
    NoActionYet = 1,
    /// A pointer argument that must not be NULL was NULL (the message names it).
    NullPointer = 2,
    /// A handle that is not live: destroyed already, never created by this library, or a
    /// handle of the other kind (an environment passed as a controller).
    InvalidHandle = 3,
    /// An argument is out of range or malformed: a string that is not UTF-8, a negative or
    /// non-finite duration, an unknown dtype, an implausible count.
    InvalidArgument = 4,
    /// A caller buffer has the wrong number of entries (an action buffer whose length is not
    /// the action dimension, an observation buffer whose shape is not the field's).
    WrongSize = 5,
    /// An observation does not fit the observation spec: an unknown, missing or repeated
    /// field, a wrong dtype or shape, a non-finite value. The message names the field, the
    /// expected dtype and shape, and the actual ones.
    InvalidObservation = 6,
    /// A configuration (suite entry, scenario, planner, energy or MPC RON, controller
    /// options) could not be read, parsed or validated; RON errors give line and column.
    Config = 7,
    /// The world model could not be loaded or does not fit the scenario.
    Model = 8,
    /// The controller has no goal yet: call `zplan_controller_set_goal` first.
    NoGoal = 9,
    /// The controller was stopped (`zplan_controller_stop`); only stats, stop and destroy
    /// still work.
    Stopped = 10,
    /// The simulation refused a step or reset.
    Simulation = 11,
    /// A bug in zplan: a Rust panic was caught at the API boundary (nothing unwinds into
    /// the caller). The message has the panic's text; please report it.
    Panic = 12,
    /// Another internal failure (the planner thread could not be started or failed).
    Internal = 13,
}

impl ZplanStatus {
    /// `ZPLAN_STATUS_...` spelled out.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            ZplanStatus::Ok => c"ZPLAN_STATUS_OK",
            ZplanStatus::NoActionYet => c"ZPLAN_STATUS_NO_ACTION_YET",
            ZplanStatus::NullPointer => c"ZPLAN_STATUS_NULL_POINTER",
            ZplanStatus::InvalidHandle => c"ZPLAN_STATUS_INVALID_HANDLE",
            ZplanStatus::InvalidArgument => c"ZPLAN_STATUS_INVALID_ARGUMENT",
            ZplanStatus::WrongSize => c"ZPLAN_STATUS_WRONG_SIZE",
            ZplanStatus::InvalidObservation => c"ZPLAN_STATUS_INVALID_OBSERVATION",
            ZplanStatus::Config => c"ZPLAN_STATUS_CONFIG",
            ZplanStatus::Model => c"ZPLAN_STATUS_MODEL",
            ZplanStatus::NoGoal => c"ZPLAN_STATUS_NO_GOAL",
            ZplanStatus::Stopped => c"ZPLAN_STATUS_STOPPED",
            ZplanStatus::Simulation => c"ZPLAN_STATUS_SIMULATION",
            ZplanStatus::Panic => c"ZPLAN_STATUS_PANIC",
            ZplanStatus::Internal => c"ZPLAN_STATUS_INTERNAL",
        }
    }

    /// The status with this numeric value, if any (C may pass any `int`).
    pub(crate) fn from_raw(raw: i32) -> Option<ZplanStatus> {
        const ALL: [ZplanStatus; 14] = [
            ZplanStatus::Ok,
            ZplanStatus::NoActionYet,
            ZplanStatus::NullPointer,
            ZplanStatus::InvalidHandle,
            ZplanStatus::InvalidArgument,
            ZplanStatus::WrongSize,
            ZplanStatus::InvalidObservation,
            ZplanStatus::Config,
            ZplanStatus::Model,
            ZplanStatus::NoGoal,
            ZplanStatus::Stopped,
            ZplanStatus::Simulation,
            ZplanStatus::Panic,
            ZplanStatus::Internal,
        ];
        ALL.into_iter().find(|s| *s as i32 == raw)
    }
}

/// An error on its way to the caller: the status to return and the message to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    pub(crate) status: ZplanStatus,
    pub(crate) message: String,
}

impl Error {
    pub(crate) fn new(status: ZplanStatus, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }

    /// A NULL pointer argument.
    pub(crate) fn null(what: &str) -> Self {
        Error::new(ZplanStatus::NullPointer, format!("`{what}` is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ZplanStatus::InvalidArgument, message)
    }

    pub(crate) fn config(message: impl std::fmt::Display) -> Self {
        Error::new(ZplanStatus::Config, message.to_string())
    }
}

/// Result of the functions behind the entry points.
pub(crate) type Result<T> = std::result::Result<T, Error>;

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replaces this thread's last error message.
pub(crate) fn set_last_error(message: &str) {
    // A NUL inside the text would end the C string early: spell it out instead.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the message is then lost, which
    // is all that can be done.
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// This thread's last error message (a pointer into thread-local storage; "" if none).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|cell| cell.try_borrow().map(|s| s.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// A copy of this thread's last error message.
pub(crate) fn last_error_bytes() -> Vec<u8> {
    LAST_ERROR
        .try_with(|cell| {
            cell.try_borrow()
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Runs the body of the entry point `func`: a returned error becomes its status (and this
/// thread's last error, prefixed with `func`), a panic becomes [`ZplanStatus::Panic`]. Nothing
/// unwinds into the caller.
pub(crate) fn ffi(func: &str, body: impl FnOnce() -> Result<ZplanStatus>) -> ZplanStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            set_last_error(&format!("{func}: {}", e.message));
            e.status
        }
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            // Dropping a payload can itself panic (a payload with a panicking `Drop`): keep
            // that from unwinding out of here too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            set_last_error(&format!(
                "{func}: internal error (a bug in zplan, please report it): panic: {text}"
            ));
            ZplanStatus::Panic
        }
    }
}

/// The name of a status code, e.g. `"ZPLAN_STATUS_WRONG_SIZE"`, or `"ZPLAN_STATUS_UNKNOWN"` for
/// a value that is no status. The string is static: never free it.
#[no_mangle]
pub extern "C" fn zplan_status_name(status: i32) -> *const c_char {
    catch_unwind(|| {
        ZplanStatus::from_raw(status)
            .map(ZplanStatus::name)
            .unwrap_or(c"ZPLAN_STATUS_UNKNOWN")
            .as_ptr()
    })
    .unwrap_or(c"ZPLAN_STATUS_UNKNOWN".as_ptr())
}

/// The message of the most recent failed zplan call on the calling thread ("" if none has
/// failed), e.g. `"zplan_controller_push_observation: observation field `state`: expected f32
/// [11], got f32 [10]"`. Calls that succeed leave it unchanged; each thread has its own.
///
/// Never NULL. The string belongs to the library: do not free it; it stays valid until the
/// next zplan call on the same thread (copy it, or use `zplan_last_error_copy`, to keep it).
#[no_mangle]
pub extern "C" fn zplan_last_error_message() -> *const c_char {
    catch_unwind(last_error_ptr).unwrap_or(c"".as_ptr())
}

/// Copies the calling thread's last error message (see `zplan_last_error_message`) into
/// `buf`, NUL-terminated, truncated to `len - 1` bytes if longer (`buf` may be NULL when `len`
/// is 0). When `needed` is not NULL it receives the size that holds the whole message, NUL
/// included.
///
/// Returns `ZPLAN_STATUS_OK` when the whole message fit, `ZPLAN_STATUS_WRONG_SIZE` when it was
/// truncated (or `len` is 0), `ZPLAN_STATUS_NULL_POINTER` for a NULL `buf` with `len > 0`. This
/// function never replaces the last error message itself.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes; `needed` must be NULL or point to a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn zplan_last_error_copy(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> ZplanStatus {
    catch_unwind(AssertUnwindSafe(|| {
        let msg = last_error_bytes();
        if !needed.is_null() {
            // SAFETY: `needed` is not NULL and, by this function's contract, points to a
            // writable `size_t`.
            unsafe { needed.write(msg.len() + 1) };
        }
        if len == 0 {
            return ZplanStatus::WrongSize;
        }
        if buf.is_null() {
            return ZplanStatus::NullPointer;
        }
        let n = msg.len().min(len - 1);
        // SAFETY: `buf` is not NULL and points to `len` writable bytes (the contract); we write
        // `n + 1 <= len` bytes. `msg` is our own vector, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
            buf.add(n).write(0);
        }
        if n == msg.len() {
            ZplanStatus::Ok
        } else {
            ZplanStatus::WrongSize
        }
    }))
    .unwrap_or(ZplanStatus::Panic)
}
