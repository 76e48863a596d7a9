//! The daemon's IOMMU: the SMMUv3 brought up over the daemon pool, every stream the board has
//! put in default deny (with a record), and only then DMA allowed.

use crate::console;
use crate::platform::Platform;
use core::fmt;
use iommu_core::{Bdf, Fault, FaultDrain, IommuBackend, StreamId};
use smmuman_daemon::bootargs::StreamTableFormat as StFormat;
use smmuman_daemon::clock::Clock;
use smmuman_daemon::memory::DaemonMemory;
use smmuv3::{BackendError, BringUpConfig, SmmuError, Smmuv3Backend, StreamTableFormat};

/// The IOMMU backend the daemon runs.
pub type Backend = Smmuv3Backend<DaemonMemory>;

/// Default log2 of the event-queue entries (512 records, 16 KiB).
pub const DEFAULT_EVTQ_LOG2: u8 = 9;
/// Default log2 of the command-queue entries (256 commands, 4 KiB).
pub const DEFAULT_CMDQ_LOG2: u8 = 8;
/// Fault records printed one by one per drain; the rest are summarised.
const FAULT_LINES_PER_DRAIN: usize = 8;
/// Most distinct streams the daemon configures.
const MAX_STREAMS: usize = 64;

/// The IOMMU could not be brought up.
#[derive(Debug)]
pub enum IommuError {
    /// Someone already took the SMMU's registers.
    RegistersTaken,
    /// Someone already took the daemon pool.
    MemoryTaken,
    /// The driver refused to bring the SMMU up.
    Smmu(SmmuError),
    /// The backend refused a step.
    Backend(BackendError),
    /// Bus mastering could not be turned on for a device.
    BusMaster(Bdf),
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RegistersTaken => f.write_str("the SMMU registers are already in use"),
            Self::MemoryTaken => f.write_str("the daemon memory pool is already in use"),
            Self::Smmu(e) => write!(f, "SMMU bring-up: {e}"),
            Self::Backend(e) => write!(f, "{e}"),
            Self::BusMaster(bdf) => write!(f, "cannot enable bus mastering for {bdf}"),
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
    /// Log2 of the event-queue entries.
    pub evtq_log2: u8,
}

impl Default for IommuOptions {
    fn default() -> Self {
        Self {
            evtq_log2: DEFAULT_EVTQ_LOG2,
        }
    }
}

/// The StreamID width the device tree's `iommu-map` needs: enough bits for its highest SID.
fn sid_bits(p: &Platform) -> u8 {
    let highest = p
        .board
        .pcie
        .iommu_map
        .entries
        .iter()
        .filter(|e| e.length != 0)
        .map(|e| u64::from(e.sid_base) + u64::from(e.length) - 1)
        .max()
        .unwrap_or(0);
    (u64::BITS - highest.leading_zeros()).max(1) as u8
}

/// Brings the SMMU up (global abort first, so nothing passes while it is being programmed),
/// marks the daemon's own memory unmappable, gives every stream the board has a deny-and-record
/// STE, and only then lets those devices master the bus.
///
/// # Errors
/// An [`IommuError`] saying which step failed; the SMMU is then left aborting all traffic.
pub fn bring_up(p: &mut Platform, opts: IommuOptions) -> Result<Backend, IommuError> {
    let regs = p.take_smmu_registers().ok_or(IommuError::RegistersTaken)?;
    let mut mem = p.take_daemon_memory().ok_or(IommuError::MemoryTaken)?;
    // SAFETY: the device tree places the SMMU's 128 KiB register frame at this address; the MMU
    // is off, so it is accessed as Device-nGnRnE memory; `take_smmu_registers` hands it out
    // once, and that handle is consumed here, so this is its only user.
    let mut smmu = unsafe { smmuv3::Smmu::new(regs.base().0 as usize) };
    console::line(format_args!("SMMU {}", smmu.features()));
    let cfg = BringUpConfig {
        stream_table: match p.args.stream_table {
            StFormat::Linear => StreamTableFormat::Linear,
            StFormat::TwoLevel => StreamTableFormat::TwoLevel,
        },
        sid_bits: sid_bits(p),
        cmdq_log2: DEFAULT_CMDQ_LOG2,
        evtq_log2: opts.evtq_log2,
        poll_limit: 1_000_000,
    };
    smmu.bring_up(&mut mem, cfg).map_err(IommuError::Smmu)?;
    if let Some((format, bits)) = smmu.stream_table_layout() {
        console::line(format_args!(
            "SMMU_UP stream_table={format:?} sid_bits={bits} evtq_entries={} cmdq_entries={}",
            1u32 << opts.evtq_log2,
            1u32 << DEFAULT_CMDQ_LOG2
        ));
    }
    let mut backend = Smmuv3Backend::new(smmu, mem)?;
    for r in p.memory_plan.daemon_pool() {
        backend.reserve(r.start(), r.size())?;
    }
    for r in p.memory_plan.reserved() {
        backend.reserve(r.range.start(), r.range.size())?;
    }

    let mut configured: heapless::Vec<StreamId, MAX_STREAMS> = heapless::Vec::new();
    let functions: heapless::Vec<(Bdf, Option<StreamId>), MAX_STREAMS> =
        p.pci.functions().iter().map(|f| (f.bdf, f.sid)).collect();
    for (bdf, sid) in functions {
        let Some(sid) = sid else {
            console::line(format_args!(
                "STREAM bdf={bdf} sid=none decision=no-dma reason=not-behind-the-smmu"
            ));
            continue;
        };
        if !configured.contains(&sid) {
            backend.detach(sid)?;
            let _ = configured.push(sid);
        }
        p.enable_bus_master(bdf)
            .map_err(|_| IommuError::BusMaster(bdf))?;
        console::line(format_args!(
            "STREAM bdf={bdf} sid={sid} decision=deny-and-record bus_master=1"
        ));
    }
    Ok(backend)
}

/// The PCI function that issues DMA with `sid` (the first one, for a shared StreamID).
pub fn device_of(p: &Platform, sid: StreamId) -> Option<Bdf> {
    p.pci
        .functions()
        .iter()
        .find(|f| f.sid == Some(sid))
        .map(|f| f.bdf)
}

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
