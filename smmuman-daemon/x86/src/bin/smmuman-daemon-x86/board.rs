//! The board the image drives: the DMAR (firmware's view) combined with the config
//! (`smmuman_x86::topology::load`), as the aarch64 daemon combines the device tree with it.
//!
//! The config is the PVH initrd when QEMU passes one (`-initrd FILE`: QEMU's PVH option ROM
//! hands it over as `hvm_start_info`'s only module, a bare `smmuman.conf`; errors name it
//! `initrd`), else `boards/qemu-q35/smmuman.conf`, embedded at build time (`build.rs`,
//! `SMMUMAN_BOARD_CONFIG`).
//!
//! A config that is wrong, cannot be combined with the DMAR, or asks for what this image does
//! not do gives one `FATAL reason=config detail="<file>:<line>:<col>: ..."` record (or the
//! DMAR's / the combination's message) and exit code 4, before the remapping unit is touched:
//! VT-d stays off as firmware left it, and enumeration left bus mastering off on every
//! function, so no device can DMA at all.

use crate::{console, fatal, ram};
use board_config::{ConfigFile, Device, Origin, StreamSource, Topology, UnitId};
use core::fmt;
use iommu_core::PhysAddr;
use smmuman_daemon::pci::PciFunction;
use smmuman_daemon::report::write_value;
use smmuman_server::PhysRange;
use smmuman_x86::pvh::{StartInfo, MEMMAP_RAM};
use vtd::dmar::Dmar;

/// Name of the embedded config in messages.
pub const EMBEDDED_NAME: &str = "boards/qemu-q35/smmuman.conf";
/// The board's config, embedded at build time.
const EMBEDDED: &str = include_str!(env!("SMMUMAN_BOARD_CONFIG"));
/// Name of the initrd config in messages.
const INITRD_NAME: &str = "initrd";
/// Largest initrd read as a config.
const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// What start-up learned.
pub struct Board {
    /// The combined topology.
    pub topology: Topology,
    /// Which config it came from (`initrd` or [`EMBEDDED_NAME`]).
    pub config: &'static str,
    /// The initrd's memory (kept from every client and from the host's RAM for VMs).
    pub initrd: Option<PhysRange>,
}

/// A config refusal: one `FATAL reason=config` record, the safe state, exit 4.
fn refuse(detail: impl fmt::Display) -> ! {
    fatal("config", detail)
}

/// The initrd's bytes, when QEMU passed one.
fn initrd(start: &StartInfo) -> Option<(&'static [u8], PhysRange)> {
    let m = start.modules.first().filter(|m| m.size != 0)?;
    if m.size > MAX_CONFIG_SIZE {
        refuse(format_args!(
            "initrd: {} bytes, a config is at most {MAX_CONFIG_SIZE}",
            m.size
        ));
    }
    let in_ram = start
        .memmap
        .iter()
        .any(|r| r.kind == MEMMAP_RAM && r.addr <= m.paddr && m.end() <= r.end());
    let image = ram::image();
    let range = PhysRange {
        start: PhysAddr(m.paddr),
        len: m.size,
    };
    if m.paddr == 0 || m.end() > 1 << 32 || !in_ram || image.overlaps(range.start, range.len) {
        refuse(format_args!(
            "initrd: {range} is not RAM below 4 GiB outside the image"
        ));
    }
    console::line(format_args!(
        "INITRD module=0 at={range} modules={} use=config",
        start.modules.len()
    ));
    // SAFETY: `range` is RAM in the identity map (checked against the PVH memory map, below
    // 4 GiB, not the image's), where the boot loader left the module; nothing writes it: it
    // is kept from the host's RAM for VMs and reserved from every client.
    let bytes = unsafe { core::slice::from_raw_parts(m.paddr as *const u8, m.size as usize) };
    Some((bytes, range))
}

/// Reads the config, combines it with the DMAR (scopes resolved on `functions`), checks that
/// this image can drive the result and prints it (`TOPOLOGY`, `UNIT`, `BINDING`,
/// `RESERVED_REGION`). Refuses the start (never returns) when any of it is wrong.
pub fn learn(start: &StartInfo, dmar: &Dmar<'_>, functions: &[PciFunction]) -> Board {
    let (file, initrd) = match initrd(start) {
        Some((bytes, range)) => (
            ConfigFile {
                name: INITRD_NAME,
                bytes,
            },
            Some(range),
        ),
        None => (
            ConfigFile {
                name: EMBEDDED_NAME,
                bytes: EMBEDDED.as_bytes(),
            },
            None,
        ),
    };
    let topology =
        smmuman_x86::topology::load(dmar, functions, Some(file)).unwrap_or_else(|e| refuse(e));
    for (_, u) in topology.units() {
        if !dmar.units().any(|(_, d)| d.register_base == u.base) {
            refuse(format_args!(
                "{}: unit {} at {} is not a DRHD of the DMAR: this image drives the DMAR's units only",
                file.name, u.name, u.base
            ));
        }
        if u.bypasses_unclaimed() {
            refuse(format_args!(
                "{}: unit {}: unclaimed bypass is not supported by this image (VT-d denies every requester no client claimed)",
                file.name, u.name
            ));
        }
    }
    if let Some(w) = topology.windows().first() {
        refuse(format_args!(
            "{}:{}: static windows (device {}) are not installed by this image",
            file.name,
            w.origin.line(),
            DeviceName(w.device)
        ));
    }
    Board {
        topology,
        config: file.name,
        initrd,
    }
}

/// Prints the combined topology: one `TOPOLOGY` record, one `UNIT` per remapping unit, one
/// `BINDING` per binding, one `RESERVED_REGION` per reserved region, each with where it was
/// stated (`source=firmware` = the DMAR, or `source=config line=N`).
pub fn print(board: &Board, driven: UnitId) {
    let t = &board.topology;
    let mut name: heapless::String<64> = heapless::String::new();
    let _ = write_value(&mut name, &board.config);
    console::line(format_args!(
        "TOPOLOGY config={name} mode={} units={} bindings={} reserved_regions={} windows={} vms={} fault_log={} mappings={} mappings_per_vm={} driven_unit={}",
        t.mode(),
        t.unit_count(),
        t.streams().len(),
        t.reserved_regions().len(),
        t.windows().len(),
        t.vms().len(),
        t.fault_log_size(),
        t.mappings(),
        t.mappings_per_vm(),
        t.unit(driven).map_or("?", |u| u.name.as_str()),
    ));
    let unit_name = |id: UnitId| t.unit(id).map_or("?", |u| u.name.as_str());
    for (id, u) in t.units() {
        console::line(format_args!(
            "UNIT name={} kind=vtd base={} size={:#x} segment={} include_pci_all={} unclaimed={} driven={} {}",
            u.name,
            u.base,
            u.size,
            u.segment,
            u8::from(u.include_pci_all),
            u.unclaimed,
            u8::from(id == driven),
            SourceOf(u.origin)
        ));
    }
    for b in t.streams() {
        match b.source {
            StreamSource::Device(d) => console::line(format_args!(
                "BINDING unit={} device={} sid={} {}",
                unit_name(b.unit),
                DeviceName(d),
                b.sid,
                SourceOf(b.origin)
            )),
            StreamSource::PciRange(r) => console::line(format_args!(
                "BINDING unit={} range=pci:{:04x}:{:#x}..={:#x} sid={} {}",
                unit_name(b.unit),
                r.segment,
                r.rid_base,
                r.rid_last(),
                b.sid,
                SourceOf(b.origin)
            )),
        }
    }
    for r in t.reserved_regions() {
        let mut devices: heapless::String<96> = heapless::String::new();
        for d in &r.devices {
            if !devices.is_empty() {
                let _ = devices.push(' ');
            }
            let _ = fmt::Write::write_fmt(&mut devices, format_args!("{d}"));
        }
        console::line(format_args!(
            "RESERVED_REGION start={} len={:#x} segment={:04x} devices=\"{devices}\" {}",
            r.start,
            r.len,
            r.segment,
            SourceOf(r.origin)
        ));
    }
}

/// `pci:0000:00:02.0` or `mmio:0x...`: a device as one record value.
struct DeviceName(Device);

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Device::Pci { segment, bdf } => write!(f, "pci:{segment:04x}:{bdf}"),
            Device::Mmio(base) => write!(f, "mmio:{base}"),
        }
    }
}

/// `source=firmware` (the DMAR) or `source=config line=N`.
struct SourceOf(Origin);

impl fmt::Display for SourceOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Origin::Config { line } => write!(f, "source=config line={line}"),
            Origin::DeviceTree | Origin::Dmar => f.write_str("source=firmware"),
        }
    }
}
