//! The daemon's IOMMU: the SMMUv3 brought up over the daemon pool, every stream the topology
//! gives a device put in default deny (with a record) or given its static windows, and only
//! then DMA allowed. Also the abort-only path for a daemon that refuses to start.

use crate::bootargs::StreamTableFormat as StFormat;
use crate::bringup::platform::{source_name, AccessName, DeviceName, Platform};
#[cfg(feature = "scenarios")]
use crate::clock::Clock;
use crate::memory::DaemonMemory;
use crate::mmio::MmioRegion;
use crate::runtime::console;
use board_config::{StaticWindow, Topology, UnitId};
use core::fmt;
use iommu_core::{Bdf, DomainId, IommuBackend, PhysAddr, StreamId};
#[cfg(feature = "scenarios")]
use iommu_core::{Fault, FaultDrain};
use smmuv3::{
    AbortState, BackendError, BringUpConfig, SmmuError, Smmuv3Backend, Ste, StreamTableFormat,
};

/// The IOMMU backend the daemon runs.
pub type Backend = Smmuv3Backend<DaemonMemory>;

/// Default log2 of the event-queue records the daemon asks for: 2,048 records, 64 KiB (a 4 KiB
/// rogue DMA makes 1,024 fault records on QEMU). The driver takes fewer when the SMMU's
/// IDR1.EVENTQS allows fewer.
pub const DEFAULT_EVTQ_LOG2: u8 = 11;
/// Size of one event record (IHI 0070 §7.3).
const EVENT_RECORD_BYTES: u64 = 32;
/// Default log2 of the command-queue entries (256 commands, 4 KiB).
pub const DEFAULT_CMDQ_LOG2: u8 = 8;
#[cfg(feature = "scenarios")]
/// Fault records printed one by one per drain; the rest are summarised.
const FAULT_LINES_PER_DRAIN: usize = 8;
/// Most distinct streams the daemon configures.
const MAX_STREAMS: usize = 64;
/// Most domains the static windows get (one per StreamID with a window).
const MAX_WINDOW_DOMAINS: usize = board_config::MAX_WINDOWS;

/// Register reads before the abort path stops waiting for an acknowledgement.
const ABORT_POLLS: u32 = 1_000_000;

/// The IOMMU could not be brought up.
#[derive(Debug)]
pub enum IommuError {
    /// Someone already took the SMMU's registers.
    RegistersTaken,
    /// Someone already took the daemon pool.
    MemoryTaken,
    /// The daemon refused to start: no unit to drive.
    NoUnit,
    /// The driver refused to bring the SMMU up.
    Smmu(SmmuError),
    /// The backend refused a step.
    Backend(BackendError),
    /// Bus mastering could not be turned on for a device.
    BusMaster(Bdf),
    /// A static window's device has no StreamID at the daemon's unit.
    WindowWithoutStream(StaticWindow),
    /// A static window's device uses a StreamID reserved for the system.
    WindowOnReservedSid(StaticWindow, StreamId),
    /// A static window could not be mapped.
    WindowMap(StaticWindow, BackendError),
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RegistersTaken => f.write_str("the SMMU registers are already in use"),
            Self::MemoryTaken => f.write_str("the daemon memory pool is already in use"),
            Self::NoUnit => f.write_str("the daemon refused to start: no SMMU to drive"),
            Self::Smmu(e) => write!(f, "SMMU bring-up: {e}"),
            Self::Backend(e) => write!(f, "{e}"),
            Self::BusMaster(bdf) => write!(f, "cannot enable bus mastering for {bdf}"),
            Self::WindowWithoutStream(w) => write!(
                f,
                "window of {} ({}): the device has no StreamID at the SMMU",
                w.device, w.origin
            ),
            Self::WindowOnReservedSid(w, sid) => write!(
                f,
                "window of {} ({}): its StreamID {sid} is reserved for the system",
                w.device, w.origin
            ),
            Self::WindowMap(w, e) => {
                write!(f, "window of {} ({}): {e}", w.device, w.origin)
            }
        }
    }
}

impl From<BackendError> for IommuError {
    fn from(e: BackendError) -> Self {
        Self::Backend(e)
    }
}

/// How the SMMU is set up.
#[derive(Clone, Copy, Debug)]
pub struct IommuOptions {
    /// Log2 of the event-queue records asked for: the driver's byte budget is that many 32-byte
    /// records, and it takes fewer when IDR1.EVENTQS is smaller.
    pub evtq_log2: u8,
}

impl IommuOptions {
    /// The product's: an event queue of 2^[`DEFAULT_EVTQ_LOG2`] records.
    pub const DEFAULT: Self = Self {
        evtq_log2: DEFAULT_EVTQ_LOG2,
    };
}

impl Default for IommuOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The StreamID width the topology needs at `unit`: enough bits for its highest StreamID
/// (bindings, the last StreamID of each range, reservations).
pub fn needed_sid_bits(t: &Topology, unit: UnitId) -> u8 {
    let bindings = t
        .streams()
        .iter()
        .filter(|b| b.unit == unit)
        .map(|b| match b.source {
            board_config::StreamSource::Device(_) => u64::from(b.sid.0),
            board_config::StreamSource::PciRange(r) => {
                u64::from(b.sid.0) + u64::from(r.len).saturating_sub(1)
            }
        });
    let reserved = t
        .reserved()
        .iter()
        .filter(|r| r.unit == unit)
        .map(|r| u64::from(r.last.0));
    let highest = bindings.chain(reserved).max().unwrap_or(0);
    (u64::BITS - highest.leading_zeros()).max(1) as u8
}

/// What the daemon does with one StreamID at start-up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Decision {
    /// Stage-2 STE over the empty unclaimed domain: every access faults and is recorded.
    DenyAndRecord,
    /// Stage-2 STE over the domain of the config's static windows.
    StaticWindow(DomainId),
    /// `reserve-sid`: the system's; deny-and-record, and bus mastering stays off.
    Reserved,
    /// The unit's explicit `unclaimed bypass`: STE.Config = bypass (IHI 0070 §5.2).
    Bypass,
}

impl Decision {
    fn name(self) -> &'static str {
        match self {
            Self::DenyAndRecord => "deny-and-record",
            Self::StaticWindow(_) => "static-window",
            Self::Reserved => "reserved",
            Self::Bypass => "bypass",
        }
    }
}

/// Creates one domain per StreamID that has static windows (a group's devices share it),
/// maps every window into it and attaches the StreamID. Nothing can DMA yet: bus mastering is
/// enabled afterwards.
fn install_static_windows(
    p: &Platform,
    backend: &mut Backend,
) -> Result<heapless::Vec<(StreamId, DomainId), MAX_WINDOW_DOMAINS>, IommuError> {
    let mut domains: heapless::Vec<(StreamId, DomainId), MAX_WINDOW_DOMAINS> = heapless::Vec::new();
    for w in p.topology.windows() {
        let sid = p
            .stream_of(w.device)
            .ok_or(IommuError::WindowWithoutStream(*w))?;
        if p.is_reserved_sid(sid) {
            return Err(IommuError::WindowOnReservedSid(*w, sid));
        }
        let domain = match domains.iter().find(|(s, _)| *s == sid) {
            Some((_, d)) => *d,
            None => {
                let d = backend.create_domain()?;
                // Capacity: at most one domain per window.
                let _ = domains.push((sid, d));
                d
            }
        };
        backend
            .map(domain, w.iova, w.pa, w.len, w.access)
            .map_err(|e| IommuError::WindowMap(*w, e))?;
        console::line(format_args!(
            "WINDOW_MAPPED device={} sid={sid} domain={domain} iova={} pa={} len={:#x} access={} source={}",
            DeviceName(w.device),
            w.iova,
            w.pa,
            w.len,
            AccessName(w.access),
            source_name(w.origin)
        ));
    }
    for (sid, d) in &domains {
        backend.attach(*sid, *d)?;
    }
    Ok(domains)
}

/// Brings the SMMU up (global abort first, so nothing passes while it is being programmed),
/// marks the daemon's own memory unmappable, installs the config's static windows, gives every
/// other stream the topology puts behind the SMMU a deny-and-record STE (or bypass, only where
/// the unit explicitly opted in; reserved StreamIDs keep bus mastering off), and only then lets
/// those devices master the bus. Functions that share a StreamID get one STE and are reported
/// as one `GROUP`.
///
/// # Errors
/// An [`IommuError`] saying which step failed; the SMMU is then left aborting all traffic or
/// with every STE it wrote blocking (no bus mastering is enabled before the last step).
pub fn bring_up(p: &mut Platform, opts: IommuOptions) -> Result<Backend, IommuError> {
    let unit_id = p.unit.ok_or(IommuError::NoUnit)?;
    let bypass = p
        .topology
        .unit(unit_id)
        .is_some_and(|u| u.bypasses_unclaimed());
    // The device tree's `dma-coherent` (or the config's `coherent yes|no`); the driver also
    // needs SMMU_IDR0.COHACC before it skips cache maintenance.
    let coherent = p.topology.unit(unit_id).is_some_and(|u| u.coherent);
    let regs = p.take_smmu_registers().ok_or(IommuError::RegistersTaken)?;
    let mut mem = p.take_daemon_memory().ok_or(IommuError::MemoryTaken)?;
    // SAFETY: the device tree places the SMMU's 128 KiB register frame at this address; the
    // identity map has it as Device-nGnRE memory (`mmu.rs`); `take_smmu_registers` hands it
    // out once, and that handle is consumed here, so this is its only user.
    let mut smmu = unsafe { smmuv3::Smmu::new(regs.base().0 as usize) };
    console::line(format_args!("SMMU {}", smmu.features()));
    let cfg = BringUpConfig {
        stream_table: match p.args.stream_table {
            StFormat::Linear => StreamTableFormat::Linear,
            StFormat::TwoLevel => StreamTableFormat::TwoLevel,
        },
        sid_bits: needed_sid_bits(&p.topology, unit_id),
        cmdq_log2: DEFAULT_CMDQ_LOG2,
        evtq_bytes: EVENT_RECORD_BYTES << opts.evtq_log2.min(smmuv3::queue::MAX_LOG2SIZE),
        poll_limit: 1_000_000,
        coherent,
    };
    smmu.bring_up(&mut mem, cfg).map_err(IommuError::Smmu)?;
    if let Some((format, bits)) = smmu.stream_table_layout() {
        console::line(format_args!(
            "SMMU_UP stream_table={format:?} sid_bits={bits} evtq_entries={} cmdq_entries={} fault_log={} coherent={}",
            1u32 << smmu.evtq_log2().unwrap_or(0),
            1u32 << DEFAULT_CMDQ_LOG2,
            p.fault_log_size(),
            u8::from(smmu.is_coherent())
        ));
    }
    let mut backend = Smmuv3Backend::new(smmu, mem)?;
    for r in p.memory_plan.daemon_pool() {
        backend.reserve(r.start(), r.size())?;
    }
    for r in p.memory_plan.reserved() {
        backend.reserve(r.range.start(), r.range.size())?;
    }
    let windows = install_static_windows(p, &mut backend)?;
    // The windows' RAM now belongs to their devices: no other domain may map it.
    for r in p.static_window_ranges() {
        backend.reserve(r.start(), r.size())?;
    }

    let mut configured: heapless::Vec<StreamId, MAX_STREAMS> = heapless::Vec::new();
    let functions: heapless::Vec<(Bdf, Bdf, Option<StreamId>), MAX_STREAMS> = p
        .pci
        .functions()
        .iter()
        .map(|f| (f.bdf, f.dma_alias, f.sid))
        .collect();
    for &(bdf, alias, sid) in &functions {
        let Some(sid) = sid else {
            console::line(format_args!(
                "STREAM bdf={bdf} sid=none decision=no-dma reason=not-behind-the-smmu"
            ));
            continue;
        };
        let decision = decide(p, sid, &windows, bypass);
        apply(&mut backend, &mut configured, sid, decision)?;
        let master = decision != Decision::Reserved;
        if master {
            p.enable_bus_master(bdf)
                .map_err(|_| IommuError::BusMaster(bdf))?;
        }
        let source = p.binding_of(bdf).map_or("none", |b| source_name(b.origin));
        let mut line: heapless::String<200> = heapless::String::new();
        let _ = fmt::write(
            &mut line,
            format_args!(
                "STREAM bdf={bdf} sid={sid} decision={} bus_master={} source={source}",
                decision.name(),
                u8::from(master)
            ),
        );
        if alias != bdf {
            let _ = fmt::write(&mut line, format_args!(" dma_alias={alias}"));
        }
        if let Decision::StaticWindow(d) = decision {
            let _ = fmt::write(&mut line, format_args!(" domain={d}"));
        }
        console::line(format_args!("{line}"));
        if decision == Decision::Bypass {
            log::warn!("{bdf} (StreamID {sid}) bypasses the SMMU: it can reach all memory");
        }
    }
    print_groups(&functions);

    // Platform devices (no bus-master bit: their DMA is gated by the SMMU alone).
    let mmio: heapless::Vec<(PhysAddr, StreamId, &'static str), MAX_STREAMS> = p
        .mmio_devices()
        .map(|(base, sid, b)| (base, sid, source_name(b.origin)))
        .collect();
    for (base, sid, source) in mmio {
        let decision = decide(p, sid, &windows, bypass);
        apply(&mut backend, &mut configured, sid, decision)?;
        console::line(format_args!(
            "STREAM mmio={base} sid={sid} decision={} source={source}",
            decision.name()
        ));
    }
    enable_irqs(p, &mut backend);
    Ok(backend)
}

/// Routes the SMMU's wired `eventq` and `gerror` interrupts through the GIC (`irq.rs`) and
/// enables them in SMMU_IRQ_CTRL (IHI 0070 §6.3.16, acknowledged in IRQ_CTRLACK), so that
/// the manager drains the event queue when told to. `smmu-irq=off` (the control run) routes
/// the lines but leaves IRQ_CTRL at 0. Without a GIC or an `eventq` line, or on any error, the
/// daemon polls. One `SMMU_IRQ` record says which.
fn enable_irqs(p: &Platform, backend: &mut Backend) {
    let irqs = p.board.smmu.irqs;
    crate::hyp::irq::set_smmu_irqs_on(false);
    let routed = match crate::hyp::irq::route_smmu(&irqs) {
        Ok(r) => r,
        Err(e) => {
            console::line(format_args!("SMMU_IRQ mode=poll reason=gic detail=\"{e}\""));
            return;
        }
    };
    let lines = IrqLines(irqs);
    if !routed {
        console::line(format_args!(
            "SMMU_IRQ mode=poll reason=no-gic-or-eventq-line {lines}"
        ));
        return;
    }
    if p.args.get("smmu-irq") == Some("off") {
        console::line(format_args!(
            "SMMU_IRQ mode=poll reason=smmu-irq-off irq_ctrl=0x0 {lines}"
        ));
        return;
    }
    let (smmu, _) = backend.parts();
    match smmu.set_irqs(true, irqs.gerror.is_some()) {
        Ok(ack) => {
            crate::hyp::irq::set_smmu_irqs_on(true);
            console::line(format_args!(
                "SMMU_IRQ mode=irq irq_ctrl={ack:#x} {lines} backstop_passes={}",
                crate::hyp::irq::POLL_BACKSTOP
            ));
        }
        Err(e) => console::line(format_args!(
            "SMMU_IRQ mode=poll reason=irq-ctrl detail=\"{e}\" {lines}"
        )),
    }
}

/// `eventq=106/edge gerror=109/edge` (`none` for a missing line).
struct IrqLines(crate::board::SmmuIrqs);

impl fmt::Display for IrqLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "eventq={} gerror={}",
            Maybe(self.0.eventq),
            Maybe(self.0.gerror)
        )
    }
}

/// What the daemon does with `sid` at start-up: reserved for the system, a static window's,
/// bypass (only with the unit's opt-in), else deny-and-record.
fn decide(p: &Platform, sid: StreamId, windows: &[(StreamId, DomainId)], bypass: bool) -> Decision {
    if p.is_reserved_sid(sid) {
        Decision::Reserved
    } else if let Some((_, d)) = windows.iter().find(|(s, _)| *s == sid) {
        Decision::StaticWindow(*d)
    } else if bypass {
        Decision::Bypass
    } else {
        Decision::DenyAndRecord
    }
}

/// Writes `sid`'s STE for `decision`, once per StreamID (`configured` remembers which).
fn apply(
    backend: &mut Backend,
    configured: &mut heapless::Vec<StreamId, MAX_STREAMS>,
    sid: StreamId,
    decision: Decision,
) -> Result<(), IommuError> {
    if configured.contains(&sid) {
        return Ok(());
    }
    match decision {
        Decision::DenyAndRecord | Decision::Reserved => backend.detach(sid)?,
        // Attached to its window's domain by `install_static_windows`.
        Decision::StaticWindow(_) => {}
        Decision::Bypass => {
            let (smmu, mem) = backend.parts();
            smmu.install_ste(mem, sid, &Ste::bypass())
                .map_err(|e| IommuError::Backend(BackendError::Smmu(e)))?;
        }
    }
    configured
        .push(sid)
        .map_err(|_| IommuError::Backend(BackendError::TooManyStreams))
}

/// One `GROUP` record per StreamID that several enumerated functions share: the SMMU cannot
/// tell them apart, so they have one STE and can only be given to a client together.
fn print_groups(functions: &[(Bdf, Bdf, Option<StreamId>)]) {
    for (i, &(_, _, sid)) in functions.iter().enumerate() {
        let Some(sid) = sid else { continue };
        let first = !functions[..i].iter().any(|f| f.2 == Some(sid));
        let count = functions.iter().filter(|f| f.2 == Some(sid)).count();
        if !first || count < 2 {
            continue;
        }
        let mut members: heapless::String<200> = heapless::String::new();
        for (n, (bdf, _, _)) in functions.iter().filter(|f| f.2 == Some(sid)).enumerate() {
            let _ = fmt::write(
                &mut members,
                format_args!("{}{bdf}", if n == 0 { "" } else { "," }),
            );
        }
        console::line(format_args!(
            "GROUP sid={sid} members={members} count={count}"
        ));
    }
}

/// The SMMU whose register frame `regs` holds, as a driver handle (it reads the ID registers
/// only; nothing is written until a method says so).
fn driver(regs: &MmioRegion) -> smmuv3::Smmu {
    // SAFETY: `regs` is the SMMU's register frame from the device tree, device memory (in the
    // identity map, or the MMU is still off); its holder is its only user, and this handle
    // lives no longer than the borrow.
    unsafe { smmuv3::Smmu::new(regs.base().0 as usize) }
}

/// Leaves the platform's SMMU terminating all traffic (`GBPA.ABORT`, `SMMUEN = 0`) when no
/// manager will run, printing one `SMMU_ABORT` record.
pub fn abort_all(p: &mut Platform) {
    if let Some(mut regs) = p.take_smmu_registers() {
        let base = regs.base();
        let state = abort_all_traffic(&mut regs);
        print_abort(base, &state);
        p.give_back_smmu_registers(regs);
    }
}

/// Makes the SMMU behind `regs` terminate all traffic without bringing it up, for a daemon
/// that refuses to start ([`smmuv3::Smmu::abort_all_traffic`]: GBPA.ABORT, then CR0 = 0; no
/// memory touched).
pub fn abort_all_traffic(regs: &mut MmioRegion) -> AbortState {
    // A fresh handle was never brought up, so the driver cannot answer AlreadyRunning; should
    // it, report an SMMU that did not acknowledge.
    driver(regs)
        .abort_all_traffic(ABORT_POLLS)
        .unwrap_or(AbortState {
            gbpa: 0,
            cr0ack: 0,
            acknowledged: false,
        })
}

/// Prints what [`abort_all_traffic`] left: one `SMMU_ABORT` record.
pub fn print_abort(base: PhysAddr, s: &AbortState) {
    console::line(format_args!("{}", AbortRecord(base, s)));
}

/// The `SMMU_ABORT` record of the SMMU at `.0` in state `.1` (GBPA and CR0ACK as read back).
pub struct AbortRecord<'a>(pub PhysAddr, pub &'a AbortState);

impl fmt::Display for AbortRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.1;
        write!(
            f,
            "SMMU_ABORT base={} aborting={} gbpa={:#010x} cr0ack={:#010x} abort={} smmuen={} acknowledged={}",
            self.0,
            u8::from(s.aborting()),
            s.gbpa,
            s.cr0ack,
            u8::from(s.gbpa_abort()),
            u8::from(s.smmuen()),
            u8::from(s.acknowledged)
        )
    }
}

/// IDR1.SIDSIZE of the SMMU at `regs` (IHI 0070 §6.3.2): how many StreamID bits it takes.
pub fn probe_sid_bits(regs: &MmioRegion) -> u8 {
    driver(regs).features().sid_bits
}

#[cfg(feature = "scenarios")]
/// The PCI function that issues DMA with `sid` (the first one, for a shared StreamID).
pub fn device_of(p: &Platform, sid: StreamId) -> Option<Bdf> {
    p.pci
        .functions()
        .iter()
        .find(|f| f.sid == Some(sid))
        .map(|f| f.bdf)
}

#[cfg(feature = "scenarios")]
/// What one [`drain`] saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// Records read and what overflow lost.
    pub totals: FaultDrain,
    /// The first record.
    pub first: Option<Fault>,
    /// The last record.
    pub last: Option<Fault>,
    /// Records whose StreamID, direction and reason equal the first's.
    pub like_first: u64,
    /// Records that said the configuration was bad (C_BAD_STE and friends).
    pub bad_config: u64,
}

#[cfg(feature = "scenarios")]
/// Drains every fault record, printing the first few as `FAULT` records and a `FAULTS`
/// summary.
///
/// # Errors
/// When the backend reports an unrecoverable SMMU error.
pub fn drain(p: &Platform, backend: &mut Backend) -> Result<Drained, BackendError> {
    let now = p.clock.now();
    let mut d = Drained::default();
    let mut printed = 0;
    d.totals = backend.drain_faults(&mut |f: Fault| {
        if printed < FAULT_LINES_PER_DRAIN {
            printed += 1;
            let bdf = device_of(p, f.sid);
            console::line(format_args!(
                "FAULT sid={} bdf={} addr={} dir={} reason={} code={:#04x} t_ms={}",
                f.sid,
                Maybe(bdf),
                f.addr,
                Maybe(f.dir),
                f.reason,
                f.code,
                now.as_millis()
            ));
        }
        if f.reason == iommu_core::FaultReason::BadConfig {
            d.bad_config += 1;
        }
        match d.first {
            None => {
                d.first = Some(f);
                d.like_first = 1;
            }
            Some(first) if (first.sid, first.dir, first.reason) == (f.sid, f.dir, f.reason) => {
                d.like_first += 1;
            }
            Some(_) => {}
        }
        d.last = Some(f);
    })?;
    console::line(format_args!(
        "FAULTS delivered={} lost_at_least={} printed={printed} bad_config={}",
        d.totals.delivered, d.totals.lost_at_least, d.bad_config
    ));
    Ok(d)
}

#[cfg(feature = "scenarios")]
/// Prints the driver's counters as one `SMMU_STATS` record.
pub fn print_stats(backend: &Backend) {
    let s = backend.smmu().stats();
    console::line(format_args!(
        "SMMU_STATS commands={} syncs={} command_errors_recovered={} events={} overflows={} lost_at_least={}",
        s.commands,
        s.syncs,
        s.command_errors_recovered,
        s.events_delivered,
        s.event_overflows,
        s.events_lost_at_least
    ));
}

/// `Display` for an optional value: the value, or `none`.
pub struct Maybe<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for Maybe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}
