//! `smmuctl`, the binary, against the test server (an in-process manager over the fake IOMMU
//! on a Unix socket): every command's output matches what the fixture set up.

mod common;
mod xml;

use common::*;
use iommu_core::Direction;
use smmuman_api::{Client, FaultBatch, ObjectId};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn smmuctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .arg("--connect")
        .arg(format!("unix:{}", sock.display()))
        .args(args)
        .output()
        .unwrap()
}

/// stdout of a command that must succeed.
fn ok(sock: &Path, args: &[&str]) -> String {
    let out = smmuctl(sock, args);
    assert!(
        out.status.success(),
        "smmuctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The cells of each line of a table, header first.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn units_devices_groups_and_vms_match_the_fixture() {
    let (sock, _) = start("lists");
    let units = cells(&ok(&sock, &["units"]));
    assert_eq!(
        units[1],
        ["smmuv3@9050000", "smmuv3", "0x9050000", "0x20000"]
    );

    let devices = cells(&ok(&sock, &["devices"]));
    assert_eq!(
        devices[0],
        ["DEVICE", "SID", "GROUP", "OBJECT", "HELD-BY", "ASSIGNED-TO"]
    );
    assert_eq!(devices[1], ["00:01.0", "0x8", "1", "1", "vm1", "vm1"]);
    assert_eq!(devices[2], ["00:02.0", "0x10", "1", "2", "vm2", "vm2"]);
    assert_eq!(
        devices[3],
        ["00:03.0", "0x18", "1", "-", "default-deny", "-"]
    );
    assert_eq!(devices.len(), 4);

    let groups = cells(&ok(&sock, &["groups"]));
    assert_eq!(groups[2], ["0x10", "00:02.0", "2", "vm2", "vm2"]);

    let vms = cells(&ok(&sock, &["vms"]));
    assert_eq!(
        vms[1],
        ["vm1", "1", "running", "1", "1", "0x400000", "2", "0x401000", "0"]
    );
    assert_eq!(
        vms[2],
        ["vm2", "2", "running", "1", "1", "0x400000", "1", "0x400000", "32"]
    );
    assert_eq!(vms[3][..3], ["vm3", "-", "planned"]);
    assert!(vms[4].join(" ").starts_with("manager: objects 2/16"));
}

#[test]
fn windows_show_each_vms_iova_to_hpa_size_and_access() {
    let (sock, _) = start("windows");
    let out = ok(&sock, &["windows", "vm1"]);
    assert!(!out.contains("vm2"), "{out}");
    let rows = cells(&out);
    assert_eq!(rows[0][..4], ["vm1", "object", "1", "(1"]);
    assert!(
        out.contains("quota 2/65536 mappings; heap <= 1024 bytes"),
        "{out}"
    );
    assert_eq!(
        rows[2],
        ["0x40000000", "0x50000000", "0x400000", "rw-", "-"]
    );
    assert_eq!(rows[3], ["0x80000000", "0x50000000", "0x1000", "r--", "-"]);
    let all = ok(&sock, &["windows"]);
    assert!(
        all.contains("0x40000000  0x58000000  0x400000  rw-"),
        "{all}"
    );
}

#[test]
fn faults_are_burst_folded_like_the_vmms_lines_and_left_for_the_vmm() {
    let (sock, shared) = start("faults");
    let out = ok(&sock, &["faults"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with(
        "DMA_FAULT vm=vm2 device=00:02.0 sid=0x10 addr=0x0000000050000000 addr_last=0x000000005000003c count=16 dir=read reason=translation"
    ), "{out}");
    assert!(lines[1].starts_with(
        "DMA_FAULT vm=vm2 device=00:02.0 sid=0x10 addr=0x0000000040400000 addr_last=0x0000000040400ffc count=1024 dir=write"
    ), "{out}");
    assert!(
        lines[2]
            .starts_with("DMA_FAULT vm=unclaimed device=00:03.0 sid=0x18 addr=0x0000000000001000"),
        "{out}"
    );
    assert_eq!(
        lines[4],
        "LEDGER vm=vm2 object=2 records=1040 bursts=2 missed=0 dropped=0 possibly_lost=0"
    );
    // One VM's: only its ledger.
    let vm1 = ok(&sock, &["faults", "vm1"]);
    assert_eq!(
        vm1,
        "LEDGER vm=vm1 object=1 records=0 bursts=0 missed=0 dropped=0 possibly_lost=0\n"
    );
    // The VMM still reads every record: smmuctl took nothing.
    assert_eq!(read_all(&mut shared.lock().unwrap()), 16 + 1024);
    // Read by the VMM, still in the ledger's history: a fresh smmuctl shows the same.
    let again = ok(&sock, &["faults", "vm2"]);
    assert_eq!(
        again,
        ok(&sock, &["faults", "vm2"]),
        "reading twice changes nothing"
    );
    assert_eq!(
        again.lines().take(2).collect::<Vec<_>>(),
        lines[..2],
        "{again}"
    );
    assert!(again.contains(" missed=0 "), "{again}");
    // Eight more bursts a page apart (and from the run before), read by the VMM: the history keeps the newest 8 runs, so
    // the first two are counted as missed, exactly, not shown.
    let mut records = 0;
    for i in 1..=8 {
        let mut m = shared.lock().unwrap();
        dma(
            &mut m,
            EDU2,
            GUEST_RAM + RAM_SIZE + 0x1000 * (i + 1),
            256,
            Direction::Write,
        );
        // Read after each (the fake IOMMU's event queue holds fewer than 8 × 64 records).
        records += read_all(&mut m);
    }
    assert_eq!(records, 8 * 64);
    let later = ok(&sock, &["faults", "vm2"]);
    let lines: Vec<&str> = later.lines().collect();
    assert!(
        lines[0].starts_with("DMA_FAULT_MISSED vm=vm2 object=2 count=1040"),
        "{later}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(" count=64 dir=write"))
            .count(),
        8,
        "{later}"
    );
    assert!(
        later.contains("LEDGER vm=vm2 object=2 records=512 bursts=8 missed=1040 "),
        "{later}"
    );
}

/// vm2's VMM reads every record of its object; returns how many.
fn read_all(m: &mut smmuman_server::Manager<smmuman_server::fake::FakeIommu>) -> u64 {
    let mut c = Client::connect(Direct(m, VM2)).unwrap();
    let mut records = 0u64;
    loop {
        let page = c.read_faults(ObjectId(2), FaultBatch::PAGE).unwrap().page;
        records += page.records().map(|r| u64::from(r.count)).sum::<u64>();
        if page.remaining() == 0 {
            return records;
        }
    }
}

#[test]
fn follow_shows_new_records_as_they_arrive_each_burst_once() {
    let (sock, shared) = start("follow");
    let child = Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .arg("--connect")
        .arg(format!("unix:{}", sock.display()))
        .args([
            "faults",
            "vm2",
            "--follow",
            "--interval",
            "50",
            "--polls",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // vm2's rogue guest tries again, 256 bytes past its RAM.
    dma(
        &mut shared.lock().unwrap(),
        EDU2,
        GUEST_RAM + RAM_SIZE + 0x1000,
        256,
        Direction::Write,
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("count=16 dir=read"), "{out}");
    assert!(lines[1].contains("count=1024 dir=write"), "{out}");
    assert!(
        lines[2]
            .contains("addr=0x0000000040401000 addr_last=0x00000000404010fc count=64 dir=write")
            && lines[2].contains("seq=1041 seq_last=1104"),
        "{out}"
    );
}

#[test]
fn start_and_stop_are_refused_with_a_reason_and_bad_arguments_with_usage() {
    let (sock, _) = start("startstop");
    let out = smmuctl(&sock, &["start", "vm3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "smmuctl: start vm3: not supported by this host (it cannot start or stop VMs at run time)\n"
    );
    let out = smmuctl(&sock, &["stop", "vm2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop vm2: not supported by this host"));
    let out = smmuctl(&sock, &["start", "vm9"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "smmuctl: start vm9: the host plan has no VM \"vm9\"\n"
    );
    let out = smmuctl(&sock, &["stop", "vm3"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "smmuctl: stop vm3: vm3 is not running\n"
    );
    let out = smmuctl(&sock, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("smmuctl: unknown command \"frobnicate\"\nusage:"));
    let out = smmuctl(&sock, &["start", "a name that is far too long"]);
    assert_eq!(out.status.code(), Some(2));
    // Nothing listening: said so.
    let out = smmuctl(Path::new("/nonexistent/admin.sock"), &["vms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the smmuman manager is not running"));
}

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operator-map.svg");

#[test]
fn the_map_is_well_formed_svg_naming_every_vm_with_windows_and_faults() {
    let (sock, _) = start("map");
    let file = sock.with_file_name("map.svg");
    let said = ok(&sock, &["map", "--svg", file.to_str().unwrap()]);
    assert!(
        said.contains("3 VM(s), 3 device(s), 3 fault burst(s)"),
        "{said}"
    );
    let svg = std::fs::read_to_string(&file).unwrap();
    let parsed = xml::parse(&svg).unwrap();
    assert_eq!(parsed.elements[0], "svg");
    let texts = parsed.texts.join("\n");
    for vm in ["vm1", "vm2", "vm3"] {
        assert!(texts.contains(vm), "the picture does not name {vm}");
    }
    for lane in [
        "vm1: assigned",
        "vm2: assigned",
        "00:01.0 sid 0x8: vm1 object 1",
        "00:02.0 sid 0x10: vm2 object 2",
        "00:03.0 sid 0x18: default deny",
    ] {
        assert!(texts.contains(lane), "no lane {lane:?}");
    }
    // Each window at its host address, each fault burst where it aimed.
    assert!(texts.contains("00:01.0 window: iova 0x40000000 -> hpa 0x50000000 size 0x400000 rw-"));
    assert!(texts.contains("00:02.0 window: iova 0x40000000 -> hpa 0x58000000 size 0x400000 rw-"));
    assert!(texts.contains("fault: 00:02.0 write translation at 0x40400000..0x40400ffc, 1024 record(s), object 2, seq 17..1040"));
    assert!(texts
        .contains("fault: 00:03.0 write translation at 0x1000..0x1004, 2 record(s), unclaimed"));
    for region in ["daemon daemon", "mmio smmu", "ram ram"] {
        assert!(texts.contains(region), "no region {region:?}");
    }
    // The sample in docs/ is this picture.
    if std::env::var_os("SMMUCTL_WRITE_DOCS").is_some() {
        std::fs::write(SAMPLE, &svg).unwrap();
    }
    let sample = std::fs::read_to_string(SAMPLE).unwrap_or_default();
    assert!(
        sample == svg,
        "docs/operator-map.svg is stale: SMMUCTL_WRITE_DOCS=1 cargo test -p smmuctl --test end_to_end -- map"
    );
}

#[test]
fn the_well_formedness_check_can_fail() {
    // The control of the SVG test: broken pictures are refused.
    let (sock, _) = start("mapcontrol");
    let file = sock.with_file_name("map.svg");
    ok(&sock, &["map", "--svg", file.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&file).unwrap();
    assert!(
        xml::parse(&svg[..svg.len() / 2]).is_err(),
        "a truncated picture"
    );
    assert!(xml::parse(
        &svg.replacen("&gt;", ">", 1)
            .replacen("<title>", "<title>a < b", 1)
    )
    .is_err());
    assert!(
        xml::parse(&svg.replacen("<g>", "<g>&nbsp;", 1)).is_err(),
        "an unknown entity"
    );
    assert!(
        xml::parse(&svg.replacen("</g>", "</h>", 1)).is_err(),
        "a mismatched end tag"
    );
    assert!(xml::parse(&svg.replacen("fill=\"white\"", "fill=white", 1)).is_err());
}

#[test]
fn a_peer_that_is_not_the_manager_is_reported_not_trusted() {
    // Something else listens on the socket and answers with text.
    let dir = std::env::temp_dir().join(format!("smmuctl-{}-stranger", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("admin.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut b = [0u8; 16];
            let _ = s.read_exact(&mut b);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let out = smmuctl(&sock, &["vms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("smmuctl: the peer on the channel does not speak the smmuman protocol"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_channel_may_be_tcp() {
    let at = serve_tcp(std::sync::Arc::new(std::sync::Mutex::new(manager())));
    let out = Command::new(env!("CARGO_BIN_EXE_smmuctl"))
        .args(["--connect", &format!("tcp:{at}"), "devices"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let devices = cells(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(devices[1], ["00:01.0", "0x8", "1", "1", "vm1", "vm1"]);
}

#[test]
fn a_silent_peer_is_reported_after_the_reply_timeout_not_waited_on_for_ever() {
    // A UART nobody polls: the socket accepts and reads, and never answers.
    let dir = std::env::temp_dir().join(format!("smmuctl-{}-silent", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("admin.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut b = [0u8; 16];
            let _ = s.read_exact(&mut b);
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let out = smmuctl(&sock, &["vms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("smmuctl: no reply within 10 s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
