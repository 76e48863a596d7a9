//! [`VtdError`]: everything the driver can report, each naming the register, bit or value.

use crate::context::DomainTag;
use crate::features::FeatureError;
use crate::mmio::FrameError;
use core::fmt;
use iommu_core::OutOfMemory;

/// A register's name as the spec spells it (e.g. `"GSTS_REG"`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct RegisterName(pub &'static str);

impl fmt::Display for RegisterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Everything the VT-d driver can fail with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VtdError {
    /// CAP/ECAP describe a unit we cannot drive.
    Features(FeatureError),
    /// The register frame is too small for the blocks CAP/ECAP place.
    Frame(FrameError),
    /// The unit has no queued invalidation (ECAP.QI = 0); this driver needs it.
    NoQueuedInvalidation,
    /// A bit did not reach its expected value within the poll budget.
    Timeout {
        /// The register polled.
        register: RegisterName,
        /// The bit (spec name).
        bit: &'static str,
    },
    /// No DMA memory for a table or the queue.
    OutOfMemory(OutOfMemory),
    /// The driver is not brought up.
    NotRunning,
    /// Hardware refused a queued descriptor (FSTS.IQE, §6.5.2.10). The driver replaced it by a
    /// wait descriptor (a status write of the previous sequence number) and cleared IQE, so the
    /// queue runs again; the request it held did **not** take effect.
    InvalidDescriptor {
        /// Its index in the queue (IQH_REG.QH).
        index: u16,
        /// Its two words.
        words: [u64; 2],
    },
    /// FSTS.ITE: a device-TLB invalidation timed out; the wait descriptors after it were
    /// discarded (§6.5.2.10). ITE was cleared; the submission must be repeated.
    InvalidationTimeout,
    /// FSTS.ICE: an invalid device-TLB invalidation completion arrived. ICE was cleared.
    InvalidationCompletion,
    /// The queue holds more descriptors than one submission may use.
    QueueFull {
        /// Descriptors asked for, the wait descriptor included.
        wanted: usize,
        /// Free slots.
        free: usize,
    },
    /// A domain-id beyond CAP.ND's range, or 0 (reserved).
    DomainIdOutOfRange {
        /// The id.
        did: DomainTag,
        /// Ids the unit supports.
        domains: u32,
    },
}

impl fmt::Display for VtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Features(e) => write!(f, "{e}"),
            Self::Frame(e) => write!(f, "{e}"),
            Self::NoQueuedInvalidation => {
                f.write_str("ECAP_REG.QI = 0: the unit has no queued invalidation")
            }
            Self::Timeout { register, bit } => {
                write!(f, "timed out waiting for {register}.{bit}")
            }
            Self::OutOfMemory(e) => write!(f, "{e}"),
            Self::NotRunning => f.write_str("the remapping unit is not brought up"),
            Self::InvalidDescriptor { index, words } => write!(
                f,
                "FSTS_REG.IQE: invalidation descriptor {index} ({:#018x}, {:#018x}) refused",
                words[0], words[1]
            ),
            Self::InvalidationTimeout => f.write_str("FSTS_REG.ITE: invalidation time-out"),
            Self::InvalidationCompletion => {
                f.write_str("FSTS_REG.ICE: invalidation completion error")
            }
            Self::QueueFull { wanted, free } => write!(
                f,
                "invalidation queue has {free} free slots, {wanted} needed"
            ),
            Self::DomainIdOutOfRange { did, domains } => {
                write!(f, "{did} is outside 1..{domains}")
            }
        }
    }
}

impl From<FeatureError> for VtdError {
    fn from(e: FeatureError) -> Self {
        Self::Features(e)
    }
}

impl From<OutOfMemory> for VtdError {
    fn from(e: OutOfMemory) -> Self {
        Self::OutOfMemory(e)
    }
}

impl From<FrameError> for VtdError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}
