//! The values messages carry: ids, flags, device selectors, DMA windows, fault records.
//!
//! Each type's [`Wire`] decoder is where a field's range is checked; the constructors check the
//! same rules, so a client cannot build a value the server would refuse as malformed.

use crate::wire::{FieldError, Reader, Wire, Writer, PAGE_SIZE};
use core::fmt;
use iommu_core::ids::BdfError;
use iommu_core::{Access, Bdf, Direction, FaultReason, Iova, PhysAddr, StreamId};

/// A client of the manager, as the transport identifies it (never taken from the message).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client{}", self.0)
    }
}

/// A VM object: the unit that owns devices and mappings (one IOMMU domain).
///
/// Ids are never reused while the manager runs; `0` is never issued.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ObjectId(pub u32);

impl ObjectId {
    /// Names the ledger of faults no object claimed (for `read_faults`, `arm_notify`,
    /// `object_status`).
    pub const UNCLAIMED: ObjectId = ObjectId(u32::MAX);
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::UNCLAIMED {
            f.write_str("unclaimed")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

macro_rules! wire_id {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = 4;
            fn put(&self, w: &mut Writer<'_>) {
                w.u32(self.0);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
                r.u32().map(Self)
            }
        }
    )*};
}
wire_id!(ClientId, ObjectId);

macro_rules! wire_flags {
    ($($t:ty),*) => {$(
        /// Four bytes; unknown bits are refused.
        impl Wire for $t {
            const SIZE: usize = 4;
            fn put(&self, w: &mut Writer<'_>) {
                w.u32(self.bits());
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
                let at = r.offset();
                let v = r.u32()?;
                Self::from_bits(v).ok_or(Reader::reject(at, v.into()))
            }
        }
    )*};
}

bitflags::bitflags! {
    /// How a VM object is created.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct ObjectFlags: u32 {
        /// Guest-physical == host-physical: every map must have `iova == pa`.
        const UNITY = 1 << 0;
    }
}

bitflags::bitflags! {
    /// How a mapping is made.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
    pub struct MapFlags: u32 {
        /// The host range may also be mapped by other objects that map it `SHARED` too.
        const SHARED = 1 << 0;
    }
}
wire_flags!(ObjectFlags, MapFlags);

/// What a client may ask a DMA window to allow: READ, WRITE and EXEC. `DEVICE` is the VMM's
/// CPU stage-2 attribute, never a window's.
pub const WINDOW_ACCESS: Access = Access::READ.union(Access::WRITE).union(Access::EXEC);

/// Whether `access` is a window's access: inside [`WINDOW_ACCESS`] and not empty (a window
/// that allows nothing is a mistake, not a mapping). The one check of both paths: the wire
/// decoder refuses any other byte, and the manager refuses any other set a caller in the same
/// program hands it (`Unsupported`, value: the bits), so every mapping it holds can be sent
/// back in a listing.
pub const fn is_window_access(access: Access) -> bool {
    !access.is_empty() && WINDOW_ACCESS.contains(access)
}

/// A PCI function pattern: each of bus, device, function is either a number or a wildcard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct PciMatch {
    bus: Option<u8>,
    dev: Option<u8>,
    func: Option<u8>,
}

impl PciMatch {
    /// Matches every PCI function (`*:*.*`).
    pub const ANY: PciMatch = PciMatch {
        bus: None,
        dev: None,
        func: None,
    };

    /// A pattern; `None` is a wildcard.
    ///
    /// # Errors
    /// [`BdfError`] when a given device number is above 31 or a function above 7.
    pub const fn new(bus: Option<u8>, dev: Option<u8>, func: Option<u8>) -> Result<Self, BdfError> {
        if let Some(d) = dev {
            if d > 31 {
                return Err(BdfError::Device(d));
            }
        }
        if let Some(f) = func {
            if f > 7 {
                return Err(BdfError::Function(f));
            }
        }
        Ok(Self { bus, dev, func })
    }

    /// Exactly one function.
    pub const fn exact(bdf: Bdf) -> Self {
        Self {
            bus: Some(bdf.bus),
            dev: Some(bdf.dev),
            func: Some(bdf.func),
        }
    }

    /// The bus, or `None` for any.
    pub const fn bus(&self) -> Option<u8> {
        self.bus
    }

    /// The device, or `None` for any.
    pub const fn dev(&self) -> Option<u8> {
        self.dev
    }

    /// The function, or `None` for any.
    pub const fn func(&self) -> Option<u8> {
        self.func
    }

    /// Whether the pattern has any wildcard.
    pub const fn is_wildcard(&self) -> bool {
        self.bus.is_none() || self.dev.is_none() || self.func.is_none()
    }

    /// Whether `bdf` matches.
    pub fn matches(&self, bdf: Bdf) -> bool {
        self.bus.is_none_or(|b| b == bdf.bus)
            && self.dev.is_none_or(|d| d == bdf.dev)
            && self.func.is_none_or(|f| f == bdf.func)
    }
}

impl fmt::Display for PciMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bus {
            Some(b) => write!(f, "{b:02x}:")?,
            None => f.write_str("*:")?,
        }
        match self.dev {
            Some(d) => write!(f, "{d:02x}.")?,
            None => f.write_str("*.")?,
        }
        match self.func {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("*"),
        }
    }
}

/// Which device(s) a request is about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeviceSel {
    /// PCI functions by bus:dev.fn, with wildcards.
    Pci(PciMatch),
    /// A platform (MMIO) device by the base address of its registers.
    Mmio(PhysAddr),
    /// A raw StreamID (every device that uses it); only where the board configuration allows it.
    Sid(StreamId),
}

impl DeviceSel {
    /// One PCI function.
    pub const fn pci(bdf: Bdf) -> Self {
        Self::Pci(PciMatch::exact(bdf))
    }
}

impl fmt::Display for DeviceSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(m) => write!(f, "pci {m}"),
            Self::Mmio(base) => write!(f, "mmio {base}"),
            Self::Sid(sid) => write!(f, "sid {sid}"),
        }
    }
}

/// Selector kinds (byte 0 of a [`DeviceSel`]).
const SEL_PCI: u8 = 1;
const SEL_MMIO: u8 = 2;
const SEL_SID: u8 = 3;
/// Wildcard bits (byte 1 of a PCI [`DeviceSel`]).
const WILD_BUS: u8 = 1 << 0;
const WILD_DEV: u8 = 1 << 1;
const WILD_FUNC: u8 = 1 << 2;

/// 16 bytes: `kind:u8 wild:u8 bus:u8 dev:u8 func:u8 reserved:[u8;3] value:u64`.
///
/// A wildcarded field must be zero; fields a kind does not use must be zero.
impl Wire for DeviceSel {
    const SIZE: usize = 16;

    fn put(&self, w: &mut Writer<'_>) {
        let (kind, wild, bus, dev, func, value) = match *self {
            Self::Pci(m) => {
                let mut wild = 0;
                if m.bus.is_none() {
                    wild |= WILD_BUS;
                }
                if m.dev.is_none() {
                    wild |= WILD_DEV;
                }
                if m.func.is_none() {
                    wild |= WILD_FUNC;
                }
                let (b, d, f) = (m.bus.unwrap_or(0), m.dev.unwrap_or(0), m.func.unwrap_or(0));
                (SEL_PCI, wild, b, d, f, 0)
            }
            Self::Mmio(base) => (SEL_MMIO, 0, 0, 0, 0, base.0),
            Self::Sid(sid) => (SEL_SID, 0, 0, 0, 0, u64::from(sid.0)),
        };
        w.u8(kind);
        w.u8(wild);
        w.u8(bus);
        w.u8(dev);
        w.u8(func);
        w.zeros(3);
        w.u64(value);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let kind = r.u8()?;
        let wild = r.u8()?;
        let bus = r.u8()?;
        let dev = r.u8()?;
        let func = r.u8()?;
        r.zeros(3)?;
        let value = r.u64()?;
        let must_be_zero = |off: usize, v: u64| {
            if v == 0 {
                Ok(())
            } else {
                Err(Reader::reject(base + off, v))
            }
        };
        match kind {
            SEL_PCI => {
                if wild & !(WILD_BUS | WILD_DEV | WILD_FUNC) != 0 {
                    return Err(Reader::reject(base + 1, wild.into()));
                }
                let field = |bit: u8, off: usize, v: u8, max: u8| {
                    if wild & bit != 0 {
                        must_be_zero(off, v.into()).map(|()| None)
                    } else if v > max {
                        Err(Reader::reject(base + off, v.into()))
                    } else {
                        Ok(Some(v))
                    }
                };
                let bus = field(WILD_BUS, 2, bus, u8::MAX)?;
                let dev = field(WILD_DEV, 3, dev, 31)?;
                let func = field(WILD_FUNC, 4, func, 7)?;
                must_be_zero(8, value)?;
                Ok(Self::Pci(PciMatch { bus, dev, func }))
            }
            SEL_MMIO | SEL_SID => {
                must_be_zero(1, wild.into())?;
                must_be_zero(2, bus.into())?;
                must_be_zero(3, dev.into())?;
                must_be_zero(4, func.into())?;
                if kind == SEL_MMIO {
                    Ok(Self::Mmio(PhysAddr(value)))
                } else {
                    u32::try_from(value)
                        .map(|s| Self::Sid(StreamId(s)))
                        .map_err(|_| Reader::reject(base + 8, value))
                }
            }
            _ => Err(Reader::reject(base, kind.into())),
        }
    }
}

/// Why a [`DmaWindow`] or [`IovaSpan`] could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeError {
    /// The length was zero.
    Empty,
    /// The length is not a multiple of [`PAGE_SIZE`].
    Length(u64),
    /// The I/O range runs past the end of the 64-bit space.
    IovaOverflow(Iova),
    /// The host range runs past the end of the 64-bit space.
    PaOverflow(PhysAddr),
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("length is zero"),
            Self::Length(len) => write!(f, "length {len:#x} is not a multiple of {PAGE_SIZE:#x}"),
            Self::IovaOverflow(iova) => write!(f, "I/O range at {iova} runs past 2^64"),
            Self::PaOverflow(pa) => write!(f, "host range at {pa} runs past 2^64"),
        }
    }
}

fn check_len(len: u64) -> Result<(), RangeError> {
    if len == 0 {
        Err(RangeError::Empty)
    } else if !len.is_multiple_of(PAGE_SIZE) {
        Err(RangeError::Length(len))
    } else {
        Ok(())
    }
}

/// `[start, start + len)` fits below 2^64 (the last byte is addressable).
const fn fits(start: u64, len: u64) -> bool {
    start.checked_add(len - 1).is_some()
}

/// An I/O range and the host memory behind it: what a map request grants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DmaWindow {
    iova: Iova,
    pa: PhysAddr,
    len: u64,
}

impl DmaWindow {
    /// `[iova, iova + len)` → `[pa, pa + len)`.
    ///
    /// Alignment of `iova` and `pa` is the manager's rule (refused with `Misaligned`), not the
    /// wire's; the length must be a non-zero multiple of 4 KiB and neither range may wrap.
    ///
    /// # Errors
    /// [`RangeError`] naming the rule broken.
    pub const fn new(iova: Iova, pa: PhysAddr, len: u64) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::Empty);
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(RangeError::Length(len));
        }
        if !fits(iova.0, len) {
            return Err(RangeError::IovaOverflow(iova));
        }
        if !fits(pa.0, len) {
            return Err(RangeError::PaOverflow(pa));
        }
        Ok(Self { iova, pa, len })
    }

    /// First I/O address.
    pub const fn iova(&self) -> Iova {
        self.iova
    }

    /// First host-physical address.
    pub const fn pa(&self) -> PhysAddr {
        self.pa
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Never true: a window is at least one page (for clippy's `len_without_is_empty`).
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The I/O range alone.
    pub const fn span(&self) -> IovaSpan {
        IovaSpan {
            iova: self.iova,
            len: self.len,
        }
    }
}

/// 24 bytes: `iova:u64 pa:u64 len:u64`.
impl Wire for DmaWindow {
    const SIZE: usize = 24;
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.iova.0);
        w.u64(self.pa.0);
        w.u64(self.len);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let iova = r.u64()?;
        let pa = r.u64()?;
        let len = r.u64()?;
        check_len(len).map_err(|_| Reader::reject(base + 16, len))?;
        if !fits(iova, len) {
            return Err(Reader::reject(base, iova));
        }
        if !fits(pa, len) {
            return Err(Reader::reject(base + 8, pa));
        }
        Ok(Self {
            iova: Iova(iova),
            pa: PhysAddr(pa),
            len,
        })
    }
}

/// An I/O range: what an unmap takes away.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IovaSpan {
    iova: Iova,
    len: u64,
}

impl IovaSpan {
    /// `[iova, iova + len)`.
    ///
    /// # Errors
    /// [`RangeError`] when the length is zero or not a page multiple, or the range wraps.
    pub const fn new(iova: Iova, len: u64) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::Empty);
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(RangeError::Length(len));
        }
        if !fits(iova.0, len) {
            return Err(RangeError::IovaOverflow(iova));
        }
        Ok(Self { iova, len })
    }

    /// First I/O address.
    pub const fn iova(&self) -> Iova {
        self.iova
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Never true: a span is at least one page.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The last address in the span.
    pub const fn last(&self) -> Iova {
        Iova(self.iova.0 + (self.len - 1))
    }
}

/// 16 bytes: `iova:u64 len:u64`.
impl Wire for IovaSpan {
    const SIZE: usize = 16;
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.iova.0);
        w.u64(self.len);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let iova = r.u64()?;
        let len = r.u64()?;
        check_len(len).map_err(|_| Reader::reject(base + 8, len))?;
        if !fits(iova, len) {
            return Err(Reader::reject(base, iova));
        }
        Ok(Self {
            iova: Iova(iova),
            len,
        })
    }
}

/// An inclusive range of usable I/O addresses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct IovaRange {
    /// First usable address.
    pub first: Iova,
    /// Last usable address (inclusive, so the range can reach the top of the space).
    pub last: Iova,
}

impl IovaRange {
    /// Whether `[iova, iova + len)` lies inside (an empty range never does).
    pub const fn contains(&self, iova: Iova, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        match iova.0.checked_add(len - 1) {
            Some(end) => iova.0 >= self.first.0 && end <= self.last.0,
            None => false,
        }
    }
}

/// How many usable I/O ranges a query reply carries at most.
pub const MAX_IOVA_RANGES: usize = 4;

/// The usable I/O ranges, as a query reports them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct IovaRanges {
    count: u8,
    ranges: [IovaRange; MAX_IOVA_RANGES],
}

impl IovaRanges {
    /// Up to [`MAX_IOVA_RANGES`] ranges, in the given order; extra ones are dropped and empty
    /// ones (`first > last`) skipped.
    pub fn new(ranges: &[IovaRange]) -> Self {
        let mut out = Self::default();
        for r in ranges.iter().filter(|r| r.first <= r.last) {
            if let Some(slot) = out.ranges.get_mut(usize::from(out.count)) {
                *slot = *r;
                out.count += 1;
            }
        }
        out
    }

    /// The ranges.
    pub fn as_slice(&self) -> &[IovaRange] {
        self.ranges.get(..usize::from(self.count)).unwrap_or(&[])
    }
}

/// 72 bytes: `count:u8 reserved:[u8;7]` then 4 × `first:u64 last:u64`; slots past `count` are zero.
impl Wire for IovaRanges {
    const SIZE: usize = 8 + 16 * MAX_IOVA_RANGES;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.count);
        w.zeros(7);
        for r in &self.ranges {
            w.u64(r.first.0);
            w.u64(r.last.0);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let count = r.u8()?;
        if usize::from(count) > MAX_IOVA_RANGES {
            return Err(Reader::reject(base, count.into()));
        }
        r.zeros(7)?;
        let mut out = Self {
            count,
            ranges: [IovaRange::default(); MAX_IOVA_RANGES],
        };
        for (i, slot) in out.ranges.iter_mut().enumerate() {
            let at = r.offset();
            let first = r.u64()?;
            let last = r.u64()?;
            if i < usize::from(count) {
                if first > last {
                    return Err(Reader::reject(at, first));
                }
            } else if first != 0 || last != 0 {
                return Err(Reader::reject(at, first | last));
            }
            *slot = IovaRange {
                first: Iova(first),
                last: Iova(last),
            };
        }
        Ok(out)
    }
}

/// Where an object's fault notification stands.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum NotifyState {
    /// Not armed.
    #[default]
    Idle,
    /// Armed: the next record to arrive fires it.
    Armed,
    /// Fired, not yet delivered by the transport.
    Fired,
}

/// One byte: 0 idle, 1 armed, 2 fired.
impl Wire for NotifyState {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(match self {
            Self::Idle => 0,
            Self::Armed => 1,
            Self::Fired => 2,
        });
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let at = r.offset();
        match r.u8()? {
            0 => Ok(Self::Idle),
            1 => Ok(Self::Armed),
            2 => Ok(Self::Fired),
            v => Err(Reader::reject(at, v.into())),
        }
    }
}

/// Largest address step between two records of one **run**: records of one stream, direction,
/// reason and event code at rising addresses no more than this apart (an IOMMU such as QEMU's
/// SMMUv3 records one fault per 4 bytes of a refused DMA: a 4 KiB DMA is 1,024 records).
pub const FAULT_RUN_GAP: u64 = 64;

/// One access the IOMMU refused, as the manager's ledger recorded it, or (`count` > 1) a run of
/// them: when the ledger is full, a record that continues the run of the ledger's newest
/// record ([`FAULT_RUN_GAP`]) is folded into it instead of being dropped, so the run's size
/// stays exact.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FaultRecord {
    /// Position in its ledger (per object, from 1, no gaps except for dropped records); a run
    /// holds the `count` consecutive numbers `seq..seq + count`.
    pub seq: u64,
    /// When the manager drained it (the run's first record), in nanoseconds of the manager's
    /// clock.
    pub time_ns: u64,
    /// The address the device used (before translation); a run's first.
    pub addr: Iova,
    /// A run's last address (`addr` for a single record).
    pub addr_last: Iova,
    /// Refused accesses this entry stands for: 1, or a run's size.
    pub count: u32,
    /// The stream that issued it.
    pub sid: StreamId,
    /// Why it was refused.
    pub reason: FaultReason,
    /// Read or write, when the IOMMU said.
    pub dir: Option<Direction>,
    /// The IOMMU's own event code (SMMUv3 event type).
    pub code: u8,
}

const fn reason_code(r: FaultReason) -> u8 {
    match r {
        FaultReason::Translation => 1,
        FaultReason::Permission => 2,
        FaultReason::AccessFlag => 3,
        FaultReason::AddressSize => 4,
        FaultReason::BadConfig => 5,
        FaultReason::Other => 6,
    }
}

const fn reason_from(code: u8) -> Option<FaultReason> {
    Some(match code {
        1 => FaultReason::Translation,
        2 => FaultReason::Permission,
        3 => FaultReason::AccessFlag,
        4 => FaultReason::AddressSize,
        5 => FaultReason::BadConfig,
        6 => FaultReason::Other,
        _ => return None,
    })
}

impl FaultRecord {
    /// The last sequence number this entry stands for.
    pub const fn seq_last(&self) -> u64 {
        self.seq.saturating_add(self.count.saturating_sub(1) as u64)
    }

    /// Whether `next` continues this entry's run: same stream, direction, reason and event
    /// code, the next sequence number, an address above the last one by at most
    /// [`FAULT_RUN_GAP`].
    pub fn continued_by(&self, next: &FaultRecord) -> bool {
        next.sid == self.sid
            && next.dir == self.dir
            && next.reason == self.reason
            && next.code == self.code
            && self.seq_last().checked_add(1) == Some(next.seq)
            && next.addr.0 > self.addr_last.0
            && next.addr.0 - self.addr_last.0 <= FAULT_RUN_GAP
    }
}

/// 48 bytes: `seq:u64 time_ns:u64 addr:u64 addr_last:u64 sid:u32 count:u32 reason:u8 dir:u8
/// code:u8 reserved:[u8;5]`.
///
/// `reason` is never 0 (that marks an empty slot): 1 translation, 2 permission, 3 access-flag, 4 address-size, 5 bad-config,
/// 6 other; `dir` is 0 unknown, 1 read, 2 write. `count` is at least 1, `addr_last` is `addr`
/// when `count` is 1 and above it otherwise, and `seq + count - 1` does not wrap.
impl Wire for FaultRecord {
    const SIZE: usize = 48;
    fn put(&self, w: &mut Writer<'_>) {
        w.u64(self.seq);
        w.u64(self.time_ns);
        w.u64(self.addr.0);
        w.u64(self.addr_last.0);
        w.u32(self.sid.0);
        w.u32(self.count);
        w.u8(reason_code(self.reason));
        w.u8(match self.dir {
            None => 0,
            Some(Direction::Read) => 1,
            Some(Direction::Write) => 2,
        });
        w.u8(self.code);
        w.zeros(5);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let seq = r.u64()?;
        let time_ns = r.u64()?;
        let addr = Iova(r.u64()?);
        let at_last = r.offset();
        let addr_last = r.u64()?;
        let sid = StreamId(r.u32()?);
        let at = r.offset();
        let count = r.u32()?;
        if count == 0 || seq.checked_add(u64::from(count) - 1).is_none() {
            return Err(Reader::reject(at, count.into()));
        }
        let single = count == 1;
        if (single && addr_last != addr.0) || (!single && addr_last <= addr.0) {
            return Err(Reader::reject(at_last, addr_last));
        }
        let addr_last = Iova(addr_last);
        let at = r.offset();
        let reason = r.u8()?;
        let reason = reason_from(reason).ok_or(Reader::reject(at, reason.into()))?;
        let at = r.offset();
        let dir = match r.u8()? {
            0 => None,
            1 => Some(Direction::Read),
            2 => Some(Direction::Write),
            v => return Err(Reader::reject(at, v.into())),
        };
        let code = r.u8()?;
        r.zeros(5)?;
        Ok(Self {
            seq,
            time_ns,
            addr,
            addr_last,
            count,
            sid,
            reason,
            dir,
            code,
        })
    }
}

/// How many fault records one `read_faults` reply carries at most.
pub const FAULTS_PER_PAGE: usize = 20;

/// How many records one `read_faults` pops at most: 1 to [`FAULTS_PER_PAGE`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FaultBatch(u8);

impl FaultBatch {
    /// A full page.
    pub const PAGE: FaultBatch = FaultBatch(FAULTS_PER_PAGE as u8);

    /// `n` records; `None` unless `1 <= n <= FAULTS_PER_PAGE`.
    pub const fn new(n: u8) -> Option<Self> {
        if n >= 1 && n as usize <= FAULTS_PER_PAGE {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The count.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// One byte, 1 to [`FAULTS_PER_PAGE`].
impl Wire for FaultBatch {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.0);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let at = r.offset();
        let v = r.u8()?;
        Self::new(v).ok_or(Reader::reject(at, v.into()))
    }
}

/// One page of a fault ledger, oldest record first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FaultPage {
    count: u8,
    remaining: u32,
    dropped: u64,
    possibly_lost: u64,
    records: [Option<FaultRecord>; FAULTS_PER_PAGE],
}

impl FaultPage {
    /// An empty page: `remaining` records are still in the ledger, `dropped` records were lost
    /// to a full ledger since the object was created.
    pub const fn new(remaining: u32, dropped: u64) -> Self {
        Self {
            count: 0,
            remaining,
            dropped,
            possibly_lost: 0,
            records: [None; FAULTS_PER_PAGE],
        }
    }

    /// Sets how many times records may have been lost before they reached the ledger
    /// ([`FaultPage::possibly_lost`]).
    pub fn set_possibly_lost(&mut self, events: u64) {
        self.possibly_lost = events;
    }

    /// How many times, since the object was created, the IOMMU reported that it lost fault
    /// records without saying whose (VT-d: FSTS.PFO, its recording registers were full; SMMUv3:
    /// the event queue overflowed) while one of the object's devices was attached: each time,
    /// records of this object may be missing (neither in the ledger nor in `dropped`). 0: every
    /// record the IOMMU raised for the object reached its ledger.
    pub const fn possibly_lost(&self) -> u64 {
        self.possibly_lost
    }

    /// Appends a record; `false` when the page is full.
    pub fn push(&mut self, record: FaultRecord) -> bool {
        match self.records.get_mut(usize::from(self.count)) {
            Some(slot) => {
                *slot = Some(record);
                self.count += 1;
                true
            }
            None => false,
        }
    }

    /// Sets how many records are still in the ledger after this page.
    pub fn set_remaining(&mut self, remaining: u32) {
        self.remaining = remaining;
    }

    /// The records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &FaultRecord> {
        self.records.iter().flatten()
    }

    /// Number of records on this page.
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the page holds no record.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records still in the ledger after this page was taken.
    pub const fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Records dropped because the ledger was full, since the object was created (exact).
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// 984 bytes: `count:u8 reserved:[u8;3] remaining:u32 dropped:u64 possibly_lost:u64`,
/// then [`FAULTS_PER_PAGE`] (20) [`FaultRecord`]s;
/// slots past `count` are all zero.
impl Wire for FaultPage {
    const SIZE: usize = 24 + FAULTS_PER_PAGE * FaultRecord::SIZE;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.count);
        w.zeros(3);
        w.u32(self.remaining);
        w.u64(self.dropped);
        w.u64(self.possibly_lost);
        for slot in &self.records {
            match slot {
                Some(rec) => rec.put(w),
                None => w.zeros(FaultRecord::SIZE),
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FieldError> {
        let base = r.offset();
        let count = r.u8()?;
        if usize::from(count) > FAULTS_PER_PAGE {
            return Err(Reader::reject(base, count.into()));
        }
        r.zeros(3)?;
        let remaining = r.u32()?;
        let dropped = r.u64()?;
        let mut page = Self::new(remaining, dropped);
        page.possibly_lost = r.u64()?;
        for i in 0..FAULTS_PER_PAGE {
            if i < usize::from(count) {
                let rec = FaultRecord::get(r)?;
                page.push(rec);
            } else {
                r.zeros(FaultRecord::SIZE)?;
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_exact, encode, HEADER_LEN, MAX_MESSAGE};

    fn round_trip<T: Wire + PartialEq + fmt::Debug>(v: T) -> [u8; MAX_MESSAGE] {
        let mut buf = [0u8; MAX_MESSAGE];
        let n = encode(&v, &mut buf);
        assert_eq!(n, T::SIZE);
        assert_eq!(decode_exact::<T>(&buf[..n]), Ok(v));
        buf
    }

    #[test]
    fn pci_selector_layout_and_wildcards() {
        let sel = DeviceSel::Pci(PciMatch::new(Some(1), None, Some(3)).unwrap());
        let buf = round_trip(sel);
        assert_eq!(
            &buf[..16],
            &[1, WILD_DEV, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(format!("{sel}"), "pci 01:*.3");
        round_trip(DeviceSel::Pci(PciMatch::ANY));
    }

    #[test]
    fn selector_refuses_out_of_range_and_stray_bytes() {
        let bad = |bytes: [u8; 16]| decode_exact::<DeviceSel>(&bytes).unwrap_err();
        // device 32
        assert_eq!(
            bad([1, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).offset,
            3
        );
        // function 8
        assert_eq!(
            bad([1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).offset,
            4
        );
        // wildcarded bus that is not zero
        assert_eq!(
            bad([1, WILD_BUS, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).offset,
            2
        );
        // unknown wildcard bit
        assert_eq!(
            bad([1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).offset,
            1
        );
        // unknown kind
        assert_eq!(
            bad([9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).value,
            9
        );
        // reserved byte
        assert_eq!(
            bad([2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).offset,
            6
        );
        // StreamID wider than 32 bits
        assert_eq!(
            bad([3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).offset,
            8
        );
        // PCI with a value
        assert_eq!(
            bad([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]).offset,
            8
        );
    }

    #[test]
    fn mmio_and_sid_selectors_round_trip() {
        round_trip(DeviceSel::Mmio(PhysAddr(0x0a00_0000)));
        round_trip(DeviceSel::Sid(StreamId(0xffff_ffff)));
    }

    #[test]
    fn windows_refuse_empty_odd_and_wrapping_ranges() {
        assert_eq!(
            DmaWindow::new(Iova(0), PhysAddr(0), 0),
            Err(RangeError::Empty)
        );
        assert_eq!(
            DmaWindow::new(Iova(0), PhysAddr(0), 0x1001),
            Err(RangeError::Length(0x1001))
        );
        assert_eq!(
            DmaWindow::new(Iova(u64::MAX - 0xfff), PhysAddr(0), 0x2000),
            Err(RangeError::IovaOverflow(Iova(u64::MAX - 0xfff)))
        );
        assert_eq!(
            DmaWindow::new(Iova(0), PhysAddr(u64::MAX - 0xfff), 0x2000),
            Err(RangeError::PaOverflow(PhysAddr(u64::MAX - 0xfff)))
        );
        // The very top page is addressable.
        let top = DmaWindow::new(Iova(u64::MAX - 0xfff), PhysAddr(0), 0x1000).unwrap();
        round_trip(top);
        assert_eq!(top.span().last(), Iova(u64::MAX));

        let mut raw = [0u8; 24];
        raw[16..24].copy_from_slice(&0x1800u64.to_le_bytes());
        assert_eq!(
            decode_exact::<DmaWindow>(&raw),
            Err(FieldError {
                offset: 16,
                value: 0x1800
            })
        );
        raw[16..24].copy_from_slice(&0x2000u64.to_le_bytes());
        raw[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode_exact::<DmaWindow>(&raw).unwrap_err().offset, 8);
    }

    #[test]
    fn spans_check_like_windows() {
        assert_eq!(IovaSpan::new(Iova(0), 0), Err(RangeError::Empty));
        round_trip(IovaSpan::new(Iova(0x1000), 0x3000).unwrap());
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&(u64::MAX - 0xfff).to_le_bytes());
        raw[8..].copy_from_slice(&0x2000u64.to_le_bytes());
        assert_eq!(decode_exact::<IovaSpan>(&raw).unwrap_err().offset, 0);
    }

    #[test]
    fn flags_refuse_unknown_bits() {
        round_trip(ObjectFlags::UNITY);
        round_trip(MapFlags::SHARED);
        assert_eq!(
            decode_exact::<MapFlags>(&[2, 0, 0, 0]),
            Err(FieldError {
                offset: 0,
                value: 2
            })
        );
    }

    fn record(seq: u64) -> FaultRecord {
        FaultRecord {
            seq,
            time_ns: 5,
            addr: Iova(0x20_0000),
            addr_last: Iova(0x20_0000),
            count: 1,
            sid: StreamId(8),
            reason: FaultReason::Translation,
            dir: Some(Direction::Write),
            code: 0x10,
        }
    }

    #[test]
    fn fault_pages_round_trip_and_zero_their_tail() {
        let mut page = FaultPage::new(3, 9);
        page.set_possibly_lost(2);
        assert!(page.push(record(1)));
        assert!(page.push(FaultRecord {
            addr_last: Iova(0x20_0ffc),
            count: 1024,
            ..record(2)
        }));
        let buf = round_trip(page);
        assert_eq!(FaultPage::SIZE, 984);
        const {
            assert!(
                HEADER_LEN + FaultPage::SIZE <= MAX_MESSAGE,
                "a page fits a message"
            )
        };
        assert_eq!(
            &buf[8..24],
            &[9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        // record 0 at 24: seq, time, addr, addr_last, sid, count, reason, dir, code
        assert_eq!(buf[24], 1);
        assert_eq!(
            &buf[24 + 36..24 + 48],
            &[1, 0, 0, 0, 1, 2, 0x10, 0, 0, 0, 0, 0]
        );
        // record 1: a run of 1,024 up to 0x20_0ffc
        assert_eq!(&buf[72 + 24..72 + 32], &0x20_0ffcu64.to_le_bytes());
        assert_eq!(&buf[72 + 36..72 + 40], &1024u32.to_le_bytes());
        assert!(buf[24 + 96..FaultPage::SIZE].iter().all(|&b| b == 0));

        let mut full = FaultPage::new(0, 0);
        for s in 0..FAULTS_PER_PAGE as u64 {
            assert!(full.push(record(s + 1)));
        }
        assert!(!full.push(record(99)));
        round_trip(full);
    }

    #[test]
    fn fault_pages_refuse_lies() {
        let mut page = FaultPage::new(0, 0);
        page.push(record(1));
        let mut buf = [0u8; FaultPage::SIZE];
        encode(&page, &mut buf);
        let mut count = buf;
        count[0] = FAULTS_PER_PAGE as u8 + 1;
        assert_eq!(decode_exact::<FaultPage>(&count).unwrap_err().offset, 0);
        let mut tail = buf;
        tail[100] = 1;
        assert_eq!(decode_exact::<FaultPage>(&tail).unwrap_err().offset, 100);
        let mut reason = buf;
        reason[24 + 40] = 0;
        assert_eq!(
            decode_exact::<FaultPage>(&reason).unwrap_err().offset,
            24 + 40
        );
        let mut dir = buf;
        dir[24 + 41] = 3;
        assert_eq!(decode_exact::<FaultPage>(&dir).unwrap_err().offset, 24 + 41);
        let mut reserved = buf;
        reserved[24 + 47] = 1;
        assert_eq!(
            decode_exact::<FaultPage>(&reserved).unwrap_err().offset,
            24 + 47
        );
        // A run of no record, a single record with a last address of its own, a run whose
        // last address is not above its first.
        let mut count = buf;
        count[24 + 36] = 0;
        assert_eq!(
            decode_exact::<FaultPage>(&count).unwrap_err().offset,
            24 + 36
        );
        let mut last = buf;
        last[24 + 24] = 4;
        assert_eq!(
            decode_exact::<FaultPage>(&last).unwrap_err().offset,
            24 + 24
        );
        let mut run = buf;
        run[24 + 36] = 2;
        assert_eq!(decode_exact::<FaultPage>(&run).unwrap_err().offset, 24 + 24);
    }

    #[test]
    fn a_run_is_continued_only_by_the_next_record_of_its_kind_close_above_it() {
        let run = FaultRecord {
            addr_last: Iova(0x20_003c),
            count: 16,
            ..record(1)
        };
        assert_eq!(run.seq_last(), 16);
        let next = FaultRecord {
            addr: Iova(0x20_0040),
            addr_last: Iova(0x20_0040),
            ..record(17)
        };
        assert!(run.continued_by(&next));
        assert!(
            !run.continued_by(&FaultRecord { seq: 18, ..next }),
            "a gap in seq"
        );
        assert!(!run.continued_by(&FaultRecord {
            addr: Iova(0x20_0080),
            ..next
        }));
        assert!(!run.continued_by(&FaultRecord {
            addr: Iova(0x20_003c),
            ..next
        }));
        assert!(!run.continued_by(&FaultRecord { dir: None, ..next }));
        assert!(!run.continued_by(&FaultRecord { code: 0x11, ..next }));
    }

    #[test]
    fn iova_ranges_keep_order_and_refuse_backwards_ranges() {
        let rs = IovaRanges::new(&[
            IovaRange {
                first: Iova(0),
                last: Iova(0xfff_ffff),
            },
            IovaRange {
                first: Iova(5),
                last: Iova(4),
            },
        ]);
        assert_eq!(rs.as_slice().len(), 1);
        let buf = round_trip(rs);
        let mut bad = [0u8; 72];
        bad.copy_from_slice(&buf[..72]);
        bad[8] = 0xff;
        bad[9] = 0xff;
        bad[10] = 0xff;
        bad[11] = 0xff;
        bad[12] = 0x0f;
        bad[13] = 0x10;
        assert_eq!(decode_exact::<IovaRanges>(&bad).unwrap_err().offset, 8);
        assert!(rs.as_slice()[0].contains(Iova(0xfff_f000), 0x1000));
        assert!(!rs.as_slice()[0].contains(Iova(0xfff_f000), 0x2000));
        assert!(!rs.as_slice()[0].contains(Iova(0), 0));
    }

    #[test]
    fn pci_match_matches_by_pattern() {
        let bus1 = PciMatch::new(Some(1), None, None).unwrap();
        assert!(bus1.matches(Bdf::new(1, 3, 2).unwrap()));
        assert!(!bus1.matches(Bdf::new(0, 3, 2).unwrap()));
        assert_eq!(
            PciMatch::new(None, Some(32), None),
            Err(BdfError::Device(32))
        );
        assert_eq!(format!("{}", PciMatch::ANY), "*:*.*");
    }
}
