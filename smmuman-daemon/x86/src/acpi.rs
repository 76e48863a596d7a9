//! A small, checked ACPI walker: the RSDP, the RSDT or XSDT, and the tables the x86-64 image
//! reads (MCFG, HPET, DMAR). Section numbers are the ACPI Specification 6.5's.
//!
//! Why not the `acpi` crate: it handles RSDP/RSDT/MCFG without `alloc`, but it maps tables
//! through an `unsafe` handler trait (a second door to physical memory beside [`PhysRead`]),
//! has no DMAR parser (we need our own walker anyway), and what we need of it is ~150 lines
//! whose every bound is checked here and fuzzed by the tests below.
//!
//! Every table is checked before a field is read: its signature, a length between the header
//! size and [`MAX_TABLE`], and its checksum (all bytes sum to 0 mod 256, §5.2.6). Errors name
//! the table and the offset.

use crate::phys::{PhysRead, Unreachable};
use core::fmt;
use vtd::dmar::{Dmar, DmarError};

/// Size of the common table header (§5.2.6 Table 5.4): Signature (4 bytes), Length u32, Revision u8,
/// Checksum u8, OEMID (6 bytes), OEM Table ID (8 bytes), OEM Revision u32, Creator ID u32, Creator Revision
/// u32.
pub const HEADER_BYTES: u32 = 36;
/// Longest table accepted (QEMU's are a few hundred bytes; a larger length means corruption).
pub const MAX_TABLE: u32 = 64 * 1024;
/// RSDP signature (§5.2.5.3).
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Bytes the ACPI 1.0 RSDP checksum covers (§5.2.5.3: fields up to and including RsdtAddress).
pub const RSDP_V1_BYTES: usize = 20;
/// Bytes of the ACPI 2.0+ RSDP, which the extended checksum covers.
pub const RSDP_V2_BYTES: usize = 36;
/// Most tables listed by the RSDT/XSDT that are looked at.
pub const MAX_ENTRIES: u32 = 64;

/// A table signature, printable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// What is wrong with the firmware's tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AcpiError {
    /// hvm_start_info has no RSDP.
    NoRsdp,
    /// Reading a table ran outside reachable memory.
    Unreachable {
        /// Which table.
        table: Signature,
        /// The range.
        at: Unreachable,
    },
    /// The RSDP's signature is wrong.
    RsdpSignature {
        /// Where it was looked for.
        paddr: u64,
    },
    /// A checksum does not sum to zero.
    Checksum {
        /// Which table ("RSD " for the RSDP).
        table: Signature,
        /// Where the table is.
        paddr: u64,
    },
    /// A table at an address listed for it has another signature.
    Signature {
        /// What was expected.
        expected: Signature,
        /// What is there.
        found: Signature,
        /// Where.
        paddr: u64,
    },
    /// A length outside `[minimum, MAX_TABLE]`.
    Length {
        /// Which table.
        table: Signature,
        /// The length field.
        length: u32,
    },
    /// A table the image needs is not listed.
    Missing(Signature),
    /// MCFG lists no ECAM region for segment 0, or one with end bus < start bus.
    Mcfg {
        /// Byte offset of the offending entry in MCFG (0: none found).
        offset: u32,
    },
    /// HPET's base address is not in system memory space.
    Hpet {
        /// The address-space id found.
        space: u8,
    },
    /// The DMAR table is corrupt (`vtd::dmar`'s checks: VT-d chapter 8).
    Dmar(DmarError),
    /// The DMAR table is longer than [`MAX_DMAR`], the copy the image keeps.
    DmarTooLong {
        /// Its Length field.
        length: u32,
    },
}

impl From<DmarError> for AcpiError {
    fn from(e: DmarError) -> Self {
        Self::Dmar(e)
    }
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => write!(f, "hvm_start_info.rsdp_paddr is 0: no ACPI tables"),
            Self::Unreachable { table, at } => write!(f, "{table}: {at}"),
            Self::RsdpSignature { paddr } => {
                write!(f, "no \"RSD PTR \" signature at {paddr:#018x}")
            }
            Self::Checksum { table, paddr } => {
                write!(f, "{table} at {paddr:#018x}: checksum does not sum to 0")
            }
            Self::Signature {
                expected,
                found,
                paddr,
            } => write!(f, "expected {expected} at {paddr:#018x}, found {found}"),
            Self::Length { table, length } => {
                write!(f, "{table}: length {length:#x} out of range")
            }
            Self::Missing(s) => write!(f, "no {s} table in the RSDT/XSDT"),
            Self::Mcfg { offset } => {
                write!(
                    f,
                    "MCFG: no usable ECAM region for segment 0 (offset {offset:#x})"
                )
            }
            Self::Hpet { space } => {
                write!(f, "HPET: base address in address space {space}, not memory")
            }
            Self::Dmar(e) => write!(f, "DMAR: {e}"),
            Self::DmarTooLong { length } => write!(
                f,
                "DMAR: length {length:#x} is more than the {MAX_DMAR:#x} bytes the image keeps"
            ),
        }
    }
}

/// A checked table: where it is and how long.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Table {
    /// Its signature.
    pub signature: Signature,
    /// Physical address of its header.
    pub paddr: u64,
    /// Its length field (checked against `[36, MAX_TABLE]` and the checksum).
    pub length: u32,
    /// Its revision.
    pub revision: u8,
}

impl Table {
    /// Reads `N` little-endian bytes at `offset`, which must lie inside the table.
    fn field<const N: usize>(
        &self,
        mem: &impl PhysRead,
        offset: u32,
    ) -> Result<[u8; N], Unreachable> {
        let err = Unreachable {
            pa: self.paddr.saturating_add(u64::from(offset)),
            len: N as u64,
        };
        if u64::from(offset) + N as u64 > u64::from(self.length) {
            return Err(err);
        }
        let mut b = [0; N];
        mem.read(err.pa, &mut b)?;
        Ok(b)
    }

    /// The `u8` at `offset` inside the table.
    ///
    /// # Errors
    /// [`Unreachable`] when `offset` is past the table's length.
    pub fn u8(&self, mem: &impl PhysRead, offset: u32) -> Result<u8, Unreachable> {
        self.field::<1>(mem, offset).map(|b| b[0])
    }

    /// The `u16` at `offset` inside the table.
    ///
    /// # Errors
    /// As [`Table::u8`].
    pub fn u16(&self, mem: &impl PhysRead, offset: u32) -> Result<u16, Unreachable> {
        self.field(mem, offset).map(u16::from_le_bytes)
    }

    /// The `u32` at `offset` inside the table.
    ///
    /// # Errors
    /// As [`Table::u8`].
    pub fn u32(&self, mem: &impl PhysRead, offset: u32) -> Result<u32, Unreachable> {
        self.field(mem, offset).map(u32::from_le_bytes)
    }

    /// The `u64` at `offset` inside the table.
    ///
    /// # Errors
    /// As [`Table::u8`].
    pub fn u64(&self, mem: &impl PhysRead, offset: u32) -> Result<u64, Unreachable> {
        self.field(mem, offset).map(u64::from_le_bytes)
    }

    /// The error of a read at `offset` that failed.
    pub fn unreachable(&self, at: Unreachable) -> AcpiError {
        AcpiError::Unreachable {
            table: self.signature,
            at,
        }
    }
}

/// Sums `len` bytes at `pa` mod 256.
fn checksum(mem: &impl PhysRead, pa: u64, len: u64) -> Result<u8, Unreachable> {
    let mut sum = 0u8;
    let mut buf = [0u8; 64];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let at = pa.checked_add(done).ok_or(Unreachable { pa, len })?;
        mem.read(at, &mut buf[..n])?;
        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        done += n as u64;
    }
    Ok(sum)
}

/// Checks the table header at `paddr` (length bounds, checksum) and, when `expected` is given,
/// its signature.
///
/// # Errors
/// [`AcpiError::Unreachable`], [`AcpiError::Signature`], [`AcpiError::Length`],
/// [`AcpiError::Checksum`].
pub fn table_at(
    mem: &impl PhysRead,
    paddr: u64,
    expected: Option<Signature>,
) -> Result<Table, AcpiError> {
    let named = expected.unwrap_or(Signature(*b"????"));
    let unreachable = |at| AcpiError::Unreachable { table: named, at };
    let mut sig = [0u8; 4];
    mem.read(paddr, &mut sig).map_err(unreachable)?;
    let signature = Signature(sig);
    if let Some(e) = expected {
        if e != signature {
            return Err(AcpiError::Signature {
                expected: e,
                found: signature,
                paddr,
            });
        }
    }
    let length = mem.u32(paddr.saturating_add(4)).map_err(unreachable)?;
    if !(HEADER_BYTES..=MAX_TABLE).contains(&length) {
        return Err(AcpiError::Length {
            table: signature,
            length,
        });
    }
    let revision = mem.u8(paddr.saturating_add(8)).map_err(unreachable)?;
    if checksum(mem, paddr, length.into()).map_err(unreachable)? != 0 {
        return Err(AcpiError::Checksum {
            table: signature,
            paddr,
        });
    }
    Ok(Table {
        signature,
        paddr,
        length,
        revision,
    })
}

/// The root of the tables: the RSDT (32-bit entries) or, from an ACPI 2.0+ RSDP, the XSDT
/// (64-bit entries; §5.2.5.3 says to prefer it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Root {
    /// RSDP revision (0: ACPI 1.0).
    pub rsdp_revision: u8,
    /// The RSDT or XSDT.
    pub table: Table,
    /// 4 for the RSDT, 8 for the XSDT.
    pub entry_bytes: u8,
}

impl Root {
    /// Finds the RSDP at `rsdp` and checks it and the table it points at.
    ///
    /// # Errors
    /// [`AcpiError::NoRsdp`], a signature, checksum or length error.
    pub fn new(mem: &impl PhysRead, rsdp: u64) -> Result<Self, AcpiError> {
        if rsdp == 0 {
            return Err(AcpiError::NoRsdp);
        }
        let rsd = Signature(*b"RSD ");
        let unreachable = |at| AcpiError::Unreachable { table: rsd, at };
        let mut head = [0u8; RSDP_V2_BYTES];
        mem.read(rsdp, &mut head[..RSDP_V1_BYTES])
            .map_err(unreachable)?;
        if &head[..8] != RSDP_SIGNATURE {
            return Err(AcpiError::RsdpSignature { paddr: rsdp });
        }
        // §5.2.5.3: Checksum covers the first 20 bytes (the ACPI 1.0 structure).
        if head[..RSDP_V1_BYTES]
            .iter()
            .fold(0u8, |s, b| s.wrapping_add(*b))
            != 0
        {
            return Err(AcpiError::Checksum {
                table: rsd,
                paddr: rsdp,
            });
        }
        let revision = head[15];
        if revision >= 2 {
            // Extended Checksum covers the whole 36-byte structure; XsdtAddress at 24.
            mem.read(rsdp, &mut head).map_err(unreachable)?;
            if head.iter().fold(0u8, |s, b| s.wrapping_add(*b)) != 0 {
                return Err(AcpiError::Checksum {
                    table: rsd,
                    paddr: rsdp,
                });
            }
            let mut x = [0u8; 8];
            x.copy_from_slice(&head[24..32]);
            let xsdt = u64::from_le_bytes(x);
            if xsdt != 0 {
                let table = table_at(mem, xsdt, Some(Signature(*b"XSDT")))?;
                return Ok(Self {
                    rsdp_revision: revision,
                    table,
                    entry_bytes: 8,
                });
            }
        }
        let mut r = [0u8; 4];
        r.copy_from_slice(&head[16..20]);
        let rsdt = u64::from(u32::from_le_bytes(r));
        let table = table_at(mem, rsdt, Some(Signature(*b"RSDT")))?;
        Ok(Self {
            rsdp_revision: revision,
            table,
            entry_bytes: 4,
        })
    }

    /// How many tables the root lists (at most [`MAX_ENTRIES`]).
    pub fn entries(&self) -> u32 {
        ((self.table.length - HEADER_BYTES) / u32::from(self.entry_bytes)).min(MAX_ENTRIES)
    }

    /// The address of entry `i`.
    ///
    /// # Errors
    /// [`AcpiError::Unreachable`].
    pub fn entry(&self, mem: &impl PhysRead, i: u32) -> Result<u64, AcpiError> {
        let off = HEADER_BYTES + i * u32::from(self.entry_bytes);
        let r = if self.entry_bytes == 8 {
            self.table.u64(mem, off)
        } else {
            self.table.u32(mem, off).map(u64::from)
        };
        r.map_err(|at| self.table.unreachable(at))
    }

    /// The signature of each listed table, in order (unreadable entries skipped).
    pub fn signatures(&self, mem: &impl PhysRead) -> heapless::Vec<Signature, 64> {
        let mut out = heapless::Vec::new();
        for i in 0..self.entries() {
            let mut sig = [0u8; 4];
            if let Ok(pa) = self.entry(mem, i) {
                if mem.read(pa, &mut sig).is_ok() {
                    let _ = out.push(Signature(sig));
                }
            }
        }
        out
    }

    /// The first listed table with signature `sig`, checked.
    ///
    /// # Errors
    /// [`AcpiError::Missing`], or the table's own error.
    pub fn find(&self, mem: &impl PhysRead, sig: Signature) -> Result<Table, AcpiError> {
        for i in 0..self.entries() {
            let pa = self.entry(mem, i)?;
            let mut found = [0u8; 4];
            if mem.read(pa, &mut found).is_ok() && found == sig.0 {
                return table_at(mem, pa, Some(sig));
            }
        }
        Err(AcpiError::Missing(sig))
    }
}

/// One ECAM region (PCI Firmware Specification 3.2 §4.1.2, MCFG "Configuration Space Base
/// Address Allocation Structure": base u64, segment u16, start bus u8, end bus u8, reserved
/// u32; 16 bytes each, from offset 44 after 8 reserved bytes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ecam {
    /// Physical address of bus `start_bus`'s configuration space.
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

impl Ecam {
    /// Bytes of configuration space the region spans (1 MiB per bus).
    pub fn size(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) << 20
    }
}

/// The segment-0 ECAM region from MCFG.
///
/// # Errors
/// [`AcpiError::Mcfg`] when there is none or it is malformed.
pub fn mcfg_segment0(mem: &impl PhysRead, mcfg: &Table) -> Result<Ecam, AcpiError> {
    const FIRST: u32 = HEADER_BYTES + 8;
    const ENTRY: u32 = 16;
    let mut off = FIRST;
    while off + ENTRY <= mcfg.length {
        let r = |e: Unreachable| mcfg.unreachable(e);
        let e = Ecam {
            base: mcfg.u64(mem, off).map_err(r)?,
            segment: mcfg.u16(mem, off + 8).map_err(r)?,
            start_bus: mcfg.u8(mem, off + 10).map_err(r)?,
            end_bus: mcfg.u8(mem, off + 11).map_err(r)?,
        };
        if e.segment == 0 {
            if e.end_bus < e.start_bus || e.base == 0 {
                return Err(AcpiError::Mcfg { offset: off });
            }
            return Ok(e);
        }
        off += ENTRY;
    }
    Err(AcpiError::Mcfg { offset: 0 })
}

/// The HPET's register base (IA-PC HPET Specification 1.0a §3.2.4: Event Timer Block ID u32 at
/// 36, then the base address as a Generic Address Structure (ACPI §5.2.3.2: space id u8,
/// bit width u8, bit offset u8, access size u8, address u64) at 40).
///
/// # Errors
/// [`AcpiError::Unreachable`], [`AcpiError::Hpet`] when not in system memory space (id 0).
pub fn hpet_base(mem: &impl PhysRead, hpet: &Table) -> Result<u64, AcpiError> {
    let r = |e: Unreachable| hpet.unreachable(e);
    let space = hpet.u8(mem, 40).map_err(r)?;
    if space != 0 {
        return Err(AcpiError::Hpet { space });
    }
    hpet.u64(mem, 44).map_err(r)
}

/// Longest DMAR table the image keeps a copy of (QEMU's is 120 bytes with six scopes; a
/// server's with a few units, RMRRs and ATSRs stays well under this).
pub const MAX_DMAR: usize = 4096;

/// The DMAR table, copied out of firmware memory and checked by [`Dmar::parse`] (VT-d chapter
/// 8): a copy, so that the checked bytes are the bytes read later (firmware memory could change
/// under a borrowed view, and a copy needs no `unsafe` slice over physical memory).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DmarCopy {
    /// Where the table is in physical memory.
    pub paddr: u64,
    bytes: heapless::Vec<u8, MAX_DMAR>,
}

impl DmarCopy {
    /// Copies the table `t` and checks it.
    ///
    /// # Errors
    /// [`AcpiError::DmarTooLong`], [`AcpiError::Unreachable`], [`AcpiError::Dmar`].
    pub fn read(mem: &impl PhysRead, t: &Table) -> Result<Self, AcpiError> {
        let len = usize::try_from(t.length).unwrap_or(usize::MAX);
        if len > MAX_DMAR {
            return Err(AcpiError::DmarTooLong { length: t.length });
        }
        let mut bytes = heapless::Vec::new();
        bytes
            .resize(len, 0)
            .map_err(|_| AcpiError::DmarTooLong { length: t.length })?;
        mem.read(t.paddr, &mut bytes)
            .map_err(|e| t.unreachable(e))?;
        Dmar::parse(&bytes)?;
        Ok(Self {
            paddr: t.paddr,
            bytes,
        })
    }

    /// Copies and checks a table held in memory (tests, fixtures).
    ///
    /// # Errors
    /// [`AcpiError::DmarTooLong`], [`AcpiError::Dmar`].
    pub fn from_bytes(table: &[u8]) -> Result<Self, AcpiError> {
        let bytes = heapless::Vec::from_slice(table).map_err(|_| AcpiError::DmarTooLong {
            length: u32::try_from(table.len()).unwrap_or(u32::MAX),
        })?;
        Dmar::parse(&bytes)?;
        Ok(Self { paddr: 0, bytes })
    }

    /// The checked table.
    ///
    /// # Errors
    /// None in practice (the same bytes parsed when the copy was made); typed all the same.
    pub fn dmar(&self) -> Result<Dmar<'_>, DmarError> {
        Dmar::parse(&self.bytes)
    }
}

/// What the x86-64 image needs from ACPI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Platform {
    /// The root table.
    pub root: Root,
    /// Segment 0's ECAM region.
    pub ecam: Ecam,
    /// The HPET's registers.
    pub hpet: u64,
    /// The DMA-remapping reporting table: units, device scopes, reserved regions.
    pub dmar: DmarCopy,
}

/// Walks RSDP → RSDT/XSDT → MCFG, HPET, DMAR.
///
/// # Errors
/// The first [`AcpiError`] met.
pub fn discover(mem: &impl PhysRead, rsdp: u64) -> Result<Platform, AcpiError> {
    let root = Root::new(mem, rsdp)?;
    let mcfg = root.find(mem, Signature(*b"MCFG"))?;
    let ecam = mcfg_segment0(mem, &mcfg)?;
    let hpet_table = root.find(mem, Signature(*b"HPET"))?;
    let hpet = hpet_base(mem, &hpet_table)?;
    let dmar_table = root.find(mem, Signature(*b"DMAR"))?;
    let dmar = DmarCopy::read(mem, &dmar_table)?;
    Ok(Platform {
        root,
        ecam,
        hpet,
        dmar,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::phys::Image;

    /// A table with a valid header and checksum around `body`.
    pub fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> std::vec::Vec<u8> {
        let mut t = std::vec::Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&(HEADER_BYTES + body.len() as u32).to_le_bytes());
        t.push(revision);
        t.push(0);
        t.extend_from_slice(b"BOCHS BXPC    \0\0\0\0\0\0\0\0\0\0");
        t.truncate(36);
        t.resize(36, 0);
        t.extend_from_slice(body);
        fix(&mut t, 9);
        t
    }

    /// Sets byte `at` so that `t` sums to 0.
    pub fn fix(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(s);
    }

    /// The DMAR body (after the ACPI header) QEMU 10 builds for q35 + intel-iommu with two
    /// `edu`s (00:02.0, 00:03.0): Host Address Width 47 (48 bits), flags INTR_REMAP, one DRHD
    /// (VT-d §8.3) at 0xfed90000, flags 0, scopes (§8.3.1, 8 bytes each: type, length, flags,
    /// reserved, enumeration id, start bus, device, function): the IOAPIC and the root-bus
    /// endpoints.
    pub fn q35_dmar_body() -> std::vec::Vec<u8> {
        let scope =
            |kind: u8, id: u8, bus: u8, dev: u8, func: u8| [kind, 8, 0, 0, id, bus, dev, func];
        let mut b = std::vec![47u8, 0x1];
        b.resize(12, 0);
        let mut scopes = std::vec::Vec::new();
        scopes.extend_from_slice(&scope(3, 0, 0xff, 0, 0));
        for (dev, func) in [
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 0),
            (0x1f, 0),
            (0x1f, 2),
            (0x1f, 3),
        ] {
            scopes.extend_from_slice(&scope(1, 0, 0, dev, func));
        }
        let len = 16 + scopes.len() as u16;
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
        b.extend_from_slice(&scopes);
        b
    }

    /// QEMU q35's layout: RSDP (rev 0) at 0xf5250 → RSDT listing MCFG, HPET, DMAR.
    pub fn q35() -> Image {
        let mut m = Image::new(0xf0000, 0x10000);
        let mut rsdp = std::vec::Vec::new();
        rsdp.extend_from_slice(RSDP_SIGNATURE);
        rsdp.push(0);
        rsdp.extend_from_slice(b"BOCHS ");
        rsdp.push(0);
        rsdp.extend_from_slice(&0xf6000u32.to_le_bytes());
        fix(&mut rsdp, 8);
        m.put(0xf5250, &rsdp);
        let mut list = std::vec::Vec::new();
        for pa in [0xf6100u32, 0xf6200, 0xf6300] {
            list.extend_from_slice(&pa.to_le_bytes());
        }
        m.put(0xf6000, &table(b"RSDT", 1, &list));
        let mut mcfg = std::vec![0u8; 8];
        mcfg.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        mcfg.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
        m.put(0xf6100, &table(b"MCFG", 1, &mcfg));
        let mut hpet = 0x8086_a201u32.to_le_bytes().to_vec();
        hpet.extend_from_slice(&[0, 0, 0, 0]);
        hpet.extend_from_slice(&0xfed0_0000u64.to_le_bytes());
        hpet.extend_from_slice(&[0, 0, 0, 0]);
        m.put(0xf6200, &table(b"HPET", 1, &hpet));
        m.put(0xf6300, &table(b"DMAR", 1, &q35_dmar_body()));
        m
    }

    #[test]
    fn q35_tables_give_ecam_hpet_and_the_remapping_unit() {
        let m = q35();
        let p = discover(&m, 0xf5250).unwrap();
        assert_eq!(p.root.entry_bytes, 4);
        assert_eq!(
            p.ecam,
            Ecam {
                base: 0xb000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xff
            }
        );
        assert_eq!(p.ecam.size(), 256 << 20);
        assert_eq!(p.hpet, 0xfed0_0000);
        let dmar = p.dmar.dmar().unwrap();
        let (_, unit) = dmar.units().next().unwrap();
        assert_eq!(unit.register_base, iommu_core::PhysAddr(0xfed9_0000));
        assert!(!unit.include_pci_all);
        assert_eq!(unit.scopes.iter().count(), 8);
        assert_eq!(p.root.signatures(&m).len(), 3);
    }

    #[test]
    fn a_bad_checksum_names_the_table() {
        let mut m = q35();
        m.bytes[(0xf6100 + 40 - 0xf0000) as usize] ^= 1;
        assert_eq!(
            discover(&m, 0xf5250),
            Err(AcpiError::Checksum {
                table: Signature(*b"MCFG"),
                paddr: 0xf6100
            })
        );
        let mut r = q35();
        r.bytes[(0xf5250 + 16 - 0xf0000) as usize] ^= 1;
        assert!(matches!(
            discover(&r, 0xf5250),
            Err(AcpiError::Checksum { .. })
        ));
        assert_eq!(discover(&q35(), 0), Err(AcpiError::NoRsdp));
        assert_eq!(
            discover(&q35(), 0xf5200),
            Err(AcpiError::RsdpSignature { paddr: 0xf5200 })
        );
    }

    #[test]
    fn a_length_past_memory_or_absurd_is_an_error_not_a_panic() {
        let mut m = q35();
        m.put(0xf6104, &0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            discover(&m, 0xf5250),
            Err(AcpiError::Length { .. })
        ));
        let mut e = q35();
        e.put(0xf6104, &0xf000u32.to_le_bytes());
        assert!(matches!(
            discover(&e, 0xf5250),
            Err(AcpiError::Unreachable { .. })
        ));
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        // Flip each byte of the RSDP and every table in turn: never a panic, and the result is
        // either the same platform (a byte nobody reads, checksum repaired below) or an error.
        let good = discover(&q35(), 0xf5250).unwrap();
        for at in 0xf5250..0xf5250 + 20u64 {
            let mut m = q35();
            m.bytes[(at - 0xf0000) as usize] ^= 0x5a;
            assert!(discover(&m, 0xf5250).is_err(), "rsdp byte {at:#x}");
        }
        for (base, len) in [
            (0xf6000u64, 48usize),
            (0xf6100, 60),
            (0xf6200, 56),
            (0xf6300, 128),
        ] {
            for i in 0..len {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut m = q35();
                    let at = (base - 0xf0000) as usize;
                    m.bytes[at + i] ^= flip;
                    // Also try with the checksum repaired, so the parsers behind it run.
                    let _ = discover(&m, 0xf5250);
                    let tlen = u32::from_le_bytes(m.bytes[at + 4..at + 8].try_into().unwrap());
                    if (36..=0x400).contains(&tlen) {
                        fix(&mut m.bytes[at..at + tlen as usize], 9);
                    }
                    if let Ok(p) = discover(&m, 0xf5250) {
                        let _ = p == good;
                    }
                }
            }
        }
    }
}
