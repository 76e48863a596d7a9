//! The VT-d scenarios (`scenario=<name>` on the PVH command line, QEMU `-append`), each proven
//! by a real `edu` DMA and the unit's fault records:
//!
//! * `boot`: discovery and bring-up only (every requester denied with a record).
//! * `deny`: `edu` (bus mastering on, no context entry) reads and writes memory: both refused,
//!   one `FAULT` each with `edu`'s requester id as source, the page address and the direction.
//!   Control `vtd=off` (the unit never enabled): the same DMAs land.
//! * `window`, through [`vtd::backend::VtdBackend`] (the manager's seam): `edu` gets a domain
//!   whose second-level table maps one 2 MiB window at [`WINDOW_IOVA`] onto host RAM outside the
//!   image: a DMA inside lands; one just past the window is refused and recorded, and the RAM
//!   right after the window's is unchanged. Control `control=wide` maps 4 MiB: the same DMA
//!   past the first 2 MiB lands there.
//! * `remap`: a DMA through the backend's window lands (the unit caches the translation in its
//!   IOTLB); `IommuBackend::unmap` clears the leaf and invalidates the IOTLB range: the next DMA
//!   through the same page is refused and recorded. Control `control=no-invalidate` (by hand,
//!   the backend always invalidates: a table built here, DID [`HAND_DID`], IOVA = PA in the DMA
//!   pool) clears the leaf without the invalidation: the stale translation still lands
//!   (QEMU's IOTLB caches like hardware).
//! * `reserved`: edu 0 reads and writes at `at=` (default [`RESERVED_AT`]) with IOVA = PA. When
//!   the combined topology reserves a region there for edu (a DMAR RMRR or a config `reserved`
//!   line), the region is identity-mapped for it: both DMAs land; a write just past the region
//!   is refused and recorded. Without such a region (the control: the board's config), the
//!   same DMAs are refused and recorded.
//! * `irq-fault`: the refused DMA's record arrives through the fault-event interrupt
//!   ([`crate::irq`]); control `vtd-irq=off`: FECTL stays masked and the poll finds it.
//! * `vms`, `vmm-rules`, `vmm-hostile`, `mmio-refused`: the manager over the backend and its
//!   clients ([`crate::clients`]).
//!
//! * `exit-after-bringup`, `fatal-after-bringup`, `fault-after-bringup`, `panic-after-bringup`:
//!   edu gets a live identity window ([`crate::failsafe_probe::arm_window`]), then the run ends
//!   normally, with a `FATAL`, an exception (`ud2`) or a panic; every way out leaves the safe
//!   state ([`crate::failsafe`]: every unit blocking all DMA, bus mastering off), and the DMA
//!   probe shows edu's DMA into its former window does not land (control
//!   `failsafe-probe=skip-block-control`: it lands). `queue-error-after-bringup` panics with
//!   the invalidation queue stopped at a descriptor the unit refused
//!   ([`crate::failsafe_probe::stop_queue`]): the fail-safe recovers the queue to invalidate.
//!   An unknown `scenario=` with
//!   `failsafe-probe=1` does the same for a start refused before bring-up
//!   ([`crate::failsafe_probe::arm_reset`]).
//!
//! Every step prints `CHECK step=<name> ok=0|1 ...`; the run ends with one
//! `RESULT scenario=<name> status=pass|fail`.

// A failing step returns the `RESULT` record it becomes: a fixed-size text buffer (there is no
// heap to box it in), returned only on the failure path.
#![allow(clippy::result_large_err)]

use crate::dma::Pool;
use crate::host::Backend;
use crate::ram::HostRam;
use crate::{console, failsafe, fatal, Machine};
use core::fmt;
use core::time::Duration;
use heapless::Vec;
use iommu_core::{Access, Bdf, DmaMemory, DomainId, IommuBackend, Iova, PhysAddr, StreamId};
use smmuman_daemon::bootargs::BootArgs;
use smmuman_daemon::edu::{Edu, EduError};
use smmuman_daemon::exit_code;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::report::Outcome;
use smmuman_server::PhysRange;
use smmuman_x86::remapping::{self, UnitPlan};
use vtd::backend::VtdBackend;
use vtd::second_level::{encode_leaf, encode_table};
use vtd::{AddressWidth, ContextEntry, DomainTag, FaultRecord, Unit};

/// A step's failure: the `RESULT` it becomes.
pub type Step<T = ()> = Result<T, Outcome>;

/// 2 MiB: one second-level superpage (VT-d §9.8, PS = 1 at the page-directory level).
pub const SUPERPAGE: u64 = 2 << 20;
/// Bytes each DMA moves.
pub const DMA_LEN: u32 = 256;
/// The byte pattern DMAs carry.
const PATTERN: u8 = 0xa5;
/// The domain the hand-built control table of `remap` uses (VT-d §9.3, context-entry DID):
/// above every DID the backend hands out (`vtd::backend::MAX_DOMAINS` slots, DIDs 1..=64), so
/// the two never share IOTLB entries.
const HAND_DID: DomainTag = DomainTag(0x100);
/// Where the backend scenarios put their window: 1 GiB, not the host address (IOVA ≠ PA shows
/// the translation), below edu's widened DMA mask.
pub const WINDOW_IOVA: u64 = 0x4000_0000;
/// Where scenario `reserved` DMAs by default: 128 MiB, RAM with `-m 256M`, above the image,
/// the VMs' RAM and below QEMU's initrd (at the top of RAM).
pub const RESERVED_AT: u64 = 0x0800_0000;
/// How long an edu transfer may take: 100 ms of virtual time in the model.
const EDU_TIMEOUT: Duration = Duration::from_secs(2);

/// Every scenario this image runs.
const KNOWN: &str = "boot deny window remap reserved irq-fault lost-records vms vmm-rules vmm-hostile mmio-refused fault-after-bringup panic-after-bringup fatal-after-bringup exit-after-bringup queue-error-after-bringup";

/// One `edu`: its address, the requester id its DMA carries and its driver.
pub struct EduDev {
    /// PCI address.
    pub bdf: Bdf,
    /// Requester id = the manager's StreamId on VT-d.
    pub sid: StreamId,
    /// The driver.
    pub edu: Edu<MmioRegion>,
}

/// What the scenarios work with.
pub struct Rig<'m> {
    /// The clock.
    pub clock: &'m crate::hpet::Hpet,
    /// The backend over the unit (`None` with `vtd=off`, or once the manager holds it).
    pub backend: Option<Backend>,
    /// The DMA pool while no backend holds it (`vtd=off`).
    spare: Option<Pool>,
    /// RAM outside the image for windows and VMs.
    pub ram: HostRam,
    /// The edus (the first is the one `deny`, `window`, `remap` use).
    pub edus: Vec<EduDev, 2>,
    /// What the unit looks after.
    pub plan: UnitPlan,
    /// The manager's sizes and the initrd (from the combined topology).
    pub limits: crate::host::Limits,
    pub(crate) faults: Vec<FaultRecord, 32>,
}

/// Runs the scenario `args` name and returns the exit code.
pub fn run(mut m: Machine, args: &BootArgs<'_>) -> u32 {
    let name = args.scenario.unwrap_or("boot");
    if !KNOWN.split(' ').any(|k| k == name) {
        // A test run may ask the exit's fail-safe to prove itself by DMA (unit as reset).
        crate::failsafe_probe::arm_reset(&mut m, args);
        console::line(format_args!(
            "FATAL reason=unknown-scenario scenario={name} known=\"{KNOWN}\""
        ));
        return exit_code::BAD_BOOTARGS;
    }
    let dmar = m.acpi.dmar.dmar().unwrap_or_else(|e| fatal("dmar", e));
    let functions = m.pci.functions();
    let (edu_bdf, _) = m.edus[0];
    // The DMAR combined with the config (the initrd's, else the board's): which unit
    // translates which function, the reserved regions, the fault-log depth, the quotas.
    let board = crate::board::learn(&m.start, &dmar, functions);
    // The unit that translates edu (VT-d §8.3 as the topology has it): the one driven.
    let driven = match board.topology.sid_for(board_config::Device::pci(edu_bdf)) {
        Ok(Some((u, _))) => u,
        Ok(None) => fatal(
            "config",
            format_args!(
                "{}: no unit translates edu {edu_bdf}: it could DMA untranslated",
                board.config
            ),
        ),
        Err(e) => fatal("config", format_args!("{}: {e}", board.config)),
    };
    crate::board::print(&board, driven);
    let base = board.topology.unit(driven).map_or(PhysAddr(0), |u| u.base);
    // `learn` checked that every unit of the topology is a DRHD of the DMAR.
    let Some((index, _)) = dmar.units().find(|(_, d)| d.register_base == base) else {
        fatal("config", "the driven unit is not in the DMAR")
    };
    let plan = remapping::plan_from_topology(&board.topology, driven, index, base, functions)
        .unwrap_or_else(|e| fatal("config", format_args!("{}: {e}", board.config)));
    console::line(format_args!(
        "UNIT_PLAN index={} base={} devices={} reserved_regions={} held={}",
        plan.unit,
        plan.register_base,
        plan.devices.len(),
        plan.regions.len(),
        plan.devices.iter().filter(|d| plan.held(d.0)).count()
    ));
    for (bdf, sid) in &plan.devices {
        console::line(format_args!(
            "UNIT_DEVICE bdf={bdf} sid={:#06x} held={}",
            sid.0,
            u8::from(plan.held(*bdf))
        ));
    }
    let haw = dmar.host_address_width();
    let pool = Pool::take().unwrap_or_else(|| fatal("dma", "DMA pool already taken"));
    let mut edus: Vec<EduDev, 2> = Vec::new();
    for &(bdf, bar0) in &m.edus {
        // SAFETY: edu's BAR0 (1 MiB of registers) in the uncached PCI window, owned by this
        // driver.
        let mut edu =
            Edu::new(unsafe { MmioRegion::new(bar0, 1 << 20) }).unwrap_or_else(|e| fatal("edu", e));
        edu.set_timeout(EDU_TIMEOUT);
        let sid = plan
            .devices
            .iter()
            .find(|d| d.0 == bdf)
            .map_or(StreamId(u32::from(bdf.rid())), |d| d.1);
        let _ = edus.push(EduDev { bdf, sid, edu });
    }
    let base = plan.register_base.0;
    if base >= 1 << 32 {
        fatal(
            "dmar",
            "remapping unit above 4 GiB is outside the identity map",
        );
    }
    // SAFETY: the DRHD's register page (below 4 GiB, uncached in the identity map), used by
    // this `Unit` alone.
    let regs = unsafe { vtd::Mmio::new(base as usize, 0x1000) }.unwrap_or_else(|e| fatal("vtd", e));
    let mut unit = Unit::new(regs).unwrap_or_else(|e| fatal("vtd", e));
    let f = *unit.features();
    console::line(format_args!(
        "VTD base={base:#018x} version={}.{} domains={} sagaw={:#x} mgaw={} cm={} coherent={} qi={} sp2m={} sp1g={} psi={} nfr={} mamv={}",
        f.version.0, f.version.1, f.domains, f.sagaw, f.mgaw_bits, u8::from(f.caching_mode),
        u8::from(f.coherent), u8::from(f.qi), u8::from(f.superpage_2m), u8::from(f.superpage_1g),
        u8::from(f.psi), f.nfr, f.mamv
    ));
    let ram = HostRam::find(&m.start, board.initrd)
        .unwrap_or_else(|| fatal("memory", "no RAM above the image"));
    console::line(format_args!(
        "HOST_RAM range={} image={}",
        ram.range(),
        crate::ram::image()
    ));
    let vtd_on = args.get("vtd") != Some("off");
    let mut rig = Rig {
        clock: &m.clock,
        backend: None,
        spare: None,
        ram,
        edus,
        plan,
        limits: crate::host::Limits::of(&board.topology, board.initrd),
        faults: Vec::new(),
    };
    if vtd_on {
        let mut pool = pool;
        if let Err(e) = unit.bring_up(&mut pool) {
            fatal("vtd", e);
        }
        let translating = unit.translating();
        console::line(format_args!(
            "CHECK step=vtd-bring-up ok={} translating={} root={}",
            u8::from(translating),
            u8::from(translating),
            unit.root_table().unwrap_or(PhysAddr(0))
        ));
        if !translating {
            fatal("vtd", "GSTS.TES = 0 after bring-up");
        }
        let mut backend = VtdBackend::new(unit, pool, haw).unwrap_or_else(|e| fatal("vtd", e));
        // The image's own memory (tables, queues, stack, heap) is never mapped for anyone.
        let image = crate::ram::image();
        if let Err(e) = backend.reserve(image.start, image.len) {
            fatal("vtd", e);
        }
        // VT-d §8.4: RMRR regions stay reachable, identity-mapped, for the devices they name.
        match remapping::identity_map(&mut backend, &rig.plan) {
            Ok(Some(d)) => {
                for r in rig.plan.regions.iter().filter(|r| !r.devices.is_empty()) {
                    console::line(format_args!(
                        "RMRR_MAP domain={} range={} devices={} identity=1",
                        d.0,
                        r.range,
                        r.devices.len()
                    ));
                }
            }
            Ok(None) => console::line(format_args!("RMRR_MAP none=1")),
            Err(e) => fatal("rmrr", e),
        }
        rig.backend = Some(backend);
        rig.drain("after-bring-up");
    } else {
        rig.spare = Some(pool);
        console::line(format_args!(
            "SAY control vtd=off: the remapping unit is never enabled, DMA is untranslated"
        ));
    }
    for d in &mut rig.edus {
        let alive = d.edu.is_alive(0x1234_5678);
        failsafe::add_master(d.bdf);
        if let Err(e) = m.pci.enable_bus_master(d.bdf) {
            fatal("pci", e);
        }
        console::line(format_args!(
            "EDU bdf={} sid={:#06x} version={}.{} alive={} bus_master=1",
            d.bdf,
            d.sid.0,
            d.edu.version().0,
            d.edu.version().1,
            u8::from(alive)
        ));
    }
    if name.ends_with("-after-bringup") {
        let bar0 = m.edus[0].1;
        if let Err(o) =
            crate::failsafe_probe::arm_window(&mut rig, bar0, PhysAddr(m.acpi.hpet), args)
        {
            let mut line: heapless::String<400> = heapless::String::new();
            let _ = o.write_result(name, &mut line);
            console::line(format_args!("{line}"));
            return exit_code::FAIL;
        }
    }
    match name {
        "fatal-after-bringup" => fatal("scenario", "deliberate FATAL after bring-up (scenario)"),
        "fault-after-bringup" => {
            console::line(format_args!("SAY executing ud2 with edu a bus master"));
            // SAFETY: UD2 raises #UD (SDM Vol. 2B "UD"), which the IDT turns into an
            // EXCEPTION record, the safe state and an exit; no memory is touched.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        "panic-after-bringup" => panic!("deliberate panic after bring-up (scenario)"),
        "queue-error-after-bringup" => {
            if let Err(o) = crate::failsafe_probe::stop_queue(&mut rig) {
                let mut line: heapless::String<400> = heapless::String::new();
                let _ = o.write_result(name, &mut line);
                console::line(format_args!("{line}"));
                return exit_code::FAIL;
            }
            panic!("deliberate panic with the invalidation queue stopped at an error (scenario)")
        }
        _ => {}
    }
    let control = args.get("control");
    if !vtd_on && name != "deny" && name != "boot" {
        fatal("bootargs", "vtd=off is the control of `deny` only");
    }
    let outcome = match name {
        "deny" => deny(&mut rig, vtd_on),
        "window" => window(&mut rig, control == Some("wide")),
        "remap" => remap(&mut rig, control == Some("no-invalidate")),
        "lost-records" => match args.get("vtd-irq") {
            None | Some("on") => crate::lost::lost_records(&mut rig, true),
            Some("off") => crate::lost::lost_records(&mut rig, false),
            Some(_) => fatal("bootargs", "vtd-irq= is on or off"),
        },
        "irq-fault" => match args.get("vtd-irq") {
            None | Some("on") => crate::irq::fault(&mut rig, true),
            Some("off") => crate::irq::fault(&mut rig, false),
            Some(_) => fatal("bootargs", "vtd-irq= is on or off"),
        },
        "reserved" => {
            let at = args
                .get("at")
                .map_or(Some(RESERVED_AT), |a| {
                    u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()
                })
                .filter(|a| a % 4096 == 0)
                .unwrap_or_else(|| fatal("bootargs", "at= is a 4 KiB aligned hexadecimal address"));
            let range = PhysRange {
                start: PhysAddr(at),
                len: 2 * SUPERPAGE,
            };
            let avoid = [rig.ram.range()]
                .into_iter()
                .chain(rig.limits.initrd)
                .collect::<Vec<PhysRange, 2>>();
            match crate::ram::Scratch::new(&m.start, range, &avoid) {
                Some(scratch) => reserved(&mut rig, scratch, at),
                None => Err(Outcome::fail()
                    .with("reason", "at= is not free RAM")
                    .with("range", range)),
            }
        }
        "vms" => crate::clients::vms(&mut rig),
        "vmm-rules" => crate::clients::rules(&mut rig),
        "vmm-hostile" => crate::clients::hostile(&mut rig),
        "mmio-refused" => crate::clients::mmio_refused(&mut rig, &dmar),
        _ => Ok(()),
    }
    .map(|()| Outcome::pass())
    .unwrap_or_else(|o| o);
    for d in &rig.edus {
        // The fail-safe's probe needs it until it ran (then the fail-safe turns it off).
        if !crate::failsafe_probe::keeps_master(u64::from(d.bdf.rid())) {
            let _ = m.pci.disable_bus_master(d.bdf);
        }
    }
    if let Some(b) = rig.backend.as_ref() {
        let s = b.unit().stats();
        console::line(format_args!(
            "VTD_STATS submissions={} descriptors={} queue_errors={} faults={} overflows={}",
            s.submissions, s.descriptors, s.queue_errors, s.faults, s.fault_overflows
        ));
    }
    let mut line: heapless::String<400> = heapless::String::new();
    let _ = outcome.write_result(name, &mut line);
    console::line(format_args!("{line}"));
    if outcome.status() == smmuman_daemon::report::Status::Pass {
        exit_code::PASS
    } else {
        exit_code::FAIL
    }
}

/// A `CHECK` record; `Err` when `ok` is false.
pub fn check(step: &str, ok: bool, detail: impl fmt::Display) -> Step {
    console::line(format_args!(
        "CHECK step={step} ok={} {detail}",
        u8::from(ok)
    ));
    if ok {
        Ok(())
    } else {
        Err(Outcome::fail().with("failed_step", step))
    }
}

impl Rig<'_> {
    /// The DMA pool (the backend's, or the spare one with `vtd=off`).
    fn pool(&mut self) -> Step<&mut Pool> {
        match (self.backend.as_mut(), self.spare.as_mut()) {
            (Some(b), _) => Ok(b.parts().1),
            (None, Some(p)) => Ok(p),
            (None, None) => Err(vtd_error("pool", "held by the manager")),
        }
    }

    /// Drains the unit's fault records: one `FAULT` record each, kept for checks.
    pub(crate) fn drain(&mut self, when: &str) -> usize {
        let Some(backend) = self.backend.as_mut() else {
            return 0;
        };
        let (unit, _) = backend.parts();
        let mut n = 0;
        let faults = &mut self.faults;
        let report = unit.drain_faults(|f| {
            console::line(format_args!(
                "FAULT unit=vtd source={} addr={} dir={} reason={:#04x} reason_name=\"{}\" index={} when={when}",
                f.source, f.addr, f.dir, f.reason.0, f.reason.name(), f.index
            ));
            let _ = faults.push(f);
            n += 1;
        });
        if report.overflowed {
            console::line(format_args!("FAULT_OVERFLOW unit=vtd when={when}"));
        }
        n
    }

    /// edu `i` reads `DMA_LEN` bytes at `iova` into its buffer.
    pub fn dev_reads(&mut self, i: usize, iova: u64) -> Step {
        let Some(d) = self.edus.get_mut(i) else {
            return Err(Outcome::fail()
                .with("reason", "no such edu")
                .with("index", i));
        };
        let r = d.edu.dma_to_device(Iova(iova), 0, DMA_LEN, self.clock);
        edu_result("dma_to_device", r)
    }

    /// edu `i` writes `DMA_LEN` bytes of its buffer to `iova`.
    pub fn dev_writes(&mut self, i: usize, iova: u64) -> Step {
        let Some(d) = self.edus.get_mut(i) else {
            return Err(Outcome::fail()
                .with("reason", "no such edu")
                .with("index", i));
        };
        let r = d.edu.dma_from_device(0, Iova(iova), DMA_LEN, self.clock);
        edu_result("dma_from_device", r)
    }

    /// Whether the `DMA_LEN` bytes at `pa` in the DMA pool carry the pattern (the DMA landed).
    fn landed(&mut self, pa: u64) -> bool {
        self.pool()
            .is_ok_and(|p| p.count(PhysAddr(pa), DMA_LEN.into(), PATTERN) == u64::from(DMA_LEN))
    }

    /// Whether the `DMA_LEN` bytes at `pa` in host RAM carry `byte`.
    pub fn landed_ram(&self, pa: PhysAddr, byte: u8) -> bool {
        self.ram.count(pa, DMA_LEN.into(), byte) == u64::from(DMA_LEN)
    }

    /// Whether exactly one new fault was recorded for edu 0 at the page of `iova` in `dir`.
    fn faulted(&mut self, when: &str, iova: u64, dir: iommu_core::Direction) -> (bool, usize) {
        self.faulted_by(0, when, iova, dir)
    }

    /// As [`Rig::faulted`], for edu `i`.
    fn faulted_by(
        &mut self,
        i: usize,
        when: &str,
        iova: u64,
        dir: iommu_core::Direction,
    ) -> (bool, usize) {
        let before = self.faults.len();
        let n = self.drain(when);
        let edu = self.edus.get(i).map(|d| d.bdf);
        let hit = self.faults[before..]
            .iter()
            .any(|f| Some(f.source) == edu && f.addr == Iova(iova & !0xfff) && f.dir == dir);
        (hit, n)
    }

    fn alloc(&mut self, size: u64, align: u64) -> Step<u64> {
        self.pool()?
            .alloc_zeroed(size as usize, align as usize)
            .map(|p| p.0)
            .map_err(|e| Outcome::fail().with("reason", "dma pool").with("detail", e))
    }

    pub(crate) fn backend(&mut self) -> Step<&mut Backend> {
        self.backend
            .as_mut()
            .ok_or_else(|| vtd_error("unit", "not up (drop vtd=off)"))
    }

    /// Makes a changed table page visible to the unit's walker ([`Unit::table_written`]).
    fn table_written(&mut self, table: PhysAddr) -> Step {
        let (unit, pool) = self.backend()?.parts();
        unit.table_written(pool, table, 4096)
            .map_err(|e| vtd_error("table_written", e))
    }

    pub(crate) fn edu0(&self) -> Step<(Bdf, StreamId)> {
        self.edus
            .first()
            .map(|d| (d.bdf, d.sid))
            .ok_or_else(|| Outcome::fail().with("reason", "no edu"))
    }
}

fn edu_result(what: &str, r: Result<Duration, EduError>) -> Step {
    r.map(drop).map_err(|e| {
        Outcome::fail()
            .with("reason", "edu DMA error")
            .with("step", what)
            .with("detail", e)
    })
}

/// A refusal of the backend or the driver, as a `RESULT`.
pub fn vtd_error(what: &str, e: impl fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", "vtd refused")
        .with("step", what)
        .with("detail", e)
}

fn deny(r: &mut Rig<'_>, vtd_on: bool) -> Step {
    let edus = r.edus.len();
    if edus == 0 {
        return Err(Outcome::fail().with("reason", "no edu"));
    }
    // Every edu, not only the first: default deny is for every requester the unit covers.
    for i in 0..edus {
        deny_one(r, i, vtd_on)?;
    }
    Ok(())
}

/// `deny` for edu `i`.
fn deny_one(r: &mut Rig<'_>, i: usize, vtd_on: bool) -> Step {
    let src = r.alloc(4096, 4096)?;
    let dst = r.alloc(4096, 4096)?;
    let edu = r
        .edus
        .get(i)
        .map(|d| d.bdf)
        .ok_or_else(|| Outcome::fail().with("reason", "no edu"))?;
    let pool = r.pool()?;
    pool.fill(PhysAddr(src), 4096, PATTERN);
    pool.sync_for_device(PhysAddr(src), 4096);
    r.dev_reads(i, src)?;
    r.dev_writes(i, dst)?;
    let landed = r.landed(dst);
    if !vtd_on {
        return check(
            "control-dma-lands",
            landed,
            format_args!(
                "bdf={edu} src={src:#018x} dst={dst:#018x} landed={}",
                u8::from(landed)
            ),
        );
    }
    // The read and the write come from one source: while the read's record is pending (F set),
    // QEMU's model compresses the write's fault into it (measured: qemu-q35-vtd-facts.md,
    // "Faults": a fault of a source with a pending record is not recorded). So the write is
    // checked by memory here, and recorded by a second write once the read's record is drained.
    let (read_fault, _) = r.faulted_by(i, "deny-read", src, iommu_core::Direction::Read);
    check(
        "deny-read-recorded",
        read_fault,
        format_args!("bdf={edu} addr={src:#018x} dir=read"),
    )?;
    check(
        "deny-write-blocked",
        !landed,
        format_args!("bdf={edu} dst={dst:#018x} landed={}", u8::from(landed)),
    )?;
    // Another write, now that the read's record is drained: recorded with dir=write.
    r.dev_writes(i, dst)?;
    let (write_fault, _) = r.faulted_by(i, "deny-write", dst, iommu_core::Direction::Write);
    let landed = r.landed(dst);
    check(
        "deny-write-recorded",
        write_fault && !landed,
        format_args!("bdf={edu} addr={dst:#018x} dir=write"),
    )
}

/// A window of `len` bytes at [`WINDOW_IOVA`] onto `pa`, through the backend, with edu 0
/// attached: what the manager does for a client's `create_object` + `map` + `attach`.
fn backend_window(r: &mut Rig<'_>, pa: PhysAddr, len: u64) -> Step<DomainId> {
    let (edu, sid) = r.edu0()?;
    let b = r.backend()?;
    let domain = b
        .create_domain()
        .map_err(|e| vtd_error("create_domain", e))?;
    b.map(domain, Iova(WINDOW_IOVA), pa, len, Access::RW)
        .map_err(|e| vtd_error("map", e))?;
    b.attach(sid, domain).map_err(|e| vtd_error("attach", e))?;
    console::line(format_args!(
        "WINDOW bdf={edu} domain={} iova={WINDOW_IOVA:#018x} size={len:#x} pa={pa} access=rw via=backend",
        domain.0
    ));
    Ok(domain)
}

/// Scenario `reserved` (see the module comment).
fn reserved(r: &mut Rig<'_>, mut scratch: crate::ram::Scratch, at: u64) -> Step {
    use iommu_core::Direction;
    let (edu, _) = r.edu0()?;
    // The region the topology reserves at `at` for edu, if any (`plan.regions` name only the
    // functions behind the driven unit).
    let region = r
        .plan
        .regions
        .iter()
        .find(|g| g.devices.contains(&edu) && g.range.overlaps(PhysAddr(at), 1))
        .map(|g| g.range);
    let held = region.is_some();
    let past = region.map_or(at + SUPERPAGE, |g| g.start.0 + g.len);
    console::line(format_args!(
        "SAY reserved: edu {edu} reads {at:#018x} and writes {:#018x}, then writes {past:#018x} (IOVA = PA); reserved region for edu: {}",
        at + 0x1000,
        region.map_or(0, |_| 1)
    ));
    let len = u64::from(DMA_LEN);
    if !(scratch.fill(PhysAddr(at), len, PATTERN)
        && scratch.fill(PhysAddr(at + 0x1000), len, 0)
        && scratch.fill(PhysAddr(past), len, 0))
    {
        return Err(Outcome::fail().with("reason", "past the region is outside the scratch RAM"));
    }
    r.dev_reads(0, at)?;
    let (read_fault, _) = r.faulted("reserved-read", at, Direction::Read);
    r.dev_writes(0, at + 0x1000)?;
    let landed = scratch.count(PhysAddr(at + 0x1000), len, PATTERN) == len;
    let (write_fault, _) = r.faulted("reserved-write", at + 0x1000, Direction::Write);
    check(
        "reserved-dma",
        landed == held && read_fault != held && write_fault != held,
        format_args!(
            "bdf={edu} at={at:#018x} held={} landed={} read_recorded={} write_recorded={}",
            u8::from(held),
            u8::from(landed),
            u8::from(read_fault),
            u8::from(write_fault)
        ),
    )?;
    r.dev_writes(0, past)?;
    let escaped = scratch.count(PhysAddr(past), len, PATTERN) != 0;
    let (past_fault, _) = r.faulted("reserved-past", past, Direction::Write);
    check(
        "reserved-past-refused",
        !escaped && past_fault,
        format_args!(
            "addr={past:#018x} landed={} recorded={}",
            u8::from(escaped),
            u8::from(past_fault)
        ),
    )
}

fn window(r: &mut Rig<'_>, wide: bool) -> Step {
    // 4 MiB of host RAM: the window is the first 2 MiB, the second is the canary behind the
    // IOVA just past it (a DMA that escaped a 2 MiB window would land there).
    let ram = r
        .ram
        .take(2)
        .ok_or_else(|| Outcome::fail().with("reason", "no host RAM"))?;
    r.ram.fill(ram.start, 4096, PATTERN);
    backend_window(r, ram.start, if wide { 2 * SUPERPAGE } else { SUPERPAGE })?;
    r.dev_reads(0, WINDOW_IOVA)?;
    let inside = WINDOW_IOVA + 0x1000;
    r.dev_writes(0, inside)?;
    let lands = r.landed_ram(PhysAddr(ram.start.0 + 0x1000), PATTERN);
    let (f, n) = r.faulted("window-inside", inside, iommu_core::Direction::Write);
    check(
        "window-dma-lands",
        lands && n == 0 && !f,
        format_args!("iova={inside:#018x} landed={} faults={n}", u8::from(lands)),
    )?;
    let past = WINDOW_IOVA + SUPERPAGE;
    r.dev_writes(0, past)?;
    let escaped = r.landed_ram(PhysAddr(ram.start.0 + SUPERPAGE), PATTERN);
    let (recorded, n) = r.faulted("window-past", past, iommu_core::Direction::Write);
    if wide {
        return check(
            "control-past-window-lands",
            escaped && n == 0,
            format_args!("iova={past:#018x} landed={} faults={n}", u8::from(escaped)),
        );
    }
    let (edu, _) = r.edu0()?;
    check(
        "past-window-refused",
        !escaped && recorded,
        format_args!(
            "bdf={edu} iova={past:#018x} dir=write landed={} recorded={}",
            u8::from(escaped),
            u8::from(recorded)
        ),
    )
}

fn remap(r: &mut Rig<'_>, skip_invalidation: bool) -> Step {
    if skip_invalidation {
        return remap_by_hand_without_invalidation(r);
    }
    let ram = r
        .ram
        .take(1)
        .ok_or_else(|| Outcome::fail().with("reason", "no host RAM"))?;
    r.ram.fill(ram.start, 4096, PATTERN);
    let domain = backend_window(r, ram.start, SUPERPAGE)?;
    r.dev_reads(0, WINDOW_IOVA)?;
    let first = WINDOW_IOVA + 0x1000;
    r.dev_writes(0, first)?;
    let lands = r.landed_ram(PhysAddr(ram.start.0 + 0x1000), PATTERN);
    check(
        "remap-mapped-lands",
        lands,
        format_args!(
            "iova={first:#018x} landed={} (the IOTLB now caches it)",
            u8::from(lands)
        ),
    )?;
    // The backend clears the leaf, flushes it (ECAP.C = 0) and sends page-selective IOTLB
    // invalidations and a wait (VT-d §6.5.2.3, §6.5.2.8) before it returns.
    let bytes = r
        .backend()?
        .unmap(domain, Iova(WINDOW_IOVA), SUPERPAGE)
        .map_err(|e| vtd_error("unmap", e))?;
    console::line(format_args!(
        "UNMAP domain={} iova={WINDOW_IOVA:#018x} size={SUPERPAGE:#x} bytes={bytes:#x} invalidated=1 via=backend",
        domain.0
    ));
    let second = WINDOW_IOVA + 0x2000;
    r.dev_writes(0, second)?;
    let landed = r.landed_ram(PhysAddr(ram.start.0 + 0x2000), PATTERN);
    let (recorded, _) = r.faulted("remap-after-unmap", second, iommu_core::Direction::Write);
    let (edu, _) = r.edu0()?;
    check(
        "remap-blocked-after-invalidation",
        !landed && recorded,
        format_args!(
            "bdf={edu} iova={second:#018x} dir=write landed={} recorded={}",
            u8::from(landed),
            u8::from(recorded)
        ),
    )
}

/// The byte address of the entry for `iova` in the table at `level` (VT-d §9.8: 9 bits per
/// level; level 3 indexes bits 20:12, level 2 bits 29:21, level 1 bits 38:30, level 0 bits
/// 47:39; 8-byte entries).
fn entry(table: PhysAddr, level: u8, iova: u64) -> PhysAddr {
    let shift = 12 + 9 * u32::from(3 - level);
    PhysAddr(table.0 + ((iova >> shift) & 0x1ff) * 8)
}

/// The control of `remap`, by hand (the backend always invalidates): a second-level table
/// mapping one 2 MiB superpage at IOVA = PA in the DMA pool, DID [`HAND_DID`]; a DMA lands and
/// the IOTLB caches it; the leaf is cleared and flushed but not invalidated; the next DMA
/// through the same page still lands.
fn remap_by_hand_without_invalidation(r: &mut Rig<'_>) -> Step {
    let base = r.alloc(SUPERPAGE, SUPERPAGE)?;
    r.pool()?.fill(PhysAddr(base), 4096, PATTERN);
    let aw: AddressWidth = r
        .backend()?
        .unit()
        .features()
        .address_width()
        .map_err(|e| vtd_error("address width", e))?;
    let root_level = 4 - aw.levels();
    let root = PhysAddr(r.alloc(4096, 4096)?);
    let mut table = root;
    for level in root_level..2 {
        let next = PhysAddr(r.alloc(4096, 4096)?);
        r.pool()?
            .write_u64(entry(table, level, base), encode_table(next));
        r.table_written(table)?;
        table = next;
    }
    let leaf = entry(table, 2, base);
    r.pool()?
        .write_u64(leaf, encode_leaf(2, PhysAddr(base), Access::RW));
    r.table_written(table)?;
    let ctx = ContextEntry {
        did: HAND_DID,
        aw,
        slptptr: root,
    };
    let (edu, _) = r.edu0()?;
    {
        let (unit, pool) = r.backend()?.parts();
        unit.set_context(pool, edu, Some(ctx))
            .map_err(|e| vtd_error("set_context", e))?;
        // The walk above linked new tables: IH = 0.
        unit.mapped(pool, HAND_DID, Iova(base), SUPERPAGE, true)
            .map_err(|e| vtd_error("mapped", e))?;
    }
    console::line(format_args!(
        "WINDOW bdf={edu} did={} aw={} root={root} iova={base:#018x} size={SUPERPAGE:#x} access=rw via=hand",
        HAND_DID.0,
        aw.bits()
    ));
    r.dev_reads(0, base)?;
    let first = base + 0x1000;
    r.dev_writes(0, first)?;
    let lands = r.landed(first);
    check(
        "remap-mapped-lands",
        lands,
        format_args!(
            "iova={first:#018x} landed={} (the IOTLB now caches it)",
            u8::from(lands)
        ),
    )?;
    r.pool()?.write_u64(leaf, 0);
    r.table_written(table)?;
    console::line(format_args!(
        "SAY control no-invalidate: leaf cleared, IOTLB not invalidated"
    ));
    let second = base + 0x2000;
    r.dev_writes(0, second)?;
    let landed = r.landed(second);
    let (_, n) = r.faulted("remap-after-unmap", second, iommu_core::Direction::Write);
    check(
        "control-stale-translation-lands",
        landed && n == 0,
        format_args!("iova={second:#018x} landed={} faults={n}", u8::from(landed)),
    )
}
