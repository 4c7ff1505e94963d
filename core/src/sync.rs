//! Taking std locks the one way wafleet does: a poisoned lock is recovered, never a second panic.
//!
//! A lock is poisoned when a thread panicked while holding it. Panicking again on every later
//! `lock()` (`.lock().expect(…)`) would turn one failed send into a worker whose every send,
//! wake-up and cache lookup panics until it restarts. Recovering is right here because every state
//! behind these locks (maps of gates, wakers, in-flight ids, cache generations, a blocked-until
//! time) is changed by single statements that leave it consistent whenever they stop: a panic
//! cannot leave one half-written. A state that needed several statements to stay consistent would
//! have to be rebuilt on poisoning instead; none does today.
//!
//! Only for std locks held across no `.await`; async code that must hold a lock across one uses
//! `tokio::sync`, which has no poisoning.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering it if a panic poisoned it (see the module's documentation).
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `lock` for reading, recovering it if a panic poisoned it.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes `lock` for writing, recovering it if a panic poisoned it.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, RwLock};

    use super::{lock, read, write};

    /// Panics while holding the lock, on another thread, so that the lock is poisoned.
    fn poison<T: Send + Sync + 'static>(shared: Arc<T>, hold: impl FnOnce(&T) + Send + 'static) {
        let outcome = std::thread::spawn(move || hold(&shared)).join();
        assert!(outcome.is_err(), "the holder panicked");
    }

    #[test]
    fn a_poisoned_mutex_still_locks_with_its_state() {
        let ids = Arc::new(Mutex::new(HashSet::from([1])));
        poison(ids.clone(), |ids| {
            let mut held = lock(ids);
            held.insert(2);
            panic!("a send panicked while holding the lock");
        });
        assert!(ids.is_poisoned());
        let mut ids = lock(&ids);
        assert_eq!(*ids, HashSet::from([1, 2]), "what was written before the panic stays");
        assert!(ids.insert(3), "and the lock keeps working");
    }

    #[test]
    fn a_poisoned_rwlock_still_reads_and_writes() {
        let value = Arc::new(RwLock::new(1));
        poison(value.clone(), |value| {
            let _held = write(value);
            panic!("a panic while writing");
        });
        assert!(value.is_poisoned());
        *write(&value) += 1;
        assert_eq!(*read(&value), 2);
    }
}
