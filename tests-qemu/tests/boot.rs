//! The daemon boots under QEMU, discovers the board and reports it, with either stream table
//! format; bad input and crashes end with the documented records and exit codes.

use tests_qemu::{run, run_with_qemu_args, Run};

fn boot(extra: &[&str]) -> Run {
    run("boot", extra).unwrap_or_else(|e| panic!("{e}"))
}

fn check_board_summary(run: &Run) {
    let board = run
        .record("BOARD")
        .unwrap_or_else(|| panic!("no BOARD record; {}", run.describe()));
    assert_eq!(
        board.get("smmu"),
        Some("0x0000000009050000+0x20000"),
        "{}",
        board.line
    );
    assert_eq!(
        board.get("ecam"),
        Some("0x0000004010000000+0x10000000"),
        "{}",
        board.line
    );
    assert_eq!(
        board.get("ram"),
        Some("0x0000000040000000+0x20000000"),
        "{}",
        board.line
    );
    let edus: Vec<(&str, &str)> = run
        .records("PCI")
        .filter(|r| r.get("vendor") == Some("0x1234") && r.get("device") == Some("0x11e8"))
        .map(|r| (r.get("bdf").unwrap_or("?"), r.get("sid").unwrap_or("?")))
        .collect();
    assert_eq!(
        edus,
        [("00:01.0", "0x8"), ("00:02.0", "0x10")],
        "{}",
        run.describe()
    );
    for edu in run.records("EDU") {
        assert_eq!(edu.get("alive"), Some("1"), "{}", edu.line);
        assert_eq!(
            edu.get("bus_master"),
            Some("0"),
            "DMA must stay off without an STE: {}",
            edu.line
        );
    }
    assert_eq!(run.records("EDU").count(), 2, "{}", run.describe());
}

#[test]
fn boots_with_a_linear_stream_table() {
    let run = boot(&["st=linear"]);
    run.assert_pass();
    assert_eq!(run.result().and_then(|r| r.get("st")), Some("linear"));
    check_board_summary(&run);
}

#[test]
fn boots_with_a_two_level_stream_table() {
    let run = boot(&["st=2level"]);
    run.assert_pass();
    assert_eq!(run.result().and_then(|r| r.get("st")), Some("2level"));
    check_board_summary(&run);
}

#[test]
fn an_unknown_scenario_exits_2_naming_the_known_ones() {
    let run = run("no-such-scenario", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = run
        .record("FATAL")
        .unwrap_or_else(|| panic!("no FATAL; {}", run.describe()));
    assert_eq!(fatal.get("reason"), Some("unknown-scenario"));
    assert!(
        fatal
            .get("known")
            .is_some_and(|k| k.split(',').any(|n| n == "boot")),
        "{}",
        fatal.line
    );
    assert!(run.result().is_none());
}

#[test]
fn malformed_bootargs_exit_2() {
    let run = boot(&["st=3level"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.describe());
    let fatal = run
        .record("FATAL")
        .unwrap_or_else(|| panic!("no FATAL; {}", run.describe()));
    assert_eq!(fatal.get("reason"), Some("bootargs"));
    assert!(
        fatal.get("detail").is_some_and(|d| d.contains("3level")),
        "{}",
        fatal.line
    );
}

#[test]
fn a_panic_is_reported_and_exits_101() {
    let run = run("selftest-panic", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.exit_code, Some(101), "{}", run.describe());
    let panic = run
        .record("PANIC")
        .unwrap_or_else(|| panic!("no PANIC; {}", run.describe()));
    assert_eq!(
        panic.get("message"),
        Some("selftest-panic asked for a panic")
    );
    assert!(
        panic
            .get("location")
            .is_some_and(|l| l.contains("scenarios.rs")),
        "{}",
        panic.line
    );
}

#[test]
fn an_exception_is_decoded_and_exits_3() {
    let run = run("selftest-fault", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.exit_code, Some(3), "{}", run.describe());
    let address = run
        .record("SELFTEST")
        .and_then(|r| r.get("fault_address"))
        .map(str::to_string);
    let ex = run
        .record("EXCEPTION")
        .unwrap_or_else(|| panic!("no EXCEPTION; {}", run.describe()));
    assert_eq!(ex.get("ec"), Some("0x25"), "{}", ex.line);
    assert_eq!(ex.get("ec_name"), Some("data_abort_same_el"));
    // With the MMU on, the address lies outside every region of the identity map.
    assert_eq!(ex.get("fsc_name"), Some("translation_fault"), "{}", ex.line);
    assert_eq!(
        ex.get("far").map(str::to_string),
        address,
        "FAR_EL2 is the faulting address"
    );
    assert_eq!(ex.get("vector"), Some("sync_current_sp0"));
}

#[test]
fn devices_behind_bridges_are_enumerated_with_the_stream_id_the_smmu_sees() {
    // An edu behind a PCIe-to-PCI bridge reaches the SMMU under the bridge's alias
    // (secondary bus, 00.0); one behind a root port keeps its own requester ID.
    let run = run_with_qemu_args(
        "boot",
        &[],
        &[
            "-device",
            "pcie-pci-bridge,id=br0",
            "-device",
            "edu,bus=br0,addr=1.0,dma_mask=0xffffffffffffffff",
            "-device",
            "pcie-root-port,id=rp0,chassis=1",
            "-device",
            "edu,bus=rp0,dma_mask=0xffffffffffffffff",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run.assert_pass();
    let pci = |bdf: &str| {
        run.records("PCI")
            .find(|r| r.get("bdf") == Some(bdf))
            .unwrap_or_else(|| panic!("no PCI {bdf}; {}", run.describe()))
    };
    assert_eq!(pci("00:03.0").get("bridge_type"), Some("pcie-to-pci"));
    assert_eq!(pci("01:01.0").get("dma_alias"), Some("01:00.0"));
    assert_eq!(pci("01:01.0").get("sid"), Some("0x100"));
    assert_eq!(pci("00:04.0").get("bridge_type"), Some("pcie-port"));
    assert_eq!(pci("02:00.0").get("dma_alias"), None);
    assert_eq!(pci("02:00.0").get("sid"), Some("0x200"));
    assert_eq!(
        run.records("EDU")
            .filter(|r| r.get("alive") == Some("1"))
            .count(),
        4
    );
}

/// The MMU is on at EL2 before the SMMU is touched: RAM from the device tree's /memory is
/// Normal memory, every register block the daemon uses is Device, execute-never; nothing
/// else is mapped.
#[test]
fn the_mmu_is_on_with_ram_normal_and_every_register_block_device() {
    let run = boot(&[]);
    run.assert_pass();
    let mmu = run
        .record("MMU")
        .unwrap_or_else(|| panic!("no MMU record; {}", run.describe()));
    assert_eq!(
        mmu.get("ram"),
        Some("0x0000000040000000+0x20000000"),
        "{}",
        mmu.line
    );
    assert_eq!(mmu.get("regions"), Some("7"), "{}", mmu.line);
    assert_eq!(mmu.get("device"), Some("6"), "{}", mmu.line);
    // SCTLR_EL2.M, C and I (bits 0, 2, 12) are set.
    let sctlr =
        u64::from_str_radix(mmu.get("sctlr").unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(sctlr & 0x1005, 0x1005, "{}", mmu.line);
    // MAIR_EL2: attribute 0 Device-nGnRE, attribute 1 Normal write-back.
    assert_eq!(mmu.get("mair"), Some("0x000000000000ff04"), "{}", mmu.line);
    let regions: Vec<(&str, &str, &str)> = run
        .records("MMU_REGION")
        .map(|r| {
            (
                r.get("name").unwrap_or("?"),
                r.get("kind").unwrap_or("?"),
                r.get("xn").unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        regions,
        [
            ("gicd", "device", "1"),
            ("gicr", "device", "1"),
            ("uart", "device", "1"),
            ("smmu", "device", "1"),
            ("pcie-mmio32", "device", "1"),
            ("ram", "normal", "0"),
            ("pcie-ecam", "device", "1"),
        ],
        "{}",
        run.describe()
    );
    // The MMU went on before anything touched the SMMU (SMMU_PROBE is its first access).
    let order: Vec<&str> = run
        .records
        .iter()
        .map(|r| r.kind.as_str())
        .filter(|k| ["MMU", "SMMU_PROBE"].contains(k))
        .collect();
    assert_eq!(order, ["MMU", "SMMU_PROBE"], "{}", run.describe());
}
