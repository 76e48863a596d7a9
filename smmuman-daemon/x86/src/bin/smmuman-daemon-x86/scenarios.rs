//! The VT-d scenarios (`scenario=<name>` on the PVH command line, QEMU `-append`), each proven
//! by a real `edu` DMA and the unit's fault records:
//!
//! * `boot`: discovery and bring-up only (every requester denied with a record).
//! * `deny`: `edu` (bus mastering on, no context entry) reads and writes memory: both refused,
//!   one `FAULT` each with `edu`'s requester id as source, the page address and the direction.
//!   Control `vtd=off` (the unit never enabled): the same DMAs land.
//! * `window`: `edu` gets domain 1 with a second-level table mapping one 2 MiB window (a 2 MiB
//!   superpage, IOVA = PA): a DMA inside lands; one just past the window is refused and
//!   recorded, and the memory behind that IOVA is unchanged. Control `control=wide` maps 4 MiB:
//!   the same DMA past the first 2 MiB lands.
//! * `remap`: a DMA through the window lands (the unit caches the translation in its IOTLB);
//!   the leaf is cleared, the table flushed, the IOTLB range invalidated: the next DMA through
//!   the same page is refused and recorded. Control `control=no-invalidate` skips the
//!   invalidation: the stale translation still lands (QEMU's IOTLB caches like hardware).
//!
//! * `fault-after-bringup`, `panic-after-bringup`: an exception (`ud2`) or a panic with `edu`
//!   a bus master: the handlers print one `EXCEPTION` / `PANIC` record and leave the safe state
//!   ([`crate::failsafe`]: edu's bus mastering off) before exiting.
//!
//! Every step prints `CHECK step=<name> ok=0|1 ...`; the run ends with one
//! `RESULT scenario=<name> status=pass|fail`.

// A failing step returns the `RESULT` record it becomes: a fixed-size text buffer (there is no
// heap to box it in), returned only on the failure path.
#![allow(clippy::result_large_err)]

use crate::dma::Pool;
use crate::{console, failsafe, fatal, Machine};
use core::fmt;
use core::time::Duration;
use heapless::Vec;
use iommu_core::{Access, Bdf, DmaMemory, Iova, PhysAddr};
use smmuman_daemon::bootargs::BootArgs;
use smmuman_daemon::edu::{Edu, EduError};
use smmuman_daemon::exit_code;
use smmuman_daemon::mmio::MmioRegion;
use smmuman_daemon::report::Outcome;
use vtd::second_level::{encode_leaf, encode_table};
use vtd::{AddressWidth, ContextEntry, DomainTag, FaultRecord, Unit};

/// The register frame of one remapping unit (VT-d §10.4: one 4 KiB page here; QEMU's DRHD
/// Size field says 0).
type VtdUnit = Unit<vtd::Mmio>;

/// A step's failure: the `RESULT` it becomes.
type Step<T = ()> = Result<T, Outcome>;

/// 2 MiB: one second-level superpage (VT-d §9.8, PS = 1 at the page-directory level).
const SUPERPAGE: u64 = 2 << 20;
/// Bytes each DMA moves.
const DMA_LEN: u32 = 256;
/// The byte pattern DMAs carry.
const PATTERN: u8 = 0xa5;
/// The domain the window scenarios use (VT-d §9.3, context-entry DID: 0 is reserved when CAP.CM = 1).
const DID: DomainTag = DomainTag(1);
/// How long an edu transfer may take: 100 ms of virtual time in the model.
const EDU_TIMEOUT: Duration = Duration::from_secs(2);

struct Rig<'m> {
    clock: &'m crate::hpet::Hpet,
    pool: Pool,
    unit: Option<VtdUnit>,
    edu: Edu<MmioRegion>,
    edu_bdf: Bdf,
    faults: Vec<FaultRecord, 32>,
}

/// Runs the scenario `args` name and returns the exit code.
pub fn run(mut m: Machine, args: &BootArgs<'_>) -> u32 {
    let name = args.scenario.unwrap_or("boot");
    if !matches!(
        name,
        "boot" | "deny" | "window" | "remap" | "fault-after-bringup" | "panic-after-bringup"
    ) {
        console::line(format_args!(
            "FATAL reason=unknown-scenario scenario={name} known=\"boot deny window remap fault-after-bringup panic-after-bringup\""
        ));
        return exit_code::BAD_BOOTARGS;
    }
    let (edu_bdf, bar0) = m.edu;
    let Some(drhd) = m
        .acpi
        .dmar
        .units
        .iter()
        .find(|u| u.segment == 0 && u.covers(edu_bdf))
        .cloned()
    else {
        fatal("dmar", "no DRHD covers edu: it could DMA untranslated")
    };
    let pool = Pool::take().unwrap_or_else(|| fatal("dma", "DMA pool already taken"));
    // SAFETY: edu's BAR0 (1 MiB of registers) in the uncached PCI window, owned by this driver.
    let edu =
        Edu::new(unsafe { MmioRegion::new(bar0, 1 << 20) }).unwrap_or_else(|e| fatal("edu", e));
    let mut edu = edu;
    edu.set_timeout(EDU_TIMEOUT);
    let base = drhd.register_base;
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
    let vtd_on = args.get("vtd") != Some("off");
    let mut rig = Rig {
        clock: &m.clock,
        pool,
        unit: None,
        edu,
        edu_bdf,
        faults: Vec::new(),
    };
    if vtd_on {
        if let Err(e) = unit.bring_up(&mut rig.pool) {
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
        rig.unit = Some(unit);
        rig.drain("after-bring-up");
    } else {
        console::line(format_args!(
            "SAY control vtd=off: the remapping unit is never enabled, DMA is untranslated"
        ));
    }
    let edu_ok = rig.edu.is_alive(0x1234_5678);
    failsafe::add_master(edu_bdf);
    if let Err(e) = m.pci.enable_bus_master(edu_bdf) {
        fatal("pci", e);
    }
    console::line(format_args!(
        "EDU bdf={edu_bdf} bar0={bar0} version={}.{} alive={} bus_master=1",
        rig.edu.version().0,
        rig.edu.version().1,
        u8::from(edu_ok)
    ));
    match name {
        "fault-after-bringup" => {
            console::line(format_args!("SAY executing ud2 with edu a bus master"));
            // SAFETY: UD2 raises #UD (SDM Vol. 2B "UD"), which the IDT turns into an
            // EXCEPTION record, the safe state and an exit; no memory is touched.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        "panic-after-bringup" => panic!("deliberate panic after bring-up (scenario)"),
        _ => {}
    }
    let control = args.get("control");
    let outcome = match name {
        "deny" => deny(&mut rig, vtd_on),
        "window" => window(&mut rig, control == Some("wide")),
        "remap" => remap(&mut rig, control == Some("no-invalidate")),
        _ => Ok(()),
    }
    .map(|()| Outcome::pass())
    .unwrap_or_else(|o| o);
    let _ = m.pci.disable_bus_master(edu_bdf);
    if let Some(u) = rig.unit.as_ref() {
        let s = u.stats();
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
fn check(step: &str, ok: bool, detail: impl fmt::Display) -> Step {
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
    /// Drains the unit's fault records: one `FAULT` record each, kept for checks.
    fn drain(&mut self, when: &str) -> usize {
        let Some(unit) = self.unit.as_mut() else {
            return 0;
        };
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

    fn edu_result(&self, what: &str, r: Result<Duration, EduError>) -> Step {
        r.map(drop).map_err(|e| {
            Outcome::fail()
                .with("reason", "edu DMA error")
                .with("step", what)
                .with("detail", e)
        })
    }

    /// edu reads `DMA_LEN` bytes at `iova` into its buffer.
    fn dev_reads(&mut self, iova: u64) -> Step {
        let r = self.edu.dma_to_device(Iova(iova), 0, DMA_LEN, self.clock);
        self.edu_result("dma_to_device", r)
    }

    /// edu writes `DMA_LEN` bytes of its buffer to `iova`.
    fn dev_writes(&mut self, iova: u64) -> Step {
        let r = self.edu.dma_from_device(0, Iova(iova), DMA_LEN, self.clock);
        self.edu_result("dma_from_device", r)
    }

    /// Whether the `DMA_LEN` bytes at `pa` carry the pattern (the DMA landed).
    fn landed(&self, pa: u64) -> bool {
        self.pool.count(PhysAddr(pa), DMA_LEN.into(), PATTERN) == u64::from(DMA_LEN)
    }

    /// Whether exactly one new fault was recorded for edu at the page of `iova` in `dir`.
    fn faulted(&mut self, when: &str, iova: u64, dir: iommu_core::Direction) -> (bool, usize) {
        let before = self.faults.len();
        let n = self.drain(when);
        let edu = self.edu_bdf;
        let hit = self.faults[before..]
            .iter()
            .any(|f| f.source == edu && f.addr == Iova(iova & !0xfff) && f.dir == dir);
        (hit, n)
    }

    fn alloc(&mut self, size: u64, align: u64) -> Step<u64> {
        self.pool
            .alloc_zeroed(size as usize, align as usize)
            .map(|p| p.0)
            .map_err(|e| Outcome::fail().with("reason", "dma pool").with("detail", e))
    }

    /// Makes a changed table page visible to the unit's walker ([`Unit::table_written`]).
    fn table_written(&mut self, table: PhysAddr) -> Step {
        let Self { unit, pool, .. } = self;
        let unit = unit.as_mut().ok_or_else(|| vtd_error("unit", "not up"))?;
        unit.table_written(pool, table, 4096)
            .map_err(|e| vtd_error("table_written", e))
    }

    fn unit(&mut self) -> &mut VtdUnit {
        match self.unit.as_mut() {
            Some(u) => u,
            None => fatal("vtd", "scenario needs the unit up (drop vtd=off)"),
        }
    }
}

fn vtd_error(what: &str, e: impl fmt::Display) -> Outcome {
    Outcome::fail()
        .with("reason", "vtd refused")
        .with("step", what)
        .with("detail", e)
}

fn deny(r: &mut Rig<'_>, vtd_on: bool) -> Step {
    let src = r.alloc(4096, 4096)?;
    let dst = r.alloc(4096, 4096)?;
    r.pool.fill(PhysAddr(src), 4096, PATTERN);
    r.pool.sync_for_device(PhysAddr(src), 4096);
    r.dev_reads(src)?;
    r.dev_writes(dst)?;
    let landed = r.landed(dst);
    if !vtd_on {
        return check(
            "control-dma-lands",
            landed,
            format_args!(
                "bdf={} src={src:#018x} dst={dst:#018x} landed={}",
                r.edu_bdf,
                u8::from(landed)
            ),
        );
    }
    // The read and the write come from one source: while the read's record is pending (F set),
    // QEMU's model compresses the write's fault into it (measured: qemu-q35-vtd-facts.md,
    // "Faults": a fault of a source with a pending record is not recorded). So the write is
    // checked by memory here, and recorded by a second write once the read's record is drained.
    let (read_fault, _) = r.faulted("deny-read", src, iommu_core::Direction::Read);
    check(
        "deny-read-recorded",
        read_fault,
        format_args!("bdf={} addr={src:#018x} dir=read", r.edu_bdf),
    )?;
    check(
        "deny-write-blocked",
        !landed,
        format_args!("dst={dst:#018x} landed={}", u8::from(landed)),
    )?;
    // Another write, now that the read's record is drained: recorded with dir=write.
    r.dev_writes(dst)?;
    let (write_fault, _) = r.faulted("deny-write", dst, iommu_core::Direction::Write);
    check(
        "deny-write-recorded",
        write_fault && !r.landed(dst),
        format_args!("bdf={} addr={dst:#018x} dir=write", r.edu_bdf),
    )
}

/// A second-level table mapping `count` 2 MiB superpages at IOVA = PA = `base`.
struct Window {
    root: PhysAddr,
    /// The page-directory-level table holding the superpage leaves.
    leaves: PhysAddr,
    aw: AddressWidth,
}

/// The byte address of the entry for `iova` in the table at `level` (VT-d §9.8: 9 bits per
/// level; level 3 indexes bits 20:12, level 2 bits 29:21, level 1 bits 38:30, level 0 bits
/// 47:39; 8-byte entries).
fn entry(table: PhysAddr, level: u8, iova: u64) -> PhysAddr {
    let shift = 12 + 9 * u32::from(3 - level);
    PhysAddr(table.0 + ((iova >> shift) & 0x1ff) * 8)
}

fn build_window(r: &mut Rig<'_>, base: u64, count: u64) -> Step<Window> {
    let aw = r
        .unit()
        .features()
        .address_width()
        .map_err(|e| vtd_error("address width", e))?;
    if !r.unit().features().superpage_2m {
        return Err(vtd_error("superpage", "CAP.SLLPS has no 2 MiB pages"));
    }
    let root_level = 4 - aw.levels();
    let root = PhysAddr(r.alloc(4096, 4096)?);
    let mut table = root;
    for level in root_level..2 {
        let next = PhysAddr(r.alloc(4096, 4096)?);
        r.pool
            .write_u64(entry(table, level, base), encode_table(next));
        let t = table;
        r.table_written(t)?;
        table = next;
    }
    for i in 0..count {
        let iova = base + i * SUPERPAGE;
        r.pool.write_u64(
            entry(table, 2, iova),
            encode_leaf(2, PhysAddr(iova), Access::RW),
        );
    }
    let t = table;
    r.table_written(t)?;
    let ctx = ContextEntry {
        did: DID,
        aw,
        slptptr: root,
    };
    let edu = r.edu_bdf;
    let Rig { unit, pool, .. } = r;
    let unit = unit.as_mut().ok_or_else(|| vtd_error("unit", "not up"))?;
    unit.set_context(pool, edu, Some(ctx))
        .map_err(|e| vtd_error("set_context", e))?;
    unit.mapped(pool, DID, Iova(base), count * SUPERPAGE)
        .map_err(|e| vtd_error("mapped", e))?;
    console::line(format_args!(
        "WINDOW bdf={edu} did={} aw={} root={root} iova={base:#018x} size={:#x} access=rw",
        DID.0,
        aw.bits(),
        count * SUPERPAGE
    ));
    Ok(Window {
        root,
        leaves: table,
        aw,
    })
}

fn window(r: &mut Rig<'_>, wide: bool) -> Step {
    // 4 MiB of our own memory: the window is the first 2 MiB, the second is the canary behind
    // the IOVA just past it (IOVA = PA, so a DMA that escaped would land there).
    let base = r.alloc(2 * SUPERPAGE, SUPERPAGE)?;
    r.pool.fill(PhysAddr(base), 4096, PATTERN);
    let w = build_window(r, base, if wide { 2 } else { 1 })?;
    r.dev_reads(base)?;
    let inside = base + 0x1000;
    r.dev_writes(inside)?;
    let lands = r.landed(inside);
    let (f, n) = r.faulted("window-inside", inside, iommu_core::Direction::Write);
    check(
        "window-dma-lands",
        lands && n == 0 && !f,
        format_args!("iova={inside:#018x} landed={} faults={n}", u8::from(lands)),
    )?;
    let past = base + SUPERPAGE;
    r.dev_writes(past)?;
    let escaped = r.landed(past);
    let (recorded, n) = r.faulted("window-past", past, iommu_core::Direction::Write);
    console::line(format_args!(
        "SAY window root={} aw={} leaves={}",
        w.root,
        w.aw.bits(),
        w.leaves
    ));
    if wide {
        return check(
            "control-past-window-lands",
            escaped && n == 0,
            format_args!("iova={past:#018x} landed={} faults={n}", u8::from(escaped)),
        );
    }
    check(
        "past-window-refused",
        !escaped && recorded,
        format_args!(
            "bdf={} iova={past:#018x} dir=write landed={} recorded={}",
            r.edu_bdf,
            u8::from(escaped),
            u8::from(recorded)
        ),
    )
}

fn remap(r: &mut Rig<'_>, skip_invalidation: bool) -> Step {
    let base = r.alloc(SUPERPAGE, SUPERPAGE)?;
    r.pool.fill(PhysAddr(base), 4096, PATTERN);
    let w = build_window(r, base, 1)?;
    r.dev_reads(base)?;
    let first = base + 0x1000;
    r.dev_writes(first)?;
    let lands = r.landed(first);
    check(
        "remap-mapped-lands",
        lands,
        format_args!(
            "iova={first:#018x} landed={} (the IOTLB now caches it)",
            u8::from(lands)
        ),
    )?;
    // Unmap: clear the superpage leaf, make it visible to the walker (ECAP.C = 0: CLFLUSH).
    let leaf = entry(w.leaves, 2, base);
    r.pool.write_u64(leaf, 0);
    let leaves = w.leaves;
    r.table_written(leaves)?;
    if skip_invalidation {
        console::line(format_args!(
            "SAY control no-invalidate: leaf cleared, IOTLB not invalidated"
        ));
    } else {
        let Rig { unit, pool, .. } = r;
        let unit = unit.as_mut().ok_or_else(|| vtd_error("unit", "not up"))?;
        unit.invalidate_range(pool, DID, Iova(base), SUPERPAGE, true)
            .map_err(|e| vtd_error("invalidate_range", e))?;
        console::line(format_args!(
            "UNMAP did={} iova={base:#018x} size={SUPERPAGE:#x} invalidated=1",
            DID.0
        ));
    }
    let second = base + 0x2000;
    r.dev_writes(second)?;
    let landed = r.landed(second);
    let (recorded, n) = r.faulted("remap-after-unmap", second, iommu_core::Direction::Write);
    if skip_invalidation {
        return check(
            "control-stale-translation-lands",
            landed && n == 0,
            format_args!("iova={second:#018x} landed={} faults={n}", u8::from(landed)),
        );
    }
    check(
        "remap-blocked-after-invalidation",
        !landed && recorded,
        format_args!(
            "bdf={} iova={second:#018x} dir=write landed={} recorded={}",
            r.edu_bdf,
            u8::from(landed),
            u8::from(recorded)
        ),
    )
}
