// SPDX-License-Identifier: GPL-2.0

//! Index locks: one of [`SHARDS`] mutexes per page index, picked by the index, so that work on
//! one index excludes other work on it while neighbouring pages (on other shards) rarely meet
//! (zram holds a per-slot lock the same way).

use super::error::StoreError;
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        lock::{mutex::MutexBackend, Guard},
        Mutex,
    },
};

/// Index locks per store.
pub(crate) const SHARDS: usize = 128;

/// A held index lock.
pub(crate) type IndexLock<'a> = Guard<'a, (), MutexBackend>;

#[pin_data]
pub(crate) struct Shards {
    #[pin]
    locks: [Mutex<()>; SHARDS],
}

impl Shards {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { locks <- pin_init::pin_init_array_from_fn(|_| new_mutex!(())) })
    }

    /// The lock of `index`; with `nowait`, `WouldBlock` instead of waiting for it.
    pub(crate) fn lock(&self, index: u64, nowait: bool) -> Result<IndexLock<'_>, StoreError> {
        let shard = &self.locks[(index % SHARDS as u64) as usize];
        if nowait {
            shard.try_lock().ok_or(StoreError::WouldBlock)
        } else {
            Ok(shard.lock())
        }
    }
}
