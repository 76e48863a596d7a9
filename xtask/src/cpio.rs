//! A cpio "newc" writer: the initrd archive the daemon reads with
//! `smmuman_daemon::initrd::Archive` (format: Linux
//! `Documentation/driver-api/early-userspace/buffer-format.rst`, `cpio(5)`).
//!
//! Each entry is a 110-byte ASCII header (magic `070701`, then thirteen 8-digit hexadecimal
//! fields: inode, mode, uid, gid, nlink, mtime, file size, device major/minor, rdev
//! major/minor, name size with its NUL, checksum 0), the NUL-terminated name padded to a
//! multiple of 4 bytes counted from the archive's start, and the data padded likewise; the entry
//! `TRAILER!!!` ends the archive.

use std::fmt;

/// Header magic of the newc format.
pub const MAGIC: &str = "070701";
/// The name of the closing entry.
pub const TRAILER: &str = "TRAILER!!!";
/// Mode of the files written: a regular file (`S_IFREG`), read-only (0444).
pub const FILE_MODE: u32 = 0o100_444;

/// A file cannot be put into an archive.
#[derive(Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The name is empty, has a NUL, is the trailer's, or repeats an earlier one.
    BadName(String),
    /// The contents or the name do not fit a 32-bit size field.
    TooLarge(String),
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(n) => write!(
                f,
                "cpio: {n:?} cannot be an entry name (empty, NUL, {TRAILER} or repeated)"
            ),
            Self::TooLarge(n) => write!(f, "cpio: {n:?} is larger than the format's 4 GiB"),
        }
    }
}

/// Builds an archive entry by entry.
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
    names: Vec<String>,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the regular file `name` holding `data`.
    ///
    /// # Errors
    /// [`CpioError`] for a bad or repeated name or a file over 4 GiB.
    pub fn file(&mut self, name: &str, data: &[u8]) -> Result<&mut Self, CpioError> {
        if name.is_empty()
            || name.contains('\0')
            || name == TRAILER
            || self.names.iter().any(|n| n == name)
        {
            return Err(CpioError::BadName(name.to_string()));
        }
        let ino = u32::try_from(self.names.len() + 1)
            .map_err(|_| CpioError::TooLarge(name.to_string()))?;
        self.entry(name, FILE_MODE, ino, data)?;
        self.names.push(name.to_string());
        Ok(self)
    }

    /// The archive, closed by the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        // The trailer's name is short and its data empty: it always fits.
        let _ = self.entry(TRAILER, 0, 0, &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, ino: u32, data: &[u8]) -> Result<(), CpioError> {
        let too_large = || CpioError::TooLarge(name.to_string());
        let size = u32::try_from(data.len()).map_err(|_| too_large())?;
        let name_size = u32::try_from(name.len() + 1).map_err(|_| too_large())?;
        let nlink = u32::from(mode != 0);
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_size, 0];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        let len = self.bytes.len().next_multiple_of(4);
        self.bytes.resize(len, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smmuman_daemon::initrd::Archive;

    #[test]
    fn the_daemon_reads_back_what_is_written() {
        let mut w = Writer::new();
        w.file("smmuman.conf", b"smmu auto\n").unwrap();
        w.file("host.plan", b"").unwrap();
        w.file("guests/driver", &[1, 2, 3, 4, 5]).unwrap();
        let bytes = w.finish();
        assert!(bytes.len().is_multiple_of(4));
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.file("smmuman.conf"), Some(&b"smmu auto\n"[..]));
        assert_eq!(a.file("host.plan"), Some(&b""[..]));
        assert_eq!(
            a.guests().collect::<Vec<_>>(),
            [("driver", &[1u8, 2, 3, 4, 5][..])]
        );
        assert!(a.entries().all(|e| e.is_file() && e.mode == FILE_MODE));
    }

    #[test]
    fn the_first_header_is_laid_out_as_the_format_says() {
        let mut w = Writer::new();
        w.file("ab", b"xyz").unwrap();
        let bytes = w.finish();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001\
             00008124\
             00000000\
             00000000\
             00000001\
             00000000\
             00000003\
             00000000\
             00000000\
             00000000\
             00000000\
             00000003\
             00000000"
        );
        assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
        assert_eq!(&bytes[116..120], b"xyz\0");
        assert_eq!(&bytes[120..126], MAGIC.as_bytes());
    }

    #[test]
    fn bad_and_repeated_names_are_refused() {
        let mut w = Writer::new();
        w.file("a", b"").unwrap();
        for bad in ["a", "", "x\0y", TRAILER] {
            assert_eq!(
                w.file(bad, b"").unwrap_err(),
                CpioError::BadName(bad.to_string())
            );
        }
    }
}
