//! The CREATE request of a new device and the size check behind it, shared by `create` (the
//! command line), `apply` (the configuration) and the configuration's own checks.

use crate::cli::{Compression, CreateArgs};
use crate::size::format_size;
use rxdsk_ioctl::{
    RxdskCreate, RXDSK_COMPRESS_NAMES, RXDSK_CREATE_WITH_ID, RXDSK_FLAG_READ_ONLY, RXDSK_MAX_SIZE,
    RXDSK_PAGE_SIZE,
};

/// Checks a device size the way the kernel will, to explain what is wrong.
pub fn check_size(size: u64, block_size: Option<u32>) -> Result<(), String> {
    if size == 0 {
        return Err("invalid size: must not be zero".into());
    }
    if size > RXDSK_MAX_SIZE {
        return Err(format!(
            "invalid size: {size} bytes is larger than the maximum ({})",
            format_size(RXDSK_MAX_SIZE)
        ));
    }
    if let Some(bs) = block_size {
        // Not `is_multiple_of`: the workspace supports Rust 1.85.
        if size.checked_rem(u64::from(bs)) != Some(0) {
            return Err(format!(
                "invalid size: {size} bytes is not a multiple of the block size ({bs})"
            ));
        }
    }
    Ok(())
}

/// What a new (not restored) device is to be: what CREATE carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewDevice {
    pub size: u64,
    pub block_size: u32,
    pub mem_limit: Option<u64>,
    pub read_only: bool,
    /// The id asked for; the lowest free one if `None`.
    pub id: Option<u32>,
    pub compress: Option<Compression>,
    pub compress_level: Option<i32>,
}

impl From<&CreateArgs> for NewDevice {
    fn from(args: &CreateArgs) -> Self {
        Self {
            size: args.size.unwrap_or(0),
            block_size: args.block_size,
            mem_limit: args.mem_limit,
            read_only: args.read_only,
            id: args.id,
            compress: args.compress,
            compress_level: args.compress_level,
        }
    }
}

impl NewDevice {
    /// The CREATE request, or why there is none.
    pub fn request(&self) -> Result<RxdskCreate, String> {
        check_size(self.size, Some(self.block_size))?;
        let mem_limit = self.mem_limit.unwrap_or(0);
        if mem_limit != 0 && mem_limit < RXDSK_PAGE_SIZE {
            return Err(format!(
                "invalid memory limit: {mem_limit} bytes is less than one page \
                 ({RXDSK_PAGE_SIZE}); use 0 for no limit"
            ));
        }
        if let (Some(c @ (Compression::Lzo | Compression::LzoRle)), Some(_)) =
            (self.compress, self.compress_level)
        {
            let name = RXDSK_COMPRESS_NAMES[c.abi() as usize];
            return Err(format!("invalid compression level: {name} has no levels"));
        }
        let mut flags = 0;
        if self.read_only {
            flags |= RXDSK_FLAG_READ_ONLY;
        }
        if self.id.is_some() {
            flags |= RXDSK_CREATE_WITH_ID;
        }
        Ok(RxdskCreate {
            size_bytes: self.size,
            mem_limit_bytes: mem_limit,
            flags,
            logical_block_size: self.block_size,
            id: self.id.unwrap_or(0),
            compress: self.compress.map_or(0, |c| c.abi()),
            compress_level: self.compress_level.unwrap_or(0),
            ..Default::default()
        })
    }
}
