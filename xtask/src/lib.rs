//! Tasks around the bare-metal daemon that run on the host: building its boot image
//! ([`image`]), finding and driving QEMU ([`qemu`]), completing the pinned toolchain
//! ([`toolchain`]), and building the qvm test guests and the initrd archive that carries them
//! ([`guests`], [`cpio`]), and the x86-64 image on board `qemu-q35` ([`x86`]). Used by the `xtask` binary and by the
//! `tests-qemu` harness, so that both boot exactly the same thing.

#![deny(unsafe_code, missing_docs)]

pub mod bench;
pub mod cpio;
pub mod guests;
pub mod image;
pub mod paths;
pub mod qemu;
pub mod toolchain;
pub mod x86;

use std::fmt;

/// A task failed; the message says what and how to fix it.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<image::ImageError> for Error {
    fn from(e: image::ImageError) -> Self {
        Self(e.to_string())
    }
}

/// Result of a task.
pub type Result<T> = std::result::Result<T, Error>;
