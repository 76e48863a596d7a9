//! The initrd as an archive of named files: a cpio "newc" archive, read in place and checked.
//!
//! When the initrd QEMU passes (`-initrd FILE`) starts with [`MAGIC`], it is not the board
//! config itself but an archive that carries it next to the host plan and the guest images:
//!
//! | name | what |
//! |---|---|
//! | [`CONFIG_FILE`] | the board config (`docs/config.md`) |
//! | [`PLAN_FILE`] | the host plan |
//! | [`GUESTS_DIR`]`<name>` | a guest's ELF image |
//!
//! # The format (Linux `Documentation/driver-api/early-userspace/buffer-format.rst`, `cpio(5)`)
//! An archive is a run of entries, each a 110-byte header of ASCII text, the entry's name and
//! its data; the entry named [`TRAILER`] ends it. The header is the 6-character magic
//! `070701` followed by thirteen fields of exactly 8 hexadecimal digits each (inode, mode,
//! uid, gid, nlink, mtime, file size, device major/minor, rdev major/minor, name size,
//! checksum). The name size counts the name's terminating NUL. Header plus name is padded with
//! NULs to a multiple of 4 bytes, and so is the data, both counted from the archive's start.
//! The checksum field only means something under magic `070702`, which this reader refuses.
//!
//! [`Archive::parse`] walks every entry up to the trailer before it returns, so an archive it
//! accepts has no bad header, no length that leaves the buffer and no repeated name; every
//! refusal is an [`ArchiveError`] naming the byte offset and what is wrong there. Nothing here
//! indexes or adds unchecked: a damaged initrd gives an error, never a panic.

use core::fmt;

/// The "newc" magic: the first six bytes of every header (`buffer-format.rst`, `c_magic`).
pub const MAGIC: &[u8; 6] = b"070701";
/// The magic of the same format with checksums (`cpio(5)` "New CRC Format"): not accepted.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Bytes in one header: the magic and thirteen 8-digit fields.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends the archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The archive entry holding the board config.
pub const CONFIG_FILE: &str = "smmuman.conf";
/// The archive entry holding the host plan.
pub const PLAN_FILE: &str = "host.plan";
/// The folder of guest images: `guests/<name>`.
pub const GUESTS_DIR: &str = "guests/";
/// Most entries an archive may hold (the trailer not counted): the repeated-name check is
/// quadratic, so a hostile archive of tiny entries must not make it slow.
pub const MAX_ENTRIES: usize = 256;
/// Longest name accepted, NUL included (Linux's `PATH_MAX`).
pub const MAX_NAME: u32 = 4096;

/// `c_mode`'s file-type bits (`cpio(5)`, the `S_IFMT` mask of `stat(2)`).
const S_IFMT: u32 = 0o170_000;
/// File type "regular file".
const S_IFREG: u32 = 0o100_000;

/// The header fields in order after the magic (`buffer-format.rst`).
const FIELDS: [&str; 13] = [
    "c_ino",
    "c_mode",
    "c_uid",
    "c_gid",
    "c_nlink",
    "c_mtime",
    "c_filesize",
    "c_maj",
    "c_min",
    "c_rmaj",
    "c_rmin",
    "c_namesize",
    "c_chksum",
];
/// Index of `c_mode` in [`FIELDS`].
const MODE: usize = 1;
/// Index of `c_filesize` in [`FIELDS`].
const FILESIZE: usize = 6;
/// Index of `c_namesize` in [`FIELDS`].
const NAMESIZE: usize = 11;

/// Whether `bytes` starts like a newc archive (and so is not a bare config file).
pub fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// What is wrong with an archive, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveError {
    /// Byte offset from the archive's start of the header, field or name at fault.
    pub offset: usize,
    /// What is wrong there.
    pub kind: ArchiveErrorKind,
}

/// The ways an archive can be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveErrorKind {
    /// The buffer ends inside a header, a name or a file's data.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs from the offset.
        needed: u64,
        /// Bytes the buffer has from the offset.
        available: usize,
    },
    /// A header does not start with `070701`.
    BadMagic,
    /// The header is the checksummed variant (`070702`), which is not read.
    CrcFormat,
    /// A header field is not 8 hexadecimal digits.
    BadHex {
        /// The field's name from the format (`c_filesize`, ...).
        field: &'static str,
    },
    /// `c_namesize` is 0 (every name has at least its NUL) or over [`MAX_NAME`].
    BadNameSize {
        /// The value read.
        size: u32,
    },
    /// The name's last byte (at `c_namesize - 1`) is not NUL, or a NUL comes before it.
    NameNotTerminated,
    /// The name is not UTF-8.
    NameNotUtf8,
    /// The same name appears twice.
    Duplicate,
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// The buffer ends without a `TRAILER!!!` entry.
    NoTrailer,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "initrd archive, byte {:#x}: ", self.offset)?;
        match self.kind {
            ArchiveErrorKind::Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "{what} needs {needed} bytes but the archive has {available} left"
            ),
            ArchiveErrorKind::BadMagic => {
                write!(f, "header does not start with the newc magic \"070701\"")
            }
            ArchiveErrorKind::CrcFormat => write!(
                f,
                "header magic is \"070702\" (newc with checksums); write plain newc (\"070701\")"
            ),
            ArchiveErrorKind::BadHex { field } => {
                write!(f, "header field {field} is not 8 hexadecimal digits")
            }
            ArchiveErrorKind::BadNameSize { size } => write!(
                f,
                "c_namesize is {size}; a name has 1 to {MAX_NAME} bytes with its NUL"
            ),
            ArchiveErrorKind::NameNotTerminated => {
                write!(f, "name is not ended by exactly one NUL at c_namesize - 1")
            }
            ArchiveErrorKind::NameNotUtf8 => write!(f, "name is not UTF-8"),
            ArchiveErrorKind::Duplicate => write!(f, "name appears earlier in the archive"),
            ArchiveErrorKind::TooManyEntries => {
                write!(f, "more than {MAX_ENTRIES} entries")
            }
            ArchiveErrorKind::NoTrailer => {
                write!(f, "the archive ends without a \"{TRAILER}\" entry")
            }
        }
    }
}

/// One file of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its name, without the NUL (e.g. `guests/driver`).
    pub name: &'a str,
    /// `c_mode`: file type and permission bits, as `stat(2)`'s `st_mode`.
    pub mode: u32,
    /// Its contents.
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// Whether the entry is a regular file (not a directory, link or device node).
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}

/// A checked newc archive borrowed from the initrd's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    /// The bytes up to the trailer entry's start.
    bytes: &'a [u8],
}

impl<'a> Archive<'a> {
    /// Checks every entry of `bytes` up to the trailer. Bytes after the trailer (the padding
    /// `cpio` adds to a 512-byte block) are ignored.
    ///
    /// # Errors
    /// The first thing wrong, as an [`ArchiveError`] with its offset.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        let mut offset = 0;
        let mut count = 0;
        loop {
            let (entry, next) = read_entry(bytes, offset)?;
            if entry.name == TRAILER {
                let bytes = bytes.get(..offset).unwrap_or(bytes);
                return Ok(Self { bytes });
            }
            if count == MAX_ENTRIES {
                return Err(ArchiveError {
                    offset,
                    kind: ArchiveErrorKind::TooManyEntries,
                });
            }
            let earlier = Self {
                bytes: bytes.get(..offset).unwrap_or(bytes),
            };
            if earlier.entries().any(|e| e.name == entry.name) {
                return Err(ArchiveError {
                    offset: offset.saturating_add(HEADER_LEN),
                    kind: ArchiveErrorKind::Duplicate,
                });
            }
            count += 1;
            offset = next;
        }
    }

    /// The contents of the regular file `name` (e.g. [`CONFIG_FILE`]), if the archive has it.
    pub fn file(&self, name: &str) -> Option<&'a [u8]> {
        self.entries()
            .find(|e| e.name == name && e.is_file())
            .map(|e| e.data)
    }

    /// The guest images: `(name, ELF bytes)` for each regular file under [`GUESTS_DIR`].
    pub fn guests(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.entries().filter(|e| e.is_file()).filter_map(|e| {
            e.name
                .strip_prefix(GUESTS_DIR)
                .filter(|n| !n.is_empty())
                .map(|n| (n, e.data))
        })
    }

    /// Every entry before the trailer, in archive order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            offset: 0,
        }
    }
}

/// The entries of an [`Archive`], in order.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.offset >= self.bytes.len() {
            return None;
        }
        // Archive::parse checked these bytes; an error cannot happen, and would end the walk.
        let (entry, next) = read_entry(self.bytes, self.offset).ok()?;
        self.offset = next;
        Some(entry)
    }
}

/// Reads the entry whose header starts at `offset`; returns it and the next header's offset.
fn read_entry(bytes: &[u8], offset: usize) -> Result<(Entry<'_>, usize), ArchiveError> {
    let err = |offset: usize, kind| ArchiveError { offset, kind };
    let rest = bytes.get(offset..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(err(offset, ArchiveErrorKind::NoTrailer));
    }
    let header = rest.get(..HEADER_LEN).ok_or(err(
        offset,
        ArchiveErrorKind::Truncated {
            what: "a header",
            needed: HEADER_LEN as u64,
            available: rest.len(),
        },
    ))?;
    match header.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => {}
        Some(m) if m == MAGIC_CRC => return Err(err(offset, ArchiveErrorKind::CrcFormat)),
        _ => return Err(err(offset, ArchiveErrorKind::BadMagic)),
    }
    let mut fields = [0u32; FIELDS.len()];
    for (i, (value, name)) in fields.iter_mut().zip(FIELDS).enumerate() {
        let at = MAGIC.len() + 8 * i;
        let digits = header.get(at..at + 8).unwrap_or(&[]);
        *value =
            parse_hex8(digits).ok_or(err(offset + at, ArchiveErrorKind::BadHex { field: name }))?;
    }
    let name_size = fields[NAMESIZE];
    if name_size == 0 || name_size > MAX_NAME {
        return Err(err(
            offset + MAGIC.len() + 8 * NAMESIZE,
            ArchiveErrorKind::BadNameSize { size: name_size },
        ));
    }
    let name_at = offset + HEADER_LEN;
    // Both lengths are at most 2^32 - 1, so these sums cannot overflow a u64.
    let name_len = u64::from(name_size);
    let with_nul = take(bytes, name_at, name_len, "the name")?;
    let (nul, name) = with_nul
        .split_last()
        .ok_or(err(name_at, ArchiveErrorKind::NameNotTerminated))?;
    if *nul != 0 || name.contains(&0) {
        return Err(err(name_at, ArchiveErrorKind::NameNotTerminated));
    }
    let name =
        core::str::from_utf8(name).map_err(|_| err(name_at, ArchiveErrorKind::NameNotUtf8))?;
    // The padding after the name must be there too (it is part of the entry).
    let data_at = align4(name_at as u64 + name_len);
    take(
        bytes,
        name_at,
        data_at - name_at as u64,
        "the name with its padding",
    )?;
    if name == TRAILER {
        let entry = Entry {
            name,
            mode: fields[MODE],
            data: &[],
        };
        return Ok((entry, to_usize(data_at)));
    }
    let data_len = u64::from(fields[FILESIZE]);
    let next = align4(data_at + data_len);
    let padded = take(
        bytes,
        to_usize(data_at),
        next - data_at,
        "the file's data with its padding",
    )?;
    let data = padded.get(..to_usize(data_len)).unwrap_or(padded);
    let entry = Entry {
        name,
        mode: fields[MODE],
        data,
    };
    Ok((entry, to_usize(next)))
}

/// `len` bytes of `bytes` from `at`, or a [`ArchiveErrorKind::Truncated`] error.
fn take<'a>(
    bytes: &'a [u8],
    at: usize,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], ArchiveError> {
    let available = bytes.len().saturating_sub(at);
    usize::try_from(len)
        .ok()
        .and_then(|len| at.checked_add(len))
        .and_then(|end| bytes.get(at..end))
        .ok_or(ArchiveError {
            offset: at,
            kind: ArchiveErrorKind::Truncated {
                what,
                needed: len,
                available,
            },
        })
}

/// Rounds up to the 4-byte boundary the format pads names and data to.
fn align4(x: u64) -> u64 {
    x.saturating_add(3) & !3
}

/// An offset that was checked against the buffer (or is past it, which the next read reports).
fn to_usize(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

/// The value of exactly 8 ASCII hexadecimal digits (either case), as newc's fields are.
fn parse_hex8(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some((acc << 4) | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;
    use std::vec::Vec;

    /// A newc writer independent of xtask's: one header per file, then the trailer.
    fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |name: &str, mode: u32, data: &[u8], out: &mut Vec<u8>| {
            let fields = [1, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0];
            out.extend_from_slice(MAGIC);
            for f in fields {
                out.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            out.extend_from_slice(format!("{:08X}", name.len() + 1).as_bytes());
            out.extend_from_slice(b"00000000");
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(out.len().next_multiple_of(4), 0);
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(4), 0);
        };
        for (name, mode, data) in files {
            put(name, *mode, data, &mut out);
        }
        put(TRAILER, 0, &[], &mut out);
        out
    }

    const FILE: u32 = 0o100_644;

    fn sample() -> Vec<u8> {
        archive(&[
            (CONFIG_FILE, FILE, b"smmu auto\n"),
            ("guests", 0o040_755, b""),
            (PLAN_FILE, FILE, b"vm a\n  ram 4M\n"),
            ("guests/driver", FILE, &[0x7f, b'E', b'L', b'F', 1, 2, 3]),
            ("guests/rogue", FILE, b""),
        ])
    }

    /// Every header field, the padded name and the padded data at the offsets the format
    /// gives, written out by hand: a file "ab" holding "xyz".
    #[test]
    fn a_hand_written_archive_reads_back() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"070701");
        bytes.extend_from_slice(b"00000002000081a4000000000000000000000001");
        bytes.extend_from_slice(b"5f5e100000000003000000000000000000000000");
        bytes.extend_from_slice(b"0000000000000003" /* rmin, namesize 3 */);
        bytes.extend_from_slice(b"00000000");
        assert_eq!(bytes.len(), HEADER_LEN);
        bytes.extend_from_slice(b"ab\0\0\0\0"); // 110 + 3 = 113, padded to 116
        bytes.extend_from_slice(b"xyz\0");
        bytes.extend_from_slice(&archive(&[]));
        let a = Archive::parse(&bytes).unwrap();
        let all: Vec<_> = a.entries().collect();
        assert_eq!(
            all,
            [Entry {
                name: "ab",
                mode: 0o100_644,
                data: b"xyz"
            }]
        );
        assert_eq!(a.file("ab"), Some(&b"xyz"[..]));
    }

    #[test]
    fn files_are_found_by_name_and_directories_are_not_files() {
        let bytes = sample();
        assert!(is_archive(&bytes));
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.file(CONFIG_FILE), Some(&b"smmu auto\n"[..]));
        assert_eq!(a.file(PLAN_FILE), Some(&b"vm a\n  ram 4M\n"[..]));
        assert_eq!(a.file("guests"), None);
        assert_eq!(a.file("missing"), None);
        let guests: Vec<_> = a.guests().collect();
        assert_eq!(
            guests,
            [
                ("driver", &[0x7f, b'E', b'L', b'F', 1, 2, 3][..]),
                ("rogue", &b""[..])
            ]
        );
        let names: Vec<_> = a.entries().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                CONFIG_FILE,
                "guests",
                PLAN_FILE,
                "guests/driver",
                "guests/rogue"
            ]
        );
    }

    #[test]
    fn padding_after_the_trailer_is_ignored_and_an_empty_archive_is_valid() {
        let mut bytes = sample();
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        assert_eq!(Archive::parse(&bytes).unwrap().entries().count(), 5);
        assert_eq!(Archive::parse(&archive(&[])).unwrap().entries().count(), 0);
    }

    #[test]
    fn a_config_text_is_not_an_archive() {
        assert!(!is_archive(b"smmu auto\n"));
        let e = Archive::parse(b"smmu auto\n").unwrap_err();
        assert_eq!(
            e,
            ArchiveError {
                offset: 0,
                kind: ArchiveErrorKind::Truncated {
                    what: "a header",
                    needed: 110,
                    available: 10
                }
            }
        );
    }

    #[test]
    fn each_broken_field_is_named_with_its_offset() {
        let good = sample();
        // c_filesize of the first entry: 6 + 6 * 8 = 54.
        let mut bad = good.clone();
        bad[54 + 3] = b'g';
        let e = Archive::parse(&bad).unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (
                54,
                ArchiveErrorKind::BadHex {
                    field: "c_filesize"
                }
            )
        );
        assert_eq!(
            e.to_string(),
            "initrd archive, byte 0x36: header field c_filesize is not 8 hexadecimal digits"
        );
        let mut crc = good.clone();
        crc[5] = b'2';
        assert_eq!(
            Archive::parse(&crc).unwrap_err().kind,
            ArchiveErrorKind::CrcFormat
        );
        let mut magic = good.clone();
        magic[0] = b'1';
        assert_eq!(
            Archive::parse(&magic).unwrap_err().kind,
            ArchiveErrorKind::BadMagic
        );
        // The name's NUL replaced: "smmuman.conf" is 12 bytes at 110.
        let mut nul = good.clone();
        nul[110 + 12] = b'x';
        assert_eq!(
            Archive::parse(&nul).unwrap_err(),
            ArchiveError {
                offset: 110,
                kind: ArchiveErrorKind::NameNotTerminated
            }
        );
        let mut zero = good.clone();
        zero[94..102].copy_from_slice(b"00000000");
        assert_eq!(
            Archive::parse(&zero).unwrap_err(),
            ArchiveError {
                offset: 94,
                kind: ArchiveErrorKind::BadNameSize { size: 0 }
            }
        );
        let mut huge = good;
        huge[54..62].copy_from_slice(b"ffffffff");
        assert_eq!(
            Archive::parse(&huge).unwrap_err(),
            ArchiveError {
                offset: 124,
                kind: ArchiveErrorKind::Truncated {
                    what: "the file's data with its padding",
                    needed: 0x1_0000_0000,
                    available: huge.len() - 124
                }
            }
        );
    }

    #[test]
    fn repeated_names_missing_trailers_and_too_many_entries_are_refused() {
        let twice = archive(&[("a", FILE, b"1"), ("b", FILE, b""), ("a", FILE, b"2")]);
        let e = Archive::parse(&twice).unwrap_err();
        assert_eq!(e.kind, ArchiveErrorKind::Duplicate);
        assert_eq!(&twice[e.offset..e.offset + 2], b"a\0");
        let mut no_trailer = archive(&[("a", FILE, b"1")]);
        no_trailer.truncate(no_trailer.len() - 124);
        assert_eq!(
            Archive::parse(&no_trailer).unwrap_err(),
            ArchiveError {
                offset: no_trailer.len(),
                kind: ArchiveErrorKind::NoTrailer
            }
        );
        let names: Vec<_> = (0..=MAX_ENTRIES).map(|i| format!("f{i}")).collect();
        let files: Vec<_> = names.iter().map(|n| (n.as_str(), FILE, &b""[..])).collect();
        assert_eq!(
            Archive::parse(&archive(&files)).unwrap_err().kind,
            ArchiveErrorKind::TooManyEntries
        );
        assert!(Archive::parse(&archive(&files[1..])).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let e = Archive::parse(&bytes[..len]).unwrap_err();
            assert!(e.offset <= len, "cut at {len}: {e}");
            assert!(matches!(
                e.kind,
                ArchiveErrorKind::Truncated { .. } | ArchiveErrorKind::NoTrailer
            ));
        }
    }

    /// xorshift64: reproducible random bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// What a parse of damaged bytes may do: fail with an offset inside the buffer, or succeed
    /// with entries that all lie inside it and whose names are unique.
    fn check(bytes: &[u8]) {
        match Archive::parse(bytes) {
            Err(e) => {
                assert!(e.offset <= bytes.len(), "{e}");
                let _ = e.to_string();
            }
            Ok(a) => {
                let entries: Vec<_> = a.entries().collect();
                for (i, e) in entries.iter().enumerate() {
                    assert!(entries[..i].iter().all(|o| o.name != e.name));
                    let start = e.data.as_ptr() as usize;
                    let base = bytes.as_ptr() as usize;
                    assert!(e.data.is_empty() || start - base + e.data.len() <= bytes.len());
                    assert_eq!(a.file(e.name).is_some(), e.is_file());
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let good = sample();
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let hex = b"0123456789abcdefABCDEFxg\0!";
        for _ in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] = match rng.below(3) {
                    0 => hex[rng.below(hex.len())],
                    1 => rng.next() as u8,
                    _ => bytes[i] ^ (1 << rng.below(8)),
                };
            }
            let cut = bytes.len() - rng.below(16);
            check(&bytes[..cut]);
        }
    }

    #[test]
    fn random_bytes_after_a_magic_never_panic() {
        let mut rng = Rng(0x0ddb_a11c_afe0_0042);
        for _ in 0..5_000 {
            let len = rng.below(400);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| b"0123456789abcdef"[rng.below(16)])
                .collect();
            if len >= 6 {
                bytes[..6].copy_from_slice(MAGIC);
            }
            check(&bytes);
        }
    }
}
