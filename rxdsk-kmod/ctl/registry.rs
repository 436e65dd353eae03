// SPDX-License-Identifier: GPL-2.0

//! The devices of the module, by id. Control operations are serialised by one mutex: they are
//! rare, and serialising them makes create/destroy/resize races impossible by construction.
//! The long ones (flush, detach, a restore's preload), which wait for a backing device, run
//! without it as a [`LongOp`], so that INFO and STATS (a progress display) and other devices'
//! operations go on meanwhile. The I/O path never touches the registry.

use crate::abi::{RxdskComprStats, RxdskFlush, RxdskInfo, RxdskStats, RXDSK_MAX_DEVICES};
use crate::sys::compress::Algorithm;
use crate::device::{Device, DeviceConfig};
use kernel::{
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};

use core::mem::ManuallyDrop;

type Slots = KVec<Option<Arc<Device>>>;

#[pin_data(PinnedDrop)]
pub(crate) struct Registry {
    #[pin]
    devices: Mutex<Slots>,
}

fn get(slots: &Slots, id: u32) -> Result<&Device> {
    match slots.get(id as usize) {
        Some(Some(device)) => Ok(device),
        _ => Err(ENODEV),
    }
}

impl Registry {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { devices <- new_mutex!(KVec::new()) })
    }

    /// Creates a device with id `wanted` (`EEXIST` if taken), or else with the lowest free id.
    pub(crate) fn create(&self, wanted: Option<u32>, config: &DeviceConfig) -> Result<u32> {
        let mut slots = self.devices.lock();
        let id = free_id(&mut slots, wanted)?;
        let device = Device::create(id, config)?;
        slots[id as usize] = Some(device);
        Ok(id)
    }

    /// Destroys a device; `EBUSY` while open unless forced (checked and held against racing
    /// opens with the disk's claim), and while a long operation (a flush) runs on it. The
    /// disk is gone from the system and every page freed (RCU callbacks included) when this
    /// returns.
    pub(crate) fn destroy(&self, id: u32, force: bool) -> Result {
        let mut slots = self.devices.lock();
        // No LongOp holds a reference now: ours is the last, and the drop below frees it.
        if get(&slots, id)?.long_ops() > 0 {
            return Err(EBUSY);
        }
        if !force {
            let device = get(&slots, id)?;
            // Data not yet on the backing device would be lost.
            if device.has_unflushed() {
                return Err(EBUSY);
            }
            device.claim_for_destroy()?;
        }
        let device = slots.get_mut(id as usize).and_then(Option::take).ok_or(ENODEV)?;
        // Dropped under the lock, so the name is free before anyone can reuse the id.
        drop(device);
        Ok(())
    }

    /// Resizes a device to `size` bytes, which must be a non-zero multiple of its block size
    /// and at most what the platform can index.
    pub(crate) fn resize(&self, id: u32, size: u64, force: bool) -> Result {
        let slots = self.devices.lock();
        let device = get(&slots, id)?;
        if size == 0 || size > crate::device::MAX_SIZE || size.checked_rem(u64::from(device.logical_block_size())) != Some(0) {
            return Err(EINVAL);
        }
        device.resize(size, force)
    }

    /// Creates a device from the image on `path` (see [`Device::restore`]); returns its id
    /// and the image's generation.
    pub(crate) fn restore(
        &self,
        wanted: Option<u32>,
        path: &CStr,
        force: bool,
        preload: bool,
        compress: Option<Algorithm>,
    ) -> Result<(u32, u64)> {
        let (id, generation) = {
            let mut slots = self.devices.lock();
            let id = free_id(&mut slots, wanted)?;
            let (device, generation) = Device::restore(id, path, force, compress)?;
            slots[id as usize] = Some(device);
            (id, generation)
        };
        if preload {
            let loaded = self.long_op(id)?.load_all();
            if let Err(e) = loaded {
                // No half-loaded device stays behind (its id was never reported).
                let _ = self.destroy(id, true);
                return Err(e);
            }
        }
        Ok((id, generation))
    }

    /// Device `id` for an operation that runs without the registry lock.
    fn long_op(&self, id: u32) -> Result<LongOp<'_>> {
        let slots = self.devices.lock();
        let device = get_arc(&slots, id)?;
        device.begin_long_op();
        Ok(LongOp { registry: self, device: ManuallyDrop::new(device) })
    }

    pub(crate) fn attach(&self, id: u32, path: &CStr, journal_bytes: u64, writethrough: bool, flush_interval_secs: u32) -> Result {
        // Writethrough writes the whole image: a long operation.
        self.long_op(id)?.attach(path, journal_bytes, writethrough, flush_interval_secs)
    }

    pub(crate) fn detach(&self, id: u32, discard_dirty: bool) -> Result {
        self.long_op(id)?.detach(discard_dirty)
    }

    pub(crate) fn flush(&self, id: u32) -> Result<RxdskFlush> {
        self.long_op(id)?.flush()
    }

    pub(crate) fn info(&self, id: u32) -> Result<RxdskInfo> {
        Ok(get(&self.devices.lock(), id)?.info())
    }

    pub(crate) fn stats(&self, id: u32) -> Result<RxdskStats> {
        Ok(get(&self.devices.lock(), id)?.stats())
    }

    pub(crate) fn compr_stats(&self, id: u32) -> Result<RxdskComprStats> {
        get(&self.devices.lock(), id)?.compr_stats()
    }

    /// Ids of all devices, ascending.
    pub(crate) fn ids(&self) -> Result<KVec<u32>> {
        let slots = self.devices.lock();
        let mut ids = KVec::new();
        for (id, slot) in slots.iter().enumerate() {
            if slot.is_some() {
                ids.push(id as u32, GFP_KERNEL)?;
            }
        }
        Ok(ids)
    }
}

fn get_arc(slots: &Slots, id: u32) -> Result<Arc<Device>> {
    match slots.get(id as usize) {
        Some(Some(device)) => Ok(device.clone()),
        _ => Err(ENODEV),
    }
}

/// A device used without the registry lock. While one exists, DESTROY refuses the device; it
/// lets go under the lock, so a destroy that finds no long operation holds the last
/// reference and frees the device (and its name) before it returns.
struct LongOp<'a> {
    registry: &'a Registry,
    /// Taken only by `drop`.
    device: ManuallyDrop<Arc<Device>>,
}

impl core::ops::Deref for LongOp<'_> {
    type Target = Device;

    fn deref(&self) -> &Device {
        &self.device
    }
}

impl Drop for LongOp<'_> {
    fn drop(&mut self) {
        let _slots = self.registry.devices.lock();
        // SAFETY: Taken once, here; `self.device` is not used after.
        let device = unsafe { ManuallyDrop::take(&mut self.device) };
        device.end_long_op();
        drop(device);
    }
}

/// Id `wanted` if free (`EEXIST` if taken), or else the lowest free id; grows the slots to it.
fn free_id(slots: &mut Slots, wanted: Option<u32>) -> Result<u32> {
    let id = match wanted {
        Some(id) if id >= RXDSK_MAX_DEVICES => return Err(EINVAL),
        Some(id) => {
            let id = id as usize;
            while slots.len() <= id {
                slots.push(None, GFP_KERNEL)?;
            }
            if slots[id].is_some() {
                return Err(EEXIST);
            }
            id
        }
        None => match slots.iter().position(Option::is_none) {
            Some(free) => free,
            None if slots.len() < RXDSK_MAX_DEVICES as usize => {
                slots.push(None, GFP_KERNEL)?;
                slots.len() - 1
            }
            None => return Err(ENOSPC),
        },
    };
    Ok(id as u32)
}

#[pinned_drop]
impl PinnedDrop for Registry {
    fn drop(self: Pin<&mut Self>) {
        // Module unload: nothing is open (an open disk pins the module), so every device goes.
        let devices = core::mem::take(&mut *self.devices.lock());
        // Each store waits for its own RCU callbacks before it goes.
        drop(devices);
    }
}
