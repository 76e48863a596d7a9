//! `smmuman.conf` parsing: the full example, and one fixture per mistake, each asserting the
//! exact error kind, line and column.

mod common;

use board_config::config::{self, ConfigErrorKind, Found};
use board_config::{
    CapacityExceeded, Device, Irq, Mode, Origin, Stated, StreamSource, Trigger, Unclaimed, UnitId,
};
use common::config_text;
use iommu_core::{Access, Bdf, Iova, PhysAddr, StreamId};
use proptest::prelude::*;

fn pci(bus: u8, dev: u8, func: u8) -> Device {
    Device::pci(Bdf::new(bus, dev, func).unwrap())
}

/// Asserts that fixture `name` fails at `line`:`column` with `kind`.
fn check(name: &str, line: u32, column: u32, kind: ConfigErrorKind<'_>) {
    let text = config_text(name);
    match config::parse(name, &text) {
        Ok(t) => panic!("{name} was accepted:\n{t}"),
        Err(e) => assert_eq!((e.line, e.column, e.kind), (line, column, kind), "{e}"),
    }
}

const UNIT_KEYS: &str = "base, size, irq, coherent, unclaimed, allow-bypass or reserve-sid";
const IN_DEVICE: &str = "in a [device pci|mmio ADDRESS] section";
const IRQ_NAMES: &str = "an interrupt name (eventq, priq, cmdq-sync, gerror or combined)";
const ACCESS: &str = "an access (r, w, x or a combination such as rw)";

#[test]
fn the_full_example_says_everything() {
    let text = config_text("full.conf");
    let t = config::parse("full.conf", &text).unwrap();
    assert_eq!(t.mode(), Mode::Merge);
    assert_eq!(t.fault_log(), Some(1024));

    let smmu0 = t.unit(UnitId(0)).unwrap();
    assert_eq!(smmu0.name.as_str(), "smmu0");
    assert_eq!((smmu0.base, smmu0.size), (PhysAddr(0x0905_0000), 0x2_0000));
    assert_eq!(
        smmu0.irqs.eventq,
        Some(Irq {
            intid: 106,
            trigger: Trigger::Edge
        })
    );
    assert_eq!(smmu0.irqs.priq, None);
    assert!(smmu0.coherent);
    assert_eq!(
        smmu0.stated,
        Stated::SIZE | Stated::EVENTQ | Stated::PRIQ | Stated::COHERENT | Stated::UNCLAIMED,
        "priq none is a statement; cmdq-sync is not"
    );
    assert_eq!(smmu0.origin, Origin::Config { line: 5 });
    let dma = t.unit(UnitId(1)).unwrap();
    assert_eq!((dma.base, dma.size), (PhysAddr(0x2b40_0000), 0x10_0000));
    assert_eq!(dma.unclaimed, Unclaimed::Bypass);
    assert!(!dma.stated.contains(Stated::COHERENT));

    assert!(t.is_reserved(UnitId(0), StreamId(7)));
    assert!(t.is_reserved(UnitId(0), StreamId(0xfff0)));
    assert!(!t.is_reserved(UnitId(0), StreamId(8)));
    assert!(!t.is_reserved(UnitId(1), StreamId(0)));

    let bindings: Vec<_> = t
        .streams()
        .iter()
        .map(|b| (b.source, b.unit, b.sid, b.shared, b.origin))
        .collect();
    let dev = StreamSource::Device;
    assert_eq!(
        bindings,
        [
            (
                dev(pci(0, 1, 0)),
                UnitId(0),
                StreamId(0x8),
                false,
                Origin::Config { line: 24 }
            ),
            (
                dev(pci(1, 1, 0)),
                UnitId(0),
                StreamId(0x100),
                true,
                Origin::Config { line: 28 }
            ),
            (
                dev(pci(1, 2, 0)),
                UnitId(0),
                StreamId(0x100),
                true,
                Origin::Config { line: 33 }
            ),
            (
                dev(Device::Mmio(PhysAddr(0x1c09_0000))),
                UnitId(1),
                StreamId(0x20),
                false,
                Origin::Config { line: 40 }
            ),
        ]
    );
    let groups: Vec<(UnitId, StreamId, Vec<Device>)> = t
        .groups()
        .map(|g| (g.unit, g.sid, g.members().collect()))
        .collect();
    assert_eq!(
        groups,
        [(UnitId(0), StreamId(0x100), vec![pci(1, 1, 0), pci(1, 2, 0)])]
    );

    let windows: Vec<_> = t
        .windows()
        .iter()
        .map(|w| (w.device, w.iova, w.pa, w.len, w.access))
        .collect();
    assert_eq!(
        windows,
        [
            (
                pci(1, 2, 0),
                Iova(0),
                PhysAddr(0x5000_0000),
                0x20_0000,
                Access::RW
            ),
            (
                pci(1, 2, 0),
                Iova(0x20_0000),
                PhysAddr(0x5020_0000),
                0x1000,
                Access::READ
            ),
            (
                pci(0, 2, 0),
                Iova(0),
                PhysAddr(0x6000_0000),
                0x1_0000,
                Access::WRITE
            ),
        ]
    );
}

#[test]
fn the_full_example_assigns_memory_to_two_vms() {
    let text = config_text("full.conf");
    let t = config::parse("full.conf", &text).unwrap();
    let vms: Vec<_> = t
        .vms()
        .iter()
        .map(|v| {
            let ram: Vec<_> = v.ram.iter().map(|g| (g.start.0, g.len, g.shared)).collect();
            (v.name.as_str(), ram, v.peers.len())
        })
        .collect();
    assert_eq!(
        vms,
        [
            (
                "vm1",
                vec![
                    (0x8000_0000, 0x1000_0000, false),
                    (0xa000_0000, 0x20_0000, true)
                ],
                1
            ),
            (
                "vm2",
                vec![
                    (0x9000_0000, 0x1000_0000, false),
                    (0xa000_0000, 0x20_0000, true)
                ],
                0
            ),
        ]
    );
    let peer = t.vm("vm1").unwrap().peers[0];
    assert_eq!((peer.device(), peer.bar, peer.line), (pci(1, 2, 0), 0, 48));
}

#[test]
fn an_empty_config_states_nothing() {
    let t = config::parse("empty", "# nothing\n\n").unwrap();
    assert_eq!(t, board_config::Topology::new());
    assert_eq!(t.mode(), Mode::Override);
    assert_eq!(t.fault_log_size(), board_config::DEFAULT_FAULT_LOG);
}

#[test]
fn errors_read_file_line_column_and_what_was_expected() {
    let text = config_text("bad-number.conf");
    let e = config::parse("boards/qemu-virt/smmuman.conf", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "boards/qemu-virt/smmuman.conf:7:5: expected a StreamID (number), found \"zz\""
    );
}

#[test]
fn bad_number() {
    check(
        "bad-number.conf",
        7,
        5,
        ConfigErrorKind::BadNumber {
            what: "a StreamID",
            found: "zz",
        },
    );
}

#[test]
fn ambiguous_number() {
    check(
        "ambiguous-number.conf",
        2,
        11,
        ConfigErrorKind::AmbiguousNumber { found: "256" },
    );
    let text = config_text("ambiguous-number.conf");
    let e = config::parse("c", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:2:11: \"256\" could be hex or decimal: write 0x256 or 0d256"
    );
}

#[test]
fn number_too_large_for_a_stream_id() {
    check(
        "number-too-large.conf",
        7,
        5,
        ConfigErrorKind::NumberTooLarge {
            what: "a StreamID",
            found: "0x1_0000_0000",
            max: 0xffff_ffff,
        },
    );
}

#[test]
fn number_beyond_64_bits() {
    check(
        "number-overflow.conf",
        3,
        6,
        ConfigErrorKind::NumberTooLarge {
            what: "an address",
            found: "0x1_0000_0000_0000_0000",
            max: u64::MAX,
        },
    );
}

#[test]
fn missing_value() {
    check(
        "missing-value.conf",
        7,
        4,
        ConfigErrorKind::Expected {
            what: "a StreamID",
            found: Found::EndOfLine,
        },
    );
}

#[test]
fn unknown_key() {
    check(
        "unknown-key.conf",
        3,
        1,
        ConfigErrorKind::UnknownKey {
            key: "bse",
            section: "an [smmu] section",
            expected: UNIT_KEYS,
        },
    );
}

#[test]
fn key_of_another_section() {
    check(
        "misplaced-key.conf",
        4,
        1,
        ConfigErrorKind::MisplacedKey {
            key: "sid",
            belongs: IN_DEVICE,
        },
    );
}

#[test]
fn unknown_section() {
    check(
        "unknown-section.conf",
        2,
        2,
        ConfigErrorKind::UnknownSection { found: "iommu" },
    );
}

#[test]
fn unclosed_section_header() {
    check(
        "unclosed-section.conf",
        2,
        12,
        ConfigErrorKind::Expected {
            what: "\"]\" closing the section header",
            found: Found::EndOfLine,
        },
    );
}

#[test]
fn trailing_token() {
    check(
        "trailing-token.conf",
        2,
        12,
        ConfigErrorKind::Expected {
            what: "end of line",
            found: Found::Token("please"),
        },
    );
}

#[test]
fn unknown_mode() {
    check(
        "bad-mode.conf",
        2,
        6,
        ConfigErrorKind::Expected {
            what: "override or merge",
            found: Found::Token("replace"),
        },
    );
}

#[test]
fn duplicate_key() {
    check(
        "duplicate-key.conf",
        5,
        1,
        ConfigErrorKind::DuplicateKey {
            key: "base",
            first_line: 3,
        },
    );
}

#[test]
fn duplicate_device() {
    check(
        "duplicate-device.conf",
        9,
        13,
        ConfigErrorKind::DuplicateDevice {
            device: pci(0, 1, 0),
            first_line: 5,
        },
    );
}

#[test]
fn duplicate_unit() {
    check(
        "duplicate-unit.conf",
        5,
        7,
        ConfigErrorKind::DuplicateUnit {
            name: "smmu0",
            first_line: 2,
        },
    );
}

#[test]
fn two_units_at_one_base() {
    check(
        "duplicate-unit-base.conf",
        6,
        6,
        ConfigErrorKind::DuplicateUnitBase {
            base: PhysAddr(0x0905_0000),
            first_line: 3,
        },
    );
}

#[test]
fn overlapping_units() {
    check(
        "units-overlap.conf",
        6,
        6,
        ConfigErrorKind::UnitsOverlap {
            other: "smmu0",
            other_line: 2,
        },
    );
}

#[test]
fn unknown_unit_reference() {
    check(
        "unknown-unit.conf",
        6,
        6,
        ConfigErrorKind::UnknownUnit { name: "smmu1" },
    );
}

#[test]
fn unit_without_base() {
    check(
        "missing-base.conf",
        2,
        1,
        ConfigErrorKind::MissingKey { key: "base" },
    );
}

#[test]
fn device_without_stream_id() {
    check(
        "missing-sid.conf",
        5,
        1,
        ConfigErrorKind::MissingKey { key: "sid" },
    );
}

#[test]
fn raw_sid_needs_a_stream_id() {
    check(
        "raw-sid-without-sid.conf",
        5,
        1,
        ConfigErrorKind::MissingKey { key: "sid" },
    );
}

#[test]
fn raw_sid_is_per_device_and_off_unless_stated() {
    let text = config_text("raw-sid.conf");
    let t = config::parse("raw-sid.conf", &text).unwrap();
    let raw: Vec<(StreamSource, bool)> =
        t.streams().iter().map(|b| (b.source, b.raw_sid)).collect();
    assert_eq!(
        raw,
        [
            (
                StreamSource::Device(Device::Mmio(PhysAddr(0x0a00_0000))),
                true
            ),
            (StreamSource::Device(pci(0, 1, 0)), true),
            (StreamSource::Device(pci(0, 2, 0)), false),
        ]
    );
    // A config that never says raw-sid allows none.
    let full = config_text("full.conf");
    let t = config::parse("full.conf", &full).unwrap();
    assert!(t.streams().iter().all(|b| !b.raw_sid));
}

#[test]
fn device_section_that_says_nothing() {
    check("empty-device.conf", 5, 1, ConfigErrorKind::EmptySection);
}

#[test]
fn conflicting_stream_ids_for_one_device() {
    check(
        "conflicting-sid.conf",
        8,
        5,
        ConfigErrorKind::ConflictingSid {
            first: StreamId(8),
            first_line: 7,
            second: StreamId(9),
        },
    );
}

#[test]
fn sharing_must_be_declared_on_both_sides() {
    check(
        "undeclared-sharing.conf",
        12,
        5,
        ConfigErrorKind::UndeclaredSharing {
            sid: StreamId(0x100),
            unit: "smmu0",
            other: pci(1, 1, 0),
            other_line: 7,
        },
    );
}

#[test]
fn bypass_needs_the_opt_in() {
    check(
        "bypass-without-opt-in.conf",
        4,
        11,
        ConfigErrorKind::BypassWithoutOptIn,
    );
}

#[test]
fn misaligned_window() {
    check(
        "window-misaligned.conf",
        8,
        20,
        ConfigErrorKind::Misaligned {
            what: "window pa",
            value: 0x5000_0800,
            align: 0x1000,
        },
    );
}

#[test]
fn window_past_the_end_of_the_address_space() {
    check(
        "window-overflow.conf",
        8,
        54,
        ConfigErrorKind::Wraps {
            what: "window iova + len",
        },
    );
}

#[test]
fn empty_window() {
    check(
        "window-empty.conf",
        8,
        36,
        ConfigErrorKind::OutOfRange {
            what: "window len",
            value: 0,
            allowed: "a non-zero multiple of 0x1000",
        },
    );
}

#[test]
fn overlapping_windows() {
    check(
        "window-overlap.conf",
        9,
        1,
        ConfigErrorKind::WindowOverlap { other_line: 8 },
    );
}

#[test]
fn bad_access_letters() {
    check(
        "window-bad-access.conf",
        8,
        46,
        ConfigErrorKind::Expected {
            what: ACCESS,
            found: Found::Token("rz"),
        },
    );
}

#[test]
fn window_statement_out_of_order() {
    check(
        "window-syntax.conf",
        8,
        17,
        ConfigErrorKind::Expected {
            what: "\"pa\"",
            found: Found::Token("len"),
        },
    );
}

#[test]
fn bad_pci_address() {
    check(
        "bad-pci-address.conf",
        5,
        13,
        ConfigErrorKind::BadPciAddress {
            found: "00:20.0",
            reason: "device number above 0x1f",
        },
    );
}

#[test]
fn bad_unit_name() {
    check(
        "bad-name.conf",
        2,
        7,
        ConfigErrorKind::BadName { found: "0smmu" },
    );
}

#[test]
fn interrupt_that_is_not_an_spi() {
    check(
        "bad-irq.conf",
        4,
        12,
        ConfigErrorKind::OutOfRange {
            what: "interrupt ID",
            value: 20,
            allowed: "an SPI: 32-1019 or 4096-5119",
        },
    );
}

#[test]
fn unknown_interrupt_name() {
    check(
        "bad-irq-name.conf",
        4,
        5,
        ConfigErrorKind::Expected {
            what: IRQ_NAMES,
            found: Found::Token("event"),
        },
    );
}

#[test]
fn unknown_trigger() {
    check(
        "bad-trigger.conf",
        4,
        18,
        ConfigErrorKind::Expected {
            what: "edge or level",
            found: Found::Token("rising"),
        },
    );
}

#[test]
fn inverted_reserved_range() {
    check(
        "inverted-range.conf",
        4,
        13,
        ConfigErrorKind::InvertedRange { first: 8, last: 7 },
    );
}

#[test]
fn overlapping_reserved_ranges() {
    check(
        "reserved-overlap.conf",
        5,
        13,
        ConfigErrorKind::ReservedOverlap { other_line: 4 },
    );
}

#[test]
fn fault_log_of_zero_records() {
    check(
        "fault-log-zero.conf",
        2,
        11,
        ConfigErrorKind::OutOfRange {
            what: "fault-log",
            value: 0,
            allowed: "1 to 0x100000 records",
        },
    );
}

#[test]
fn smmu_base_off_a_64k_boundary() {
    check(
        "smmu-base-misaligned.conf",
        3,
        6,
        ConfigErrorKind::Misaligned {
            what: "SMMU base",
            value: 0x0905_1000,
            align: 0x1_0000,
        },
    );
}

#[test]
fn more_units_than_smmuman_keeps() {
    check(
        "too-many-units.conf",
        18,
        1,
        ConfigErrorKind::TooMany(CapacityExceeded {
            what: "[smmu] and [vtd] sections",
            max: 8,
        }),
    );
}

#[test]
fn bytes_that_are_not_utf8() {
    let bytes = std::fs::read(common::fixture("config", "not-utf8.conf")).unwrap();
    let e = config::parse_bytes("initrd", &bytes).unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (3, 6, ConfigErrorKind::NotUtf8));
    assert_eq!(e.to_string(), "initrd:3:6: the file is not UTF-8 text");
}

#[test]
fn initrd_padding_is_ignored() {
    let t = config::parse_bytes("initrd", b"mode merge\n\0\0\0\0").unwrap();
    assert_eq!(t.mode(), Mode::Merge);
}

/// Words the generator below strings together.
const WORDS: &[&str] = &[
    "[smmu",
    "[vtd",
    "dmar0",
    "segment",
    "include-pci-all",
    "reserve-rid",
    "reserved",
    "0xfed9_0000",
    "00:1f.0-00:1f.7",
    "00:02.0",
    "0001:00:02.0",
    "1M",
    "[device",
    "[vm",
    "vm1",
    "ram",
    "peer",
    "bar",
    "0x5000_0000",
    "4K",
    "pci",
    "mmio",
    "]",
    "smmu0",
    "base",
    "size",
    "irq",
    "eventq",
    "none",
    "edge",
    "coherent",
    "yes",
    "no",
    "unclaimed",
    "bypass",
    "allow-bypass",
    "reserve-sid",
    "unit",
    "sid",
    "shared",
    "window",
    "iova",
    "pa",
    "len",
    "access",
    "rw",
    "mode",
    "merge",
    "fault-log",
    "mappings",
    "mappings-per-vm",
    "0x0905_0000",
    "0x8",
    "0x0-0x7",
    "2M",
    "0d106",
    "00:01.0",
    "#",
    "\n",
    "\n",
    "\n",
    "zz",
    "é",
];

proptest! {
    /// Whatever the text, the parser returns (never panics), and an error points inside it.
    #[test]
    fn any_text_gives_a_topology_or_an_error_inside_the_text(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 0..60)
    ) {
        let text = words.join(" ");
        if let Err(e) = config::parse("fuzz", &text) {
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!(e.line >= 1 && (e.line as usize) <= lines.len(), "{e}");
            let len = lines[e.line as usize - 1].chars().count() as u32;
            prop_assert!(e.column >= 1 && e.column <= len + 1, "{e}");
        }
    }

    /// Whatever the bytes (invalid UTF-8, NULs, control characters, fragments of real
    /// statements), parsing and then combining with the real QEMU device tree returns a result,
    /// never a panic.
    #[test]
    fn any_bytes_give_a_result_even_combined_with_firmware(
        chunks in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..40,
        )
    ) {
        let bytes: Vec<u8> = chunks.join(&b' ');
        if let Ok(user) = config::parse_bytes("fuzz", &bytes) {
            let _ = board_config::combine(&firmware(), Some(&user));
            let _ = board_config::combine(&q35_dmar(), Some(&user));
        }
    }
}

/// QEMU q35's DMAR as the daemon converts it: one VT-d unit listing edu, plus an RMRR.
fn q35_dmar() -> board_config::Topology {
    use board_config::vtd::{from_dmar, FirmwareRegion, FirmwareUnit, FirmwareVtd};
    let endpoints = [Bdf::new(0, 2, 0).unwrap(), Bdf::new(0, 0x1f, 0).unwrap()];
    from_dmar(&FirmwareVtd {
        units: &[FirmwareUnit {
            base: PhysAddr(0xfed9_0000),
            size: 0x1000,
            segment: 0,
            include_pci_all: false,
            endpoints: &endpoints,
            bridges: &[],
        }],
        reserved: &[FirmwareRegion {
            base: PhysAddr(0x7f00_0000),
            limit: PhysAddr(0x7f0f_ffff),
            segment: 0,
            devices: &endpoints[..1],
        }],
    })
    .unwrap()
}

/// The QEMU virt device tree's topology, parsed once.
fn firmware() -> board_config::Topology {
    static FIRMWARE: std::sync::OnceLock<board_config::Topology> = std::sync::OnceLock::new();
    FIRMWARE
        .get_or_init(|| {
            board_config::dt::from_blob(&common::dtb("qemu-virt.dts"))
                .expect("the QEMU fixture parses")
        })
        .clone()
}

// ---- [vm NAME]: memory authority ---------------------------------------------------------

const IN_VM: &str = "in a [vm NAME] section";

#[test]
fn vm_sections_give_typed_ram_and_peers_with_their_lines() {
    use board_config::{PeerBar, RamGrant};
    let text = config_text("vm.conf");
    let t = config::parse("vm.conf", &text).unwrap();
    let names: Vec<_> = t.vms().iter().map(|v| (v.name.as_str(), v.line)).collect();
    assert_eq!(names, [("vm1", 3), ("vm2", 8)]);
    let ram = |start, len, shared, line| RamGrant {
        start: PhysAddr(start),
        len,
        shared,
        line,
    };
    let vm1 = t.vm("vm1").unwrap();
    assert_eq!(
        vm1.ram,
        [
            ram(0x5000_0000, 0x1000_0000, false, 4),
            ram(0x7000_0000, 0x20_0000, true, 5)
        ]
    );
    assert_eq!(
        vm1.peers,
        [PeerBar {
            segment: 0,
            bdf: Bdf::new(0, 2, 0).unwrap(),
            bar: 0,
            line: 6
        }]
    );
    let vm2 = t.vm("vm2").unwrap();
    assert_eq!(vm2.ram.len(), 4);
    assert_eq!(vm2.ram[3], ram(0x7100_0000, 0x10_0000, true, 12));
    let f = Bdf::new(0, 3, 0).unwrap();
    assert_eq!(vm2.peer(1, f, 4).map(|p| p.line), Some(14));
    assert_eq!(vm2.peer(0, f, 4), None, "segment 1, not 0");
    assert_eq!(vm2.peer(1, f, 0), None, "BARs 2 and 4 only");
    assert!(t.vm("vm3").is_none());

    // What the manager asks before a Map: inside one of the VM's own grants?
    let covering = |vm: &str, start, len| {
        t.vm(vm)
            .unwrap()
            .ram_covering(PhysAddr(start), len)
            .map(|g| g.line)
    };
    assert_eq!(covering("vm1", 0x5fff_f000, 0x1000), Some(4));
    assert_eq!(covering("vm1", 0x5fff_f000, 0x2000), None, "runs past");
    assert_eq!(covering("vm1", 0x6000_0000, 0x1000), None, "vm2's RAM");
    assert_eq!(covering("vm2", 0x7000_0000, 0x1000), Some(11), "shared");
    assert_eq!(covering("vm1", 0x0905_0000, 0x1000), None, "SMMU registers");
    assert!(t.to_string().contains(
        "vm vm1: ram 0x0000000050000000 len 0x10000000 [line 4]; \
         ram 0x0000000070000000 len 0x200000 shared [line 5]; \
         peer pci 0000:00:02.0 bar 0 [line 6]; [config line 3]"
    ));
}

#[test]
fn vm_name_syntax() {
    check(
        "vm-bad-name.conf",
        2,
        5,
        ConfigErrorKind::BadVmName { found: "vm.1" },
    );
    let long = format!("[vm {}]\n", "v".repeat(32));
    let e = config::parse("c", &long).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "c:1:5: bad VM name \"{}\" (1 to 31 letters, digits, '-' or '_')",
            "v".repeat(32)
        )
    );
    let ok = format!("[vm {}]\n[vm 0-_A]\n", "v".repeat(31));
    assert_eq!(config::parse("c", &ok).unwrap().vms().len(), 2);
}

#[test]
fn vm_described_twice() {
    check(
        "vm-duplicate.conf",
        5,
        5,
        ConfigErrorKind::DuplicateVm {
            name: "vm1",
            first_line: 2,
        },
    );
}

#[test]
fn vm_ram_alignment_length_and_wrap() {
    check(
        "vm-ram-misaligned.conf",
        3,
        5,
        ConfigErrorKind::Misaligned {
            what: "ram address",
            value: 0x5000_0800,
            align: 0x1000,
        },
    );
    check(
        "vm-ram-len-misaligned.conf",
        3,
        17,
        ConfigErrorKind::Misaligned {
            what: "ram length",
            value: 0x1800,
            align: 0x1000,
        },
    );
    check(
        "vm-ram-empty.conf",
        3,
        17,
        ConfigErrorKind::OutOfRange {
            what: "ram length",
            value: 0,
            allowed: "a non-zero multiple of 0x1000",
        },
    );
    check(
        "vm-ram-wraps.conf",
        3,
        27,
        ConfigErrorKind::Wraps {
            what: "ram address + length",
        },
    );
    // Up to the last byte of the address space is fine.
    let t = config::parse("c", "[vm top]\nram 0xffff_ffff_ffff_f000 4K\n").unwrap();
    assert_eq!(t.vm("top").unwrap().ram[0].last(), u64::MAX);
}

#[test]
fn vm_ram_ranges_of_one_vm_do_not_overlap() {
    check(
        "vm-ram-overlap.conf",
        4,
        5,
        ConfigErrorKind::RamOverlap {
            start: 0x501f_f000,
            other_line: 3,
        },
    );
    let text = config_text("vm-ram-overlap.conf");
    let e = config::parse("c", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:4:5: ram 0x501ff000 overlaps this vm's ram at line 3"
    );
}

#[test]
fn vm_ram_shared_between_vms_needs_shared_on_both() {
    check(
        "vm-ram-overlaps-vm.conf",
        7,
        5,
        ConfigErrorKind::RamOverlapsVm {
            start: 0x7010_0000,
            other: "vm1",
            other_line: 3,
        },
    );
    let text = config_text("vm-ram-overlaps-vm.conf");
    let e = config::parse("c", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:7:5: ram 0x70100000 overlaps vm vm1's ram at line 3; both must say shared"
    );
    // Neither says shared: the same error, whichever VM comes first.
    let e = config::parse(
        "c",
        "[vm a]\nram 0x5000_0000 8K\n[vm b]\nram 0x5000_1000 4K shared\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:4:5: ram 0x50001000 overlaps vm a's ram at line 2; both must say shared"
    );
    // Both say shared: partial overlap is allowed.
    config::parse(
        "c",
        "[vm a]\nram 0x5000_0000 8K shared\n[vm b]\nram 0x5000_1000 8K shared\n",
    )
    .unwrap();
}

#[test]
fn vm_ram_takes_only_shared_after_the_length() {
    check(
        "vm-ram-trailing.conf",
        3,
        20,
        ConfigErrorKind::Expected {
            what: "\"shared\" or end of line",
            found: Found::Token("private"),
        },
    );
}

#[test]
fn vm_peer_syntax_and_rules() {
    check(
        "vm-peer-bar-range.conf",
        3,
        22,
        ConfigErrorKind::OutOfRange {
            what: "BAR index",
            value: 6,
            allowed: "0 to 5",
        },
    );
    check(
        "vm-peer-duplicate.conf",
        4,
        10,
        ConfigErrorKind::DuplicatePeer {
            device: pci(0, 2, 0),
            bar: 1,
            first_line: 3,
        },
    );
    let text = config_text("vm-peer-duplicate.conf");
    let e = config::parse("c", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:4:10: peer pci 0000:00:02.0 bar 1 listed twice in this vm (first on line 3)"
    );
    check(
        "vm-peer-not-pci.conf",
        3,
        6,
        ConfigErrorKind::Expected {
            what: "\"pci\"",
            found: Found::Token("mmio"),
        },
    );
}

#[test]
fn vm_keys_stay_in_vm_sections_and_others_stay_out() {
    check(
        "vm-key-outside.conf",
        4,
        1,
        ConfigErrorKind::MisplacedKey {
            key: "ram",
            belongs: IN_VM,
        },
    );
    let e = config::parse("c", "peer pci 00:02.0 bar 0\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:1:1: \"peer\" is not allowed here: it belongs in a [vm NAME] section"
    );
    check(
        "vm-misplaced-key.conf",
        4,
        1,
        ConfigErrorKind::MisplacedKey {
            key: "sid",
            belongs: IN_DEVICE,
        },
    );
    for key in ["unit 0x0", "window iova 0x0", "base 0x0", "mode merge"] {
        let text = format!("[vm v]\n{key}\n");
        let e = config::parse("c", &text).unwrap_err();
        assert!(
            matches!(e.kind, ConfigErrorKind::MisplacedKey { .. }),
            "{key}: {e}"
        );
    }
    check(
        "vm-unknown-key.conf",
        3,
        1,
        ConfigErrorKind::UnknownKey {
            key: "memory",
            section: "a [vm] section",
            expected: "ram or peer",
        },
    );
}

#[test]
fn vm_capacities() {
    check(
        "vm-too-many.conf",
        18,
        1,
        ConfigErrorKind::TooMany(CapacityExceeded {
            what: "[vm] sections",
            max: board_config::MAX_VMS,
        }),
    );
    check(
        "vm-too-many-ram.conf",
        11,
        1,
        ConfigErrorKind::TooMany(CapacityExceeded {
            what: "ram lines in one [vm] section",
            max: board_config::MAX_RAM_PER_VM,
        }),
    );
    let text = config_text("vm-too-many-ram.conf");
    let e = config::parse("c", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c:11:1: more than 8 ram lines in one [vm] section (the most smmuman keeps)"
    );
    check(
        "vm-too-many-peers.conf",
        7,
        1,
        ConfigErrorKind::TooMany(CapacityExceeded {
            what: "peer lines in one [vm] section",
            max: board_config::MAX_PEERS_PER_VM,
        }),
    );
}

#[test]
fn mapping_limits_come_from_the_config_or_the_defaults() {
    let t = config::parse("c", "mappings 0x4_0000\nmappings-per-vm 0x1000\n").unwrap();
    assert_eq!((t.mappings(), t.mappings_per_vm()), (0x4_0000, 0x1000));
    let t = config::parse("c", "# nothing\n").unwrap();
    assert_eq!(
        (t.mappings(), t.mappings_per_vm()),
        (
            board_config::DEFAULT_MAPPINGS,
            board_config::DEFAULT_MAPPINGS_PER_VM
        )
    );
    // A per-VM quota above the total is held to the total.
    let t = config::parse("c", "mappings 0x100\nmappings-per-vm 0x1000\n").unwrap();
    assert_eq!((t.mappings(), t.mappings_per_vm()), (0x100, 0x100));
    let e = config::parse("c", "mappings 0x10\nmappings 0x20\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    let e = config::parse("c", "mappings-per-vm 0x200_0000\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 17), "{e}");
}

#[test]
fn mappings_of_zero() {
    check(
        "mappings-zero.conf",
        2,
        10,
        ConfigErrorKind::OutOfRange {
            what: "mappings",
            value: 0,
            allowed: "1 to 0x100_0000 mappings",
        },
    );
}
