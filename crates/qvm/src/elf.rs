//! The guest image loader: an ELF64 executable for AArch64 (System V gABI, "ELF Header" and
//! "Program Header" chapters; the AArch64 ELF ABI for the machine number).
//!
//! Everything is checked before a byte is copied: the header, every program header, and every
//! `PT_LOAD` segment against the guest's RAM (minus the device tree's room at its top, see
//! [`crate::abi::DTB_MAX`]). Only then are the segments copied and their `.bss` tails zeroed.

use crate::abi::DTB_MAX;
use crate::gpa::{Gpa, GpaRange};
use crate::guest_ram::{GuestRam, OutsideRam};
use core::fmt;

/// gABI e_ident\[EI_MAG0..=EI_MAG3\]: the file's magic number.
const ELFMAG: [u8; 4] = [0x7f, b'E', b'L', b'F'];
/// gABI e_ident\[EI_CLASS\] = ELFCLASS64: 64-bit objects.
const ELFCLASS64: u8 = 2;
/// gABI e_ident\[EI_DATA\] = ELFDATA2LSB: two's complement, little-endian.
const ELFDATA2LSB: u8 = 1;
/// gABI e_ident\[EI_VERSION\] and e_version: EV_CURRENT.
const EV_CURRENT: u8 = 1;
/// gABI e_type ET_EXEC: an executable file.
const ET_EXEC: u16 = 2;
/// e_machine EM_AARCH64 (AArch64 ELF ABI, "ELF Identification").
const EM_AARCH64: u16 = 183;
/// Size of an ELF64 file header (gABI "ELF Header", Elf64_Ehdr).
const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header (gABI "Program Header", Elf64_Phdr).
const PHDR_SIZE: usize = 56;
/// gABI p_type PT_LOAD: a loadable segment.
const PT_LOAD: u32 = 1;
/// gABI p_flags PF_X: the segment is executable.
const PF_X: u32 = 1;
/// Program headers the loader accepts at most (our guests have 2 or 3).
pub const MAX_PHDRS: u16 = 32;

/// Which ELF field an error is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElfError {
    /// The image is shorter than the 64-byte file header.
    TooShort {
        /// The image's length.
        len: usize,
    },
    /// A header field has a value the loader does not take.
    Header {
        /// The field (`e_ident[EI_CLASS]`, `e_machine`, ...).
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        expected: &'static str,
    },
    /// The program header table is not inside the image.
    PhdrsOutside {
        /// e_phoff.
        phoff: u64,
        /// e_phnum.
        phnum: u16,
        /// The image's length.
        len: usize,
    },
    /// A program header field is wrong.
    Segment {
        /// The program header's index.
        index: u16,
        /// The field (`p_filesz`, `p_offset`, `p_paddr`...).
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two loadable segments overlap in guest memory.
    Overlap {
        /// The later segment's index.
        index: u16,
        /// The earlier one's.
        other: u16,
    },
    /// No `PT_LOAD` segment.
    NothingToLoad,
    /// e_entry is not inside an executable loaded segment.
    Entry {
        /// e_entry.
        entry: u64,
    },
    /// The RAM refused a copy (the checks make this unreachable with a correct [`GuestRam`]).
    Ram(OutsideRam),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "ELF image of {len} bytes is shorter than its 64-byte header"
            ),
            Self::Header {
                field,
                value,
                expected,
            } => write!(f, "ELF header: {field} is {value:#x}, expected {expected}"),
            Self::PhdrsOutside { phoff, phnum, len } => write!(
                f,
                "ELF header: {phnum} program headers at offset {phoff:#x} do not fit in the \
                 {len}-byte image"
            ),
            Self::Segment {
                index,
                field,
                value,
                problem,
            } => write!(f, "program header {index}: {field} = {value:#x}: {problem}"),
            Self::Overlap { index, other } => write!(
                f,
                "program header {index}: its memory overlaps that of program header {other}"
            ),
            Self::NothingToLoad => f.write_str("ELF image has no PT_LOAD segment"),
            Self::Entry { entry } => write!(
                f,
                "ELF header: e_entry = {entry:#x} is not inside an executable PT_LOAD segment"
            ),
            Self::Ram(e) => write!(f, "loading the ELF image: {e}"),
        }
    }
}

/// What a successful load gives the VMM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Loaded {
    /// Where the guest starts (e_entry).
    pub entry: Gpa,
    /// `PT_LOAD` segments copied.
    pub segments: u16,
    /// One past the highest loaded byte (end of the highest p_memsz).
    pub end: Gpa,
}

/// One checked `PT_LOAD` segment.
#[derive(Clone, Copy)]
struct Segment {
    index: u16,
    offset: usize,
    filesz: usize,
    paddr: u64,
    memsz: u64,
    exec: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut v = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        v.copy_from_slice(s);
    }
    u16::from_le_bytes(v)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Where a guest image may load: RAM minus the device tree's room at its top.
pub fn loadable(ram: GpaRange) -> Option<GpaRange> {
    GpaRange::new(ram.start(), ram.len().checked_sub(DTB_MAX)?)
}

/// Checks `image` against `ram` and, when everything is right, copies its segments in.
///
/// # Errors
/// The first [`ElfError`] found; nothing is written unless every check passed.
pub fn load(image: &[u8], ram: &mut impl GuestRam) -> Result<Loaded, ElfError> {
    let (segments, count, entry) = check(image, ram.range())?;
    let mut end = 0u64;
    for s in segments.iter().take(count) {
        let file = image
            .get(s.offset..s.offset + s.filesz)
            .ok_or(ElfError::NothingToLoad)?;
        ram.write(Gpa(s.paddr), file).map_err(ElfError::Ram)?;
        // Both fit: checked in `check` (filesz <= memsz, paddr + memsz inside RAM).
        let tail = s.memsz - s.filesz as u64;
        if tail > 0 {
            ram.zero(Gpa(s.paddr + s.filesz as u64), tail)
                .map_err(ElfError::Ram)?;
        }
        end = end.max(s.paddr + s.memsz);
    }
    Ok(Loaded {
        entry: Gpa(entry),
        segments: count as u16,
        end: Gpa(end),
    })
}

type Checked = ([Segment; MAX_PHDRS as usize], usize, u64);

/// Every check of [`load`], without writing.
fn check(image: &[u8], ram: GpaRange) -> Result<Checked, ElfError> {
    if image.len() < EHDR_SIZE {
        return Err(ElfError::TooShort { len: image.len() });
    }
    let header = |field, value: u64, expected| ElfError::Header {
        field,
        value,
        expected,
    };
    // gABI "ELF Identification": e_ident[0..16].
    if image.get(..4) != Some(&ELFMAG[..]) {
        return Err(header(
            "e_ident[EI_MAG0..3]",
            u64::from(u32_at(image, 0)),
            "0x464c457f (\"\\x7fELF\")",
        ));
    }
    let ident = |i: usize| u64::from(image.get(i).copied().unwrap_or(0));
    if ident(4) != u64::from(ELFCLASS64) {
        return Err(header("e_ident[EI_CLASS]", ident(4), "2 (ELFCLASS64)"));
    }
    if ident(5) != u64::from(ELFDATA2LSB) {
        return Err(header("e_ident[EI_DATA]", ident(5), "1 (ELFDATA2LSB)"));
    }
    if ident(6) != u64::from(EV_CURRENT) {
        return Err(header("e_ident[EI_VERSION]", ident(6), "1 (EV_CURRENT)"));
    }
    // Elf64_Ehdr: e_type @16, e_machine @18, e_version @20, e_entry @24, e_phoff @32,
    // e_phentsize @54, e_phnum @56.
    let e_type = u16_at(image, 16);
    if e_type != ET_EXEC {
        return Err(header("e_type", e_type.into(), "2 (ET_EXEC)"));
    }
    let machine = u16_at(image, 18);
    if machine != EM_AARCH64 {
        return Err(header("e_machine", machine.into(), "183 (EM_AARCH64)"));
    }
    let version = u32_at(image, 20);
    if version != u32::from(EV_CURRENT) {
        return Err(header("e_version", version.into(), "1 (EV_CURRENT)"));
    }
    let entry = u64_at(image, 24);
    let phoff = u64_at(image, 32);
    let phentsize = u16_at(image, 54);
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(header("e_phentsize", phentsize.into(), "56 (Elf64_Phdr)"));
    }
    let phnum = u16_at(image, 56);
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(header("e_phnum", phnum.into(), "1 to 32"));
    }
    let table_len = usize::from(phnum) * PHDR_SIZE;
    let table = usize::try_from(phoff)
        .ok()
        .and_then(|start| image.get(start..start.checked_add(table_len)?))
        .ok_or(ElfError::PhdrsOutside {
            phoff,
            phnum,
            len: image.len(),
        })?;
    let room = loadable(ram).ok_or(ElfError::Segment {
        index: 0,
        field: "p_paddr",
        value: ram.start().get(),
        problem: "the guest's RAM is smaller than the device tree's room",
    })?;
    let mut segments = [Segment {
        index: 0,
        offset: 0,
        filesz: 0,
        paddr: 0,
        memsz: 0,
        exec: false,
    }; MAX_PHDRS as usize];
    let mut count = 0usize;
    for (i, ph) in table.chunks_exact(PHDR_SIZE).enumerate() {
        let index = i as u16;
        // Elf64_Phdr: p_type @0, p_flags @4, p_offset @8, p_vaddr @16, p_paddr @24,
        // p_filesz @32, p_memsz @40, p_align @48.
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let bad = |field, value, problem| ElfError::Segment {
            index,
            field,
            value,
            problem,
        };
        let flags = u32_at(ph, 4);
        let offset = u64_at(ph, 8);
        let paddr = u64_at(ph, 24);
        let filesz = u64_at(ph, 32);
        let memsz = u64_at(ph, 40);
        if filesz > memsz {
            return Err(bad("p_filesz", filesz, "larger than p_memsz"));
        }
        let file_ok = offset
            .checked_add(filesz)
            .is_some_and(|end| end <= image.len() as u64);
        if !file_ok {
            return Err(bad(
                "p_offset",
                offset,
                "p_offset + p_filesz is past the end of the image",
            ));
        }
        if memsz == 0 {
            continue;
        }
        if paddr.checked_add(memsz).is_none() {
            return Err(bad("p_memsz", memsz, "p_paddr + p_memsz overflows"));
        }
        if !room.contains(paddr, memsz) {
            return Err(bad(
                "p_paddr",
                paddr,
                "[p_paddr, p_paddr + p_memsz) is not inside the guest's RAM below the \
                 device tree's room",
            ));
        }
        let seg = Segment {
            index,
            // Both fit in usize: they lie inside `image`.
            offset: offset as usize,
            filesz: filesz as usize,
            paddr,
            memsz,
            exec: flags & PF_X != 0,
        };
        for other in segments.iter().take(count) {
            if paddr < other.paddr + other.memsz && other.paddr < paddr + memsz {
                return Err(ElfError::Overlap {
                    index,
                    other: other.index,
                });
            }
        }
        if let Some(slot) = segments.get_mut(count) {
            *slot = seg;
            count += 1;
        }
    }
    if count == 0 {
        return Err(ElfError::NothingToLoad);
    }
    let entry_ok = segments
        .iter()
        .take(count)
        .any(|s| s.exec && entry >= s.paddr && entry - s.paddr < s.memsz);
    if !entry_ok {
        return Err(ElfError::Entry { entry });
    }
    Ok((segments, count, entry))
}

#[cfg(test)]
pub(crate) mod tests;
