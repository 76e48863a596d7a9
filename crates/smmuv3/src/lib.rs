//! A register-level driver for the Arm SMMUv3 (Arm IHI 0070), `no_std` and host-testable.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod cmd;
mod error;
pub mod event;
pub mod features;
mod gerror;
pub mod mmio;
pub mod queue;
mod regs;
pub mod ste;

pub use cmd::{tlbi_s2_range, Command, TlbiRange, TlbiS2Plan};
pub use error::{CommandErrorKind, Requirement, SmmuError};
pub use event::{Direction, Event, EventType, FaultClass};
pub use features::{pa_bits_from_code, pa_code_from_bits, Features};
pub use gerror::{GerrorFlags, GerrorReport};
pub use mmio::{Mmio, Reg32, Reg64, RegisterAccess};
pub use ste::{S2Context, Ste, SteConfig};
