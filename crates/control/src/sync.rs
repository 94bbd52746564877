//! Locking helpers.

use std::sync::Mutex;

/// Locks `m`, recovering the data of a poisoned lock (a panic elsewhere must
/// not take the control plane down with it).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
