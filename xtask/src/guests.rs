//! The qvm test guests (`tests-qemu/guests`, package `qvm-guests`) and the initrd that carries
//! them to the host.
//!
//! * [`build`] compiles every guest for `aarch64-unknown-none` (release) and copies each out as
//!   `<dir>/<name>.elf` (what qvm loads) and `<dir>/<name>.bin`, the same program flattened
//!   into a raw arm64 Image, which plain QEMU `virt` boots at EL1 with its device tree in x0
//!   ([`plain_qemu_command`]: the guests' smoke test without a VMM).
//! * [`pack`] writes the initrd archive ([`crate::cpio`]): `smmuman.conf`, `host.plan` and
//!   `guests/<name>`; [`initrd_for`] does it for a board and a plan file.

use crate::cpio::{CpioError, Writer};
use crate::{image, paths, qemu, Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guests' package.
pub const PACKAGE: &str = "qvm-guests";
/// Every guest binary.
pub const GUESTS: [&str; 11] = [
    "driver",
    "rogue",
    "unity",
    "looper",
    "crasher",
    "cpu-noisy",
    "cpu-check",
    "worker",
    "flooder",
    "leftover",
    "stale-dma",
];
/// Archive name of the board config.
pub const CONFIG_ENTRY: &str = "smmuman.conf";
/// Archive name of the host plan.
pub const PLAN_ENTRY: &str = "host.plan";
/// Archive folder of the guest images.
pub const GUESTS_ENTRY: &str = "guests/";

/// One built guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Its name (`driver`, ...).
    pub name: String,
    /// The ELF qvm loads.
    pub elf: PathBuf,
    /// The raw arm64 Image plain QEMU boots.
    pub image: PathBuf,
}

/// Builds every guest with `target_dir` as cargo's target directory and copies them to
/// `<target_dir>/guests/`. Cargo's output goes to our stderr.
///
/// # Errors
/// When cargo fails or an ELF cannot be read, flattened or written.
pub fn build(target_dir: &Path) -> Result<Vec<Guest>> {
    let status = Command::new(paths::cargo())
        .current_dir(paths::workspace_root())
        .args(["build", "--package", PACKAGE, "--bins", "--release"])
        .args(["--target", image::TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| Error(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Error(format!(
            "building {PACKAGE} for {} failed ({status})",
            image::TARGET
        )));
    }
    let out = target_dir.join("guests");
    fs::create_dir_all(&out).map_err(|e| Error(format!("cannot create {}: {e}", out.display())))?;
    let built = target_dir.join(image::TARGET).join("release");
    GUESTS
        .iter()
        .map(|name| {
            let from = built.join(name);
            let elf = fs::read(&from)
                .map_err(|e| Error(format!("cannot read {}: {e}", from.display())))?;
            let raw =
                image::elf_to_image(&elf).map_err(|e| Error(format!("{}: {e}", from.display())))?;
            let guest = Guest {
                name: name.to_string(),
                elf: out.join(format!("{name}.elf")),
                image: out.join(format!("{name}.bin")),
            };
            write(&guest.elf, &elf)?;
            write(&guest.image, &raw)?;
            Ok(guest)
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
}

/// The initrd archive: `smmuman.conf` = `config`, `host.plan` = `plan`, and
/// `guests/<name>` for each `(name, ELF)`.
///
/// # Errors
/// A guest name that is empty, has a `/` or NUL, or repeats.
pub fn pack(config: &[u8], plan: &[u8], guests: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let cpio = |e: CpioError| Error(e.to_string());
    let mut w = Writer::new();
    w.file(CONFIG_ENTRY, config).map_err(cpio)?;
    w.file(PLAN_ENTRY, plan).map_err(cpio)?;
    for (name, elf) in guests {
        if name.contains('/') {
            return Err(Error(format!("guest name {name:?} has a '/'")));
        }
        w.file(&format!("{GUESTS_ENTRY}{name}"), elf)
            .map_err(cpio)?;
    }
    Ok(w.finish())
}

/// Writes the initrd for `board` and the host plan at `plan_path`, with `guests` (ELF files,
/// each named in the archive by its file stem: `driver.elf` → `guests/driver`), and returns its
/// path: `<target>/initrd/<board>-<plan stem>.cpio`. The config is `boards/<board>/smmuman.conf`.
/// `cargo xtask run` passes the result to QEMU with `-initrd`.
///
/// # Errors
/// When the board, the plan or a guest cannot be read, or the archive cannot be written.
pub fn initrd_for(board: &str, plan_path: &Path, guests: &[PathBuf]) -> Result<PathBuf> {
    let read =
        |p: &Path| fs::read(p).map_err(|e| Error(format!("cannot read {}: {e}", p.display())));
    let config = read(&qemu::board_dir_of(board)?.join(CONFIG_ENTRY))?;
    let plan = read(plan_path)?;
    let mut images = Vec::new();
    for path in guests {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| Error(format!("guest {} has no UTF-8 file name", path.display())))?;
        images.push((name.to_string(), read(path)?));
    }
    let archive = pack(&config, &plan, &images)?;
    let stem = plan_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plan");
    let dir = paths::target_dir().join("initrd");
    fs::create_dir_all(&dir).map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
    let out = dir.join(format!("{board}-{stem}.cpio"));
    write(&out, &archive)?;
    Ok(out)
}

/// QEMU arguments that boot a guest's raw Image on plain `virt` at EL1 (no SMMU, no EL2: the
/// guest's DMA addresses are physical addresses), with one `edu` at 00:01.0 and `bootargs`.
/// PSCI SYSTEM_OFF ends QEMU with exit code 0 whatever the guest's status: read its
/// `EXIT status=` line.
pub fn plain_qemu_command(image: &Path, bootargs: &str) -> Command {
    let mut cmd = Command::new(qemu::binary());
    cmd.args([
        "-machine",
        "virt,gic-version=3",
        "-cpu",
        "max",
        "-m",
        "512M",
    ])
    .args([
        "-nographic",
        "-nic",
        "none",
        "-icount",
        "shift=10,sleep=off",
    ])
    .args(["-device", "edu,dma_mask=0xffffffffffffffff", "-kernel"])
    .arg(image)
    .args(["-append", bootargs]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use smmuman_daemon::initrd::Archive;

    #[test]
    fn a_packed_initrd_reads_back_in_the_daemon() {
        let guests = vec![
            ("driver".to_string(), vec![0x7f, b'E', b'L', b'F']),
            ("rogue".to_string(), vec![9; 1001]),
        ];
        let bytes = pack(b"smmu auto\n", b"vm a\n", &guests).unwrap();
        let a = Archive::parse(&bytes).unwrap();
        assert_eq!(a.file(CONFIG_ENTRY), Some(&b"smmu auto\n"[..]));
        assert_eq!(a.file(PLAN_ENTRY), Some(&b"vm a\n"[..]));
        let read: Vec<_> = a
            .guests()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect();
        assert_eq!(read, guests);
        assert!(pack(b"", b"", &[("a/b".to_string(), vec![])]).is_err());
        assert!(pack(
            b"",
            b"",
            &[("a".to_string(), vec![]), ("a".to_string(), vec![])]
        )
        .is_err());
    }

    #[test]
    fn initrd_for_a_board_carries_its_config_plan_and_guests() {
        let dir = paths::target_dir().join("initrd-test");
        fs::create_dir_all(&dir).unwrap();
        let plan = dir.join("two-vms.plan");
        fs::write(&plan, "vm a\n").unwrap();
        let elf = dir.join("driver.elf");
        fs::write(&elf, [1, 2, 3]).unwrap();
        let out = initrd_for(paths::DEFAULT_BOARD, &plan, &[elf]).unwrap();
        assert!(
            out.ends_with("initrd/qemu-virt-two-vms.cpio"),
            "{}",
            out.display()
        );
        let bytes = fs::read(&out).unwrap();
        let a = Archive::parse(&bytes).unwrap();
        let config = fs::read(paths::board_dir().join(CONFIG_ENTRY)).unwrap();
        assert_eq!(a.file(CONFIG_ENTRY), Some(config.as_slice()));
        assert_eq!(a.file("guests/driver"), Some(&[1u8, 2, 3][..]));
        assert!(initrd_for("no-such-board", &plan, &[]).is_err());
    }
}
