// SPDX-License-Identifier: GPL-2.0

//! Why a store could not do what the I/O path asked.

/// Why a page could not be stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The page allocator (or the XArray's node allocation) failed.
    NoMemory,
    /// The device's memory limit is reached.
    Limit,
    /// Only waiting could tell (the limit is reached while frees or inserts are in flight),
    /// and the bio may not wait (`REQ_NOWAIT`): the submitter retries without it.
    WouldBlock,
    /// A compressed page did not decompress (compressed store only).
    Corrupt,
    /// The page was evicted: it is on the backing device only and must be loaded first.
    Unloaded,
}
