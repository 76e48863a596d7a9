//! A register-level driver for the Arm SMMUv3 (Arm IHI 0070), `no_std` and host-testable.
//!
//! smmuman uses the SMMU for one thing: keeping DMA masters inside the memory they were granted,
//! through stage-2 translation. The driver therefore brings the SMMU up without ever opening a
//! bypass window, installs abort / stage-2 stream table entries, invalidates stage-2 TLB entries
//! and reports faults:
//!
//! ```no_run
//! # use iommu_core::{DmaMemory, Iova, PhysAddr, StreamId, Vmid};
//! # fn demo(mut mem: impl DmaMemory, base: usize) -> Result<(), smmuv3::SmmuError> {
//! use smmuv3::{BringUpConfig, S2Context, Smmu, Ste, StreamTableFormat};
//! // SAFETY: `base` is the SMMU's frame from the device tree, mapped as device memory.
//! let mut smmu = unsafe { Smmu::new(base) };
//! log::info!("{}", smmu.features());
//! smmu.bring_up(&mut mem, BringUpConfig { stream_table: StreamTableFormat::TwoLevel, ..Default::default() })?;
//! let ctx = S2Context { vmid: Vmid(1), s2ttb: PhysAddr(0x4010_0000), s2t0sz: 32, s2sl0: 1, s2ps: 4, record_faults: true };
//! ctx.validate(smmu.features())?;
//! smmu.install_ste(&mut mem, StreamId(8), &Ste::s2_translate(&ctx))?;
//! smmu.invalidate_s2(&mut mem, Vmid(1), Iova(0x10_0000), 0x10_0000, true)?;
//! smmu.drain_events(&mut mem, |ev| log::warn!("{ev}"))?;
//! # Ok(()) }
//! ```
//!
//! Layout:
//! * `regs` (private) and [`mmio`]: the register map and the one `unsafe` door,
//!   [`Smmu::new`];
//! * [`features`]: IDR0..5/AIDR decoded;
//! * [`ste`], [`cmd`], [`event`]: pure encoders/decoders of STEs, commands and event records;
//! * [`queue`]: PROD/CONS arithmetic; `cmdq`, `evtq`, `stream_table` (private): the structures
//!   in DMA memory, reached only through [`iommu_core::DmaMemory`];
//! * [`Smmu`] ties them together.

#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod backend;
pub mod cmd;
mod cmdq;
mod coherency;
mod driver;
mod error;
pub mod event;
mod evtq;
pub mod features;
mod gerror;
pub mod mmio;
pub mod queue;
mod queue_memory;
mod regs;
pub mod ste;
mod stream_table;

/// The emulated SMMU of the host tests, for other crates' benchmarks (feature `fake`).
#[cfg(any(test, feature = "fake"))]
#[cfg_attr(not(test), allow(dead_code))]
pub mod fake_smmu;

pub use backend::{BackendError, Smmuv3Backend};
pub use cmd::{tlbi_s2_range, Command, TlbiRange, TlbiS2Plan};
pub use driver::{AbortState, BringUpConfig, Smmu, Stats};
pub use error::{CommandErrorKind, Requirement, SmmuError};
pub use event::{Direction, Event, EventType, FaultClass};
pub use evtq::DrainReport;
pub use features::{pa_bits_from_code, pa_code_from_bits, Features};
pub use gerror::{GerrorFlags, GerrorReport};
pub use mmio::{Mmio, Reg32, Reg64, RegisterAccess};
pub use ste::{S2Context, Ste, SteConfig};
pub use stream_table::{StreamTableFormat, MAX_LINEAR_SID_BITS, MAX_TWO_LEVEL_SID_BITS, SPLIT};
