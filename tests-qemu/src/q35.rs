//! The x86-64 image on board `qemu-q35` (QEMU `q35`, `intel-iommu`, `edu`): build it once per
//! process, boot it with a command line, capture and parse its records.
//!
//! The image is `SMMUMAN_X86_IMAGE` when set (as `cargo xtask test` does); otherwise it is built
//! once per test process under `<target>/qemu-image-x86`, so that the build does not wait on the
//! `cargo test` running it. [`Run::exit_code`] is the image's own exit code (0 pass, 1 fail, 4
//! bad board, 3 exception, 101 panic), decoded from QEMU's `isa-debug-exit` status.

use crate::{capture, collect, env_or_build, parse_records, timeout, wait, Run};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use xtask::{paths, x86};

/// The ELF, built at most once per process.
///
/// # Errors
/// When the build fails.
pub fn image() -> Result<PathBuf, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            env_or_build("SMMUMAN_X86_IMAGE", || {
                x86::build(&paths::target_dir().join("qemu-image-x86")).map_err(|e| e.to_string())
            })
        })
        .clone()
}

/// Checks `qemu-system-x86_64` once per process.
///
/// # Errors
/// When it is missing or not QEMU 10; the message says how to install it.
pub fn qemu_ready() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| x86::check().map(|_| ()).map_err(|e| e.to_string()))
        .clone()
}

/// Boots the image with `-append "<bootargs>"` and waits for it to exit.
///
/// # Errors
/// When QEMU is missing, the image cannot be built or started, or the run exceeds the time
/// limit (the message then has the console so far).
pub fn run(bootargs: &str) -> Result<Run, String> {
    run_with_initrd(bootargs, None)
}

/// [`run`] with `-initrd FILE` (the image's config) when `initrd` is given.
///
/// # Errors
/// As [`run`].
pub fn run_with_initrd(bootargs: &str, initrd: Option<&Path>) -> Result<Run, String> {
    qemu_ready()?;
    let elf = image()?;
    let mut cmd =
        x86::boot_command_with_initrd(&elf, bootargs, initrd).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", x86::binary().display()))?;
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());
    let limit = timeout();
    let exit = wait(&mut child, limit);
    let console = collect(stdout, stderr);
    let status = exit.map_err(|()| {
        format!(
            "QEMU did not exit within {} s (killed); bootargs \"{bootargs}\", console:\n{console}",
            limit.as_secs()
        )
    })?;
    Ok(Run {
        records: parse_records(&console),
        bootargs: bootargs.to_string(),
        exit_code: x86::daemon_code(status),
        console,
    })
}
