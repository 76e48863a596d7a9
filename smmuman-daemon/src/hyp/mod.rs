//! The EL2 hypervisor: what runs guests and owns the CPU at EL2.
//!
//! * `world_switch`: entering an EL1 guest and getting its exits back (HCR_EL2, MDCR_EL2,
//!   the guest's EL1, general, FP/SIMD, timer and GIC state swapped at each entry and exit).
//! * `mmu`: the EL2 identity map and turning the MMU and caches on.
//! * `exceptions`: the EL2 vector table, the IRQ entry and the crash report.
//! * `irq`: the GICv3 and the SMMU's wired interrupts, the one window with PSTATE.I clear.
//! * `tasks`: the execution contexts (own stacks, a context switch) the manager's clients run in.

//!
//! Their logic that needs no CPU is in modules every build has, tested on the host:
//! [`el2_regs`] (TCR_EL2, SCTLR_EL2) and [`cpu_features`] (what the ID registers say).

pub mod cpu_features;
pub mod el2_regs;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod exceptions;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod irq;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod mmu;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod tasks;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub mod world_switch;
