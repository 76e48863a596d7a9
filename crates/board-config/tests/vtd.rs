//! VT-d: `[vtd]` sections and their failure classes (one fixture each, file:line:col
//! checked), firmware's VT-d view from the DMAR (`vtd::from_dmar`) and its errors, and a
//! config combined with a DMAR-derived topology (QEMU q35) in both modes.

mod common;

use board_config::config::{self, ConfigErrorKind, Found};
use board_config::vtd::{
    from_dmar, requester_id, FirmwareBridge, FirmwareRegion, FirmwareUnit, FirmwareVtd, Structure,
    VtdErrorKind,
};
use board_config::{
    combine, CombineError, Device, IommuKind, Mode, Origin, Stated, StreamSource, Topology, UnitId,
};
use common::config_text;
use iommu_core::{Bdf, PhysAddr, StreamId};
use proptest::prelude::*;

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

fn pci(bus: u8, dev: u8, func: u8) -> Device {
    Device::pci(bdf(bus, dev, func))
}

/// Asserts that fixture `name` fails at `line`:`column` with `kind` and returns the message.
fn check(name: &str, line: u32, column: u32, kind: ConfigErrorKind<'_>) -> String {
    let text = config_text(name);
    match config::parse(name, &text) {
        Ok(t) => panic!("{name} was accepted:\n{t}"),
        Err(e) => {
            assert_eq!((e.line, e.column, e.kind), (line, column, kind), "{e}");
            e.to_string()
        }
    }
}

fn user(text: &str) -> Topology {
    config::parse("test.conf", text).unwrap_or_else(|e| panic!("{e}"))
}

const Q35_BASE: PhysAddr = PhysAddr(0xfed9_0000);

/// The endpoints QEMU q35's DMAR lists for its one unit (boards/qemu-q35/smmuman.conf).
const Q35_ENDPOINTS: [Bdf; 6] = [
    Bdf {
        bus: 0,
        dev: 0,
        func: 0,
    },
    Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    },
    Bdf {
        bus: 0,
        dev: 2,
        func: 0,
    },
    Bdf {
        bus: 0,
        dev: 0x1f,
        func: 0,
    },
    Bdf {
        bus: 0,
        dev: 0x1f,
        func: 2,
    },
    Bdf {
        bus: 0,
        dev: 0x1f,
        func: 3,
    },
];

fn q35_unit() -> FirmwareUnit<'static> {
    FirmwareUnit {
        base: Q35_BASE,
        size: 0x1000,
        segment: 0,
        include_pci_all: false,
        endpoints: &Q35_ENDPOINTS,
        bridges: &[],
    }
}

/// QEMU q35's DMAR: one unit at 0xfed9_0000 listing its root-bus endpoints, no RMRR.
fn q35() -> Topology {
    from_dmar(&FirmwareVtd {
        units: &[q35_unit()],
        reserved: &[],
    })
    .unwrap()
}

// ---- the DMAR side ------------------------------------------------------------------------

#[test]
fn the_q35_dmar_gives_one_vtd_unit_and_a_binding_per_listed_function() {
    let t = q35();
    assert_eq!(t.unit_count(), 1);
    let u = t.unit(UnitId(0)).unwrap();
    assert_eq!(
        (u.kind, u.base, u.size, u.segment, u.include_pci_all),
        (IommuKind::Vtd, Q35_BASE, 0x1000, 0, false)
    );
    assert_eq!(u.name.as_str(), "drhd@fed90000");
    assert_eq!(u.origin, Origin::Dmar);
    assert_eq!(
        u.stated,
        Stated::SIZE | Stated::SEGMENT | Stated::INCLUDE_PCI_ALL
    );
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10)))),
        "edu's StreamID is its requester ID"
    );
    assert_eq!(
        t.sid_for(pci(0, 0x1f, 3)),
        Ok(Some((UnitId(0), StreamId(0xfb))))
    );
    assert_eq!(
        t.sid_for(pci(0, 3, 0)),
        Ok(None),
        "not listed: not translated"
    );
    assert!(t.streams().iter().all(|b| b.origin == Origin::Dmar));
    assert_eq!(
        t.to_string().lines().nth(1).unwrap(),
        "unit 0: drhd@fed90000 (VT-d at 0x00000000fed90000 size 0x1000, segment 0000, unclaimed deny) [the DMAR]"
    );
}

#[test]
fn include_pci_all_covers_what_no_other_unit_lists_and_bridges_cover_their_buses() {
    let bridges = [FirmwareBridge {
        bridge: bdf(0, 0x1c, 0),
        secondary: 2,
        subordinate: 3,
    }];
    let listed = [bdf(0, 2, 0)];
    let units = [
        FirmwareUnit {
            base: PhysAddr(0xfed9_1000),
            size: 0x1000,
            segment: 0,
            include_pci_all: true,
            endpoints: &[],
            bridges: &[],
        },
        FirmwareUnit {
            base: Q35_BASE,
            size: 0x1000,
            segment: 0,
            include_pci_all: false,
            endpoints: &listed,
            bridges: &bridges,
        },
    ];
    let t = from_dmar(&FirmwareVtd {
        units: &units,
        reserved: &[],
    })
    .unwrap();
    let (all, listing) = (UnitId(0), UnitId(1));
    assert_eq!(t.sid_for(pci(0, 2, 0)), Ok(Some((listing, StreamId(0x10)))));
    assert_eq!(
        t.sid_for(pci(0, 0x1c, 0)),
        Ok(Some((listing, StreamId(0xe0)))),
        "the bridge itself"
    );
    assert_eq!(
        t.sid_for(pci(3, 0, 1)),
        Ok(Some((listing, StreamId(0x301)))),
        "below the bridge"
    );
    assert_eq!(t.sid_for(pci(4, 0, 0)), Ok(Some((all, StreamId(0x400)))));
    assert_eq!(t.sid_for(pci(0, 3, 0)), Ok(Some((all, StreamId(0x18)))));
    let other_segment = Device::Pci {
        segment: 1,
        bdf: bdf(0, 3, 0),
    };
    assert_eq!(t.sid_for(other_segment), Ok(None));
}

#[test]
fn rmrrs_become_reserved_regions_and_one_range_listed_twice_is_one_region() {
    let (usb, gpu) = ([bdf(0, 0x1d, 0)], [bdf(0, 2, 0)]);
    let region = |devices| FirmwareRegion {
        base: PhysAddr(0x7f00_0000),
        limit: PhysAddr(0x7f0f_ffff),
        segment: 0,
        devices,
    };
    let t = from_dmar(&FirmwareVtd {
        units: &[q35_unit()],
        reserved: &[region(&usb), region(&gpu)],
    })
    .unwrap();
    let r = t.reserved_regions();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].start, r[0].len), (PhysAddr(0x7f00_0000), 0x10_0000));
    assert_eq!(r[0].devices.as_slice(), &[bdf(0, 0x1d, 0), bdf(0, 2, 0)]);
    assert_eq!(t.regions_of(pci(0, 2, 0)).count(), 1);
    assert_eq!(t.regions_of(pci(0, 3, 0)).count(), 0);
    assert!(t.to_string().contains(
        "reserved memory: 0x000000007f000000 len 0x100000 pci 0000:00:1d.0,00:02.0 [the DMAR]"
    ));
}

/// The error `from_dmar` gives for `units` and `reserved`, as the daemon would print it.
fn dmar_error(
    units: &[FirmwareUnit<'_>],
    reserved: &[FirmwareRegion<'_>],
) -> (Structure, VtdErrorKind, String) {
    let e = from_dmar(&FirmwareVtd { units, reserved }).unwrap_err();
    (e.at, e.kind, e.to_string())
}

#[test]
fn dmar_contradictions_name_the_structure() {
    let at = |base| FirmwareUnit {
        base: PhysAddr(base),
        ..q35_unit()
    };
    let (_, kind, msg) = dmar_error(&[q35_unit(), at(0xfed9_0000)], &[]);
    assert_eq!(kind, VtdErrorKind::DuplicateBase { other: 0 });
    assert_eq!(
        msg,
        "DMAR: DRHD 1 (base 0x00000000fed90000): DRHD 0 has the same register base"
    );

    let edu = [bdf(0, 2, 0)];
    let second = FirmwareUnit {
        base: PhysAddr(0xfed9_1000),
        endpoints: &edu,
        ..q35_unit()
    };
    let (at1, kind, msg) = dmar_error(&[q35_unit(), second], &[]);
    assert_eq!(at1, Structure::Drhd(1, PhysAddr(0xfed9_1000)));
    assert_eq!(
        kind,
        VtdErrorKind::DeviceInTwoUnits {
            device: pci(0, 2, 0),
            other: 0
        }
    );
    assert_eq!(
        msg,
        "DMAR: DRHD 1 (base 0x00000000fed91000): pci 0000:00:02.0 is also listed by DRHD 0"
    );

    let all = |base| FirmwareUnit {
        base: PhysAddr(base),
        include_pci_all: true,
        endpoints: &[],
        ..q35_unit()
    };
    let (_, kind, _) = dmar_error(&[all(0xfed9_0000), all(0xfed9_1000)], &[]);
    assert_eq!(
        kind,
        VtdErrorKind::TwoIncludeAll {
            other: 0,
            segment: 0
        }
    );

    let big = FirmwareUnit {
        size: 0x2000,
        ..q35_unit()
    };
    let (_, kind, _) = dmar_error(&[big, at(0xfed9_1000)], &[]);
    assert_eq!(kind, VtdErrorKind::UnitsOverlap { other: 0 });

    for (base, size) in [
        (0xfed9_0800, 0x1000),
        (0xfed9_0000, 0),
        (0xfed9_0000, 0x1800),
        (!0xfffu64, 0x2000),
    ] {
        let (_, kind, _) = dmar_error(
            &[FirmwareUnit {
                base: PhysAddr(base),
                size,
                ..q35_unit()
            }],
            &[],
        );
        assert_eq!(kind, VtdErrorKind::BadFrame { size }, "{base:#x} {size:#x}");
    }
}

#[test]
fn dmar_bridges_need_a_bus_range_of_their_own() {
    let bad = [FirmwareBridge {
        bridge: bdf(0, 0x1c, 0),
        secondary: 3,
        subordinate: 2,
    }];
    let (_, kind, msg) = dmar_error(
        &[FirmwareUnit {
            bridges: &bad,
            ..q35_unit()
        }],
        &[],
    );
    assert!(matches!(
        kind,
        VtdErrorKind::BadBridge {
            secondary: 3,
            subordinate: 2,
            ..
        }
    ));
    assert!(
        msg.ends_with("bridge 00:1c.0: buses 0x3..=0x2 are not a bus range below it"),
        "{msg}"
    );

    let a = [FirmwareBridge {
        bridge: bdf(0, 0x1c, 0),
        secondary: 2,
        subordinate: 5,
    }];
    let b = [FirmwareBridge {
        bridge: bdf(0, 0x1d, 0),
        secondary: 5,
        subordinate: 5,
    }];
    let second = FirmwareUnit {
        base: PhysAddr(0xfed9_1000),
        endpoints: &[],
        bridges: &b,
        ..q35_unit()
    };
    let (_, kind, _) = dmar_error(
        &[
            FirmwareUnit {
                bridges: &a,
                ..q35_unit()
            },
            second,
        ],
        &[],
    );
    assert_eq!(
        kind,
        VtdErrorKind::BridgeOverlap {
            bridge: bdf(0, 0x1d, 0),
            other: 0
        }
    );
}

#[test]
fn dmar_regions_are_whole_pages_with_devices_and_do_not_half_overlap() {
    let edu = [bdf(0, 2, 0)];
    let region = |base, limit, devices| FirmwareRegion {
        base: PhysAddr(base),
        limit: PhysAddr(limit),
        segment: 0,
        devices,
    };
    for (base, limit) in [
        (0x7f00_0800, 0x7f00_ffff),
        (0x7f00_0000, 0x7f00_0ffe),
        (0x7f01_0000, 0x7f00_ffff),
        (0, u64::MAX),
    ] {
        let (at, kind, _) = dmar_error(&[q35_unit()], &[region(base, limit, &edu)]);
        assert_eq!(at, Structure::Rmrr(0));
        assert_eq!(
            kind,
            VtdErrorKind::BadRegion {
                limit: PhysAddr(limit)
            },
            "{base:#x}..={limit:#x}"
        );
    }
    let (_, kind, msg) = dmar_error(&[q35_unit()], &[region(0x7f00_0000, 0x7f00_0fff, &[])]);
    assert_eq!(kind, VtdErrorKind::RegionWithoutDevices);
    assert_eq!(msg, "DMAR: RMRR 0: names no device");
    let (at, kind, _) = dmar_error(
        &[q35_unit()],
        &[
            region(0x7f00_0000, 0x7f00_1fff, &edu),
            region(0x7f00_1000, 0x7f00_1fff, &edu),
        ],
    );
    assert_eq!(
        (at, kind),
        (Structure::Rmrr(1), VtdErrorKind::RegionOverlap { other: 0 })
    );
}

// ---- [vtd] sections -----------------------------------------------------------------------

#[test]
fn the_q35_example_binds_by_requester_id_and_reserves() {
    let t = user(&config_text("vtd-q35.conf"));
    let u = t.unit(UnitId(0)).unwrap();
    assert_eq!((u.kind, u.base, u.size), (IommuKind::Vtd, Q35_BASE, 0x1000));
    assert_eq!(
        u.stated,
        Stated::SEGMENT | Stated::INCLUDE_PCI_ALL,
        "size is not stated"
    );
    let bindings: Vec<_> = t
        .streams()
        .iter()
        .map(|b| (b.source, b.sid, b.origin))
        .collect();
    assert_eq!(
        bindings,
        [
            (
                StreamSource::Device(pci(0, 2, 0)),
                StreamId(0x10),
                Origin::Config { line: 13 }
            ),
            (
                StreamSource::Device(pci(0, 4, 0)),
                StreamId(0x20),
                Origin::Config { line: 17 }
            ),
        ]
    );
    assert!(t.is_reserved(UnitId(0), requester_id(bdf(0, 0x1f, 7))));
    assert!(!t.is_reserved(UnitId(0), requester_id(bdf(0, 0x1e, 7))));
    let r = &t.reserved_regions()[0];
    assert_eq!(
        (r.start, r.len, r.segment),
        (PhysAddr(0x7f00_0000), 0x10_0000, 0)
    );
    assert_eq!(r.devices.as_slice(), &[bdf(0, 2, 0), bdf(0, 4, 0)]);
    assert_eq!(r.origin, Origin::Config { line: 10 });
    assert_eq!(t.windows().len(), 1);
}

#[test]
fn vtd_include_pci_all_is_a_range_after_every_device() {
    let t = user("[vtd a]\nbase 0xfed9_0000\nsegment 2\ninclude-pci-all yes\n[vtd b]\nbase 0xfed9_1000\nsegment 2\n[device pci 0002:00:02.0]\nunit b\n");
    let f = |b, d, fun| Device::Pci {
        segment: 2,
        bdf: bdf(b, d, fun),
    };
    assert_eq!(t.sid_for(f(0, 2, 0)), Ok(Some((UnitId(1), StreamId(0x10)))));
    assert_eq!(
        t.sid_for(f(5, 0, 0)),
        Ok(Some((UnitId(0), StreamId(0x500))))
    );
    assert_eq!(
        t.sid_for(pci(5, 0, 0)),
        Ok(None),
        "segment 0 is not included"
    );
}

#[test]
fn a_sid_for_a_vtd_device_is_refused_at_its_line() {
    let msg = check(
        "vtd-sid.conf",
        7,
        5,
        ConfigErrorKind::SidForVtd {
            key: "sid",
            unit: "dmar0",
        },
    );
    assert_eq!(
        msg,
        "vtd-sid.conf:7:5: \"sid\" does not apply to a device behind VT-d unit \"dmar0\": VT-d identifies a PCI function by its requester ID"
    );
    for (key, text) in [("shared", "shared yes"), ("raw-sid", "raw-sid yes")] {
        let text = format!("[vtd d]\nbase 0xfed9_0000\n[device pci 00:02.0]\nunit d\n{text}\n");
        let e = config::parse("c", &text).unwrap_err();
        assert_eq!(
            (e.line, e.column, e.kind),
            (5, 1, ConfigErrorKind::SidForVtd { key, unit: "d" })
        );
    }
}

#[test]
fn an_mmio_device_cannot_be_bound_to_a_vtd_unit() {
    let msg = check(
        "vtd-mmio.conf",
        6,
        6,
        ConfigErrorKind::MmioOnVtd { unit: "dmar0" },
    );
    assert!(
        msg.ends_with(
            "a VT-d unit cannot tell platform devices apart: bind MMIO devices to an SMMU"
        ),
        "{msg}"
    );
}

#[test]
fn a_function_of_another_segment_cannot_be_bound_to_a_vtd_unit() {
    let msg = check(
        "vtd-wrong-segment.conf",
        6,
        6,
        ConfigErrorKind::WrongSegment {
            device: Device::Pci {
                segment: 1,
                bdf: bdf(0, 2, 0),
            },
            unit: "dmar0",
            segment: 0,
        },
    );
    assert_eq!(msg, "vtd-wrong-segment.conf:6:6: pci 0001:00:02.0 is not in segment 0000, the one VT-d unit \"dmar0\" translates");
}

#[test]
fn vtd_unit_statements_are_checked() {
    check(
        "vtd-base-misaligned.conf",
        3,
        6,
        ConfigErrorKind::Misaligned {
            what: "VT-d base",
            value: 0xfed9_0800,
            align: 0x1000,
        },
    );
    check(
        "vtd-two-include-all.conf",
        8,
        1,
        ConfigErrorKind::TwoIncludeAll {
            other: "dmar0",
            other_line: 4,
        },
    );
    check(
        "vtd-misplaced-key.conf",
        4,
        1,
        ConfigErrorKind::MisplacedKey {
            key: "irq",
            belongs: "in an [smmu NAME] section",
        },
    );
    check(
        "vtd-key-in-smmu.conf",
        4,
        1,
        ConfigErrorKind::MisplacedKey {
            key: "include-pci-all",
            belongs: "in a [vtd NAME] section",
        },
    );
    check(
        "vtd-duplicate-base.conf",
        6,
        6,
        ConfigErrorKind::DuplicateUnitBase {
            base: Q35_BASE,
            first_line: 3,
        },
    );
    check(
        "vtd-segment-too-large.conf",
        4,
        9,
        ConfigErrorKind::NumberTooLarge {
            what: "a PCI segment",
            found: "0x1_0000",
            max: 0xffff,
        },
    );
    check(
        "vtd-reserve-rid-inverted.conf",
        4,
        13,
        ConfigErrorKind::InvertedRange {
            first: 0xff,
            last: 0xf8,
        },
    );
    let e = config::parse("c", "[vtd d]\nbase 0xfed9_0000\nbogus 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:3:1: unknown key \"bogus\" in a [vtd] section (expected base, size, segment, include-pci-all, unclaimed, allow-bypass, reserve-rid or reserved)"
    );
    let e = config::parse("c", "[vtd d]\nbase 0xfed9_0000\nsize 0x1800\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:3:6: VT-d register set size 0x1800 is out of range (a non-zero multiple of 0x1000)"
    );
    let e = config::parse("c", "[vtd d]\nsegment 1\n").unwrap_err();
    assert_eq!(e.to_string(), "c:1:1: this section needs \"base\"");
    let e = config::parse("c", "[device pci 00:02.0]\nunit nowhere\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:2:6: no [smmu nowhere] or [vtd nowhere] section in this file"
    );
}

#[test]
fn reserved_regions_are_checked() {
    check(
        "vtd-reserved-misaligned.conf",
        4,
        10,
        ConfigErrorKind::Misaligned {
            what: "reserved address",
            value: 0x7f00_0800,
            align: 0x1000,
        },
    );
    check(
        "vtd-reserved-overlap.conf",
        5,
        10,
        ConfigErrorKind::ReservedOverlap { other_line: 4 },
    );
    check(
        "vtd-reserved-no-device.conf",
        4,
        28,
        ConfigErrorKind::Expected {
            what: "a PCI function (e.g. 00:14.0)",
            found: Found::EndOfLine,
        },
    );
    check(
        "vtd-reserved-device-twice.conf",
        4,
        37,
        ConfigErrorKind::RegionDeviceTwice { bdf: bdf(0, 2, 0) },
    );
    check(
        "vtd-reserved-segment.conf",
        4,
        29,
        ConfigErrorKind::BadPciAddress {
            found: "0001:00:02.0",
            reason: "no segment here: the [vtd] section's segment applies",
        },
    );
    let e = config::parse(
        "c",
        "[vtd d]\nbase 0xfed9_0000\nreserved 0xffff_ffff_ffff_f000 8K pci 00:02.0\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:3:32: reserved address + length runs past the end of the address space"
    );
}

// ---- combined with the DMAR ---------------------------------------------------------------

#[test]
fn without_a_config_the_dmar_is_the_topology() {
    assert_eq!(combine(&q35(), None).unwrap(), q35());
}

#[test]
fn override_renames_the_unit_binds_another_function_and_reserves() {
    let t = combine(&q35(), Some(&user(&config_text("vtd-q35.conf")))).unwrap();
    assert_eq!(t.unit_count(), 1, "matched by base, not added");
    let u = t.unit(UnitId(0)).unwrap();
    assert_eq!(
        (u.name.as_str(), u.origin),
        ("dmar0", Origin::Config { line: 5 })
    );
    assert_eq!(
        t.sid_for(pci(0, 4, 0)),
        Ok(Some((UnitId(0), StreamId(0x20))))
    );
    assert_eq!(
        t.sid_for(pci(0, 0x1f, 2)),
        Ok(Some((UnitId(0), StreamId(0xfa))))
    );
    let edu: Vec<_> = t
        .bindings_for(pci(0, 2, 0))
        .map(|(b, s)| (s, b.origin))
        .collect();
    assert_eq!(
        edu,
        [(StreamId(0x10), Origin::Config { line: 13 })],
        "the config's statement replaces the DMAR's"
    );
    assert_eq!(t.reserved_regions().len(), 1);
    assert_eq!(t.regions_of(pci(0, 4, 0)).count(), 1);
    assert_eq!(t.windows().len(), 1);
    assert_eq!(t.mode(), Mode::Override);
}

#[test]
fn override_moves_a_function_to_another_unit_merge_refuses_it() {
    let text = "[vtd dmar1]\nbase 0xfed9_1000\n[device pci 00:02.0]\nunit dmar1\n";
    let t = combine(&q35(), Some(&user(text))).unwrap();
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(1), StreamId(0x10))))
    );
    assert_eq!(
        t.sid_for(pci(0, 1, 0)),
        Ok(Some((UnitId(0), StreamId(0x8))))
    );

    let e = combine(&q35(), Some(&user(&format!("mode merge\n{text}")))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "merge: pci 0000:00:02.0 has StreamID 0x10 of drhd@fed90000 in the DMAR but StreamID 0x10 of dmar1 on config line 5"
    );
}

#[test]
fn merge_adds_a_function_and_keeps_what_the_dmar_says() {
    let text = "mode merge\n[vtd dmar0]\nbase 0xfed9_0000\n[device pci 00:04.0]\nunit dmar0\n[device pci 00:02.0]\nunit dmar0\n";
    let t = combine(&q35(), Some(&user(text))).unwrap();
    assert_eq!(
        t.sid_for(pci(0, 4, 0)),
        Ok(Some((UnitId(0), StreamId(0x20))))
    );
    let edu: Vec<_> = t
        .bindings_for(pci(0, 2, 0))
        .map(|(b, _)| b.origin)
        .collect();
    assert_eq!(edu, [Origin::Dmar], "the config's statement is redundant");
}

#[test]
fn include_pci_all_overrides_or_must_agree() {
    let text = "[vtd dmar0]\nbase 0xfed9_0000\ninclude-pci-all yes\n";
    let t = combine(&q35(), Some(&user(text))).unwrap();
    assert_eq!(
        t.sid_for(pci(0, 5, 0)),
        Ok(Some((UnitId(0), StreamId(0x28))))
    );
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10))))
    );
    let e = combine(&q35(), Some(&user(&format!("mode merge\n{text}")))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "merge: unit dmar0 (config line 2): include-pci-all is no in the DMAR but yes in the config"
    );
    // Another unit that includes the whole segment next to one firmware already has.
    let all = FirmwareUnit {
        include_pci_all: true,
        endpoints: &[],
        ..q35_unit()
    };
    let fw = from_dmar(&FirmwareVtd {
        units: &[all],
        reserved: &[],
    })
    .unwrap();
    let e = combine(
        &fw,
        Some(&user("[vtd x]\nbase 0xfed9_1000\ninclude-pci-all yes\n")),
    )
    .unwrap_err();
    assert!(
        matches!(e, CombineError::TwoIncludeAll { segment: 0, .. }),
        "{e}"
    );
    // Turning it off in override mode leaves the segment's other functions untranslated.
    let t = combine(
        &fw,
        Some(&user("[vtd x]\nbase 0xfed9_0000\ninclude-pci-all no\n")),
    )
    .unwrap();
    assert_eq!(t.sid_for(pci(0, 5, 0)), Ok(None));
}

#[test]
fn a_unit_keeps_its_kind_and_segment() {
    let e = combine(&q35(), Some(&user("[smmu s]\nbase 0xfed9_0000\n"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unit s (config line 1) is a SMMUv3 unit, but the DMAR has a VT-d unit at that base"
    );
    let e = combine(
        &q35(),
        Some(&user("[vtd d]\nbase 0xfed9_0000\nsegment 1\n")),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CombineError::SegmentConflict {
                firmware: 0,
                config: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn reserved_regions_combine_with_the_dmar_rmrrs() {
    let usb = [bdf(0, 0x1d, 0)];
    let fw = from_dmar(&FirmwareVtd {
        units: &[q35_unit()],
        reserved: &[FirmwareRegion {
            base: PhysAddr(0x7f00_0000),
            limit: PhysAddr(0x7f0f_ffff),
            segment: 0,
            devices: &usb,
        }],
    })
    .unwrap();
    let same = "[vtd d]\nbase 0xfed9_0000\nreserved 0x7f00_0000 1M pci 00:02.0\n";
    let t = combine(&fw, Some(&user(same))).unwrap();
    assert_eq!(t.reserved_regions().len(), 1);
    assert_eq!(
        t.reserved_regions()[0].devices.as_slice(),
        &[bdf(0, 2, 0)],
        "override replaces the devices"
    );
    let t = combine(&fw, Some(&user(&format!("mode merge\n{same}")))).unwrap();
    assert_eq!(
        t.reserved_regions()[0].devices.as_slice(),
        &[bdf(0, 0x1d, 0), bdf(0, 2, 0)],
        "merge adds"
    );

    let half = "[vtd d]\nbase 0xfed9_0000\nreserved 0x7f08_0000 1M pci 00:02.0\n";
    let e = combine(&fw, Some(&user(half))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reserved 0x000000007f080000 len 0x100000 (config line 3) overlaps the reserved region at 0x000000007f000000 of the DMAR without being the same range"
    );
    let apart = "[vtd d]\nbase 0xfed9_0000\nreserved 0x7e00_0000 4K pci 00:02.0\n";
    assert_eq!(
        combine(&fw, Some(&user(apart)))
            .unwrap()
            .reserved_regions()
            .len(),
        2
    );

    let ram = "[vm vm1]\nram 0x7000_0000 256M\n";
    let e = combine(&fw, Some(&user(ram))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "vm vm1: ram 0x0000000070000000 len 0x10000000 (config line 2) overlaps the reserved region at 0x000000007f000000 (the DMAR), which no client may map"
    );
}

#[test]
fn a_function_must_be_of_the_segment_firmware_gives_the_unit() {
    // The file leaves the segment to firmware (1); its device line assumed segment 0.
    let seg1 = FirmwareUnit {
        segment: 1,
        ..q35_unit()
    };
    let fw = from_dmar(&FirmwareVtd {
        units: &[seg1],
        reserved: &[],
    })
    .unwrap();
    let text = "[vtd d]\nbase 0xfed9_0000\n[device pci 00:04.0]\nunit d\n";
    let e = combine(&fw, Some(&user(text))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pci 0000:00:04.0 (config line 4) is bound to VT-d unit d, which translates segment 0001 only"
    );
    let ok = "[vtd d]\nbase 0xfed9_0000\nsegment 1\n[device pci 0001:00:04.0]\nunit d\n";
    let t = combine(&fw, Some(&user(ok))).unwrap();
    let f = Device::Pci {
        segment: 1,
        bdf: bdf(0, 4, 0),
    };
    assert_eq!(t.sid_for(f), Ok(Some((UnitId(0), StreamId(0x20)))));
}

// ---- random DMAR views --------------------------------------------------------------------

fn any_bdf() -> impl Strategy<Value = Bdf> {
    (0u8..4, 0u8..32, 0u8..8).prop_map(|(b, d, f)| bdf(b, d, f))
}

/// Values near the edges: aligned and not, zero, the top of the address space.
fn any_addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..8).prop_map(|i| 0xfed9_0000 + i * 0x800),
        Just(0),
        Just(u64::MAX),
        Just(!0xfffu64),
        any::<u64>(),
    ]
}

#[derive(Debug, Clone)]
struct Unit {
    base: u64,
    size: u64,
    segment: u16,
    all: bool,
    endpoints: Vec<Bdf>,
    bridges: Vec<FirmwareBridge>,
}

#[derive(Debug, Clone)]
struct Region {
    base: u64,
    limit: u64,
    segment: u16,
    devices: Vec<Bdf>,
}

fn any_unit() -> impl Strategy<Value = Unit> {
    (
        any_addr(),
        prop_oneof![
            Just(0x1000u64),
            Just(0),
            Just(0x1800),
            Just(0x2000),
            any::<u64>()
        ],
        0u16..2,
        any::<bool>(),
        proptest::collection::vec(any_bdf(), 0..6),
        proptest::collection::vec(
            (any_bdf(), any::<u8>(), any::<u8>()).prop_map(|(bridge, secondary, subordinate)| {
                FirmwareBridge {
                    bridge,
                    secondary,
                    subordinate,
                }
            }),
            0..3,
        ),
    )
        .prop_map(|(base, size, segment, all, endpoints, bridges)| Unit {
            base,
            size,
            segment,
            all,
            endpoints,
            bridges,
        })
}

fn any_region() -> impl Strategy<Value = Region> {
    (
        any_addr(),
        prop_oneof![Just(0xfffu64), Just(0xf_ffff), Just(0), any::<u64>()],
        0u16..2,
        proptest::collection::vec(any_bdf(), 0..10),
    )
        .prop_map(|(base, extra, segment, devices)| Region {
            base,
            limit: base.wrapping_add(extra),
            segment,
            devices,
        })
}

const CONFIGS: &[&str] = &[
    "",
    "[vtd d]\nbase 0xfed9_0000\ninclude-pci-all yes\n[device pci 00:02.0]\nunit d\n",
    "mode merge\n[vtd d]\nbase 0xfed9_0000\nreserved 0x7f00_0000 1M pci 00:02.0\n[device pci 00:03.0]\nunit d\nwindow iova 0x0 pa 0x5000_0000 len 4K access rw\n",
    "[vtd d]\nbase 0xfed9_1000\nsegment 1\n[device pci 0001:00:02.0]\nunit d\n[vm v]\nram 0x7000_0000 256M\n",
    "mode merge\n[smmu s]\nbase 0xfed9_0000\n",
];

proptest! {
    /// Whatever DRHDs and RMRRs the daemon hands over (bad frames, duplicate and overlapping
    /// units, a device in two units, inverted bridges, regions of any shape, more than fits),
    /// the conversion and combining with a config return a result, never a panic; a
    /// conversion that succeeds binds each listed function by its requester ID.
    #[test]
    fn any_dmar_view_gives_a_topology_or_an_error(
        units in proptest::collection::vec(any_unit(), 0..10),
        regions in proptest::collection::vec(any_region(), 0..10),
        config in proptest::sample::select(CONFIGS),
    ) {
        let fu: Vec<FirmwareUnit<'_>> = units
            .iter()
            .map(|u| FirmwareUnit {
                base: PhysAddr(u.base),
                size: u.size,
                segment: u.segment,
                include_pci_all: u.all,
                endpoints: &u.endpoints,
                bridges: &u.bridges,
            })
            .collect();
        let fr: Vec<FirmwareRegion<'_>> = regions
            .iter()
            .map(|r| FirmwareRegion {
                base: PhysAddr(r.base),
                limit: PhysAddr(r.limit),
                segment: r.segment,
                devices: &r.devices,
            })
            .collect();
        match from_dmar(&FirmwareVtd { units: &fu, reserved: &fr }) {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(t) => {
                for (i, u) in units.iter().enumerate() {
                    for b in &u.endpoints {
                        let d = Device::Pci { segment: u.segment, bdf: *b };
                        prop_assert_eq!(t.sid_for(d), Ok(Some((UnitId(i as u8), requester_id(*b)))));
                    }
                }
                let user = config::parse("fuzz", config).unwrap();
                let _ = combine(&t, Some(&user));
            }
        }
    }
}

#[test]
fn the_q35_board_file_names_the_dmar_unit_and_binds_edu() {
    let path = common::board_file("qemu-q35", "smmuman.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let t = combine(&q35(), Some(&user(&text))).unwrap();
    assert_eq!(t.unit_count(), 1);
    assert_eq!(t.unit(UnitId(0)).unwrap().name.as_str(), "dmar0");
    assert_eq!(
        t.sid_for(pci(0, 2, 0)),
        Ok(Some((UnitId(0), StreamId(0x10))))
    );
    assert_eq!(
        t.sid_for(pci(0, 0x1f, 2)),
        Ok(Some((UnitId(0), StreamId(0xfa))))
    );
}
