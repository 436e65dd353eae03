// SPDX-License-Identifier: GPL-2.0

//! The devices of the module, by id. Changes to the table are serialised by one mutex, held
//! only for the table itself: nothing waits for I/O (or for another device) under it. What
//! may wait runs on a reference taken under it: a [`LongOp`] (flush, attach, detach, resize,
//! a restore's preload), which DESTROY refuses while it runs, and a [`Peek`] (INFO, STATS),
//! which DESTROY waits for. The I/O path never touches the registry.

use crate::abi::{RxdskComprStats, RxdskFlush, RxdskInfo, RxdskStats, RXDSK_MAX_DEVICES};
use crate::device::{Device, DeviceConfig};
use crate::image::Mode;
use crate::sys::compress::Algorithm;
use kernel::{
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};

use core::mem::ManuallyDrop;

/// One id of the table.
enum Slot {
    Free,
    /// Taken by an operation under way (a restore reading its image, a destroy tearing its
    /// device down): no device to look at, and the id cannot be given out.
    Reserved,
    Live(Arc<Device>),
    /// A destroy is checking whether it may go on: still listed and readable, but no new
    /// operation may start on it.
    Dying(Arc<Device>),
}

impl Slot {
    fn visible(&self) -> Option<&Arc<Device>> {
        match self {
            Slot::Live(d) | Slot::Dying(d) => Some(d),
            Slot::Free | Slot::Reserved => None,
        }
    }
}

type Slots = KVec<Slot>;

#[pin_data(PinnedDrop)]
pub(crate) struct Registry {
    #[pin]
    devices: Mutex<Slots>,
    /// Serialises ATTACH with its check that no chain of backing devices leads back to the
    /// device being attached.
    #[pin]
    attaching: Mutex<()>,
}

fn live(slots: &Slots, id: u32) -> Result<&Arc<Device>> {
    match slots.get(id as usize) {
        Some(Slot::Live(device)) => Ok(device),
        Some(Slot::Dying(_)) => Err(EBUSY),
        _ => Err(ENODEV),
    }
}

impl Registry {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self { devices <- new_mutex!(KVec::new()), attaching <- new_mutex!(()) })
    }

    /// Creates a device with id `wanted` (`EEXIST` if taken), or else with the lowest free id.
    pub(crate) fn create(&self, wanted: Option<u32>, config: &DeviceConfig) -> Result<u32> {
        let mut slots = self.devices.lock();
        let id = free_id(&mut slots, wanted)?;
        let device = Device::create(id, config)?;
        slots[id as usize] = Slot::Live(device);
        Ok(id)
    }

    /// Destroys a device; `EBUSY` while open unless forced (checked and held against racing
    /// opens with the disk's claim), while a long operation (a flush) runs on it, and, unless
    /// forced, while it holds data not yet on its backing device. The disk is gone from the
    /// system and every page freed (RCU callbacks included) when this returns.
    pub(crate) fn destroy(&self, id: u32, force: bool) -> Result {
        let device = {
            let mut slots = self.devices.lock();
            let device = live(&slots, id)?.clone();
            // No LongOp holds a reference now, and none can start once the slot is Dying.
            if device.long_ops() > 0 {
                return Err(EBUSY);
            }
            slots[id as usize] = Slot::Dying(device.clone());
            device
        };
        // The checks may wait (for a running flush): not under the table's lock.
        let refused = !force && (device.has_unflushed() || device.claim_for_destroy().is_err());
        let mut slots = self.devices.lock();
        if refused {
            slots[id as usize] = Slot::Live(device);
            return Err(EBUSY);
        }
        slots[id as usize] = Slot::Reserved;
        drop(slots);
        // Readers that looked it up before finish; nobody else holds it. Dropped here, the
        // device goes (its disk and name with it) before the id is given out again.
        device.wait_for_peeks();
        drop(device);
        self.devices.lock()[id as usize] = Slot::Free;
        Ok(())
    }

    /// Resizes a device to `size` bytes, which must be a non-zero multiple of its block size
    /// and at most what the platform can index.
    pub(crate) fn resize(&self, id: u32, size: u64, force: bool) -> Result {
        let device = self.long_op(id)?;
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
        mem_limit_bytes: u64,
    ) -> Result<(u32, u64)> {
        let id = {
            let mut slots = self.devices.lock();
            let id = free_id(&mut slots, wanted)?;
            slots[id as usize] = Slot::Reserved;
            id
        };
        // Reading the image (and replaying its journal) may take long: not under the lock.
        let restored = Device::restore(id, path, force, compress, mem_limit_bytes);
        let generation = {
            let mut slots = self.devices.lock();
            match restored {
                Ok((device, generation)) => {
                    slots[id as usize] = Slot::Live(device);
                    generation
                }
                Err(e) => {
                    slots[id as usize] = Slot::Free;
                    return Err(e);
                }
            }
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
        let device = live(&slots, id)?.clone();
        device.begin_long_op();
        Ok(LongOp { registry: self, device: ManuallyDrop::new(device) })
    }

    /// Device `id` to read from without the registry lock (a destroy waits for it).
    fn peek(&self, id: u32) -> Result<Peek> {
        let slots = self.devices.lock();
        let device = slots.get(id as usize).and_then(Slot::visible).ok_or(ENODEV)?.clone();
        device.begin_peek();
        Ok(Peek { device })
    }

    pub(crate) fn attach(&self, id: u32, path: &CStr, journal_bytes: u64, mode: Mode, flush_interval_secs: u32) -> Result {
        // Writethrough writes the whole image: a long operation.
        let device = self.long_op(id)?;
        let _serialised = self.attaching.lock();
        device.attach(path, journal_bytes, mode, flush_interval_secs, |devt| self.check_chain(id, devt))
    }

    /// `ELOOP` if the device numbered `devt` is device `id`, or one of ours whose backing
    /// device (and so on) is: a writethrough or flush write would then wait for itself. Run
    /// with ATTACH serialised, so no chain grows meanwhile.
    fn check_chain(&self, id: u32, mut devt: (u32, u32)) -> Result {
        let slots = self.devices.lock();
        // A chain visits each device at most once before it loops.
        for _ in 0..=slots.len() {
            let Some(device) = slots.iter().filter_map(Slot::visible).find(|d| d.devt() == devt) else {
                return Ok(());
            };
            if device.id() == id {
                return Err(ELOOP);
            }
            devt = device.backing_devt();
            if devt == (0, 0) {
                return Ok(());
            }
        }
        Err(ELOOP)
    }

    pub(crate) fn detach(&self, id: u32, discard_dirty: bool) -> Result {
        self.long_op(id)?.detach(discard_dirty)
    }

    pub(crate) fn flush(&self, id: u32) -> Result<RxdskFlush> {
        self.long_op(id)?.flush()
    }

    pub(crate) fn info(&self, id: u32) -> Result<RxdskInfo> {
        Ok(self.peek(id)?.info())
    }

    pub(crate) fn stats(&self, id: u32) -> Result<RxdskStats> {
        Ok(self.peek(id)?.stats())
    }

    pub(crate) fn compr_stats(&self, id: u32) -> Result<RxdskComprStats> {
        self.peek(id)?.compr_stats()
    }

    /// Ids of all devices, ascending.
    pub(crate) fn ids(&self) -> Result<KVec<u32>> {
        let slots = self.devices.lock();
        let mut ids = KVec::new();
        for (id, slot) in slots.iter().enumerate() {
            if slot.visible().is_some() {
                ids.push(id as u32, GFP_KERNEL)?;
            }
        }
        Ok(ids)
    }
}

/// A device used without the registry lock. While one exists, DESTROY refuses the device; it
/// lets go under the lock, so a destroy that finds no long operation holds the last
/// reference (but for [`Peek`]s, which it waits for).
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

/// A device read without the registry lock; a destroy waits until every `Peek` is gone.
struct Peek {
    device: Arc<Device>,
}

impl core::ops::Deref for Peek {
    type Target = Device;

    fn deref(&self) -> &Device {
        &self.device
    }
}

impl Drop for Peek {
    fn drop(&mut self) {
        self.device.end_peek();
    }
}

/// Id `wanted` if free (`EEXIST` if taken), or else the lowest free id; grows the slots to it.
fn free_id(slots: &mut Slots, wanted: Option<u32>) -> Result<u32> {
    let is_free = |s: &Slot| matches!(s, Slot::Free);
    let id = match wanted {
        Some(id) if id >= RXDSK_MAX_DEVICES => return Err(EINVAL),
        Some(id) => {
            let id = id as usize;
            while slots.len() <= id {
                slots.push(Slot::Free, GFP_KERNEL)?;
            }
            if !is_free(&slots[id]) {
                return Err(EEXIST);
            }
            id
        }
        None => match slots.iter().position(is_free) {
            Some(free) => free,
            None if slots.len() < RXDSK_MAX_DEVICES as usize => {
                slots.push(Slot::Free, GFP_KERNEL)?;
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
        // Module unload: nothing is open (an open disk pins the module), and no backing device
        // is attached (an attached one pins it too), so every device goes.
        let devices = core::mem::take(&mut *self.devices.lock());
        // Each store waits for its own RCU callbacks before it goes.
        drop(devices);
    }
}
