//! The Xen PVH boot ABI's `hvm_start_info` (Xen `public/arch-x86/hvm/start_info.h`; QEMU's PVH
//! loader builds it): where the boot loader left the command line, the ACPI RSDP and the
//! memory map.
//!
//! Layout (all little-endian, offsets in bytes), as the header defines it:
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `magic` u32 | 0x336ec578 ("xEn3" with the top bit of each byte cleared) |
//! | 4 | `version` u32 | 0 or 1; version 1 adds the memory map fields |
//! | 8 | `flags` u32 | |
//! | 12 | `nr_modules` u32 | |
//! | 16 | `modlist_paddr` u64 | |
//! | 24 | `cmdline_paddr` u64 | NUL-terminated ASCII, 0 when none |
//! | 32 | `rsdp_paddr` u64 | the ACPI RSDP, 0 when none |
//! | 40 | `memmap_paddr` u64 | version ≥ 1: array of `hvm_memmap_table_entry` |
//! | 48 | `memmap_entries` u32 | version ≥ 1 |
//!
//! A module-list entry (`hvm_modlist_entry`) is 32 bytes: `paddr` u64, `size` u64,
//! `cmdline_paddr` u64, `reserved` u64. QEMU's PVH option ROM (`pc-bios/optionrom/pvh_main.c`)
//! passes the `-initrd` file as the one module (`nr_modules` = 1), with no command line.
//!
//! A memory-map entry is 24 bytes: `addr` u64, `size` u64, `type` u32 (E820 types: 1 RAM,
//! 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 unusable), `reserved` u32.

use crate::phys::{PhysRead, Unreachable};
use core::fmt;
use heapless::{String, Vec};

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;
/// Size of one memory-map entry.
pub const MEMMAP_ENTRY_BYTES: u64 = 24;
/// Memory-map type of usable RAM (E820 type 1).
pub const MEMMAP_RAM: u32 = 1;
/// Memory-map type of ACPI reclaimable memory (E820 type 3).
pub const MEMMAP_ACPI: u32 = 3;
/// Most memory-map entries kept.
pub const MAX_MEMMAP: usize = 32;
/// Longest command line kept (bytes).
pub const MAX_CMDLINE: usize = 256;
/// Size of one module-list entry (`hvm_modlist_entry`).
pub const MODLIST_ENTRY_BYTES: u64 = 32;
/// Most modules kept.
pub const MAX_MODULES: usize = 4;

/// One boot module (`hvm_modlist_entry`): with QEMU, the `-initrd` file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Module {
    /// Where the boot loader put it.
    pub paddr: u64,
    /// Its size in bytes.
    pub size: u64,
}

impl Module {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.paddr.saturating_add(self.size)
    }
}

/// One memory-map entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemRegion {
    /// First byte.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// E820 type.
    pub kind: u32,
}

impl MemRegion {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// What `hvm_start_info` says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StartInfo {
    /// Where the structure is.
    pub paddr: u64,
    /// `version`.
    pub version: u32,
    /// The command line (empty when none).
    pub cmdline: String<MAX_CMDLINE>,
    /// `rsdp_paddr` (0: none).
    pub rsdp: u64,
    /// The memory map (version 1).
    pub memmap: Vec<MemRegion, MAX_MEMMAP>,
    /// The boot modules (`nr_modules` entries of `modlist_paddr`), in list order.
    pub modules: Vec<Module, MAX_MODULES>,
}

impl StartInfo {
    /// Bytes of RAM (type 1) in the memory map.
    pub fn ram_bytes(&self) -> u64 {
        self.memmap
            .iter()
            .filter(|r| r.kind == MEMMAP_RAM)
            .fold(0u64, |a, r| a.saturating_add(r.size))
    }
}

/// `hvm_start_info` cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StartInfoError {
    /// The boot loader passed no structure (EBX = 0).
    Missing,
    /// Part of it is not reachable.
    Unreachable(Unreachable),
    /// `magic` is wrong: not booted through PVH.
    BadMagic(u32),
    /// A `version` this parser does not know.
    Version(u32),
    /// The command line is not NUL-terminated within [`MAX_CMDLINE`] bytes, or not ASCII.
    Cmdline {
        /// Where it is.
        paddr: u64,
    },
    /// More than [`MAX_MEMMAP`] memory-map entries.
    MemmapTooLong(u32),
    /// More than [`MAX_MODULES`] modules.
    TooManyModules(u32),
}

impl From<Unreachable> for StartInfoError {
    fn from(e: Unreachable) -> Self {
        Self::Unreachable(e)
    }
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no hvm_start_info (EBX = 0): boot with PVH"),
            Self::Unreachable(e) => write!(f, "hvm_start_info: {e}"),
            Self::BadMagic(m) => write!(
                f,
                "hvm_start_info magic {m:#010x}, expected {MAGIC:#010x}: not a PVH boot"
            ),
            Self::Version(v) => write!(f, "hvm_start_info version {v} unknown (0 or 1)"),
            Self::Cmdline { paddr } => write!(
                f,
                "command line at {paddr:#018x} is not ASCII ending in NUL within {MAX_CMDLINE} bytes"
            ),
            Self::MemmapTooLong(n) => {
                write!(f, "memory map has {n} entries, at most {MAX_MEMMAP} kept")
            }
            Self::TooManyModules(n) => {
                write!(f, "{n} boot modules, at most {MAX_MODULES} kept")
            }
        }
    }
}

/// Reads and checks the `hvm_start_info` at `paddr`.
///
/// # Errors
/// A [`StartInfoError`] for a missing or corrupt structure.
pub fn parse(mem: &impl PhysRead, paddr: u64) -> Result<StartInfo, StartInfoError> {
    if paddr == 0 {
        return Err(StartInfoError::Missing);
    }
    let at = |off: u64| paddr.saturating_add(off);
    let magic = mem.u32(paddr)?;
    if magic != MAGIC {
        return Err(StartInfoError::BadMagic(magic));
    }
    let version = mem.u32(at(4))?;
    if version > 1 {
        return Err(StartInfoError::Version(version));
    }
    let cmdline_paddr = mem.u64(at(24))?;
    let rsdp = mem.u64(at(32))?;
    let mut cmdline = String::new();
    if cmdline_paddr != 0 {
        let mut terminated = false;
        for i in 0..=MAX_CMDLINE as u64 {
            let b = mem.u8(cmdline_paddr
                .checked_add(i)
                .ok_or(StartInfoError::Cmdline {
                    paddr: cmdline_paddr,
                })?)?;
            if b == 0 {
                terminated = true;
                break;
            }
            if !b.is_ascii() || cmdline.push(char::from(b)).is_err() {
                break;
            }
        }
        if !terminated {
            return Err(StartInfoError::Cmdline {
                paddr: cmdline_paddr,
            });
        }
    }
    let mut memmap = Vec::new();
    if version >= 1 {
        let table = mem.u64(at(40))?;
        let entries = mem.u32(at(48))?;
        if entries as usize > MAX_MEMMAP {
            return Err(StartInfoError::MemmapTooLong(entries));
        }
        for i in 0..u64::from(entries) {
            let e = table.saturating_add(i * MEMMAP_ENTRY_BYTES);
            let region = MemRegion {
                addr: mem.u64(e)?,
                size: mem.u64(e.saturating_add(8))?,
                kind: mem.u32(e.saturating_add(16))?,
            };
            // Capacity checked above.
            let _ = memmap.push(region);
        }
    }
    let nr_modules = mem.u32(at(12))?;
    if nr_modules as usize > MAX_MODULES {
        return Err(StartInfoError::TooManyModules(nr_modules));
    }
    let mut modules = Vec::new();
    if nr_modules != 0 {
        let list = mem.u64(at(16))?;
        for i in 0..u64::from(nr_modules) {
            let e = list.saturating_add(i * MODLIST_ENTRY_BYTES);
            let module = Module {
                paddr: mem.u64(e)?,
                size: mem.u64(e.saturating_add(8))?,
            };
            // Capacity checked above.
            let _ = modules.push(module);
        }
    }
    Ok(StartInfo {
        paddr,
        version,
        cmdline,
        rsdp,
        memmap,
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phys::Image;

    fn sample() -> Image {
        let mut m = Image::new(0x1000, 0x1000);
        m.put(0x1000, &MAGIC.to_le_bytes());
        m.put(0x1004, &1u32.to_le_bytes());
        m.put(0x1018, &0x1100u64.to_le_bytes());
        m.put(0x1020, &0xf5250u64.to_le_bytes());
        m.put(0x1028, &0x1200u64.to_le_bytes());
        m.put(0x1030, &2u32.to_le_bytes());
        m.put(0x1100, b"scenario=deny\0");
        for (i, (addr, size, kind)) in [(0u64, 0x9fc00u64, 1u32), (0x10_0000, 0x7f0_0000, 1)]
            .into_iter()
            .enumerate()
        {
            let e = 0x1200 + 24 * i as u64;
            m.put(e, &addr.to_le_bytes());
            m.put(e + 8, &size.to_le_bytes());
            m.put(e + 16, &kind.to_le_bytes());
        }
        m
    }

    #[test]
    fn a_pvh_start_info_gives_cmdline_rsdp_and_memory() {
        let s = parse(&sample(), 0x1000).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(s.cmdline.as_str(), "scenario=deny");
        assert_eq!(s.rsdp, 0xf5250);
        assert_eq!(s.memmap.len(), 2);
        assert_eq!(s.ram_bytes(), 0x9fc00 + 0x7f0_0000);
        assert!(s.modules.is_empty());
    }

    #[test]
    fn an_initrd_module_is_found_and_too_many_modules_are_refused() {
        let mut m = sample();
        m.put(0x100c, &1u32.to_le_bytes());
        m.put(0x1010, &0x1300u64.to_le_bytes());
        m.put(0x1300, &0x7fe_0000u64.to_le_bytes());
        m.put(0x1308, &0x123u64.to_le_bytes());
        let s = parse(&m, 0x1000).unwrap();
        assert_eq!(
            s.modules.as_slice(),
            &[Module {
                paddr: 0x7fe_0000,
                size: 0x123
            }]
        );
        assert_eq!(s.modules[0].end(), 0x7fe_0123);
        m.put(0x100c, &5u32.to_le_bytes());
        assert_eq!(parse(&m, 0x1000), Err(StartInfoError::TooManyModules(5)));
        // The list itself out of reach: an error, not a panic.
        m.put(0x100c, &1u32.to_le_bytes());
        m.put(0x1010, &0x10_0000u64.to_le_bytes());
        assert!(matches!(
            parse(&m, 0x1000),
            Err(StartInfoError::Unreachable(_))
        ));
    }

    #[test]
    fn corrupt_start_info_is_refused_with_its_reason() {
        let m = sample();
        assert_eq!(parse(&m, 0), Err(StartInfoError::Missing));
        assert!(matches!(
            parse(&m, 0x1004),
            Err(StartInfoError::BadMagic(_))
        ));
        assert!(matches!(
            parse(&m, 0x10_0000),
            Err(StartInfoError::Unreachable(_))
        ));
        let mut v = sample();
        v.put(0x1004, &7u32.to_le_bytes());
        assert_eq!(parse(&v, 0x1000), Err(StartInfoError::Version(7)));
        let mut c = sample();
        c.put(0x1100, &[b'a'; 0x100]);
        c.put(0x1200, &[b'a'; 8]);
        assert!(matches!(
            parse(&c, 0x1000),
            Err(StartInfoError::Cmdline { .. })
        ));
        let mut n = sample();
        n.put(0x1030, &1000u32.to_le_bytes());
        assert_eq!(parse(&n, 0x1000), Err(StartInfoError::MemmapTooLong(1000)));
    }
}
