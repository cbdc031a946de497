//! Handles: opaque pointer-sized ids into a global registry, never dereferenced.
//!
//! A handle is not the address of anything: it is a number drawn from one process-wide
//! counter (never reused), looked up in a map on every call. Destroying a handle removes it
//! from the map, so a second destroy or any later use finds nothing and answers
//! `ZPLAN_STATUS_INVALID_HANDLE` instead of touching freed memory; so does a handle of the
//! other kind, or a made-up value. The map holds an `Arc`, so a call that looked the object up
//! keeps it alive until it returns even if another thread destroys the handle meanwhile.

use crate::status::{Error, Result, ZplanStatus};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Next handle value; shared by every registry so that no two live handles are equal.
static NEXT: AtomicUsize = AtomicUsize::new(1);

/// Live objects of one kind, by handle value.
pub(crate) struct Registry<T> {
    kind: &'static str,
    map: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    /// An empty registry for objects called `kind` in messages.
    pub(crate) const fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            map: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // A panic while the lock was held cannot leave the map half-updated (each critical
        // section is one map operation), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `value` and returns its handle (as a pointer that is never dereferenced).
    pub(crate) fn insert<H>(&self, value: T) -> Result<*mut H> {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            // 2^64 handles later: refuse rather than hand out NULL or a reused value.
            return Err(Error::new(
                ZplanStatus::Internal,
                "handle counter exhausted",
            ));
        }
        self.lock().insert(id, Arc::new(value));
        Ok(std::ptr::without_provenance_mut(id))
    }

    fn id_of<H>(&self, handle: *const H, arg: &str) -> Result<usize> {
        if handle.is_null() {
            return Err(Error::null(arg));
        }
        Ok(handle.addr())
    }

    fn dead(&self, arg: &str) -> Error {
        Error::new(
            ZplanStatus::InvalidHandle,
            format!(
                "`{arg}` is not a live {} handle (destroyed already, never created, or a \
                 handle of another kind)",
                self.kind
            ),
        )
    }

    /// The object behind `handle` (the argument called `arg`).
    pub(crate) fn get<H>(&self, handle: *const H, arg: &str) -> Result<Arc<T>> {
        let id = self.id_of(handle, arg)?;
        self.lock().get(&id).cloned().ok_or_else(|| self.dead(arg))
    }

    /// Unregisters `handle` and returns its object; later lookups fail.
    pub(crate) fn remove<H>(&self, handle: *const H, arg: &str) -> Result<Arc<T>> {
        let id = self.id_of(handle, arg)?;
        self.lock().remove(&id).ok_or_else(|| self.dead(arg))
    }
}
