//! The EL2 hypervisor: what runs guests and owns the CPU at EL2.
//!
//! * [`world_switch`]: entering an EL1 guest and getting its exits back (HCR_EL2, MDCR_EL2,
//!   the guest's EL1, general, FP/SIMD, timer and GIC state swapped at each entry and exit).
//! * [`mmu`]: the EL2 identity map and turning the MMU and caches on.
//! * [`exceptions`]: the EL2 vector table, the IRQ entry and the crash report.
//! * [`irq`]: the GICv3 and the SMMU's wired interrupts, the one window with PSTATE.I clear.
//! * [`tasks`]: the execution contexts (own stacks, a context switch) the manager's clients run in.

pub mod exceptions;
pub mod irq;
pub mod mmu;
pub mod tasks;
pub mod world_switch;
