//! The DMAR walker against tables shaped like QEMU's and like real platforms', and one fixture
//! per failure class, each naming the error it expects.

#[path = "dmar_builder.rs"]
mod builder;

use builder::*;
use iommu_core::{Bdf, PhysAddr};
use vtd::dmar::*;

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

fn no_bridges(_: Bdf) -> Option<BridgeBuses> {
    None
}

/// A scope as `(type, enumeration id, start bus, path)`.
type ScopeRow = (ScopeType, u8, u8, Vec<(u8, u8)>);

fn scope_list(scopes: DeviceScopes<'_>) -> Vec<ScopeRow> {
    scopes
        .iter()
        .map(|s| {
            (
                s.scope_type,
                s.enumeration_id,
                s.path.start_bus(),
                s.path.entries().map(|e| (e.device, e.function)).collect(),
            )
        })
        .collect()
}

fn expect_err(table: &[u8]) -> DmarError {
    match Dmar::parse(table) {
        Ok(_) => panic!("the table parsed"),
        Err(e) => e,
    }
}

// ---- tables that parse ----

#[test]
fn qemu_q35_table_reports_its_one_unit_and_width() {
    let table = qemu_q35().build();
    let dmar = Dmar::parse(&table).unwrap();
    assert_eq!(dmar.host_address_width(), 48);
    assert_eq!(dmar.revision(), 1);
    assert_eq!(&dmar.oem_id(), b"BOCHS ");
    assert!(dmar.flags().intr_remap());
    assert!(!dmar.flags().x2apic_opt_out());
    assert!(!dmar.flags().dma_ctrl_platform_opt_in());

    let units: Vec<_> = dmar.units().collect();
    assert_eq!(units.len(), 1);
    let (index, unit) = units[0];
    assert_eq!(index, UnitIndex(0));
    assert_eq!(unit.register_base, PhysAddr(0xfed9_0000));
    assert_eq!(unit.register_set_size(), 4096);
    assert_eq!(unit.segment, PciSegment(0));
    assert!(!unit.include_pci_all);
    let scopes = scope_list(unit.scopes);
    assert_eq!(scopes[0], (ScopeType::IoApic, 0, 0xff, vec![(0, 0)]));
    let endpoints: Vec<_> = scopes[1..]
        .iter()
        .map(|(ty, _, bus, path)| (*ty, *bus, path[0]))
        .collect();
    assert_eq!(
        endpoints,
        [(0, 0), (1, 0), (2, 0), (0x1f, 0), (0x1f, 2), (0x1f, 3)].map(|p| (
            ScopeType::PciEndpoint,
            0,
            p
        ))
    );
    assert_eq!(dmar.reserved_regions().count(), 0);
    assert_eq!(dmar.atsr().count(), 0);
    assert_eq!(dmar.unit(UnitIndex(0)), Some(unit));
    assert_eq!(dmar.unit(UnitIndex(1)), None);
}

#[test]
fn edu_on_the_root_bus_belongs_to_qemus_unit_and_an_unlisted_device_to_none() {
    let table = qemu_q35().build();
    let dmar = Dmar::parse(&table).unwrap();
    let seg0 = PciSegment(0);
    assert_eq!(
        dmar.unit_for(seg0, bdf(0, 1, 0), no_bridges),
        Some(UnitIndex(0))
    );
    assert_eq!(
        dmar.unit_for(seg0, bdf(0, 0x1f, 3), no_bridges),
        Some(UnitIndex(0))
    );
    // QEMU 10.0.2's DRHD is not INCLUDE_PCI_ALL: what it does not list, no unit translates.
    assert_eq!(dmar.unit_for(seg0, bdf(0, 3, 0), no_bridges), None);
    assert_eq!(dmar.unit_for(PciSegment(1), bdf(0, 1, 0), no_bridges), None);
}

#[test]
fn a_device_behind_a_listed_root_port_belongs_to_its_unit_while_the_bridge_is_configured() {
    let table = qemu_q35_root_port().build();
    let dmar = Dmar::parse(&table).unwrap();
    let root_port = |b: Bdf| {
        (b == bdf(0, 0x1c, 0)).then_some(BridgeBuses {
            secondary: 1,
            subordinate: 3,
        })
    };
    let seg0 = PciSegment(0);
    assert_eq!(
        dmar.unit_for(seg0, bdf(0, 0x1c, 0), root_port),
        Some(UnitIndex(0))
    );
    assert_eq!(
        dmar.unit_for(seg0, bdf(1, 0, 0), root_port),
        Some(UnitIndex(0))
    );
    assert_eq!(
        dmar.unit_for(seg0, bdf(3, 5, 1), root_port),
        Some(UnitIndex(0))
    );
    assert_eq!(dmar.unit_for(seg0, bdf(4, 0, 0), root_port), None);
    // Before enumeration gave the bridge its buses, nothing below it is known.
    assert_eq!(dmar.unit_for(seg0, bdf(1, 0, 0), no_bridges), None);
    // device-iotlb=on: an ATSR for all root ports.
    let atsr: Vec<_> = dmar.atsr().collect();
    assert_eq!(atsr.len(), 1);
    assert!(atsr[0].all_ports);
    assert!(atsr[0].scopes.is_empty());
}

#[test]
fn listed_devices_go_to_their_unit_and_the_rest_to_the_segments_include_all_unit() {
    let table = everything().build();
    let dmar = Dmar::parse(&table).unwrap();
    assert_eq!(dmar.host_address_width(), 46);
    let flags = dmar.flags();
    assert!(flags.intr_remap() && flags.x2apic_opt_out() && flags.dma_ctrl_platform_opt_in());
    let bases: Vec<_> = dmar
        .units()
        .map(|(i, u)| (i.0, u.register_base.0, u.segment.0, u.include_pci_all))
        .collect();
    assert_eq!(
        bases,
        [
            (0, 0xfed9_0000, 0, false),
            (1, 0xfed9_4000, 1, false),
            (2, 0xfed9_1000, 0, true)
        ]
    );
    assert_eq!(dmar.unit(UnitIndex(0)).unwrap().register_set_size(), 16384);
    let seg0 = PciSegment(0);
    // The graphics device is named by unit 0; everything else on segment 0 is unit 2's.
    assert_eq!(
        dmar.unit_for(seg0, bdf(0, 2, 0), no_bridges),
        Some(UnitIndex(0))
    );
    assert_eq!(
        dmar.unit_for(seg0, bdf(0, 1, 0), no_bridges),
        Some(UnitIndex(2))
    );
    assert_eq!(
        dmar.unit_for(seg0, bdf(0x40, 0, 0), no_bridges),
        Some(UnitIndex(2))
    );
    // Segment 1: the sub-hierarchy below 80:03.0 -> 81:00.0 (a switch port with buses 0x82..0x85).
    let bridges = |b: Bdf| match (b.bus, b.dev, b.func) {
        (0x80, 3, 0) => Some(BridgeBuses {
            secondary: 0x81,
            subordinate: 0x85,
        }),
        (0x81, 0, 0) => Some(BridgeBuses {
            secondary: 0x82,
            subordinate: 0x85,
        }),
        _ => None,
    };
    let seg1 = PciSegment(1);
    assert_eq!(
        dmar.unit_for(seg1, bdf(0x84, 0, 0), bridges),
        Some(UnitIndex(1))
    );
    assert_eq!(
        dmar.unit_for(seg1, bdf(0x81, 0, 0), bridges),
        Some(UnitIndex(1))
    );
    // The upstream port's own bus is not below the path's last bridge; segment 1 has no
    // INCLUDE_PCI_ALL unit.
    assert_eq!(dmar.unit_for(seg1, bdf(0x80, 3, 0), bridges), None);
    assert_eq!(dmar.unit_for(seg1, bdf(0x86, 0, 0), bridges), None);
}

#[test]
fn scope_paths_resolve_through_bridges_secondary_buses() {
    let table = everything().build();
    let dmar = Dmar::parse(&table).unwrap();
    let unit1 = dmar.unit(UnitIndex(1)).unwrap();
    let scope = unit1.scopes.iter().next().unwrap();
    assert_eq!(scope.scope_type, ScopeType::PciSubHierarchy);
    assert_eq!(scope.path.len(), 2);
    let secondary = |b: Bdf| (b == bdf(0x80, 3, 0)).then_some(0x81);
    assert_eq!(scope.path.resolve(secondary), Ok(bdf(0x81, 0, 0)));
    assert_eq!(
        scope.path.resolve(|_| None),
        Err(ResolveError::NoSecondaryBus {
            bridge: bdf(0x80, 3, 0)
        })
    );
    assert_eq!(
        ScopePath::new(0, &[]).resolve(|_| None),
        Err(ResolveError::EmptyPath)
    );
    assert_eq!(
        ScopePath::new(0, &[32, 0]).resolve(|_| None),
        Err(ResolveError::BadEntry {
            device: 32,
            function: 0
        })
    );
    assert_eq!(
        ResolveError::NoSecondaryBus {
            bridge: bdf(0x80, 3, 0)
        }
        .to_string(),
        "bridge 80:03.0 on the device scope path has no secondary bus"
    );
}

#[test]
fn reserved_regions_carry_their_range_and_the_devices_that_keep_reaching_them() {
    let table = everything().build();
    let dmar = Dmar::parse(&table).unwrap();
    let regions: Vec<_> = dmar
        .reserved_regions()
        .map(|r| {
            let devices: Vec<Bdf> = r
                .scopes
                .iter()
                .map(|s| s.path.resolve(|_| None).unwrap())
                .collect();
            (r.segment, r.base, r.limit, r.pages(), devices)
        })
        .collect();
    assert_eq!(
        regions,
        [
            (
                PciSegment(0),
                PhysAddr(0x7c00_0000),
                PhysAddr(0x7fff_ffff),
                0x4000,
                vec![bdf(0, 2, 0)]
            ),
            (
                PciSegment(0),
                PhysAddr(0xe_0000),
                PhysAddr(0xe_ffff),
                16,
                vec![bdf(0, 0x14, 0), bdf(0, 0x1a, 0)]
            ),
        ]
    );
}

#[test]
fn atsr_rhsa_andd_satc_are_parsed_and_an_unknown_type_is_skipped_by_length() {
    let b = everything();
    let table = b.build();
    let dmar = Dmar::parse(&table).unwrap();
    let atsr: Vec<_> = dmar.atsr().collect();
    assert_eq!(atsr.len(), 1);
    assert!(!atsr[0].all_ports);
    assert_eq!(
        scope_list(atsr[0].scopes),
        [(ScopeType::PciSubHierarchy, 0, 0, vec![(0x1c, 0)])]
    );
    let rhsa: Vec<_> = dmar.rhsa().collect();
    assert_eq!(rhsa.len(), 1);
    assert_eq!(rhsa[0].register_base, PhysAddr(0xfed9_0000));
    assert_eq!(rhsa[0].proximity_domain, 1);
    let andd: Vec<_> = dmar.andd().collect();
    assert_eq!(andd.len(), 1);
    assert_eq!(andd[0].acpi_device_number, 7);
    assert_eq!(andd[0].object_name, b"\\_SB.PCI0.I2C1");
    let satc: Vec<_> = dmar.satc().collect();
    assert_eq!(satc.len(), 1);
    assert!(satc[0].atc_required);
    let types: Vec<_> = dmar.structures().map(|s| s.structure_type()).collect();
    use StructureType::*;
    assert_eq!(
        types,
        [
            Drhd,
            Drhd,
            Drhd,
            Rmrr,
            Rmrr,
            Atsr,
            Rhsa,
            Andd,
            Satc,
            Unknown(9)
        ]
    );
    let offsets: Vec<_> = dmar.structures().map(|s| s.offset()).collect();
    assert_eq!(offsets, b.offsets());
    match dmar.structures().last().unwrap() {
        RemappingStructure::Unknown {
            type_raw, bytes, ..
        } => {
            assert_eq!(type_raw, 9);
            assert_eq!(bytes.len(), 16);
        }
        other => panic!("{other:?}"),
    }
    // The unit's namespace and HPET scopes are reported with their enumeration ids.
    let unit2 = scope_list(dmar.unit(UnitIndex(2)).unwrap().scopes);
    assert_eq!(unit2[1], (ScopeType::MsiCapableHpet, 0, 0, vec![(0x1f, 0)]));
    assert_eq!(
        unit2[2],
        (ScopeType::AcpiNamespaceDevice, 7, 0, vec![(0x15, 1)])
    );
}

#[test]
fn bytes_past_the_length_are_ignored() {
    let mut table = qemu_q35().build();
    let len = table.len();
    table.extend([0xff; 37]);
    let dmar = Dmar::parse(&table).unwrap();
    assert_eq!(dmar.bytes().len(), len);
    assert_eq!(dmar.units().count(), 1);
}

#[test]
fn a_table_with_no_structure_parses_empty() {
    let table = DmarBuilder::new(39).build();
    let dmar = Dmar::parse(&table).unwrap();
    assert_eq!(dmar.structures().count(), 0);
    assert_eq!(dmar.unit_for(PciSegment(0), bdf(0, 1, 0), no_bridges), None);
}

#[test]
fn an_include_all_unit_on_one_segment_may_be_followed_by_another_segments_unit() {
    let table = DmarBuilder::new(48)
        .with(Structure::drhd(1, 0, 0xfed9_0000, vec![]))
        .with(Structure::drhd(1, 1, 0xfed9_1000, vec![]))
        .with(Structure::drhd(0, 2, 0xfed9_2000, vec![]))
        .build();
    let dmar = Dmar::parse(&table).unwrap();
    assert_eq!(
        dmar.unit_for(PciSegment(1), bdf(5, 0, 0), no_bridges),
        Some(UnitIndex(1))
    );
}

// ---- one fixture per failure class ----

/// `everything()` built, with `patch` applied and the checksum fixed again.
fn corrupt(patch: impl FnOnce(&mut Vec<u8>, &[usize])) -> Vec<u8> {
    let b = everything();
    let mut t = b.build();
    patch(&mut t, &b.offsets());
    fix_checksum(&mut t);
    t
}

fn err(
    offset: usize,
    structure: &'static str,
    field: &'static str,
    kind: DmarErrorKind,
) -> DmarError {
    DmarError {
        offset,
        structure,
        field,
        kind,
    }
}

#[test]
fn bad_signature() {
    let mut t = qemu_q35().build();
    t[..4].copy_from_slice(b"APIC");
    fix_checksum(&mut t);
    let e = expect_err(&t);
    assert_eq!(
        e,
        err(
            0,
            "header",
            "Signature",
            DmarErrorKind::BadSignature { found: *b"APIC" }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x0: header Signature: signature is [41, 50, 49, 43], not \"DMAR\""
    );
    // Even a table too short for its header is told apart by its signature first.
    assert_eq!(
        expect_err(b"FACP").kind,
        DmarErrorKind::BadSignature { found: *b"FACP" }
    );
}

#[test]
fn bad_checksum() {
    let mut t = qemu_q35().build();
    let good = t[CHECKSUM_AT];
    t[CHECKSUM_AT] = good.wrapping_add(5);
    let e = expect_err(&t);
    assert_eq!(
        e,
        err(
            9,
            "header",
            "Checksum",
            DmarErrorKind::BadChecksum {
                expected: good,
                found: good.wrapping_add(5)
            }
        )
    );
    assert!(e
        .to_string()
        .starts_with("DMAR byte 0x9: header Checksum: the table's bytes do not sum to zero"));
    // A flipped byte anywhere else is caught the same way.
    let mut t = qemu_q35().build();
    t[60] ^= 0x10;
    assert!(matches!(
        expect_err(&t).kind,
        DmarErrorKind::BadChecksum { .. }
    ));
}

#[test]
fn header_cut_short_names_the_first_missing_field() {
    let t = qemu_q35().build();
    let e = expect_err(&t[..30]);
    assert_eq!(
        e,
        err(
            28,
            "header",
            "Creator ID",
            DmarErrorKind::Truncated {
                needed: 48,
                available: 30
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x1c: header Creator ID: needs 48 bytes but only 30 are there"
    );
    assert_eq!(expect_err(&[]).field, "Signature");
    assert_eq!(expect_err(&t[..47]).field, "Reserved");
}

#[test]
fn length_below_the_fixed_header() {
    let mut t = qemu_q35().build();
    set_length(&mut t, 40);
    assert_eq!(
        expect_err(&t),
        err(
            4,
            "header",
            "Length",
            DmarErrorKind::BadLength {
                length: 40,
                rule: LengthRule::AtLeast(48)
            }
        )
    );
}

#[test]
fn length_past_the_bytes_given() {
    let t = qemu_q35().build();
    let cut = &t[..t.len() - 1];
    assert_eq!(
        expect_err(cut),
        err(
            4,
            "header",
            "Length",
            DmarErrorKind::Truncated {
                needed: t.len(),
                available: t.len() - 1
            }
        )
    );
}

#[test]
fn host_address_width_beyond_64_bits() {
    let mut t = qemu_q35().build();
    t[HAW_AT] = 64;
    fix_checksum(&mut t);
    let e = expect_err(&t);
    assert_eq!(
        e,
        err(
            36,
            "header",
            "Host Address Width",
            DmarErrorKind::HostAddressWidth { field: 64 }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x24: header Host Address Width: host address width 64 + 1 is more than 64 bits"
    );
    t[HAW_AT] = 63;
    fix_checksum(&mut t);
    assert_eq!(Dmar::parse(&t).unwrap().host_address_width(), 64);
}

#[test]
fn structure_length_below_its_fixed_part() {
    // A DRHD of 12 bytes.
    let t = corrupt(|t, at| t[at[0] + 2..at[0] + 4].copy_from_slice(&12u16.to_le_bytes()));
    let e = expect_err(&t);
    assert_eq!(
        e,
        err(
            FIRST_STRUCTURE_AT + 2,
            "DRHD",
            "Length",
            DmarErrorKind::BadLength {
                length: 12,
                rule: LengthRule::AtLeast(16)
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x32: DRHD Length: length 12 breaks the rule: at least 16 bytes"
    );
    // An unknown type with Length 0 would loop for ever: it is an error, not skipped.
    let t = corrupt(|t, at| t[at[9] + 2..at[9] + 4].copy_from_slice(&0u16.to_le_bytes()));
    assert_eq!(
        expect_err(&t),
        err(
            everything().offsets()[9] + 2,
            "remapping structure",
            "Length",
            DmarErrorKind::BadLength {
                length: 0,
                rule: LengthRule::AtLeast(4)
            }
        )
    );
}

#[test]
fn rhsa_of_the_wrong_length() {
    let b = DmarBuilder::new(48).with(Structure::Raw {
        ty: 3,
        body: vec![0; 20],
    });
    assert_eq!(
        expect_err(&b.build()),
        err(
            50,
            "RHSA",
            "Length",
            DmarErrorKind::BadLength {
                length: 24,
                rule: LengthRule::Exactly(20)
            }
        )
    );
}

#[test]
fn structure_running_past_the_table() {
    // The last structure (16 bytes) claims 17.
    let at9 = everything().offsets()[9];
    let t = corrupt(|t, _| t[at9 + 2..at9 + 4].copy_from_slice(&17u16.to_le_bytes()));
    assert_eq!(
        expect_err(&t),
        err(
            at9 + 2,
            "remapping structure",
            "Length",
            DmarErrorKind::Truncated {
                needed: 17,
                available: 16
            }
        )
    );
}

#[test]
fn bytes_left_over_too_few_for_a_structure_header() {
    let mut t = qemu_q35().build();
    let end = t.len();
    t.extend([0, 0, 0]);
    set_length(&mut t, end as u32 + 3);
    assert_eq!(
        expect_err(&t),
        err(
            end,
            "remapping structure",
            "Type",
            DmarErrorKind::Truncated {
                needed: 4,
                available: 3
            }
        )
    );
}

#[test]
fn unaligned_register_base() {
    let t = DmarBuilder::new(48)
        .with(Structure::drhd(0, 0, 0xfed9_0800, vec![]))
        .build();
    let e = expect_err(&t);
    assert_eq!(
        e,
        err(
            56,
            "DRHD",
            "Register Base Address",
            DmarErrorKind::UnalignedRegisterBase { base: 0xfed9_0800 }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x38: DRHD Register Base Address: register base address 0x00000000fed90800 is not 4 KiB aligned"
    );
}

fn rmrr_err(base: u64, limit: u64) -> DmarError {
    expect_err(
        &DmarBuilder::new(48)
            .with(Structure::rmrr(
                0,
                base,
                limit,
                vec![Scope::endpoint(0, 0x14, 0)],
            ))
            .build(),
    )
}

#[test]
fn rmrr_base_unaligned() {
    assert_eq!(
        rmrr_err(0xe_0100, 0xe_ffff),
        err(
            56,
            "RMRR",
            "Reserved Memory Region Base Address",
            DmarErrorKind::RmrrRange {
                base: 0xe_0100,
                limit: 0xe_ffff,
                problem: RangeProblem::BaseUnaligned
            }
        )
    );
}

#[test]
fn rmrr_limit_plus_one_unaligned() {
    let e = rmrr_err(0xe_0000, 0xf_0000);
    assert_eq!(
        e,
        err(
            64,
            "RMRR",
            "Reserved Memory Region Limit Address",
            DmarErrorKind::RmrrRange {
                base: 0xe_0000,
                limit: 0xf_0000,
                problem: RangeProblem::LimitUnaligned
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x40: RMRR Reserved Memory Region Limit Address: reserved region \
         0x00000000000e0000..=0x00000000000f0000 is not whole 4 KiB pages: limit + 1 is not 4 KiB aligned"
    );
}

#[test]
fn rmrr_limit_below_base() {
    assert_eq!(
        rmrr_err(0xe_0000, 0xd_ffff).kind,
        DmarErrorKind::RmrrRange {
            base: 0xe_0000,
            limit: 0xd_ffff,
            problem: RangeProblem::LimitBelowBase
        }
    );
    // A region of the whole 64-bit space is well formed.
    let t = DmarBuilder::new(48)
        .with(Structure::rmrr(
            0,
            0,
            u64::MAX,
            vec![Scope::endpoint(0, 1, 0)],
        ))
        .build();
    assert_eq!(
        Dmar::parse(&t)
            .unwrap()
            .reserved_regions()
            .next()
            .unwrap()
            .pages(),
        1 << 52
    );
}

/// A one-DRHD table whose scope bytes are `scope`.
fn scope_table(scope: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0];
    body.extend(0xfed9_0000u64.to_le_bytes());
    body.extend(scope);
    DmarBuilder::new(48)
        .with(Structure::Raw { ty: 0, body })
        .build()
}

/// The first scope's offset in `scope_table`.
const SCOPE_AT: usize = FIRST_STRUCTURE_AT + 16;

#[test]
fn scope_length_below_its_header() {
    assert_eq!(
        expect_err(&scope_table(&[1, 4, 0, 0, 0, 0, 2, 0])),
        err(
            SCOPE_AT + 1,
            "DRHD device scope",
            "Length",
            DmarErrorKind::BadLength {
                length: 4,
                rule: LengthRule::AtLeast(6)
            }
        )
    );
    // Length 0 too: no endless loop.
    assert_eq!(
        expect_err(&scope_table(&[1, 0, 0, 0, 0, 0, 2, 0])).kind,
        DmarErrorKind::BadLength {
            length: 0,
            rule: LengthRule::AtLeast(6)
        }
    );
}

#[test]
fn scope_path_of_an_odd_length() {
    let e = expect_err(&scope_table(&[1, 9, 0, 0, 0, 0, 2, 0, 3]));
    assert_eq!(
        e,
        err(
            SCOPE_AT + 1,
            "DRHD device scope",
            "Length",
            DmarErrorKind::BadLength {
                length: 9,
                rule: LengthRule::HeaderPlusPathEntries
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x41: DRHD device scope Length: length 9 breaks the rule: \
         6 bytes plus whole 2-byte (device, function) path entries"
    );
}

#[test]
fn scope_running_past_its_structure() {
    // The scope claims 10 bytes; its DRHD holds 8 more.
    assert_eq!(
        expect_err(&scope_table(&[1, 10, 0, 0, 0, 0, 2, 0])),
        err(
            SCOPE_AT + 1,
            "DRHD device scope",
            "Length",
            DmarErrorKind::Truncated {
                needed: 10,
                available: 8
            }
        )
    );
    // One byte left over after a good scope.
    assert_eq!(
        expect_err(&scope_table(&[1, 8, 0, 0, 0, 0, 2, 0, 1])),
        err(
            SCOPE_AT + 8,
            "DRHD device scope",
            "Length",
            DmarErrorKind::Truncated {
                needed: 6,
                available: 1
            }
        )
    );
}

#[test]
fn scope_path_empty() {
    // The scope is the table's last bytes: where its path would start is the table's end.
    let table = scope_table(&[1, 6, 0, 0, 0, 0]);
    assert_eq!(table.len(), SCOPE_AT + 6);
    let e = expect_err(&table);
    // The error names a byte inside the table: the scope's Length, which left no room for a
    // path entry.
    assert!(
        e.offset < table.len(),
        "offset {:#x} is past the table",
        e.offset
    );
    assert_eq!(table[e.offset], 6);
    assert_eq!(
        e,
        err(
            SCOPE_AT + 1,
            "DRHD device scope",
            "Length",
            DmarErrorKind::ScopePath {
                problem: PathProblem::Empty
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x41: DRHD device scope Length: the path has no (device, function) entry"
    );
}

#[test]
fn scope_path_device_out_of_range() {
    assert_eq!(
        expect_err(&scope_table(&[2, 10, 0, 0, 0, 0, 0x1c, 0, 32, 0])),
        err(
            SCOPE_AT + 8,
            "DRHD device scope",
            "Path",
            DmarErrorKind::ScopePath {
                problem: PathProblem::Device(32)
            }
        )
    );
}

#[test]
fn scope_path_function_out_of_range() {
    let t = DmarBuilder::new(48)
        .with(Structure::rmrr(
            0,
            0xe_0000,
            0xe_ffff,
            vec![Scope::endpoint(0, 0x14, 8)],
        ))
        .build();
    assert_eq!(
        expect_err(&t),
        err(
            FIRST_STRUCTURE_AT + 24 + 7,
            "RMRR device scope",
            "Path",
            DmarErrorKind::ScopePath {
                problem: PathProblem::Function(8)
            }
        )
    );
}

#[test]
fn two_include_all_units_on_one_segment() {
    let b = DmarBuilder::new(48)
        .with(Structure::drhd(1, 0, 0xfed9_0000, vec![]))
        .with(Structure::drhd(1, 0, 0xfed9_1000, vec![]));
    let at = b.offsets();
    let e = expect_err(&b.build());
    assert_eq!(
        e,
        err(
            at[1] + 4,
            "DRHD",
            "Flags",
            DmarErrorKind::DuplicateIncludeAll {
                segment: 0,
                first_at: at[0]
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x44: DRHD Flags: segment 0x0000 already has an INCLUDE_PCI_ALL DRHD (at byte 0x30)"
    );
}

#[test]
fn include_all_unit_not_last_for_its_segment() {
    let b = DmarBuilder::new(48)
        .with(Structure::drhd(1, 0, 0xfed9_0000, vec![qemu_ioapic()]))
        .with(Structure::drhd(0, 1, 0xfed9_2000, vec![]))
        .with(Structure::drhd(
            0,
            0,
            0xfed9_1000,
            vec![Scope::endpoint(0, 2, 0)],
        ));
    let at = b.offsets();
    let e = expect_err(&b.build());
    assert_eq!(
        e,
        err(
            at[2] + 6,
            "DRHD",
            "Segment Number",
            DmarErrorKind::IncludeAllNotLast {
                segment: 0,
                include_all_at: at[0]
            }
        )
    );
    assert_eq!(
        e.to_string(),
        "DMAR byte 0x5e: DRHD Segment Number: this DRHD of segment 0x0000 follows the \
         segment's INCLUDE_PCI_ALL DRHD (at byte 0x30), which must be listed last"
    );
}
