//! A DMAR table writer for the tests (`#[path]`-included by `dmar.rs` and `dmar_fuzz.rs`): it
//! lays structures out as VT-d chapter 8 does, computes every Length and the checksum, and
//! remembers where each structure landed so a fixture can corrupt one field.
//!
//! Built alone it is an empty test target.

// Each including test uses part of it; built alone it is a crate root whose items are
// test scaffolding, not API.
#![allow(dead_code, missing_docs)]

/// Offsets (VT-d §8.1) of the header fields the fixtures patch.
pub const LENGTH_AT: usize = 4;
pub const CHECKSUM_AT: usize = 9;
pub const HAW_AT: usize = 36;
pub const FIRST_STRUCTURE_AT: usize = 48;

/// Device scope types (VT-d §8.3.1).
pub const ENDPOINT: u8 = 1;
pub const SUB_HIERARCHY: u8 = 2;
pub const IOAPIC: u8 = 3;
pub const HPET: u8 = 4;
pub const NAMESPACE: u8 = 5;

/// One device scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub ty: u8,
    pub flags: u8,
    pub enumeration_id: u8,
    pub start_bus: u8,
    pub path: Vec<(u8, u8)>,
}

impl Scope {
    pub fn endpoint(bus: u8, dev: u8, func: u8) -> Self {
        Self::new(ENDPOINT, 0, bus, &[(dev, func)])
    }

    pub fn bridge(bus: u8, path: &[(u8, u8)]) -> Self {
        Self::new(SUB_HIERARCHY, 0, bus, path)
    }

    pub fn new(ty: u8, enumeration_id: u8, start_bus: u8, path: &[(u8, u8)]) -> Self {
        Self {
            ty,
            flags: 0,
            enumeration_id,
            start_bus,
            path: path.to_vec(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![
            self.ty,
            (6 + 2 * self.path.len()) as u8,
            self.flags,
            0,
            self.enumeration_id,
            self.start_bus,
        ];
        for &(d, f) in &self.path {
            b.extend([d, f]);
        }
        b
    }
}

/// One remapping structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Structure {
    Drhd {
        flags: u8,
        size: u8,
        segment: u16,
        base: u64,
        scopes: Vec<Scope>,
    },
    Rmrr {
        segment: u16,
        base: u64,
        limit: u64,
        scopes: Vec<Scope>,
    },
    Atsr {
        flags: u8,
        segment: u16,
        scopes: Vec<Scope>,
    },
    Rhsa {
        base: u64,
        domain: u32,
    },
    Andd {
        number: u8,
        name: Vec<u8>,
    },
    Satc {
        flags: u8,
        segment: u16,
        scopes: Vec<Scope>,
    },
    /// Any type with the bytes after its Length.
    Raw {
        ty: u16,
        body: Vec<u8>,
    },
}

fn scopes_bytes(scopes: &[Scope]) -> Vec<u8> {
    scopes.iter().flat_map(Scope::bytes).collect()
}

impl Structure {
    pub fn drhd(flags: u8, segment: u16, base: u64, scopes: Vec<Scope>) -> Self {
        Self::Drhd {
            flags,
            size: 0,
            segment,
            base,
            scopes,
        }
    }

    pub fn rmrr(segment: u16, base: u64, limit: u64, scopes: Vec<Scope>) -> Self {
        Self::Rmrr {
            segment,
            base,
            limit,
            scopes,
        }
    }

    /// Type and the bytes after Length.
    fn parts(&self) -> (u16, Vec<u8>) {
        match self {
            Self::Drhd {
                flags,
                size,
                segment,
                base,
                scopes,
            } => {
                let mut b = vec![*flags, *size];
                b.extend(segment.to_le_bytes());
                b.extend(base.to_le_bytes());
                b.extend(scopes_bytes(scopes));
                (0, b)
            }
            Self::Rmrr {
                segment,
                base,
                limit,
                scopes,
            } => {
                let mut b = vec![0, 0];
                b.extend(segment.to_le_bytes());
                b.extend(base.to_le_bytes());
                b.extend(limit.to_le_bytes());
                b.extend(scopes_bytes(scopes));
                (1, b)
            }
            Self::Atsr {
                flags,
                segment,
                scopes,
            } => {
                let mut b = vec![*flags, 0];
                b.extend(segment.to_le_bytes());
                b.extend(scopes_bytes(scopes));
                (2, b)
            }
            Self::Rhsa { base, domain } => {
                let mut b = vec![0; 4];
                b.extend(base.to_le_bytes());
                b.extend(domain.to_le_bytes());
                (3, b)
            }
            Self::Andd { number, name } => {
                let mut b = vec![0, 0, 0, *number];
                b.extend(name);
                b.push(0);
                (4, b)
            }
            Self::Satc {
                flags,
                segment,
                scopes,
            } => {
                let mut b = vec![*flags, 0];
                b.extend(segment.to_le_bytes());
                b.extend(scopes_bytes(scopes));
                (5, b)
            }
            Self::Raw { ty, body } => (*ty, body.clone()),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let (ty, body) = self.parts();
        let mut b = ty.to_le_bytes().to_vec();
        b.extend(((4 + body.len()) as u16).to_le_bytes());
        b.extend(body);
        b
    }
}

/// A whole table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarBuilder {
    pub revision: u8,
    /// The Host Address Width field (width - 1).
    pub haw: u8,
    pub flags: u8,
    pub structures: Vec<Structure>,
}

impl DmarBuilder {
    pub fn new(width_bits: u8) -> Self {
        Self {
            revision: 1,
            haw: width_bits - 1,
            flags: 0,
            structures: Vec::new(),
        }
    }

    pub fn with(mut self, s: Structure) -> Self {
        self.structures.push(s);
        self
    }

    /// Where each structure starts in `build()`'s bytes.
    pub fn offsets(&self) -> Vec<usize> {
        let mut at = FIRST_STRUCTURE_AT;
        self.structures
            .iter()
            .map(|s| {
                let here = at;
                at += s.bytes().len();
                here
            })
            .collect()
    }

    pub fn build(&self) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(b"DMAR");
        t.extend([0; 4]);
        t.push(self.revision);
        t.push(0);
        t.extend(b"BOCHS ");
        t.extend(b"BXPC    ");
        t.extend(1u32.to_le_bytes());
        t.extend(b"BXPC");
        t.extend(1u32.to_le_bytes());
        t.push(self.haw);
        t.push(self.flags);
        t.extend([0; 10]);
        for s in &self.structures {
            t.extend(s.bytes());
        }
        let len = t.len() as u32;
        t[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t);
        t
    }
}

/// Rewrites the checksum so the first Length bytes (or all, if Length is past the end) sum to 0.
pub fn fix_checksum(t: &mut [u8]) {
    if t.len() <= CHECKSUM_AT {
        return;
    }
    let len = if t.len() >= 8 {
        (u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize).min(t.len())
    } else {
        t.len()
    };
    t[CHECKSUM_AT] = 0;
    let sum = t[..len].iter().fold(0u8, |s, &b| s.wrapping_add(b));
    if len > CHECKSUM_AT {
        t[CHECKSUM_AT] = 0u8.wrapping_sub(sum);
    }
}

/// Sets the table's Length field to `len` and fixes the checksum.
pub fn set_length(t: &mut [u8], len: u32) {
    t[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&len.to_le_bytes());
    fix_checksum(t);
}

/// QEMU 10.0.2's I/O APIC scope: I/O APIC id 0, source-id ff:00.0 (Q35's pseudo platform bus).
pub fn qemu_ioapic() -> Scope {
    Scope::new(IOAPIC, 0, 0xff, &[(0, 0)])
}

/// The DMAR QEMU 10.0.2 builds for `q35` + `intel-iommu,aw-bits=48` + `edu`
/// (../shared/docs/qemu-q35-vtd-facts.md): one DRHD at 0xfed90000, segment 0, flags 0 (not
/// INCLUDE_PCI_ALL), scopes for the I/O APIC and each root-bus endpoint; no RMRR.
pub fn qemu_q35() -> DmarBuilder {
    let mut scopes = vec![qemu_ioapic()];
    for (d, f) in [(0, 0), (1, 0), (2, 0), (0x1f, 0), (0x1f, 2), (0x1f, 3)] {
        scopes.push(Scope::endpoint(0, d, f));
    }
    let mut b = DmarBuilder::new(48).with(Structure::drhd(0, 0, 0xfed9_0000, scopes));
    b.flags = 1; // INTR_REMAP (intremap=auto under q35)
    b
}

/// The same with a `pcie-root-port` at 00:1c.0 (a bridge scope) and `device-iotlb=on` (an ATSR
/// for all ports).
pub fn qemu_q35_root_port() -> DmarBuilder {
    let mut b = qemu_q35();
    if let Some(Structure::Drhd { scopes, .. }) = b.structures.first_mut() {
        scopes.push(Scope::bridge(0, &[(0x1c, 0)]));
    }
    b.with(Structure::Atsr {
        flags: 1,
        segment: 0,
        scopes: vec![],
    })
}

/// A table with every structure type: two units on segment 0 (graphics, then INCLUDE_PCI_ALL
/// last), one on segment 1 behind a two-hop bridge path, an RMRR for USB and one for graphics,
/// an ATSR listing one root port, an RHSA, an ANDD with its namespace scope, a SATC and a type
/// this walker does not know.
pub fn everything() -> DmarBuilder {
    let mut b = DmarBuilder::new(46)
        .with(Structure::Drhd {
            flags: 0,
            size: 2,
            segment: 0,
            base: 0xfed9_0000,
            scopes: vec![Scope::endpoint(0, 2, 0)],
        })
        .with(Structure::drhd(
            0,
            1,
            0xfed9_4000,
            vec![Scope::bridge(0x80, &[(3, 0), (0, 0)])],
        ))
        .with(Structure::drhd(
            1,
            0,
            0xfed9_1000,
            vec![
                qemu_ioapic(),
                Scope::new(HPET, 0, 0, &[(0x1f, 0)]),
                Scope::new(NAMESPACE, 7, 0, &[(0x15, 1)]),
            ],
        ))
        .with(Structure::rmrr(
            0,
            0x7c00_0000,
            0x7fff_ffff,
            vec![Scope::endpoint(0, 2, 0)],
        ))
        .with(Structure::rmrr(
            0,
            0x000e_0000,
            0x000e_ffff,
            vec![Scope::endpoint(0, 0x14, 0), Scope::endpoint(0, 0x1a, 0)],
        ))
        .with(Structure::Atsr {
            flags: 0,
            segment: 0,
            scopes: vec![Scope::bridge(0, &[(0x1c, 0)])],
        })
        .with(Structure::Rhsa {
            base: 0xfed9_0000,
            domain: 1,
        })
        .with(Structure::Andd {
            number: 7,
            name: b"\\_SB.PCI0.I2C1".to_vec(),
        })
        .with(Structure::Satc {
            flags: 1,
            segment: 0,
            scopes: vec![Scope::endpoint(0, 2, 0)],
        })
        .with(Structure::Raw {
            ty: 9,
            body: vec![0xaa; 12],
        });
    b.flags = 0b111;
    b
}
