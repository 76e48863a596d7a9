//! Booting the product image as a host: an initrd archive with a board config, a host plan and
//! the qvm guests (as `cargo xtask run` packs it), then the console's records, with each
//! guest's lines (`GUEST [<vm>] ...`) available per VM.
//!
//! The product image is `SMMUMAN_PRODUCT_IMAGE` when set (as `cargo xtask test` does),
//! otherwise built once per process; the guests are built once per process ([`crate::plain`]).

use crate::plain;
use crate::records::parse_line;
use crate::{boot_image, boot_image_until, env_or_build, image, qemu_ready, Boot, Record, Run};
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;
use xtask::{guests, image as xtask_image, paths};

/// The product image (no scenarios), built at most once per process.
///
/// # Errors
/// When the build fails.
pub fn product_image() -> Result<PathBuf, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            env_or_build("SMMUMAN_PRODUCT_IMAGE", || {
                xtask_image::build_with(
                    &paths::target_dir().join("qemu-image"),
                    xtask_image::Flavour::Product,
                )
                .map_err(|e| e.to_string())
            })
        })
        .clone()
}

/// Boots the product image with `bootargs` and no initrd (what it does with boot arguments
/// alone, e.g. a `scenario=` it does not have).
///
/// # Errors
/// When QEMU or the image is missing, or QEMU does not exit in time.
pub fn run_product(bootargs: &str) -> Result<Run, String> {
    qemu_ready()?;
    boot_image(&product_image()?, &Boot::default(), bootargs.to_string())
}

/// Boots the product image as `boot` says (a board, a config as initrd) with `bootargs`.
///
/// # Errors
/// As [`run_product`], and when the board is unknown or the initrd is not a file.
pub fn run_product_on(boot: &Boot<'_>, bootargs: &str) -> Result<Run, String> {
    qemu_ready()?;
    boot_image(&product_image()?, boot, bootargs.to_string())
}

/// What to pack and boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostBoot<'a> {
    /// The host plan's text.
    pub plan: &'a str,
    /// Text appended to `boards/qemu-virt/smmuman.conf` (more `[vm]` or `[smmu]` sections).
    pub config_extra: &'a str,
    /// More QEMU arguments after the board's.
    pub qemu_args: &'a [&'a str],
    /// Boot the test image with this scenario and bootargs instead of the product image.
    pub scenario: Option<(&'a str, &'a [&'a str])>,
    /// A name for the archive file (unique per test).
    pub name: &'a str,
    /// More boot arguments for the product image (e.g. `stay=1`).
    pub bootargs: &'a str,
    /// Kill QEMU once its console shows this text (a resident host never exits by itself).
    pub until: Option<&'a str>,
}

/// Packs the archive `boot` describes (every guest included) and boots it.
///
/// # Errors
/// When QEMU, an image or a guest is missing, or QEMU does not exit in time.
pub fn run_host(boot: &HostBoot<'_>) -> Result<Run, String> {
    qemu_ready()?;
    let initrd = pack(boot)?;
    let b = Boot {
        board: None,
        initrd: Some(&initrd),
        qemu_args: boot.qemu_args,
    };
    match boot.scenario {
        None => boot_image_until(&product_image()?, &b, boot.bootargs.to_string(), boot.until),
        Some((scenario, extra)) => {
            let bootargs = std::iter::once(format!("scenario={scenario}"))
                .chain(extra.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>()
                .join(" ");
            boot_image(&image()?, &b, bootargs)
        }
    }
}

/// Packs the archive `boot` describes (the board's config with `config_extra`, `plan`, every
/// guest) into `<target>/qemu-initrd/<name>.cpio`; returns its path.
///
/// # Errors
/// When a guest cannot be built or a file cannot be read or written.
pub fn pack(boot: &HostBoot<'_>) -> Result<PathBuf, String> {
    let config_path = paths::workspace_root().join("boards/qemu-virt/smmuman.conf");
    let mut config = fs::read(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    config.extend_from_slice(b"\n");
    config.extend_from_slice(boot.config_extra.as_bytes());
    let mut images = Vec::new();
    for name in guests::GUESTS {
        let g = plain::guest(name)?;
        let elf = fs::read(&g.elf).map_err(|e| format!("cannot read {}: {e}", g.elf.display()))?;
        images.push((name.to_string(), elf));
    }
    let archive =
        guests::pack(&config, boot.plan.as_bytes(), &images).map_err(|e| e.to_string())?;
    let dir = paths::target_dir().join("qemu-initrd");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let initrd = dir.join(format!("{}.cpio", boot.name));
    fs::write(&initrd, archive).map_err(|e| format!("cannot write {}: {e}", initrd.display()))?;
    Ok(initrd)
}

impl Run {
    /// The records guest `vm` printed (`GUEST [<vm>] <record>` lines, prefix removed).
    pub fn guest(&self, vm: &str) -> Vec<Record> {
        let prefix = format!("GUEST [{vm}] ");
        self.console
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(parse_line)
            .collect()
    }

    /// `(name, ok)` of every `CHECK` line guest `vm` printed.
    pub fn guest_checks(&self, vm: &str) -> Vec<(String, bool)> {
        self.guest(vm)
            .iter()
            .filter(|r| r.kind == "CHECK")
            .map(|r| {
                (
                    r.get("name").unwrap_or("").to_string(),
                    r.get("ok") == Some("1"),
                )
            })
            .collect()
    }

    /// The host's `VM vm=<vm> stop ...` record.
    pub fn vm_stop(&self, vm: &str) -> Option<&Record> {
        self.records("VM")
            .find(|r| r.get("vm") == Some(vm) && r.get("reason").is_some())
    }
}
