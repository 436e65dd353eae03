// SPDX-License-Identifier: GPL-2.0

//! The glue: every C type and function of the kernel that rxdsk uses, behind small wrappers,
//! one C type per file, as upstream abstractions would one day provide them. Each file keeps
//! its `unsafe` to itself; everything above `sys` reaches the kernel only through these types.

pub(crate) mod backing;
pub(crate) mod codecs;
pub(crate) mod compress;
pub(crate) mod deferred;
pub(crate) mod disk;
pub(crate) mod fanout;
pub(crate) mod ffi;
pub(crate) mod iomem;
pub(crate) mod page;
pub(crate) mod periodic;
pub(crate) mod rwsem;
pub(crate) mod shrinker;
pub(crate) mod xarray;
pub(crate) mod zsmalloc;
