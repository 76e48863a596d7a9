//! The operator's channel under QEMU: the product image runs two VMs (`plans/operator.plan`:
//! vm1 spins with its edu and RAM mapped, vm2 is the rogue, lingering after its DMAs), QEMU
//! connects the board's second UART to a Unix socket, and `smmuctl` (the built binary) reads
//! the live host through it. What it prints is checked against the host's own records: each
//! VM's RAM (`VM vm=... ram=HPA+SIZE gpa=[...)`) as its windows, vm2's fault ledger against
//! the `DMA_FAULT` lines its VMM logged, and the memory map's picture (well-formed, naming
//! every VM).

// The picture's well-formedness check is smmuctl's own test module (no XML crate in the
// workspace).
#[path = "../../crates/smmuctl/tests/xml/mod.rs"]
mod xml;

use std::collections::BTreeSet;
use std::time::Duration;
use tests_qemu::host::HostBoot;
use tests_qemu::operator::Resident;
use tests_qemu::records::parse_line;

const PLAN: &str = include_str!("../plans/operator.plan");

/// `smmuman_api::FAULT_RUN_GAP`: how far above a run's last address a record may be and still
/// continue it.
const FAULT_RUN_GAP: u64 = 64;

/// `(first address, last address, direction, count)` of every `DMA_FAULT` line of `vm` in
/// `text` (the host's console or smmuctl's output).
fn faults(text: &str, vm: &str) -> Vec<(String, String, String, u64)> {
    text.lines()
        .filter(|l| l.starts_with("DMA_FAULT "))
        .filter_map(parse_line)
        .filter(|r| r.get("vm") == Some(vm))
        .map(|r| {
            let hex = |k| {
                u64::from_str_radix(r.get(k).unwrap_or("").trim_start_matches("0x"), 16)
                    .map_or(String::new(), |v| format!("{v:#x}"))
            };
            (
                hex("addr"),
                hex("addr_last"),
                r.get("dir").unwrap_or("").to_string(),
                r.get("count").and_then(|c| c.parse().ok()).unwrap_or(0),
            )
        })
        .collect()
}

/// One `DMA_FAULT` line: a burst of records as a VMM or smmuctl logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Burst {
    sid: String,
    dir: String,
    reason: String,
    addr: u64,
    addr_last: u64,
    count: u64,
    seq: u64,
    seq_last: u64,
}

/// Every `DMA_FAULT` line of `vm` in `text`, in order.
fn bursts(text: &str, vm: &str) -> Vec<Burst> {
    text.lines()
        .filter(|l| l.starts_with("DMA_FAULT "))
        .filter_map(parse_line)
        .filter(|r| r.get("vm") == Some(vm))
        .map(|r| {
            let s = |k| r.get(k).unwrap_or("").to_string();
            let n = |k| r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            Burst {
                sid: s("sid"),
                dir: s("dir"),
                reason: s("reason"),
                addr: hex(r.get("addr").unwrap_or("")),
                addr_last: hex(r.get("addr_last").unwrap_or("")),
                count: n("count"),
                seq: n("seq"),
                seq_last: n("seq_last"),
            }
        })
        .collect()
}

/// `bursts` with each one that continues the one before (the same stream, direction and
/// reason, the next sequence number, a rising address at most `FAULT_RUN_GAP` above) joined
/// to it: one run however its records were read.
fn joined(bursts: Vec<Burst>) -> Vec<Burst> {
    let mut out: Vec<Burst> = Vec::new();
    for b in bursts {
        match out.last_mut() {
            Some(p)
                if (&p.sid, &p.dir, &p.reason) == (&b.sid, &b.dir, &b.reason)
                    && b.seq == p.seq_last + 1
                    && b.addr > p.addr_last
                    && b.addr - p.addr_last <= FAULT_RUN_GAP =>
            {
                p.addr_last = b.addr_last;
                p.seq_last = b.seq_last;
                p.count += b.count;
            }
            _ => out.push(b),
        }
    }
    out
}

/// The value of `key=` in a line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{s}"))
}

/// `(RAM's host-physical start, size, guest-physical start)` of `vm` from the host's
/// `VM vm=<vm> guest=...` record.
fn ram_of(console: &str, vm: &str) -> (u64, u64, u64) {
    let line = console
        .lines()
        .find(|l| l.starts_with(&format!("VM vm={vm} guest=")))
        .unwrap_or_else(|| panic!("no VM record for {vm}:\n{console}"));
    let (hpa, size) = field(line, "ram").and_then(|r| r.split_once('+')).unwrap();
    let gpa = field(line, "gpa")
        .unwrap()
        .trim_start_matches('[')
        .trim_end_matches(',');
    (hex(hpa), hex(size), hex(gpa))
}

fn text(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "smmuctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn smmuctl_reads_the_live_host_vms_windows_faults_and_map() {
    let mut host = Resident::boot(
        &HostBoot {
            plan: PLAN,
            name: "operator",
            ..HostBoot::default()
        },
        "",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Both guests run; vm2's VMM logged a DMA_FAULT line for each of the rogue's six accesses.
    let console = host
        .wait_for(
            "both guests running and vm2's six faults logged",
            Duration::from_secs(300),
            |c| {
                c.contains("GUEST [vm1] LOOPER spinning")
                    && c.contains("GUEST [vm2] ROGUE_LINGER status=0")
                    && faults(c, "vm2").len() >= 6
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(console.contains("OPERATOR channel=pl011"), "{console}");

    // Bytes that are not the admin protocol (a stranger on the socket) are refused and
    // counted; the channel serves the next request (below) on a message boundary.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(host.socket()).unwrap();
        // One header's worth (16 bytes): nothing of it is left to misalign what follows.
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    }
    host.wait_for(
        "the stranger's header refused",
        Duration::from_secs(30),
        |c| c.contains("OPERATOR refused=1"),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // vms: both running, each with one object, its device, its RAM assigned and mapped.
    let vms = text(&host.smmuctl(&["vms"]).unwrap());
    for vm in ["vm1", "vm2"] {
        let (_, size, _) = ram_of(&console, vm);
        let row: Vec<&str> = vms
            .lines()
            .find(|l| l.split_whitespace().next() == Some(vm))
            .unwrap_or_else(|| panic!("no {vm} in\n{vms}"))
            .split_whitespace()
            .collect();
        // VM CLIENT STATE OBJECTS DEVICES ASSIGNED MAPPINGS MAPPED FAULTS
        assert_eq!(row[2], "running", "{vms}");
        assert_eq!((row[3], row[4]), ("1", "1"), "{vms}");
        assert_eq!(hex(row[5]), size, "assigned = the VM's RAM\n{vms}");
        assert_eq!(hex(row[7]), size, "mapped = the VM's RAM\n{vms}");
    }
    // The heap: the VMs' mappings are in it, out of what the host gave it (`HEAP ... bytes=`).
    let heap = vms
        .split("heap ")
        .nth(1)
        .and_then(|h| h.split_whitespace().next())
        .and_then(|h| h.split_once('/'))
        .unwrap_or_else(|| {
            panic!(
                "no heap in
{vms}"
            )
        });
    let given = console
        .lines()
        .find(|l| l.starts_with("HEAP "))
        .and_then(|l| field(l, "bytes"))
        .map(hex)
        .unwrap_or_else(|| {
            panic!(
                "no HEAP record
{console}"
            )
        });
    let (used, all) = (hex(heap.0), hex(heap.1));
    assert!(
        used > 0 && used < all && all == given,
        "heap {used:#x}/{all:#x}, given {given:#x}"
    );

    // windows: each VM's windows send its guest-physical RAM to the host-physical RAM the host
    // gave it, and nothing else.
    for vm in ["vm1", "vm2"] {
        let (hpa, size, gpa) = ram_of(&console, vm);
        let out = text(&host.smmuctl(&["windows", vm]).unwrap());
        let rows: Vec<(u64, u64, u64)> = out
            .lines()
            .map(str::split_whitespace)
            .filter_map(|mut w| {
                let (i, h, s) = (w.next()?, w.next()?, w.next()?);
                i.starts_with("0x").then(|| (hex(i), hex(h), hex(s)))
            })
            .collect();
        assert!(!rows.is_empty(), "{out}");
        let mut covered = 0;
        for &(iova, pa, len) in &rows {
            assert!(
                iova >= gpa && iova + len <= gpa + size && pa - hpa == iova - gpa,
                "{vm}: window {iova:#x} -> {pa:#x} +{len:#x} is not its RAM ({gpa:#x} -> {hpa:#x} +{size:#x})\n{out}"
            );
            covered += len;
        }
        assert_eq!(covered, size, "{vm}'s windows cover its RAM\n{out}");
    }

    // faults: smmuctl shows vm2's faults although its VMM read every record before: the same
    // bursts as the VMM's own DMA_FAULT lines (sid, addresses, direction, reason, counts, sequence
    // numbers). The VMM ends a burst at the end of each read, the ledger's history folds a run
    // whole: both sides are compared with runs that continue each other joined.
    let host_faults = faults(&console, "vm2");
    let total: u64 = host_faults.iter().map(|f| f.3).sum();
    let addrs: BTreeSet<String> = host_faults.iter().map(|f| f.0.clone()).collect();
    for want in ["0x48000000", "0x50300000", "0x9050000"] {
        assert!(
            addrs.contains(want),
            "the rogue's {want} in {host_faults:?}"
        );
    }
    let vmm_bursts = joined(bursts(&console, "vm2"));
    let out = text(&host.smmuctl(&["faults", "vm2"]).unwrap());
    let shown_bursts = joined(bursts(&out, "vm2"));
    let ledger = out
        .lines()
        .find(|l| l.starts_with("LEDGER vm=vm2"))
        .unwrap_or_else(|| panic!("{out}"));
    let shown: u64 = field(ledger, "records").unwrap().parse().unwrap();
    let missed: u64 = field(ledger, "missed").unwrap().parse().unwrap();
    assert_eq!(shown + missed, total, "{ledger}\nhost: {host_faults:?}");
    // The history holds the newest 8 runs: the rogue's fit, so nothing is missed.
    assert!(vmm_bursts.len() <= 8, "{vmm_bursts:#?}");
    assert_eq!(missed, 0, "{out}");
    assert_eq!(
        shown_bursts, vmm_bursts,
        "smmuctl's DMA_FAULT lines are the VMM's\n{out}"
    );
    let none = text(&host.smmuctl(&["faults", "vm1"]).unwrap());
    assert!(
        none.contains("LEDGER vm=vm1") && none.contains("records=0 "),
        "{none}"
    );

    // The picture: well-formed, names every VM and both devices' lanes.
    let svg_path = host.socket().with_extension("svg");
    let _ = text(
        &host
            .smmuctl(&["map", "--svg", svg_path.to_str().unwrap()])
            .unwrap(),
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let parsed = xml::parse(&svg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.elements[0], "svg");
    let texts = parsed.texts.join("\n");
    for name in ["vm1", "vm2", "00:01.0", "00:02.0", "smmu", "ram"] {
        assert!(texts.contains(name), "the picture does not name {name}");
    }
    // One fault mark per burst smmuctl showed, on vm2's device's lane, at its addresses.
    let marks: Vec<&String> = parsed
        .texts
        .iter()
        .filter(|t| t.starts_with("fault: 00:02.0 "))
        .collect();
    assert_eq!(marks.len(), bursts(&out, "vm2").len(), "{marks:#?}\n{out}");
    for b in bursts(&out, "vm2") {
        let want = format!(
            "fault: 00:02.0 {} {} at {:#x}..{:#x}, {} record(s)",
            b.dir, b.reason, b.addr, b.addr_last, b.count
        );
        assert!(
            marks.iter().any(|m| m.starts_with(&want)),
            "no mark {want:?} in {marks:#?}"
        );
    }
    if std::env::var_os("SMMUMAN_WRITE_DOCS").is_some() {
        let doc = tests_qemu::repo_file("docs/operator-map-qemu.svg");
        std::fs::write(&doc, &svg).unwrap();
    }
}

/// The `CHECK` records of `vm` in `text` as `(name, ok)`.
fn checks_of(text: &str, vm: &str) -> Vec<(String, bool)> {
    let tag = format!("GUEST [{vm}] ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&tag))
        .filter(|l| l.starts_with("CHECK "))
        .filter_map(parse_line)
        .map(|r| {
            (
                r.get("name").unwrap_or("").to_string(),
                r.get("ok") == Some("1"),
            )
        })
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

fn refused(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "smmuctl should refuse: {out:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

#[test]
fn smmuctl_starts_and_stops_vms_while_others_run() {
    let mut host = Resident::boot(
        &HostBoot {
            plan: include_str!("../plans/operator-lifecycle.plan"),
            name: "operator-lifecycle",
            ..HostBoot::default()
        },
        "stay=1",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let first = host
        .wait_for(
            "vm1 stopped, vm2 lingering",
            Duration::from_secs(300),
            |c| {
                c.contains("VM vm=vm1 state=stopped")
                    && c.contains("GUEST [vm2] ROGUE_LINGER status=0")
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let checks1 = checks_of(&first, "vm1");
    assert!(!checks1.is_empty(), "vm1's driver checked nothing\n{first}");
    tests_qemu::assert_checks(&checks1, &[], &first);

    // (1) vm1 again while vm2 runs: its driver's checks all pass a second time.
    text(&host.smmuctl(&["start", "vm1"]).unwrap());
    let second = host
        .wait_for("vm1's second stop", Duration::from_secs(60), |c| {
            count(c, "VM vm=vm1 state=stopped") >= 2
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let checks2 = checks_of(&second, "vm1");
    assert_eq!(checks2.len(), 2 * checks1.len(), "{second}");
    tests_qemu::assert_checks(&checks2, &[], &second);
    assert!(!second.contains("VM vm=vm2 state=stopped"), "{second}");

    // (4a) vm2 runs: starting it again is refused.
    let msg = refused(&host.smmuctl(&["start", "vm2"]).unwrap());
    assert!(msg.contains("vm2"), "{msg}");
    // (4b) an unknown name is refused.
    let msg = refused(&host.smmuctl(&["stop", "nosuchvm"]).unwrap());
    assert!(msg.contains("nosuchvm"), "{msg}");

    // (2) stop vm2 while it lingers.
    text(&host.smmuctl(&["stop", "vm2"]).unwrap());
    let c = host
        .wait_for("vm2 stopped", Duration::from_secs(30), |c| {
            c.contains("VM vm=vm2 state=stopped")
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.contains("QUIESCE vm=vm2"), "{c}");
    assert!(c.contains("SCRUB vm=vm2 when=stop"), "{c}");
    let vms = text(&host.smmuctl(&["vms"]).unwrap());
    let row = vms
        .lines()
        .find(|l| l.split_whitespace().next() == Some("vm2"))
        .unwrap_or_else(|| panic!("no vm2 in\n{vms}"));
    // Stopped, not failed: a stop the operator asked for is no failure of the VM.
    assert_eq!(row.split_whitespace().nth(2), Some("stopped"), "{vms}");

    // (3) vm2 again: the rogue runs and lingers a second time.
    text(&host.smmuctl(&["start", "vm2"]).unwrap());
    host.wait_for("vm2's second run", Duration::from_secs(60), |c| {
        count(c, "GUEST [vm2] ROGUE_LINGER status=0") >= 2
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
