//! rxdskctl's logic as a library: the binary is a thin `main`, and the benches and tests reach
//! the pure parts (size and device parsing, rendering) directly.

pub mod apply;
pub mod backend;
pub mod backing;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod date;
pub mod device;
pub mod dhchap;
pub mod export;
pub mod failure;
pub mod generator;
pub mod list;
pub mod modprobe;
pub mod mtab;
pub mod progress;
pub mod query;
pub mod request;
pub mod size;
pub mod stats;
pub mod sysfs;
#[cfg(test)]
mod testutil;
