// SPDX-License-Identifier: GPL-2.0

//! rxdsk: a RAM block device driven through `/dev/rxdsk-control`.
//!
//! The crate root holds the module, its registration of the control node and the `mod` lines.

use kernel::{
    miscdevice::{MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

// The ABI is shared verbatim with user space, where its items must be `pub`.
#[allow(unreachable_pub)]
#[path = "../rxdsk-ioctl/src/abi.rs"]
mod abi;
// The backing device's on-disk format, shared with rxdskctl (`inspect`).
#[allow(unreachable_pub)]
#[path = "../rxdsk-ioctl/src/image.rs"]
mod image;
// The I/O-path arithmetic, tested and benchmarked on the host (`rxdsk-layout`).
#[allow(unreachable_pub)]
#[path = "../rxdsk-layout/src/layout.rs"]
mod layout;
mod backing;
mod changes;
mod compress;
mod control;
mod deferred;
mod device;
mod disk;
mod ffi;
mod iomem;
mod pages;
mod periodic;
mod registry;
mod stats;
mod unloaded;
mod zstore;

module! {
    type: RxdskModule,
    name: "rxdsk",
    authors: ["The rxdsk developers"],
    description: "RAM block device with online resize, discard and a stable ioctl ABI",
    license: "GPL",
}

/// Version string reported by `RXDSK_IOC_GET_VERSION`; kept in step with the workspace version.
const MODULE_VERSION: &str = "0.1.0";

/// # Invariants
///
/// `control` is the only `MiscDeviceRegistration<Control>`: the control node's `open` finds the
/// registry from it.
#[pin_data]
struct RxdskModule {
    /// Declared first: deregistered before the registry (and its devices) goes.
    #[pin]
    control: MiscDeviceRegistration<control::Control>,
    #[pin]
    registry: registry::Registry,
    /// Destroyed once no device is left.
    io_queue: deferred::IoQueue,
    /// The decompression fault point outlives every device.
    _faults: ffi::FaultInjection,
    /// Declared last: the compression streams' CPU-hotplug state outlives every device.
    _hotplug: compress::Hotplug,
}

impl kernel::InPlaceModule for RxdskModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _hotplug: compress::Hotplug::register()?,
            _faults: ffi::FaultInjection::register(),
            io_queue: deferred::IoQueue::new()?,
            registry <- registry::Registry::new(),
            control <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rxdsk-control",
            }),
        })
        .pin_chain(|_| {
            // Printed only once every part of init has succeeded.
            pr_info!(
                "rxdsk {} loaded (ABI {}.{})\n",
                MODULE_VERSION,
                abi::RXDSK_ABI_MAJOR,
                abi::RXDSK_ABI_MINOR
            );
            Ok(())
        })
    }
}
