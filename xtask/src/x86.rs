//! The x86-64 image (`smmuman-daemon/x86/`, package `smmuman-x86`) on board `qemu-q35`: building the
//! PVH ELF, finding or installing `qemu-system-x86_64`, the command line that boots it, and
//! decoding its exit status.
//!
//! QEMU boots the ELF itself (`-kernel`, PVH note), so there is no flattening step. The image
//! exits through `isa-debug-exit` (port 0xf4): writing `code` makes QEMU exit with
//! `code << 1 | 1`, and a pass writes qemu-exit's success code, so QEMU exits [`EXIT_PASS`].

use crate::{paths, qemu, toolchain, Error, Result};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The board directory the x86-64 image boots on.
pub const BOARD: &str = "qemu-q35";
/// The Rust target of the image.
pub const TARGET: &str = "x86_64-unknown-none";
/// The package and binary.
pub const PACKAGE: &str = "smmuman-x86";
/// The binary's name.
pub const BIN: &str = "smmuman-daemon-x86";
/// The emulator (override with `SMMUMAN_QEMU_X86`).
pub const QEMU: &str = "qemu-system-x86_64";
/// QEMU's exit status for a pass (qemu-exit `X86::new(0xf4, 33)`).
pub const EXIT_PASS: i32 = 33;
/// Shell commands that install QEMU 10's x86 system emulator on Debian bookworm (as root).
pub const INSTALL_COMMANDS: &str = "echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list\n\
apt-get update\n\
apt-get install -y -t bookworm-backports qemu-system-x86";

/// Whether `board` is booted with the x86-64 image.
pub fn is_x86_board(board: &str) -> bool {
    board == BOARD
}

/// The emulator to run.
pub fn binary() -> PathBuf {
    env::var_os("SMMUMAN_QEMU_X86")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(QEMU))
}

/// The image's exit code from QEMU's exit status: [`EXIT_PASS`] is 0, another odd status `s`
/// is `(s - 1) / 2`; anything else (QEMU's own failure, 0 for a guest-initiated shutdown) is
/// returned as `None`.
pub fn daemon_code(status: Option<i32>) -> Option<i32> {
    match status? {
        EXIT_PASS => Some(0),
        s if s > 0 && s % 2 == 1 => Some((s - 1) / 2),
        _ => None,
    }
}

/// The installed `qemu-system-x86_64`'s version, if it is QEMU 10.
///
/// # Errors
/// When it is missing or another version; the message says how to install it.
pub fn check() -> Result<qemu::Version> {
    let bin = binary();
    let hint = format!(
        "install QEMU {} for x86 (Debian bookworm: from bookworm-backports), as root:\n\n{INSTALL_COMMANDS}",
        qemu::REQUIRED_MAJOR
    );
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| Error(format!("cannot run {}: {e}\n{hint}", bin.display())))?;
    match qemu::parse_version(&String::from_utf8_lossy(&out.stdout)) {
        Some(v) if v.major == qemu::REQUIRED_MAJOR => Ok(v),
        Some(v) => Err(Error(format!(
            "{} is QEMU {v}; the q35 board is measured on {}.x\n{hint}",
            bin.display(),
            qemu::REQUIRED_MAJOR
        ))),
        None => Err(Error(format!(
            "cannot read the version of {}\n{hint}",
            bin.display()
        ))),
    }
}

/// Makes sure `qemu-system-x86_64` 10.x is there, installing `qemu-system-x86` from
/// bookworm-backports when running as root on bookworm (as [`qemu::ensure`] does for arm).
///
/// # Errors
/// When it is missing and cannot be installed here.
pub fn ensure_qemu() -> Result<qemu::Version> {
    match check() {
        Ok(v) => return Ok(v),
        Err(e)
            if !qemu::is_root()
                || !qemu::is_bookworm()
                || env::var_os("SMMUMAN_QEMU_X86").is_some() =>
        {
            return Err(Error(format!(
                "{e}\n(not installing: needs root on Debian bookworm)"
            )))
        }
        Err(e) => {
            eprintln!("xtask: {e}\nxtask: installing qemu-system-x86 from bookworm-backports")
        }
    }
    std::fs::write(
        "/etc/apt/sources.list.d/backports.list",
        "deb http://deb.debian.org/debian bookworm-backports main\n",
    )
    .map_err(|e| Error(format!("cannot write the backports list: {e}")))?;
    qemu::apt_get(&["update"])?;
    qemu::apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
        "qemu-system-x86",
    ])?;
    check()
}

/// Builds the image (release, `--features bare`) under `target_dir` and returns the ELF.
///
/// # Errors
/// When the target cannot be added or cargo fails.
pub fn build(target_dir: &Path) -> Result<PathBuf> {
    toolchain::ensure_target(TARGET)?;
    let status = Command::new(paths::cargo())
        .current_dir(paths::workspace_root())
        .args([
            "build",
            "--package",
            PACKAGE,
            "--bin",
            BIN,
            "--features",
            "bare",
            "--release",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| Error(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Error(format!(
            "building {PACKAGE} for {TARGET} failed ({status})"
        )));
    }
    Ok(target_dir.join(TARGET).join("release").join(BIN))
}

/// The command that boots `elf` on [`BOARD`] with `bootargs` (`-append`, which PVH hands the
/// image as hvm_start_info's command line).
///
/// # Errors
/// When the board's `qemu.args` cannot be read.
pub fn boot_command(elf: &Path, bootargs: &str) -> Result<Command> {
    boot_command_with_initrd(elf, bootargs, None)
}

/// [`boot_command`] with `-initrd FILE` when `initrd` is given: QEMU's PVH loader hands FILE
/// to the image as `hvm_start_info`'s only module, which the image reads as its
/// `smmuman.conf` instead of the embedded board config.
///
/// # Errors
/// When the board's `qemu.args` cannot be read.
pub fn boot_command_with_initrd(
    elf: &Path,
    bootargs: &str,
    initrd: Option<&Path>,
) -> Result<Command> {
    let mut cmd = Command::new(binary());
    cmd.args(qemu::board_args_of(BOARD)?)
        .arg("-kernel")
        .arg(elf);
    if let Some(file) = initrd {
        cmd.arg("-initrd").arg(file);
    }
    cmd.arg("-append").arg(bootargs);
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_decode_to_daemon_codes() {
        assert_eq!(daemon_code(Some(33)), Some(0));
        assert_eq!(daemon_code(Some(3)), Some(1));
        assert_eq!(daemon_code(Some(9)), Some(4));
        assert_eq!(daemon_code(Some(203)), Some(101));
        assert_eq!(daemon_code(Some(0)), None);
        assert_eq!(daemon_code(None), None);
    }

    #[test]
    fn the_q35_board_asks_for_vtd_edu_and_debug_exit() {
        let args = qemu::board_args_of(BOARD).unwrap();
        assert!(args.iter().any(|a| a == "q35"));
        assert!(args
            .iter()
            .any(|a| a.starts_with("intel-iommu,") && a.contains("caching-mode=on")));
        assert!(args
            .iter()
            .any(|a| a.starts_with("isa-debug-exit,iobase=0xf4")));
        assert!(args.iter().any(|a| a.starts_with("edu")));
        let cmd = boot_command(Path::new("/tmp/x.elf"), "scenario=deny").unwrap();
        let args: Vec<_> = cmd.get_args().collect();
        let tail: Vec<_> = args
            .iter()
            .rev()
            .take(4)
            .map(|a| a.to_string_lossy())
            .collect();
        assert_eq!(tail[0], "scenario=deny");
        assert_eq!(tail[3], "-kernel");
    }
}
