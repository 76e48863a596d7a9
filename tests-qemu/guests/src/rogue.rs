//! The `rogue` guest: DMAs where its VM was granted nothing. The bootargs name the targets
//! (hexadecimal, each optional):
//!
//! * `rogue.outside=<gpa>`: a guest-physical address outside its RAM;
//! * `rogue.host=<addr>`: the host-physical address of another VM's RAM;
//! * `rogue.smmu=<addr>`: the SMMU's register frame;
//! * `rogue.len=<bytes>`: bytes per rogue access, 1 to edu's 4 KiB buffer (default [`LEN`]; a
//!   4 KiB access is 1,024 fault records on QEMU's SMMUv3, more than a ledger keeps);
//! * `rogue.linger=1`: after its DMAs, print `ROGUE_LINGER` and spin until the plan's time
//!   limit stops it, so that its VM (objects, windows, ledger) stays for the operator's
//!   `smmuctl` to look at (`tests-qemu/tests/operator.rs`).
//!
//! First a control: one legal round trip in its own RAM (`CHECK name=control`). Then, per
//! target, a write (edu → target, [`PATTERN`] bytes) and a read (target → edu, then edu → its
//! own RAM so that what came back can be shown), each announced as
//! `ROGUE target=<name> addr=<addr> dir=write|read len=<n>` before it is started, and the read
//! followed by `ROGUE_READ target=<name> first=<hex bytes>`. `edu` cannot tell whether the IOMMU
//! refused the access; the host checks its memory and the fault records. Exits 0 when the
//! control passed and the bootargs were well formed.

use crate::bootargs;
use crate::driver::{dma_area, open_edu, round_trip};
use crate::report::Checks;
use crate::Guest;

/// The byte a rogue write puts in every position ('R').
pub const PATTERN: u8 = 0x52;
/// Bytes per rogue access (and of the control), unless `rogue.len=` says otherwise.
pub const LEN: u64 = 64;
/// The targets, by bootargs key and the name printed.
pub const TARGETS: [(&str, &str); 3] = [
    ("rogue.outside", "outside"),
    ("rogue.host", "host"),
    ("rogue.smmu", "smmu"),
];

/// The guest.
pub fn run(g: &mut Guest<'_>) -> u32 {
    let mut checks = Checks::default();
    let _ = writeln!(
        g.out,
        "ROGUE_START ram={} bootargs=\"{}\"",
        g.dt.ram, g.dt.bootargs
    );
    let mut targets = [None; TARGETS.len()];
    let mut args_ok = true;
    for ((key, name), slot) in TARGETS.iter().zip(targets.iter_mut()) {
        match bootargs::hex(g.dt.bootargs, key) {
            Ok(Some(addr)) => *slot = Some(addr),
            Ok(None) => {
                let _ = writeln!(
                    g.out,
                    "ROGUE target={name} skipped=1 reason=\"no {key}= in bootargs\""
                );
            }
            Err(e) => {
                args_ok = false;
                let _ = writeln!(
                    g.out,
                    "ROGUE target={name} skipped=1 reason=\"{}={} is not hexadecimal\"",
                    e.key, e.value
                );
            }
        }
    }
    let len = match bootargs::hex(g.dt.bootargs, "rogue.len") {
        Ok(None) => LEN,
        Ok(Some(n)) if (1..=crate::edu::BUFFER_SIZE).contains(&n) => n,
        Ok(Some(n)) => {
            args_ok = false;
            let _ = writeln!(
                g.out,
                "ROGUE bad=rogue.len value={n:#x} reason=\"1 to edu's {:#x}-byte buffer\"",
                crate::edu::BUFFER_SIZE
            );
            LEN
        }
        Err(e) => {
            args_ok = false;
            let _ = writeln!(
                g.out,
                "ROGUE bad={} value={} reason=\"not hexadecimal\"",
                e.key, e.value
            );
            LEN
        }
    };
    checks.check(
        g.out,
        "bootargs",
        args_ok,
        format_args!("targets={} len={len:#x}", targets.iter().flatten().count()),
    );
    let (Some(edu), Some(x)) = (open_edu(g, &mut checks), dma_area(g, &mut checks)) else {
        return checks.status();
    };
    let own = x - 0x8000;
    let back = x + 0x1000;
    match round_trip(g, &edu, own, back, 0, LEN, 0x33) {
        Ok((bad, _, guards)) => checks.check(
            g.out,
            "control",
            bad == 0 && guards,
            format_args!("src={own:#x} dst={back:#x} len={LEN:#x} mismatched={bad}"),
        ),
        Err(e) => checks.check(g.out, "control", false, format_args!("reason=\"{e}\"")),
    }
    // The write pattern, staged in edu's buffer by a legal read of the guest's own RAM.
    for i in 0..len {
        g.phys.write8(own + i, PATTERN);
    }
    // Where a read lands in edu's buffer: its second half when it fits there, so that the
    // staged pattern stays (every offset stays inside the buffer: `edu`).
    let read_at = if len <= 0x800 { 0x800 } else { 0 };
    for ((_, name), addr) in TARGETS.iter().zip(targets) {
        let Some(addr) = addr else { continue };
        let staged = edu.read_from(own, 0, len);
        let _ = writeln!(
            g.out,
            "ROGUE target={name} addr={addr:#x} dir=write len={len} pattern={PATTERN:#04x}"
        );
        let wrote = staged.and_then(|()| edu.write_to(0, addr, len));
        let _ = writeln!(
            g.out,
            "ROGUE_DONE target={name} dir=write dma={}",
            Outcome(wrote)
        );
        let _ = writeln!(
            g.out,
            "ROGUE target={name} addr={addr:#x} dir=read len={len}"
        );
        let read = edu
            .read_from(addr, read_at, len)
            .and_then(|()| edu.write_to(read_at, back, len));
        let _ = writeln!(
            g.out,
            "ROGUE_DONE target={name} dir=read dma={}",
            Outcome(read)
        );
        let _ = write!(g.out, "ROGUE_READ target={name} first=");
        for i in 0..16 {
            let _ = write!(g.out, "{:02x}", g.phys.read8(back + i));
        }
        let _ = writeln!(g.out);
    }
    if matches!(bootargs::hex(g.dt.bootargs, "rogue.linger"), Ok(Some(n)) if n != 0) {
        let _ = writeln!(g.out, "ROGUE_LINGER status={}", checks.status());
        loop {
            core::hint::spin_loop();
        }
    }
    checks.status()
}

/// `finished` or the error: "finished" says nothing about whether the IOMMU let it through.
struct Outcome(Result<(), crate::edu::DmaError>);

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Ok(()) => f.write_str("finished"),
            Err(e) => write!(f, "error reason=\"{e}\""),
        }
    }
}
