//! PCI: configuration access ([`config`], [`ecam`]) and enumeration with BAR assignment
//! ([`mod@enumerate`]).
//!
//! Enumeration walks bus `bus_start` and, through PCI-to-PCI bridges, the buses behind them,
//! sizes and assigns memory BARs from the host bridge's 32-bit window and turns on memory
//! decoding. It leaves bus mastering **off** everywhere: a device may only DMA once the SMMU has
//! a decision for its StreamID, so the manager calls [`PciBus::enable_bus_master`] after
//! installing the STE.

pub mod config;
pub mod ecam;
pub mod enumerate;

#[cfg(test)]
mod fake;

pub use config::ConfigSpace;
pub use ecam::Ecam;
pub use enumerate::{
    enumerate, Bar, BarKind, BridgeType, FunctionKind, PciBus, PciError, PciFunction,
};

#[cfg(test)]
mod tests;
