// SPDX-License-Identifier: GPL-2.0

//! rxdsk: a RAM block device driven through `/dev/rxdsk-control`.
//!
//! The crate root holds the module, its registration of the control node and the `mod` lines.
//! Each layer reaches only down:
//!
//! - `ctl/`: the ioctls of the control node and the registry of devices;
//! - `device.rs`: one device's lifecycle and how its bios are dispatched (policy, safe Rust);
//! - `image/`: the on-disk protocol on a backing device (flush, journal, replay, loading);
//! - `store/`: where the data lives (plain or compressed pages, change tracking);
//! - `sys/`: the glue, the only place that touches the kernel's C types (`bindings::`).
//!
//! `abi` and `layout` are shared with user space and the host tests, included by path.

use kernel::prelude::*;

// The ABI is shared verbatim with user space, where its items must be `pub`.
#[allow(unreachable_pub)]
#[path = "../rxdsk-ioctl/src/abi.rs"]
mod abi;
// The I/O-path arithmetic, tested and benchmarked on the host (`rxdsk-layout`).
#[allow(unreachable_pub)]
#[path = "../rxdsk-layout/src/layout.rs"]
mod layout;
mod ctl;
mod device;
mod image;
mod store;
mod sys;

module! {
    type: RxdskModule,
    name: "rxdsk",
    authors: ["The rxdsk developers"],
    description: "RAM block device with online resize, discard and a stable ioctl ABI",
    license: "GPL",
}

#[pin_data]
struct RxdskModule {
    /// Declared first: the control node goes before the devices' shared parts.
    #[pin]
    control: ctl::control::ControlNode,
    /// Destroyed once no device is left.
    io_queue: sys::deferred::IoQueue,
    /// The decompression fault point outlives every device.
    _faults: sys::ffi::FaultInjection,
    /// Declared last: the compression streams' CPU-hotplug state outlives every device.
    _hotplug: sys::compress::Hotplug,
}

impl kernel::InPlaceModule for RxdskModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _hotplug: sys::compress::Hotplug::register()?,
            _faults: sys::ffi::FaultInjection::register(),
            io_queue: sys::deferred::IoQueue::new()?,
            control <- ctl::control::ControlNode::register(),
        })
        .pin_chain(|_| {
            sys::ffi::publish_abi(abi::RXDSK_ABI_MAJOR, abi::RXDSK_ABI_MINOR, abi::RXDSK_FEATURES_ALL);
            // Printed only once every part of init has succeeded.
            pr_info!(
                "rxdsk {} loaded (ABI {}.{})\n",
                ctl::control::MODULE_VERSION,
                abi::RXDSK_ABI_MAJOR,
                abi::RXDSK_ABI_MINOR
            );
            Ok(())
        })
    }
}
