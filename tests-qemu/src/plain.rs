//! The qvm test guests without a VMM: each guest's raw Image booted on plain QEMU `virt` at
//! EL1 (no SMMU, no EL2, its DMA addresses are physical addresses), with one `edu`. This proves
//! the guests' own device tree, PCI and `edu` code before any VMM runs them.
//!
//! The guests are built once per test process into `<target>/qemu-guests` (as the daemon's
//! image is into `<target>/qemu-image`), so the build does not wait on the running `cargo test`.

use crate::{capture, collect, parse_records, qemu_ready, wait, Record};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use xtask::{guests, paths};

/// What one guest run printed.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// Everything QEMU wrote.
    pub console: String,
    /// The records in it (`CHECK`, `ROGUE`, `EXIT`, ...).
    pub records: Vec<Record>,
    /// Whether the run hit its time limit and was killed.
    pub timed_out: bool,
}

impl GuestRun {
    /// The guest's `EXIT status=` value.
    pub fn status(&self) -> Option<u32> {
        self.records
            .iter()
            .rfind(|r| r.kind == "EXIT")
            .and_then(|r| r.get("status"))
            .and_then(|s| s.parse().ok())
    }

    /// `(name, ok)` of every `CHECK` line.
    pub fn checks(&self) -> Vec<(String, bool)> {
        self.records
            .iter()
            .filter(|r| r.kind == "CHECK")
            .map(|r| {
                let name = r.get("name").unwrap_or("").to_string();
                (name, r.get("ok") == Some("1"))
            })
            .collect()
    }

    /// The records of one kind.
    pub fn records<'r>(&'r self, kind: &'r str) -> impl Iterator<Item = &'r Record> + 'r {
        self.records.iter().filter(move |r| r.kind == kind)
    }
}

/// The raw Image of guest `name`, building every guest at most once per process.
///
/// # Errors
/// When the build fails or there is no such guest.
pub fn guest_image(name: &str) -> Result<PathBuf, String> {
    guest(name).map(|g| g.image)
}

/// Guest `name` as built (its ELF for qvm, its raw Image for plain QEMU), building every guest
/// at most once per process.
///
/// # Errors
/// When the build fails or there is no such guest.
pub fn guest(name: &str) -> Result<guests::Guest, String> {
    static BUILT: OnceLock<Result<Vec<guests::Guest>, String>> = OnceLock::new();
    let built = BUILT
        .get_or_init(|| {
            guests::build(&paths::target_dir().join("qemu-guests")).map_err(|e| e.to_string())
        })
        .clone()?;
    built
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| format!("no guest named {name}"))
}

/// Boots guest `name` on plain `virt` with `bootargs`; kills it after `limit` (a looping guest
/// then has `timed_out`).
///
/// # Errors
/// When QEMU is missing, the guests cannot be built or QEMU cannot start.
pub fn run_guest(name: &str, bootargs: &str, limit: Duration) -> Result<GuestRun, String> {
    qemu_ready()?;
    let image = guest_image(name)?;
    let mut child = guests::plain_qemu_command(&image, bootargs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());
    let timed_out = wait(&mut child, limit).is_err();
    let console = collect(stdout, stderr);
    Ok(GuestRun {
        records: parse_records(&console),
        console,
        timed_out,
    })
}
