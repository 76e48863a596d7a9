//! Fuzzing the DMAR walker: random bytes behind a valid header, every byte of valid tables
//! rewritten to edge values (checksum fixed again, so the walk is reached, and not), truncation
//! at every length (Length left alone, and Length cut to match), and stacked random mutations of
//! lengths and fields. `Dmar::parse` must never panic, must answer `Ok` or a `DmarError` inside
//! the table, and a table that parses must be walkable through every accessor without a panic.
//!
//! And a property: random tables written by the test builder parse back to what it wrote.
//!
//! Each case derives from its number alone (fixed-seed xorshift), so a failure names its case.

#[path = "dmar_builder.rs"]
mod builder;

use builder::*;
use iommu_core::Bdf;
use vtd::dmar::*;

const SEED: u64 = 0xd3a2_5eed_0bad_f00d;

/// xorshift64* (Vigna), seeded per case through splitmix64.
struct Rng(u64);

impl Rng {
    fn for_case(case: u64) -> Self {
        let mut z = SEED ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn bases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("qemu_q35", qemu_q35().build()),
        ("qemu_q35_root_port", qemu_q35_root_port().build()),
        ("everything", everything().build()),
    ]
}

/// Parses `t`, checks the answer's shape, and walks everything a table that parsed offers.
fn exercise(t: &[u8], what: &dyn Fn() -> String) {
    match Dmar::parse(t) {
        Err(e) => {
            assert!(
                e.offset < t.len().max(48),
                "{}: error offset {:#x} outside the table ({} bytes): {e}",
                what(),
                e.offset,
                t.len()
            );
            let message = e.to_string();
            assert!(message.starts_with("DMAR byte "), "{}: {message}", what());
            assert!(message.contains(e.structure) && message.contains(e.field));
        }
        Ok(dmar) => walk(&dmar, what),
    }
}

fn walk(dmar: &Dmar<'_>, what: &dyn Fn() -> String) {
    let len = dmar.bytes().len();
    assert_eq!(Dmar::parse(dmar.bytes()), Ok(*dmar), "{}", what());
    let width = dmar.host_address_width();
    assert!((1..=64).contains(&width), "{}", what());
    let _ = (dmar.revision(), dmar.oem_id(), dmar.oem_table_id());
    let _ = (dmar.oem_revision(), dmar.flags().intr_remap());
    // Structures tile the table: increasing offsets, all inside it.
    let mut last = None;
    for s in dmar.structures() {
        let at = s.offset();
        assert!(at >= 48 && at < len, "{}", what());
        assert!(last.is_none_or(|l| l < at), "{}", what());
        last = Some(at);
        let _ = format!("{}", s.structure_type());
        if let Some(scopes) = s.scopes() {
            for scope in scopes.iter() {
                assert!(scope.offset > at && scope.offset < len, "{}", what());
                assert!(!scope.path.is_empty(), "{}", what());
                for e in scope.path.entries() {
                    assert!(e.device <= 31 && e.function <= 7, "{}", what());
                }
                // With no bridge the path resolves only if it has one hop.
                let one_hop = scope.path.len() == 1;
                assert_eq!(scope.path.resolve(|_| None).is_ok(), one_hop, "{}", what());
                let _ = scope.path.resolve(|b| Some(b.bus.wrapping_add(1)));
            }
        }
    }
    for (i, unit) in dmar.units() {
        assert_eq!(dmar.unit(i), Some(unit));
        assert!(unit.register_base.is_aligned(4096), "{}", what());
        assert!(unit.register_set_size() >= 4096);
    }
    for r in dmar.reserved_regions() {
        assert!(r.base <= r.limit && r.pages() >= 1, "{}", what());
        assert!(
            r.base.is_aligned(4096) && r.limit.0 & 0xfff == 0xfff,
            "{}",
            what()
        );
    }
    let _ = (
        dmar.atsr().count(),
        dmar.rhsa().count(),
        dmar.andd().count(),
        dmar.satc().count(),
    );
    let bridges = |b: Bdf| {
        b.dev.is_multiple_of(3).then_some(BridgeBuses {
            secondary: b.bus.wrapping_add(1),
            subordinate: b.bus.wrapping_add(4),
        })
    };
    for segment in [0, 1, 0xffff] {
        for &(bus, dev, func) in &[
            (0, 0, 0),
            (0, 1, 0),
            (0, 2, 0),
            (1, 0, 0),
            (0x81, 0, 0),
            (0xff, 31, 7),
        ] {
            let b = Bdf::new(bus, dev, func).unwrap();
            if let Some(i) = dmar.unit_for(PciSegment(segment), b, bridges) {
                assert_eq!(dmar.unit(i).map(|u| u.segment), Some(PciSegment(segment)));
            }
            let _ = dmar.unit_for(PciSegment(segment), b, |_| None);
        }
    }
}

/// Values a byte is rewritten to.
fn byte_edges(b: u8) -> [u8; 8] {
    [
        0,
        0xff,
        b ^ 0xff,
        b.wrapping_add(1),
        b.wrapping_sub(1),
        b ^ 1,
        b ^ 0x80,
        6,
    ]
}

#[test]
fn every_byte_of_valid_tables_rewritten() {
    for (name, base) in bases() {
        for at in 0..base.len() {
            for (k, v) in byte_edges(base[at]).into_iter().enumerate() {
                let mut t = base.clone();
                t[at] = v;
                exercise(&t, &|| {
                    format!("{name}: byte {at:#x} = {v:#x} (checksum stale)")
                });
                if at != CHECKSUM_AT {
                    fix_checksum(&mut t);
                    exercise(&t, &|| format!("{name}: byte {at:#x} = {v:#x}, edge {k}"));
                }
            }
        }
    }
}

#[test]
fn truncation_at_every_length() {
    for (name, base) in bases() {
        for len in 0..=base.len() {
            let cut = &base[..len];
            let e = Dmar::parse(cut);
            if len < base.len() {
                // Length still claims the whole table.
                assert!(e.is_err(), "{name}: cut to {len} parsed");
            }
            exercise(cut, &|| format!("{name}: cut to {len}"));
            if len >= 10 {
                let mut t = cut.to_vec();
                if len >= 8 {
                    set_length(&mut t, len as u32);
                }
                exercise(&t, &|| format!("{name}: cut to {len}, Length = {len}"));
            }
        }
    }
}

#[test]
fn random_bytes_behind_a_valid_header() {
    for case in 0..20_000u64 {
        let mut rng = Rng::for_case(case);
        let len = 48 + rng.below(200);
        let mut t: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        t[..4].copy_from_slice(b"DMAR");
        t[HAW_AT] = rng.below(70) as u8;
        // Bias towards small, plausible structure types and lengths.
        let mut at = 48;
        while at + 4 <= len && rng.below(4) != 0 {
            let ty = rng.below(8) as u16;
            let l = [4, 6, 8, 16, 20, 24, 30, rng.below(40)][rng.below(8)] as u16;
            t[at..at + 2].copy_from_slice(&ty.to_le_bytes());
            t[at + 2..at + 4].copy_from_slice(&l.to_le_bytes());
            at += usize::from(l.max(4));
        }
        set_length(
            &mut t,
            if rng.chance(8) {
                rng.below(300) as u32
            } else {
                len as u32
            },
        );
        exercise(&t, &|| format!("random case {case}"));
        // Raw noise too, signature and all.
        let noise: Vec<u8> = (0..rng.below(80)).map(|_| rng.byte()).collect();
        exercise(&noise, &|| format!("noise case {case}"));
    }
}

#[test]
fn stacked_mutations_of_lengths_and_fields() {
    let bases = bases();
    let builders = [qemu_q35(), qemu_q35_root_port(), everything()];
    for case in 0..30_000u64 {
        let mut rng = Rng::for_case(case);
        let which = rng.below(bases.len());
        let (name, base) = &bases[which];
        let offsets = builders[which].offsets();
        let mut t = base.clone();
        let mut log = String::new();
        for _ in 0..1 + rng.below(4) {
            let len = t.len();
            match rng.below(6) {
                0 => {
                    // A structure's Length to an edge value.
                    let at = offsets[rng.below(offsets.len())];
                    let v = [0u16, 1, 3, 4, 5, 15, 16, 19, 20, 21, 23, 24, 0xffff][rng.below(13)];
                    if at + 4 <= len {
                        t[at + 2..at + 4].copy_from_slice(&v.to_le_bytes());
                        log.push_str(&format!("len@{at:#x}={v}; "));
                    }
                }
                1 => {
                    // A structure's Type to anything.
                    let at = offsets[rng.below(offsets.len())];
                    let v = rng.below(12) as u16;
                    if at + 2 <= len {
                        t[at..at + 2].copy_from_slice(&v.to_le_bytes());
                        log.push_str(&format!("type@{at:#x}={v}; "));
                    }
                }
                2 => {
                    // A byte anywhere after the header.
                    let at = 48 + rng.below(len - 48);
                    let v = rng.byte();
                    t[at] = v;
                    log.push_str(&format!("byte@{at:#x}={v:#x}; "));
                }
                3 => {
                    // Splice a random run of bytes in or cut some out.
                    let at = 48 + rng.below(len - 48);
                    if rng.chance(2) {
                        let n = 1 + rng.below(8);
                        let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                        t.splice(at..at, bytes);
                        log.push_str(&format!("insert {n}@{at:#x}; "));
                    } else {
                        let n = (1 + rng.below(8)).min(len - at);
                        t.drain(at..at + n);
                        log.push_str(&format!("cut {n}@{at:#x}; "));
                    }
                    let l = t.len() as u32;
                    t[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&l.to_le_bytes());
                }
                4 => {
                    // The table's Length to an edge value.
                    let v =
                        [0u32, 47, 48, 49, len as u32 - 1, len as u32 + 1, u32::MAX][rng.below(7)];
                    t[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&v.to_le_bytes());
                    log.push_str(&format!("Length={v}; "));
                }
                _ => {
                    // A scope's Length byte (a byte right after a scope's type, 1..=5).
                    let candidates: Vec<usize> = (49..len)
                        .filter(|&i| (1..=5).contains(&t[i - 1]) && t[i] % 2 == 0 && t[i] >= 6)
                        .collect();
                    if !candidates.is_empty() {
                        let at = candidates[rng.below(candidates.len())];
                        let v = [0u8, 1, 5, 6, 7, 9, 0xff][rng.below(7)];
                        t[at] = v;
                        log.push_str(&format!("scope-len@{at:#x}={v}; "));
                    }
                }
            }
        }
        if !rng.chance(10) {
            fix_checksum(&mut t);
        }
        exercise(&t, &|| format!("{name} case {case}: {log}"));
    }
}

// ---- the property: what the builder writes parses back ----

fn random_scope(rng: &mut Rng) -> Scope {
    let ty = 1 + rng.below(5) as u8;
    let hops = 1 + rng.below(4);
    let path: Vec<(u8, u8)> = (0..hops)
        .map(|_| (rng.below(32) as u8, rng.below(8) as u8))
        .collect();
    let mut s = Scope::new(ty, rng.byte(), rng.byte(), &path);
    s.flags = rng.byte();
    s
}

fn random_scopes(rng: &mut Rng) -> Vec<Scope> {
    (0..rng.below(5)).map(|_| random_scope(rng)).collect()
}

/// A random well-formed table: DRHDs first (per segment, at most one INCLUDE_PCI_ALL, listed
/// last for its segment), then the other types in random order.
fn random_table(rng: &mut Rng) -> DmarBuilder {
    let mut b = DmarBuilder::new(1 + rng.below(64) as u8);
    b.revision = rng.byte();
    b.flags = rng.byte();
    let segments = 1 + rng.below(3);
    let mut base = 0xfed0_0000u64;
    for segment in 0..segments as u16 {
        let explicit = rng.below(4);
        let include_all = rng.chance(2);
        for k in 0..explicit + usize::from(include_all) {
            base += 0x1000 * (1 + rng.below(16) as u64);
            let last_include_all = include_all && k == explicit;
            b.structures.push(Structure::Drhd {
                flags: u8::from(last_include_all) | (rng.byte() & 0xfe),
                size: rng.byte(),
                segment,
                base,
                scopes: random_scopes(rng),
            });
        }
    }
    for _ in 0..rng.below(6) {
        let s = match rng.below(6) {
            0 => {
                let first = rng.next() >> 20;
                let pages = 1 + (rng.next() >> 40);
                Structure::rmrr(
                    rng.below(segments) as u16,
                    first << 12,
                    ((first + pages) << 12) - 1,
                    random_scopes(rng),
                )
            }
            1 => Structure::Atsr {
                flags: rng.byte(),
                segment: rng.below(segments) as u16,
                scopes: random_scopes(rng),
            },
            2 => Structure::Rhsa {
                base: rng.next(),
                domain: rng.next() as u32,
            },
            3 => Structure::Andd {
                number: rng.byte(),
                name: (0..rng.below(20))
                    .map(|_| 1 + rng.below(126) as u8)
                    .collect(),
            },
            4 => Structure::Satc {
                flags: rng.byte(),
                segment: rng.below(segments) as u16,
                scopes: random_scopes(rng),
            },
            _ => Structure::Raw {
                ty: 6 + rng.below(1000) as u16,
                body: (0..rng.below(30)).map(|_| rng.byte()).collect(),
            },
        };
        b.structures.push(s);
    }
    b
}

fn scopes_of(scopes: DeviceScopes<'_>) -> Vec<Scope> {
    scopes
        .iter()
        .map(|s| Scope {
            ty: s.scope_type.raw(),
            flags: s.flags,
            enumeration_id: s.enumeration_id,
            start_bus: s.path.start_bus(),
            path: s.path.entries().map(|e| (e.device, e.function)).collect(),
        })
        .collect()
}

/// The builder's view of what parsed.
fn read_back(dmar: &Dmar<'_>) -> DmarBuilder {
    let structures = dmar
        .structures()
        .map(|s| match s {
            RemappingStructure::Drhd(d) => Structure::Drhd {
                flags: d.flags,
                size: d.size,
                segment: d.segment.0,
                base: d.register_base.0,
                scopes: scopes_of(d.scopes),
            },
            RemappingStructure::Rmrr(r) => {
                Structure::rmrr(r.segment.0, r.base.0, r.limit.0, scopes_of(r.scopes))
            }
            RemappingStructure::Atsr(a) => Structure::Atsr {
                flags: a.flags,
                segment: a.segment.0,
                scopes: scopes_of(a.scopes),
            },
            RemappingStructure::Rhsa(r) => Structure::Rhsa {
                base: r.register_base.0,
                domain: r.proximity_domain,
            },
            RemappingStructure::Andd(a) => Structure::Andd {
                number: a.acpi_device_number,
                name: a.object_name.to_vec(),
            },
            RemappingStructure::Satc(s) => Structure::Satc {
                flags: s.flags,
                segment: s.segment.0,
                scopes: scopes_of(s.scopes),
            },
            RemappingStructure::Unknown {
                type_raw, bytes, ..
            } => Structure::Raw {
                ty: type_raw,
                body: bytes[4..].to_vec(),
            },
        })
        .collect();
    DmarBuilder {
        revision: dmar.revision(),
        haw: dmar.host_address_width() - 1,
        flags: dmar.flags().0,
        structures,
    }
}

#[test]
fn what_the_builder_writes_parses_back() {
    for case in 0..5_000u64 {
        let mut rng = Rng::for_case(case);
        let written = random_table(&mut rng);
        let table = written.build();
        let dmar = Dmar::parse(&table).unwrap_or_else(|e| panic!("case {case}: {e}\n{written:?}"));
        assert_eq!(read_back(&dmar), written, "case {case}");
        // Each unit's own endpoint scopes route its one-hop devices to it (or to the first
        // earlier explicit unit of the segment naming the same device).
        for (i, unit) in dmar.units() {
            for scope in unit.scopes.iter() {
                if scope.scope_type == ScopeType::PciEndpoint && scope.path.len() == 1 {
                    let b = scope.path.resolve(|_| None).unwrap();
                    let got = dmar.unit_for(unit.segment, b, |_| None).unwrap();
                    assert!(got <= i, "case {case}: {b} went to {got}, not {i}");
                }
            }
        }
        walk(&dmar, &|| format!("property case {case}"));
    }
}
