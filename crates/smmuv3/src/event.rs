//! Event records (IHI 0070 §7.3): what the SMMU reports about faulting or misconfigured traffic.
//!
//! A record is four 64-bit words. [`Event::decode`] is total: unknown or IMPLEMENTATION DEFINED
//! types decode to a record with only the common fields.

use core::fmt;
use iommu_core::{Iova, PhysAddr, StreamId};

/// The event type, `DW0[7:0]` (IHI 0070 §7.3, table of event records).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum EventType {
    /// 0x01 F_UUT: unsupported upstream transaction.
    FUut,
    /// 0x02 C_BAD_STREAMID: StreamID beyond the stream table.
    CBadStreamId,
    /// 0x03 F_STE_FETCH: external abort fetching an STE.
    FSteFetch,
    /// 0x04 C_BAD_STE: invalid or ILLEGAL STE.
    CBadSte,
    /// 0x05 F_BAD_ATS_TREQ: bad ATS translation request.
    FBadAtsTreq,
    /// 0x06 F_STREAM_DISABLED: non-substream traffic to a stream that needs a SubstreamID.
    FStreamDisabled,
    /// 0x07 F_TRANSL_FORBIDDEN: untranslated traffic forbidden (ATS).
    FTranslForbidden,
    /// 0x08 C_BAD_SUBSTREAMID: SubstreamID out of range.
    CBadSubstreamId,
    /// 0x09 F_CD_FETCH: external abort fetching a context descriptor.
    FCdFetch,
    /// 0x0A C_BAD_CD: invalid or ILLEGAL context descriptor.
    CBadCd,
    /// 0x0B F_WALK_EABT: external abort during a table walk.
    FWalkEabt,
    /// 0x10 F_TRANSLATION: no valid translation.
    FTranslation,
    /// 0x11 F_ADDR_SIZE: address beyond the configured size.
    FAddrSize,
    /// 0x12 F_ACCESS: access flag fault.
    FAccess,
    /// 0x13 F_PERMISSION: permission fault.
    FPermission,
    /// 0x20 F_TLB_CONFLICT: TLB conflict.
    FTlbConflict,
    /// 0x21 F_CFG_CONFLICT: configuration cache conflict.
    FCfgConflict,
    /// 0x24 E_PAGE_REQUEST: speculative page request hint.
    EPageRequest,
    /// 0x25 F_VMS_FETCH: external abort fetching a VMS.
    FVmsFetch,
    /// 0xE0..=0xEF: IMPLEMENTATION DEFINED event.
    ImpDef(u8),
    /// Any other code.
    Unknown(u8),
}

impl EventType {
    /// Decodes `DW0[7:0]`.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0x01 => Self::FUut,
            0x02 => Self::CBadStreamId,
            0x03 => Self::FSteFetch,
            0x04 => Self::CBadSte,
            0x05 => Self::FBadAtsTreq,
            0x06 => Self::FStreamDisabled,
            0x07 => Self::FTranslForbidden,
            0x08 => Self::CBadSubstreamId,
            0x09 => Self::FCdFetch,
            0x0A => Self::CBadCd,
            0x0B => Self::FWalkEabt,
            0x10 => Self::FTranslation,
            0x11 => Self::FAddrSize,
            0x12 => Self::FAccess,
            0x13 => Self::FPermission,
            0x20 => Self::FTlbConflict,
            0x21 => Self::FCfgConflict,
            0x24 => Self::EPageRequest,
            0x25 => Self::FVmsFetch,
            0xE0..=0xEF => Self::ImpDef(code),
            other => Self::Unknown(other),
        }
    }

    /// The type code.
    pub const fn code(self) -> u8 {
        match self {
            Self::FUut => 0x01,
            Self::CBadStreamId => 0x02,
            Self::FSteFetch => 0x03,
            Self::CBadSte => 0x04,
            Self::FBadAtsTreq => 0x05,
            Self::FStreamDisabled => 0x06,
            Self::FTranslForbidden => 0x07,
            Self::CBadSubstreamId => 0x08,
            Self::FCdFetch => 0x09,
            Self::CBadCd => 0x0A,
            Self::FWalkEabt => 0x0B,
            Self::FTranslation => 0x10,
            Self::FAddrSize => 0x11,
            Self::FAccess => 0x12,
            Self::FPermission => 0x13,
            Self::FTlbConflict => 0x20,
            Self::FCfgConflict => 0x21,
            Self::EPageRequest => 0x24,
            Self::FVmsFetch => 0x25,
            Self::ImpDef(code) | Self::Unknown(code) => code,
        }
    }

    /// The spec's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::FUut => "F_UUT",
            Self::CBadStreamId => "C_BAD_STREAMID",
            Self::FSteFetch => "F_STE_FETCH",
            Self::CBadSte => "C_BAD_STE",
            Self::FBadAtsTreq => "F_BAD_ATS_TREQ",
            Self::FStreamDisabled => "F_STREAM_DISABLED",
            Self::FTranslForbidden => "F_TRANSL_FORBIDDEN",
            Self::CBadSubstreamId => "C_BAD_SUBSTREAMID",
            Self::FCdFetch => "F_CD_FETCH",
            Self::CBadCd => "C_BAD_CD",
            Self::FWalkEabt => "F_WALK_EABT",
            Self::FTranslation => "F_TRANSLATION",
            Self::FAddrSize => "F_ADDR_SIZE",
            Self::FAccess => "F_ACCESS",
            Self::FPermission => "F_PERMISSION",
            Self::FTlbConflict => "F_TLB_CONFLICT",
            Self::FCfgConflict => "F_CFG_CONFLICT",
            Self::EPageRequest => "E_PAGE_REQUEST",
            Self::FVmsFetch => "F_VMS_FETCH",
            Self::ImpDef(_) => "IMPDEF",
            Self::Unknown(_) => "UNKNOWN",
        }
    }

    /// Records that carry the faulting input address in DW2.
    const fn has_input_addr(self) -> bool {
        matches!(
            self,
            Self::FUut
                | Self::FBadAtsTreq
                | Self::FTranslForbidden
                | Self::FWalkEabt
                | Self::FTranslation
                | Self::FAddrSize
                | Self::FAccess
                | Self::FPermission
                | Self::FTlbConflict
                | Self::EPageRequest
        )
    }

    /// Records that carry RnW/InD/PnU in DW1: those with an input address, except
    /// E_PAGE_REQUEST (whose DW1 holds the page-request fields instead).
    const fn has_access(self) -> bool {
        self.has_input_addr() && !matches!(self, Self::EPageRequest)
    }

    /// Translation faults: they carry S2, CLASS and (for stage 2) the IPA.
    const fn is_walk_fault(self) -> bool {
        matches!(
            self,
            Self::FWalkEabt
                | Self::FTranslation
                | Self::FAddrSize
                | Self::FAccess
                | Self::FPermission
        )
    }

    /// Records whose DW3 is the physical address of a failed fetch.
    const fn has_fetch_addr(self) -> bool {
        matches!(
            self,
            Self::FSteFetch | Self::FCdFetch | Self::FWalkEabt | Self::FVmsFetch
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImpDef(code) | Self::Unknown(code) => write!(f, "{}({code:#04x})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// Direction of the faulting access (IHI 0070 §7.3 RnW).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// RnW = 1.
    Read,
    /// RnW = 0.
    Write,
}

/// Attributes of the faulting access (IHI 0070 §7.3 RnW, InD, PnU).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccessInfo {
    /// RnW.
    pub dir: Direction,
    /// InD: an instruction fetch (otherwise data).
    pub instruction: bool,
    /// PnU: privileged (otherwise unprivileged).
    pub privileged: bool,
}

/// Which part of a translation faulted (IHI 0070 §7.3 CLASS).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultClass {
    /// 0b00: fetching a context descriptor.
    Cd,
    /// 0b01: fetching a translation table descriptor.
    Ttd,
    /// 0b10: the input address itself.
    In,
    /// 0b11: reserved.
    Reserved,
}

impl FaultClass {
    const fn name(self) -> &'static str {
        match self {
            Self::Cd => "CD",
            Self::Ttd => "TTD",
            Self::In => "IN",
            Self::Reserved => "RESERVED",
        }
    }
}

/// A decoded event record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Event {
    /// The record type.
    pub kind: EventType,
    /// The StreamID of the traffic (`DW0[63:32]`).
    pub sid: StreamId,
    /// The SubstreamID, when SSV (`DW0[11]`) says it is valid (`DW0[31:12]`).
    pub ssid: Option<u32>,
    /// The faulting input address (DW2), for types that carry one.
    pub input_addr: Option<Iova>,
    /// The intermediate physical address (`DW3[51:12]`) of a stage-2 translation fault.
    pub ipa: Option<Iova>,
    /// The physical address of a failed fetch (`DW3[51:3]`).
    pub fetch_addr: Option<PhysAddr>,
    /// RnW/InD/PnU (`DW1[35]`, `DW1[34]`, `DW1[33]`), for types that carry them.
    pub access: Option<AccessInfo>,
    /// CLASS (`DW1[41:40]`), for translation faults.
    pub class: Option<FaultClass>,
    /// The stage that faulted (1 or 2, from S2 = `DW1[39]`), for translation faults.
    pub stage: Option<u8>,
    /// The transaction was stalled (`DW1[31]`); STAG is `DW1[15:0]`.
    pub stall_tag: Option<u16>,
    /// The record as read.
    pub raw: [u64; 4],
}

const fn bit(w: u64, n: u32) -> bool {
    (w >> n) & 1 == 1
}

impl Event {
    /// Decodes a record. Never fails; fields the type does not define are `None`.
    pub const fn decode(raw: [u64; 4]) -> Self {
        let [dw0, dw1, dw2, dw3] = raw;
        let kind = EventType::from_code(dw0 as u8);
        let walk = kind.is_walk_fault();
        let s2 = bit(dw1, 39);
        Self {
            kind,
            sid: StreamId((dw0 >> 32) as u32),
            ssid: if bit(dw0, 11) {
                Some(((dw0 >> 12) & 0xf_ffff) as u32)
            } else {
                None
            },
            input_addr: if kind.has_input_addr() {
                Some(Iova(dw2))
            } else {
                None
            },
            ipa: if walk && s2 && !matches!(kind, EventType::FWalkEabt) {
                Some(Iova(dw3 & 0x000f_ffff_ffff_f000))
            } else {
                None
            },
            fetch_addr: if kind.has_fetch_addr() {
                Some(PhysAddr(dw3 & 0x000f_ffff_ffff_fff8))
            } else {
                None
            },
            access: if kind.has_access() {
                Some(AccessInfo {
                    dir: if bit(dw1, 35) {
                        Direction::Read
                    } else {
                        Direction::Write
                    },
                    instruction: bit(dw1, 34),
                    privileged: bit(dw1, 33),
                })
            } else {
                None
            },
            class: if walk {
                Some(match (dw1 >> 40) & 3 {
                    0 => FaultClass::Cd,
                    1 => FaultClass::Ttd,
                    2 => FaultClass::In,
                    _ => FaultClass::Reserved,
                })
            } else {
                None
            },
            stage: if walk {
                Some(if s2 { 2 } else { 1 })
            } else {
                None
            },
            stall_tag: if bit(dw1, 31) { Some(dw1 as u16) } else { None },
            raw,
        }
    }
}

impl fmt::Display for Event {
    /// One structured line, e.g.
    /// `fault type=F_TRANSLATION sid=0x8 addr=0x0000000000200000 ipa=0x0000000000200000 dir=write
    /// stage=2 class=IN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind.name().as_bytes().first() {
            Some(b'F') => "fault",
            Some(b'C') => "config",
            _ => "event",
        };
        write!(f, "{prefix} type={} sid={}", self.kind, self.sid)?;
        if let Some(ssid) = self.ssid {
            write!(f, " ssid={ssid:#x}")?;
        }
        if let Some(addr) = self.input_addr {
            write!(f, " addr={addr}")?;
        }
        if let Some(ipa) = self.ipa {
            write!(f, " ipa={ipa}")?;
        }
        if let Some(pa) = self.fetch_addr {
            write!(f, " fetch={pa}")?;
        }
        if let Some(a) = self.access {
            let dir = match a.dir {
                Direction::Read => "read",
                Direction::Write => "write",
            };
            write!(f, " dir={dir}")?;
            if a.instruction {
                f.write_str(" insn")?;
            }
            if a.privileged {
                f.write_str(" priv")?;
            }
        }
        if let Some(stage) = self.stage {
            write!(f, " stage={stage}")?;
        }
        if let Some(class) = self.class {
            write!(f, " class={}", class.name())?;
        }
        if let Some(stag) = self.stall_tag {
            write!(f, " stag={stag:#x}")?;
        }
        if matches!(self.kind, EventType::Unknown(_) | EventType::ImpDef(_)) {
            let [a, b, c, d] = self.raw;
            write!(f, " raw={a:#018x},{b:#018x},{c:#018x},{d:#018x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record QEMU wrote for a 64-byte write to unmapped IOVA 0x200000 by SID 8.
    const QEMU_WRITE_FAULT: [u64; 4] = [
        0x0000_0008_0000_0010,
        0x0000_0280_0000_0000,
        0x0000_0000_0020_0000,
        0x0000_0000_0020_0000,
    ];

    #[test]
    fn decodes_qemu_translation_fault() {
        let ev = Event::decode(QEMU_WRITE_FAULT);
        assert_eq!(ev.kind, EventType::FTranslation);
        assert_eq!(ev.sid, StreamId(8));
        assert_eq!(ev.ssid, None);
        assert_eq!(ev.input_addr, Some(Iova(0x20_0000)));
        assert_eq!(ev.ipa, Some(Iova(0x20_0000)));
        assert_eq!(ev.fetch_addr, None);
        assert_eq!(
            ev.access,
            Some(AccessInfo {
                dir: Direction::Write,
                instruction: false,
                privileged: false
            })
        );
        assert_eq!(ev.stage, Some(2));
        assert_eq!(ev.class, Some(FaultClass::In));
        assert_eq!(ev.stall_tag, None);
        assert_eq!(
            ev.to_string(),
            "fault type=F_TRANSLATION sid=0x8 addr=0x0000000000200000 ipa=0x0000000000200000 \
             dir=write stage=2 class=IN"
        );
    }

    #[test]
    fn read_variant() {
        let mut raw = QEMU_WRITE_FAULT;
        raw[1] |= 1 << 35;
        let ev = Event::decode(raw);
        assert_eq!(ev.access.unwrap().dir, Direction::Read);
        assert!(ev.to_string().contains(" dir=read "));
    }

    #[test]
    fn stage1_fault_has_no_ipa() {
        let raw = [
            0x0000_0008_0000_0013,
            0x0000_0100_0000_0000 | 1 << 33 | 1 << 34,
            0x1234,
            0xdead_0000,
        ];
        let ev = Event::decode(raw);
        assert_eq!(ev.kind, EventType::FPermission);
        assert_eq!(ev.stage, Some(1));
        assert_eq!(ev.class, Some(FaultClass::Ttd));
        assert_eq!(ev.ipa, None);
        let a = ev.access.unwrap();
        assert!(a.instruction && a.privileged);
        assert!(ev
            .to_string()
            .ends_with("addr=0x0000000000001234 dir=write insn priv stage=1 class=TTD"));
    }

    #[test]
    fn fetch_and_config_events() {
        let ev = Event::decode([0x0000_0010_0000_0003, 0, 0, 0x0000_0000_4000_1047]);
        assert_eq!(ev.kind, EventType::FSteFetch);
        assert_eq!(ev.fetch_addr, Some(PhysAddr(0x4000_1040)));
        assert_eq!(ev.input_addr, None);
        assert_eq!(
            ev.to_string(),
            "fault type=F_STE_FETCH sid=0x10 fetch=0x0000000040001040"
        );

        let ev = Event::decode([0x0000_0008_0000_0004, 0, 0, 0]);
        assert_eq!(ev.kind, EventType::CBadSte);
        assert_eq!(ev.access, None);
        assert_eq!(ev.to_string(), "config type=C_BAD_STE sid=0x8");

        let ev = Event::decode([0x0000_0008_0123_4802, 0, 0, 0]);
        assert_eq!(ev.kind, EventType::CBadStreamId);
        assert_eq!(ev.ssid, Some(0x1234));

        let walk = Event::decode([0x0b, 1 << 39 | 1 << 40, 0x5000, 0x8000_1238]);
        assert_eq!(walk.kind, EventType::FWalkEabt);
        assert_eq!(walk.fetch_addr, Some(PhysAddr(0x8000_1238)));
        assert_eq!(walk.ipa, None);
        assert_eq!(walk.class, Some(FaultClass::Ttd));
    }

    #[test]
    fn stalled_fault_reports_its_tag() {
        let ev = Event::decode([0x10, 1 << 31 | 0xbeef, 0, 0]);
        assert_eq!(ev.stall_tag, Some(0xbeef));
    }

    #[test]
    fn every_type_code_round_trips_and_nothing_panics() {
        for code in 0..=255u8 {
            let t = EventType::from_code(code);
            assert_eq!(t.code(), code);
            let ev = Event::decode([
                u64::from(code) | 0xffff_ffff_ffff_ff00,
                u64::MAX,
                u64::MAX,
                u64::MAX,
            ]);
            assert_eq!(ev.kind, t);
            assert!(!ev.to_string().is_empty());
        }
        assert_eq!(EventType::from_code(0xE3), EventType::ImpDef(0xE3));
        assert_eq!(EventType::from_code(0x0C), EventType::Unknown(0x0C));
        assert_eq!(EventType::from_code(0x25).name(), "F_VMS_FETCH");
        let ev = Event::decode([0xE5, 0, 0, 0]);
        assert!(ev
            .to_string()
            .starts_with("event type=IMPDEF(0xe5) sid=0x0 raw="));
    }
}
