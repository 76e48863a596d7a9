//! The boot image: the daemon's ELF flattened into a raw arm64 Linux `Image`.
//!
//! QEMU's Linux loader only passes a device tree (in x0) to a raw Image it recognises by its
//! header, so the ELF is turned into the bytes of its loadable segments laid out from the
//! lowest load address, gaps zero-filled; .bss and the stacks (no file contents) are left out,
//! and the header's `image_size` tells the loader how far they reach.

use crate::{paths, Error, Result};
use object::elf::{FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the daemon is built for.
pub const TARGET: &str = "aarch64-unknown-none";
/// The daemon's package and the product image's binary name.
pub const PACKAGE: &str = "smmuman-daemon";
/// The test image's binary (`smmuman-daemon/scenarios/main.rs`, feature `scenarios`).
pub const SCENARIOS_BIN: &str = "smmuman-daemon-scenarios";
/// Offset of the magic `ARM\x64` in an arm64 Image header.
pub const MAGIC_OFFSET: usize = 0x38;
/// The magic itself.
pub const MAGIC: &[u8; 4] = b"ARM\x64";
/// Largest gap between loadable segments accepted (a larger one means a broken link layout).
pub const MAX_GAP: u64 = 16 << 20;

/// The ELF cannot become a boot image.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not a 64-bit ELF (or a malformed one).
    NotElf(String),
    /// No loadable segment has file contents.
    Empty,
    /// Two loadable segments overlap.
    Overlap {
        /// Load address of the second segment.
        paddr: u64,
    },
    /// Loadable segments are further apart than [`MAX_GAP`].
    Gap {
        /// Load address of the segment after the gap.
        paddr: u64,
    },
    /// The first bytes are not an arm64 Image header.
    NoHeader,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf(e) => write!(f, "not a 64-bit ELF: {e}"),
            Self::Empty => write!(f, "the ELF has no loadable contents"),
            Self::Overlap { paddr } => write!(f, "loadable segment at {paddr:#x} overlaps the previous one"),
            Self::Gap { paddr } => write!(f, "loadable segment at {paddr:#x} is far after the previous one"),
            Self::NoHeader => write!(
                f,
                "no arm64 Image header (magic ARM\\x64 at {MAGIC_OFFSET:#x}): is .text.head first in the linker script?"
            ),
        }
    }
}

/// One loadable segment: where it goes and its file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address.
    pub paddr: u64,
    /// Bytes from the file (may be shorter than the segment's size in memory).
    pub data: Vec<u8>,
}

/// Lays `segments` out from the lowest address; returns that address and the bytes.
///
/// # Errors
/// [`ImageError::Empty`], [`ImageError::Overlap`], [`ImageError::Gap`].
pub fn flatten(segments: &[Segment]) -> std::result::Result<(u64, Vec<u8>), ImageError> {
    let mut sorted: Vec<&Segment> = segments.iter().filter(|s| !s.data.is_empty()).collect();
    sorted.sort_by_key(|s| s.paddr);
    let base = sorted.first().ok_or(ImageError::Empty)?.paddr;
    let mut out = Vec::new();
    for s in sorted {
        let offset = s.paddr - base;
        let end = out.len() as u64;
        if offset < end {
            return Err(ImageError::Overlap { paddr: s.paddr });
        }
        if offset - end > MAX_GAP {
            return Err(ImageError::Gap { paddr: s.paddr });
        }
        out.resize(offset as usize, 0);
        out.extend_from_slice(&s.data);
    }
    Ok((base, out))
}

/// The loadable segments of a 64-bit ELF.
///
/// # Errors
/// [`ImageError::NotElf`].
pub fn segments(elf: &[u8]) -> std::result::Result<Vec<Segment>, ImageError> {
    let bad = |e: object::read::Error| ImageError::NotElf(e.to_string());
    let header = FileHeader64::<Endianness>::parse(elf).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let mut out = Vec::new();
    for ph in header.program_headers(endian, elf).map_err(bad)? {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let data = ph
            .data(endian, elf)
            .map_err(|()| ImageError::NotElf("segment outside the file".into()))?;
        out.push(Segment {
            paddr: ph.p_paddr(endian),
            data: data.to_vec(),
        });
    }
    Ok(out)
}

/// Whether `image` starts with an arm64 Image header.
pub fn has_header(image: &[u8]) -> bool {
    image.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) == Some(MAGIC.as_slice())
}

/// The raw Image for an ELF.
///
/// # Errors
/// Any [`ImageError`].
pub fn elf_to_image(elf: &[u8]) -> std::result::Result<Vec<u8>, ImageError> {
    let (_, image) = flatten(&segments(elf)?)?;
    if !has_header(&image) {
        return Err(ImageError::NoHeader);
    }
    Ok(image)
}

/// Builds the daemon (release, `--features bare`) into `target_dir` and writes the raw Image
/// next to it as `<target_dir>/smmuman-daemon.bin`. Cargo's output goes to our stderr.
///
/// # Errors
/// When cargo fails or the ELF cannot be converted.
pub fn build(target_dir: &Path) -> Result<PathBuf> {
    build_with(target_dir, Flavour::Product)
}

/// Which image: the product (runs its host plan) or the test build with the scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `--features bare`, binary `smmuman-daemon`: what a user boots;
    /// `target/smmuman-daemon.bin`.
    Product,
    /// `--features scenarios`, binary `smmuman-daemon-scenarios`: the same library plus the
    /// test scenarios (`scenario=<name>`); `target/smmuman-daemon-scenarios.bin`, what
    /// tests-qemu boots.
    Scenarios,
}

impl Flavour {
    fn features(self) -> &'static str {
        match self {
            Self::Product => "bare",
            Self::Scenarios => "scenarios",
        }
    }

    fn bin(self) -> &'static str {
        match self {
            Self::Product => PACKAGE,
            Self::Scenarios => SCENARIOS_BIN,
        }
    }

    fn file_name(self) -> String {
        format!("{}.bin", self.bin())
    }
}

/// Builds the `flavour` image under `target_dir` (both flavours share the dependencies; a
/// switch rebuilds the daemon crate only).
///
/// # Errors
/// When cargo fails or the ELF cannot become an Image.
pub fn build_with(target_dir: &Path, flavour: Flavour) -> Result<PathBuf> {
    let status = Command::new(paths::cargo())
        .current_dir(paths::workspace_root())
        .args([
            "build",
            "--package",
            PACKAGE,
            "--bin",
            flavour.bin(),
            "--features",
            flavour.features(),
            "--release",
        ])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| Error(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Error(format!(
            "building {PACKAGE} for {TARGET} failed ({status})"
        )));
    }
    let elf_path = target_dir.join(TARGET).join("release").join(flavour.bin());
    let elf = fs::read(&elf_path)
        .map_err(|e| Error(format!("cannot read {}: {e}", elf_path.display())))?;
    let image = elf_to_image(&elf).map_err(|e| Error(format!("{}: {e}", elf_path.display())))?;
    let out = target_dir.join(flavour.file_name());
    fs::write(&out, image).map_err(|e| Error(format!("cannot write {}: {e}", out.display())))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_image(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(MAGIC);
        v
    }

    #[test]
    fn segments_are_laid_out_from_the_lowest_address_with_gaps_zeroed() {
        let segs = [
            Segment {
                paddr: 0x4009_0000,
                data: vec![2; 4],
            },
            Segment {
                paddr: 0x4008_0000,
                data: header_image(0x40),
            },
            Segment {
                paddr: 0x400a_0000,
                data: vec![],
            },
        ];
        let (base, image) = flatten(&segs).unwrap();
        assert_eq!(base, 0x4008_0000);
        assert_eq!(image.len(), 0x1_0004);
        assert!(has_header(&image));
        assert!(image[0x40..0x1_0000].iter().all(|b| *b == 0));
        assert_eq!(&image[0x1_0000..], &[2; 4]);
    }

    #[test]
    fn overlapping_and_far_apart_segments_are_refused() {
        let overlap = [
            Segment {
                paddr: 0x1000,
                data: vec![1; 0x20],
            },
            Segment {
                paddr: 0x1010,
                data: vec![2; 0x20],
            },
        ];
        assert_eq!(
            flatten(&overlap),
            Err(ImageError::Overlap { paddr: 0x1010 })
        );
        let gap = [
            Segment {
                paddr: 0x1000,
                data: vec![1],
            },
            Segment {
                paddr: 0x1000 + MAX_GAP + 2,
                data: vec![2],
            },
        ];
        assert_eq!(
            flatten(&gap),
            Err(ImageError::Gap {
                paddr: 0x1000 + MAX_GAP + 2
            })
        );
        assert_eq!(flatten(&[]), Err(ImageError::Empty));
    }

    #[test]
    fn non_elf_input_is_refused() {
        assert!(matches!(
            elf_to_image(b"not an elf at all, clearly"),
            Err(ImageError::NotElf(_))
        ));
    }

    /// A minimal little-endian ELF64 for AArch64 with one PT_LOAD per segment.
    fn tiny_elf(segs: &[(u64, &[u8])]) -> Vec<u8> {
        let phoff = 64u64;
        let data_start = phoff + 56 * segs.len() as u64;
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        elf.extend(2u16.to_le_bytes()); // ET_EXEC
        elf.extend(183u16.to_le_bytes()); // EM_AARCH64
        elf.extend(1u32.to_le_bytes());
        elf.extend(segs.first().map_or(0, |s| s.0).to_le_bytes()); // e_entry
        elf.extend(phoff.to_le_bytes());
        elf.extend(0u64.to_le_bytes()); // e_shoff
        elf.extend(0u32.to_le_bytes());
        for v in [64u16, 56, segs.len() as u16, 64, 0, 0] {
            elf.extend(v.to_le_bytes());
        }
        let mut offset = data_start;
        for (paddr, data) in segs {
            elf.extend(1u32.to_le_bytes()); // PT_LOAD
            elf.extend(5u32.to_le_bytes());
            for v in [
                offset,
                *paddr,
                *paddr,
                data.len() as u64,
                data.len() as u64,
                0x1000,
            ] {
                elf.extend(v.to_le_bytes());
            }
            offset += data.len() as u64;
        }
        for (_, data) in segs {
            elf.extend_from_slice(data);
        }
        elf
    }

    #[test]
    fn an_elf_becomes_its_flattened_segments() {
        let head = header_image(0x40);
        let elf = tiny_elf(&[(0x4008_0000, &head), (0x4008_1000, &[7, 7])]);
        let image = elf_to_image(&elf).unwrap();
        assert_eq!(image.len(), 0x1002);
        assert_eq!(&image[..0x40], head.as_slice());
        assert_eq!(&image[0x1000..], &[7, 7]);
    }

    #[test]
    fn an_elf_without_the_image_header_is_refused() {
        let elf = tiny_elf(&[(0x4008_0000, &[0u8; 0x40])]);
        assert_eq!(elf_to_image(&elf), Err(ImageError::NoHeader));
    }
}
