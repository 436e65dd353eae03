// SPDX-License-Identifier: GPL-2.0

//! The control plane: `/dev/rxdsk-control`'s ioctls and the registry of devices they act on.

pub(crate) mod control;
pub(crate) mod registry;
