//! The driver's error type.

use crate::cmd::opcode_name;
use core::fmt;
use iommu_core::{OutOfMemory, StreamId};

/// Something the driver needs from the SMMU and did not find in its ID registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Requirement {
    /// Stage-2 translation (IHI 0070 §6.3.1 IDR0.S2P).
    Stage2,
    /// AArch64 translation tables (IDR0.TTF).
    AArch64Tables,
    /// The 4 KiB translation granule (IHI 0070 §6.3.6 IDR5.GRAN4K).
    Granule4K,
    /// Little-endian table walks (IDR0.TTENDIAN is not big-endian-only).
    LittleEndianTables,
    /// An architected output address size (IDR5.OAS is not reserved).
    OutputAddressSize,
    /// 2-level stream tables (IDR0.ST_LEVEL), when the caller forces them.
    TwoLevelStreamTable,
    /// Software-programmable stream table and queue bases (IHI 0070 §6.3.2 IDR1.TABLES_PRESET
    /// and QUEUES_PRESET are 0).
    ProgrammableBases,
    /// Faults that terminate rather than stall (IHI 0070 §6.3.1 IDR0.STALL_MODEL is 0b00 or
    /// 0b01). With 0b10 every stallable fault stalls the transaction until software sends
    /// CMD_RESUME or CMD_STALL_TERM, which smmuman never does, so a faulting device would
    /// hang; 0b11 is reserved.
    TerminateModel,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stage2 => "stage-2 translation (IDR0.S2P)",
            Self::AArch64Tables => "AArch64 translation tables (IDR0.TTF)",
            Self::Granule4K => "the 4 KiB granule (IDR5.GRAN4K)",
            Self::LittleEndianTables => "little-endian table walks (IDR0.TTENDIAN)",
            Self::OutputAddressSize => "an architected output address size (IDR5.OAS)",
            Self::TwoLevelStreamTable => "2-level stream tables (IDR0.ST_LEVEL)",
            Self::ProgrammableBases => "programmable table and queue bases (IDR1.*_PRESET)",
            Self::TerminateModel => {
                "faults that terminate instead of stalling (IDR0.STALL_MODEL is not 0b10, stall \
                 forced; smmuman never sends CMD_RESUME)"
            }
        })
    }
}

/// Why the SMMU rejected a command (IHI 0070 §4.7 CMDQ_CONS.ERR, §7.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CommandErrorKind {
    /// CERROR_ILL (1): an unknown opcode or an illegal field value.
    Illegal,
    /// CERROR_ABT (2): the SMMU could not read the command from memory.
    Abort,
    /// CERROR_ATC_INV_SYNC (3): a CMD_SYNC timed out waiting for ATC invalidations.
    AtcInvSync,
    /// Any other CONS.ERR code (including CERROR_NONE reported with CMDQ_ERR active).
    Other(u8),
}

impl CommandErrorKind {
    /// Decodes CMDQ_CONS.ERR.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Illegal,
            2 => Self::Abort,
            3 => Self::AtcInvSync,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for CommandErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Illegal => f.write_str("CERROR_ILL"),
            Self::Abort => f.write_str("CERROR_ABT"),
            Self::AtcInvSync => f.write_str("CERROR_ATC_INV_SYNC"),
            Self::Other(code) => write!(f, "CERROR({code:#x})"),
        }
    }
}

/// Everything the driver can fail with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SmmuError {
    /// A bounded wait ran out: `register` never reached the expected value.
    Timeout {
        /// The register (or field) polled, e.g. `"CR0ACK"`.
        register: &'static str,
        /// How many reads were made.
        polls: u32,
    },
    /// The SMMU lacks something the driver needs.
    Unsupported(Requirement),
    /// No DMA memory was left for a table or queue.
    OutOfMemory(OutOfMemory),
    /// A StreamID does not fit in the stream table.
    StreamIdOutOfRange {
        /// The StreamID asked for.
        sid: StreamId,
        /// The StreamID width the table covers.
        sid_bits: u8,
    },
    /// A configuration value was out of range.
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A stage-2 context field would make the SMMU reject the STE (C_BAD_STE).
    InvalidS2Context {
        /// The field (spec name, e.g. `"S2T0SZ"`).
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The operation needs a brought-up SMMU.
    NotRunning,
    /// `bring_up` was called on an SMMU that is already running.
    AlreadyRunning,
    /// The SMMU rejected a command; the queue was recovered (the command was replaced by a
    /// CMD_SYNC and the error acknowledged) and the rest of the batch ran.
    Command {
        /// Position of the failing command in the submitted batch (`len` = the trailing
        /// CMD_SYNC).
        index: usize,
        /// Its opcode (IHI 0070 §4.1).
        opcode: u8,
        /// The reason from CMDQ_CONS.ERR.
        error: CommandErrorKind,
    },
    /// The SMMU entered service failure mode (IHI 0070 §6.3.18 GERROR.SFM_ERR).
    ServiceFailure,
    /// The SMMU was already in service failure mode (GERROR.SFM_ERR active) when bring-up
    /// started: firmware or an earlier owner left it broken. Bring-up refuses it and leaves all
    /// traffic terminated (GBPA.ABORT set, SMMUEN = 0).
    ServiceFailureBeforeBringUp,
    /// A command the SMMU kept failing to fetch (CERROR_ABT) or a CMD_SYNC kept failing on
    /// ATC invalidation (CERROR_ATC_INV_SYNC) was retried `attempts` times and given up
    /// (IHI 0070 §7.1). A fetch abort's command was then skipped (replaced by a CMD_SYNC), so
    /// what it asked for did **not** happen.
    CommandRetriesExhausted {
        /// Position of the command in the submitted batch.
        index: usize,
        /// Its opcode (IHI 0070 §4.1).
        opcode: u8,
        /// The reason from CMDQ_CONS.ERR.
        error: CommandErrorKind,
        /// How many times it was tried.
        attempts: u32,
    },
}

impl From<OutOfMemory> for SmmuError {
    fn from(e: OutOfMemory) -> Self {
        Self::OutOfMemory(e)
    }
}

impl fmt::Display for SmmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout { register, polls } => {
                write!(
                    f,
                    "timed out waiting for SMMU {register} after {polls} reads"
                )
            }
            Self::Unsupported(req) => write!(f, "SMMU does not support {req}"),
            Self::OutOfMemory(e) => write!(f, "{e}"),
            Self::StreamIdOutOfRange { sid, sid_bits } => {
                write!(
                    f,
                    "StreamID {sid} does not fit in a {sid_bits}-bit stream table"
                )
            }
            Self::InvalidConfig { what, value } => write!(f, "invalid {what}: {value:#x}"),
            Self::InvalidS2Context { field, value } => {
                write!(
                    f,
                    "stage-2 STE field {field}={value:#x} would be rejected (C_BAD_STE)"
                )
            }
            Self::NotRunning => f.write_str("SMMU is not brought up"),
            Self::AlreadyRunning => f.write_str("SMMU is already brought up"),
            Self::Command {
                index,
                opcode,
                error,
            } => write!(
                f,
                "SMMU rejected command #{index} ({} {opcode:#04x}) with {error}; queue recovered",
                opcode_name(*opcode)
            ),
            Self::ServiceFailure => f.write_str("SMMU entered service failure mode (SFM_ERR)"),
            Self::ServiceFailureBeforeBringUp => f.write_str(
                "SMMU was already in service failure mode (GERROR.SFM_ERR) before bring-up; \
                 refusing it (all traffic stays aborted)",
            ),
            Self::CommandRetriesExhausted {
                index,
                opcode,
                error,
                attempts,
            } => write!(
                f,
                "SMMU command #{index} ({} {opcode:#04x}) still failed with {error} after \
                 {attempts} attempts; it was not carried out",
                opcode_name(*opcode)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_offending_value() {
        let e = SmmuError::Timeout {
            register: "CR0ACK",
            polls: 10,
        };
        assert_eq!(
            e.to_string(),
            "timed out waiting for SMMU CR0ACK after 10 reads"
        );
        let e = SmmuError::Command {
            index: 1,
            opcode: 0xff,
            error: CommandErrorKind::Illegal,
        };
        assert_eq!(
            e.to_string(),
            "SMMU rejected command #1 (UNKNOWN 0xff) with CERROR_ILL; queue recovered"
        );
        let e = SmmuError::StreamIdOutOfRange {
            sid: StreamId(0x1_0000),
            sid_bits: 16,
        };
        assert_eq!(
            e.to_string(),
            "StreamID 0x10000 does not fit in a 16-bit stream table"
        );
        assert_eq!(
            SmmuError::Unsupported(Requirement::Stage2).to_string(),
            "SMMU does not support stage-2 translation (IDR0.S2P)"
        );
        assert_eq!(CommandErrorKind::from_code(3), CommandErrorKind::AtcInvSync);
        assert_eq!(CommandErrorKind::from_code(9).to_string(), "CERROR(0x9)");
    }
}
