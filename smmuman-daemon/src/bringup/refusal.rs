//! Start-up discovery ([`discover`]) and the path of a daemon that refuses to start
//! ([`refuse`]).
//!
//! Discovery reads the config (the initrd the boot loader passed, else the board's
//! `smmuman.conf` embedded at build time), combines it with the device tree
//! (`board_config::load`), checks that the result is something this board can do (one SMMUv3,
//! the device tree's; static windows over free guest memory; every StreamID within the SMMU's
//! IDR1.SIDSIZE) and brings the platform up.
//!
//! Any failure refuses the start: one `FATAL reason=config stage=... detail="..."` record (for a
//! config mistake the detail starts with `file:line:col:`), every SMMU the device tree lists
//! left terminating all traffic (GBPA.ABORT set, SMMUEN = 0, one `SMMU_ABORT` record each), exit
//! code 4. Nothing is enabled on the way: bus mastering stays off everywhere.
//!
//! ## The DMA probe of a refused start (`refused-dma-probe=1`)
//!
//! To show under QEMU that "left in abort" really blocks DMA, the bootarg `refused-dma-probe=1`
//! makes a refusing daemon, after the abort, enumerate PCI (bus mastering off everywhere, no
//! StreamIDs), enable bus mastering on the first `edu` only, let it write 64 bytes to a guest
//! buffer at IOVA = PA (where an untranslated DMA would land), disable bus mastering again and
//! compare the buffer: `CHECK step=refused-start-dma-blocked ok=1` when it is unchanged.
//!
//! Why this is sound: with SMMUEN = 0 the SMMU does not look at STEs or page tables at all;
//! GBPA alone decides (IHI 0070 §6.3.14), so the probe tests exactly the state the refusal
//! leaves. `edu` cannot tell a finished DMA from an aborted one, so only memory contents count,
//! and the target is filled with a pattern the device's (zeroed) buffer cannot reproduce. The
//! probe touches only an `edu` (QEMU's test device, never found on real hardware), only on
//! request, and only in the test image: the product shim starts with
//! [`StartOptions::PRODUCT`](super::StartOptions::PRODUCT), under which the bootarg is ignored. `refused-dma-probe=bypass-control` runs the same probe *before* the abort, with the
//! SMMU in QEMU's reset state (GBPA.ABORT = 0: bypass), and expects the DMA to land
//! (`CHECK step=refused-start-control-dma-lands`): the check can fail, and does when the
//! abort is missing.

// `Refused` carries its detail text in a fixed-size buffer (no heap); it is only built on the
// failure path.
#![allow(clippy::result_large_err)]

use super::StartOptions;
use crate::board::BoardInfo;
use crate::bootargs::BootArgs;
use crate::bringup::iommu;
use crate::bringup::platform::{print_topology, BootRanges, BringUpError, Platform};
use crate::exit_code;
use crate::initrd::{self, Archive};
use crate::memory::PhysRange;
use crate::report::write_value;
use crate::runtime::console;
use board_config::{ConfigFile, LoadError, Topology, UnitId};
use core::fmt::{self, Write};
use fdt::Fdt;
use iommu_core::{Iova, PhysAddr};

/// Largest initrd read as a config.
const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// Largest initrd read as an archive (config, host plan, guest images).
const MAX_ARCHIVE_SIZE: u64 = 32 << 20;
/// Name of the embedded config in messages.
const EMBEDDED_NAME: &str = concat!("boards/", env!("SMMUMAN_BOARD_NAME"), "/smmuman.conf");
/// The board's config, embedded at build time (`build.rs` picks it from `SMMUMAN_BOARD`).
const EMBEDDED: &str = include_str!(env!("SMMUMAN_BOARD_CONFIG"));
/// Capacity of a refusal's detail text.
const DETAIL_LEN: usize = 600;
/// Most SMMUs aborted on a refusal.
pub const MAX_ABORTED: usize = board_config::MAX_UNITS + 1;
/// Pattern seed of the DMA probe's target buffer.
const PROBE_SEED: u8 = 0x3c;
/// Bytes the DMA probe writes.
const PROBE_LEN: u32 = 64;

/// Why the daemon does not start.
pub struct Refused {
    /// `config` (the device tree, the config or their combination is wrong, or asks for what
    /// this board cannot do) or `bring-up` (the platform itself failed).
    pub reason: &'static str,
    /// Which step: `initrd`, `device-tree`, `parse`, `combine`, `units`, `windows`,
    /// `sid-width`, `platform`.
    pub stage: &'static str,
    /// The config's name, once known.
    pub file: Option<&'static str>,
    /// The error, as its `Display` says it.
    pub detail: heapless::String<DETAIL_LEN>,
    /// What the platform needs to be brought up for the DMA probe, once known.
    pub boot: Option<BootRanges>,
}

impl Refused {
    fn new(reason: &'static str, stage: &'static str, detail: &dyn fmt::Display) -> Self {
        let mut text = heapless::String::new();
        if write!(text, "{detail}").is_err() {
            // Cut at capacity: say so rather than lose the whole message.
            while text.len() > DETAIL_LEN - 3 {
                text.pop();
            }
            let _ = text.push_str("...");
        }
        Self {
            reason,
            stage,
            file: None,
            detail: text,
            boot: None,
        }
    }

    fn config(stage: &'static str, detail: &dyn fmt::Display) -> Self {
        Self::new("config", stage, detail)
    }

    fn in_file(mut self, file: &'static str) -> Self {
        self.file = Some(file);
        self
    }

    fn with_boot(mut self, boot: BootRanges) -> Self {
        self.boot = Some(boot);
        self
    }
}

/// Where the config comes from.
struct ConfigSource {
    file: ConfigFile<'static>,
    initrd: Option<PhysRange>,
    /// The initrd, when it is an archive (`crate::initrd`): the host plan and the
    /// guest images come from it too.
    archive: Option<Archive<'static>>,
}

/// The config: the initrd's `smmuman.conf` when the initrd is an archive (the embedded board
/// config when the archive has none), the initrd itself when it is a bare config file, else
/// the embedded board config.
fn config_source(fdt: &Fdt<'static>, board: &BoardInfo<'static>) -> Result<ConfigSource, Refused> {
    let initrd = board_config::dt::initrd(fdt)
        .map_err(|e| Refused::config("initrd", &e).in_file("initrd"))?;
    let Some(initrd) = initrd.filter(|i| !i.is_empty()) else {
        return Ok(ConfigSource {
            file: ConfigFile {
                name: EMBEDDED_NAME,
                bytes: EMBEDDED.as_bytes(),
            },
            initrd: None,
            archive: None,
        });
    };
    let range = PhysRange::from_bounds(initrd.start, initrd.end);
    let in_ram = range.filter(|r| {
        board
            .ram_containing(r.start())
            .is_some_and(|ram| ram.contains(*r))
    });
    let Some(range) = in_ram.filter(|r| r.size() <= MAX_ARCHIVE_SIZE) else {
        return Err(Refused::config(
            "initrd",
            &format_args!(
                "/chosen: linux,initrd-start..end {}..{} is not a RAM range of at most {MAX_ARCHIVE_SIZE:#x} bytes",
                initrd.start, initrd.end
            ),
        )
        .in_file("initrd"));
    };
    // SAFETY: the device tree says the boot loader loaded the initrd into this RAM range
    // (checked above to be inside a RAM region); the memory plan reserves it from both pools
    // (`ReservedKind::Initrd`), so nothing writes it while the daemon runs.
    let bytes =
        unsafe { core::slice::from_raw_parts(range.start().0 as *const u8, range.size() as usize) };
    if initrd::is_archive(bytes) {
        let archive =
            Archive::parse(bytes).map_err(|e| Refused::config("initrd", &e).in_file("initrd"))?;
        let file = match archive.file(initrd::CONFIG_FILE) {
            Some(bytes) => ConfigFile {
                name: "initrd:smmuman.conf",
                bytes,
            },
            None => ConfigFile {
                name: EMBEDDED_NAME,
                bytes: EMBEDDED.as_bytes(),
            },
        };
        return Ok(ConfigSource {
            file,
            initrd: Some(range),
            archive: Some(archive),
        });
    }
    if range.size() > MAX_CONFIG_SIZE {
        return Err(Refused::config(
            "initrd",
            &format_args!(
                "the initrd is not an archive and, at {:#x} bytes, too large for a config (at most {MAX_CONFIG_SIZE:#x})",
                range.size()
            ),
        )
        .in_file("initrd"));
    }
    Ok(ConfigSource {
        file: ConfigFile {
            name: "initrd",
            bytes,
        },
        initrd: Some(range),
        archive: None,
    })
}

/// The unit of `t` this daemon drives: the device tree's SMMUv3. A topology with another unit
/// (a config's `[smmu]` at a base firmware does not list) is refused: the daemon drives one
/// SMMU, and leaving another unmanaged would leave it in whatever state firmware left it.
fn driven_unit(t: &Topology, board: &BoardInfo<'_>) -> Result<UnitId, Refused> {
    let base = board.smmu.base;
    let unit = t.unit_by_base(base).ok_or_else(|| {
        Refused::config(
            "units",
            &format_args!("the device tree's SMMUv3 at {base} is not in the combined topology"),
        )
    })?;
    if let Some((_, other)) = t.units().find(|(id, _)| *id != unit) {
        return Err(Refused::config(
            "units",
            &format_args!(
                "unit {} at {} ({}): this daemon drives one SMMUv3, the device tree's at {base}",
                other.name, other.base, other.origin
            ),
        ));
    }
    Ok(unit)
}

/// Reads the config, combines it with the device tree, checks the result against the board and
/// brings the platform up.
///
/// # Errors
/// [`Refused`], saying which step failed and why.
pub fn discover(
    fdt: &Fdt<'static>,
    board: &BoardInfo<'static>,
    args: &BootArgs<'static>,
    image: PhysRange,
    dtb: PhysRange,
) -> Result<Platform, Refused> {
    let source = config_source(fdt, board)?;
    let name = source.file.name;
    let boot = BootRanges {
        image,
        dtb,
        initrd: source.initrd,
    };
    let mut text: heapless::String<96> = heapless::String::new();
    let _ = write_value(&mut text, &name);
    match source.initrd {
        Some(r) => console::line(format_args!(
            "CONFIG source=initrd file={text} bytes={} range={r} archive={}",
            source.file.bytes.len(),
            u8::from(source.archive.is_some())
        )),
        None => console::line(format_args!(
            "CONFIG source=embedded file={text} bytes={}",
            source.file.bytes.len()
        )),
    }
    let topology = board_config::load(fdt, Some(source.file)).map_err(|e| {
        match &e {
            LoadError::DeviceTree(d) => Refused::config("device-tree", d),
            LoadError::Config(c) => Refused::config("parse", c),
            LoadError::Combine(c) => Refused::config("combine", c),
        }
        .in_file(name)
        .with_boot(boot)
    })?;
    let unit = driven_unit(&topology, board).map_err(|r| r.in_file(name).with_boot(boot))?;
    print_topology(&topology, name, unit);
    let mut platform = Platform::bring_up(board.clone(), args.clone(), boot, topology, Some(unit))
        .map_err(|e| match e {
            BringUpError::Config(c) => Refused::config("windows", &c).in_file(name).with_boot(boot),
            other => Refused::new("bring-up", "platform", &other).with_boot(boot),
        })?;
    // IHI 0070 §6.3.2: only the SMMU knows how many StreamID bits it takes.
    let sid_bits = match platform.take_smmu_registers() {
        Some(regs) => {
            let bits = iommu::probe_sid_bits(&regs);
            platform.give_back_smmu_registers(regs);
            bits
        }
        None => 0,
    };
    console::line(format_args!(
        "SMMU_PROBE sid_bits={sid_bits} needed={}",
        iommu::needed_sid_bits(&platform.topology, unit)
    ));
    platform
        .topology
        .validate_against(unit, sid_bits)
        .map_err(|e| {
            Refused::config("sid-width", &e)
                .in_file(name)
                .with_boot(boot)
        })?;
    platform.archive = source.archive;
    Ok(platform)
}

/// The refusal: the `FATAL` record, every SMMU aborting (and the DMA probe, on request).
/// Returns the exit code (4).
pub fn refuse(
    board: BoardInfo<'static>,
    args: BootArgs<'static>,
    refused: Refused,
    options: StartOptions,
) -> u32 {
    let mut detail: heapless::String<{ DETAIL_LEN + 40 }> = heapless::String::new();
    let _ = write_value(&mut detail, &refused.detail.as_str());
    let mut file: heapless::String<96> = heapless::String::new();
    let _ = write_value(&mut file, &refused.file.unwrap_or("none"));
    console::line(format_args!(
        "FATAL reason={} stage={} file={file} detail={detail}",
        refused.reason, refused.stage
    ));
    log::error!("smmuman-daemon refuses to start; every SMMU is left terminating all DMA");
    // A test control: only the test image honours it.
    let probe = args
        .get("refused-dma-probe")
        .filter(|_| options.refused_dma_probe);
    let mut platform = match (probe, refused.boot) {
        (Some(_), Some(boot)) => {
            match Platform::bring_up(board.clone(), args, boot, Topology::new(), None) {
                Ok(p) => Some(p),
                Err(e) => {
                    console::line(format_args!(
                        "CHECK step=refused-start-dma-probe ok=0 reason=\"no platform: {e}\""
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    if probe == Some("bypass-control") {
        if let Some(p) = platform.as_mut() {
            probe_dma(p, false);
        }
    }
    abort_smmus();
    if probe == Some("1") {
        if let Some(p) = platform.as_mut() {
            probe_dma(p, true);
        }
    }
    exit_code::BAD_BOARD
}

/// The register frames of every SMMU the device tree lists: the board's SMMUv3 first, then
/// any other unit firmware describes.
pub fn smmu_frames(
    fdt: &Fdt<'_>,
    board: &BoardInfo<'_>,
) -> heapless::Vec<(PhysAddr, u64), MAX_ABORTED> {
    let mut frames: heapless::Vec<(PhysAddr, u64), MAX_ABORTED> = heapless::Vec::new();
    let _ = frames.push((board.smmu.base, board.smmu.size));
    if let Ok(firmware) = board_config::dt::from_fdt(fdt) {
        for (_, u) in firmware.units() {
            if !frames.iter().any(|(base, _)| *base == u.base) {
                let _ = frames.push((u.base, u.size));
            }
        }
    }
    frames
}

/// Makes every SMMU the device tree lists terminate all traffic: the fail-safe
/// (`failsafe::leave_safe`, armed with [`smmu_frames`] as soon as the device tree was
/// parsed), which prints `FAILSAFE` and one `SMMU_ABORT` record per SMMU. The exit runs it
/// again, as a no-op.
pub fn abort_smmus() {
    crate::failsafe::leave_safe("refused-start");
}

/// The DMA probe (see the module docs): the first `edu` writes 64 bytes at IOVA = PA of a
/// patterned guest buffer. `expect_blocked`: the buffer must stay as it was; otherwise the
/// bytes must land. Prints one `CHECK` record and returns whether it held.
fn probe_dma(p: &mut Platform, expect_blocked: bool) -> bool {
    let step = if expect_blocked {
        "refused-start-dma-blocked"
    } else {
        "refused-start-control-dma-lands"
    };
    let fail = |why: &dyn fmt::Display| {
        let mut text: heapless::String<200> = heapless::String::new();
        let _ = write_value(&mut text, why);
        console::line(format_args!("CHECK step={step} ok=0 reason={text}"));
        false
    };
    let Some(bdf) = p.edus().next().map(|f| f.bdf) else {
        return fail(&"no edu device");
    };
    let mut edu = match p.take_edu(bdf) {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    let target = match p.guest_memory.alloc(4096, 4096) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    p.guest_memory
        .fill_pattern(target.start(), 4096, PROBE_SEED);
    if let Err(e) = p.enable_bus_master(bdf) {
        return fail(&e);
    }
    let dma = edu.dma_from_device(0, Iova(target.start().0), PROBE_LEN, &p.clock);
    let _ = p.pci.disable_bus_master(bdf);
    if let Err(e) = dma {
        return fail(&e);
    }
    let landed = p
        .guest_memory
        .check_pattern(target.start(), 4096, PROBE_SEED)
        .is_some();
    let ok = landed != expect_blocked;
    console::line(format_args!(
        "CHECK step={step} ok={} bdf={bdf} target={} landed={}",
        u8::from(ok),
        target.start(),
        u8::from(landed)
    ));
    ok
}
