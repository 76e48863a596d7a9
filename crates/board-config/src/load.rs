//! [`load`]: the whole start-up sequence in one call — device tree, optional config file,
//! combined — for the daemon.

// `LoadError` carries a `DtError` (see the `dt` module comment).
#![allow(clippy::result_large_err)]

use crate::combine::{combine, CombineError};
use crate::config::{parse_bytes, ConfigError};
use crate::dt::{from_fdt, DtError};
use crate::topology::Topology;
use core::fmt;
use fdt::Fdt;

/// A config file as the boot image carries it.
#[derive(Clone, Copy, Debug)]
pub struct ConfigFile<'a> {
    /// The name its errors give (`initrd`, `boards/qemu-virt/smmuman.conf`).
    pub name: &'a str,
    /// Its contents (UTF-8; trailing NUL bytes are ignored).
    pub bytes: &'a [u8],
}

/// Why the board could not be learned; the manager must not start.
#[derive(Clone, PartialEq, Debug)]
pub enum LoadError<'a> {
    /// The device tree is wrong.
    DeviceTree(DtError),
    /// The config file is wrong.
    Config(ConfigError<'a>),
    /// The two cannot be combined.
    Combine(CombineError),
}

impl fmt::Display for LoadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceTree(e) => write!(f, "device tree: {e}"),
            Self::Config(e) => write!(f, "config: {e}"),
            Self::Combine(e) => write!(f, "device tree + config: {e}"),
        }
    }
}

/// Firmware's topology from `fdt`, combined with `config` if there is one.
///
/// `fdt`'s blob must have passed [`crate::dt::validate_blob`]: `fdt` 0.1.5 panics on some
/// corrupt blobs.
///
/// # Errors
/// The first [`LoadError`]: device tree first, then the config, then combining.
pub fn load<'a>(fdt: &Fdt<'_>, config: Option<ConfigFile<'a>>) -> Result<Topology, LoadError<'a>> {
    let firmware = from_fdt(fdt).map_err(LoadError::DeviceTree)?;
    let user = match config {
        Some(file) => Some(parse_bytes(file.name, file.bytes).map_err(LoadError::Config)?),
        None => None,
    };
    combine(&firmware, user.as_ref()).map_err(LoadError::Combine)
}
