//! Cache maintenance for an SMMU that does not snoop the CPU caches.
//!
//! When SMMU_IDR0.COHACC is 0 (IHI 0070 §6.3.1: the SMMU's accesses to tables and queues are not
//! IO-coherent), or the platform says the SMMU's interconnect is not coherent (no `dma-coherent`
//! in the device tree), what the CPU writes may sit in its caches where the SMMU never looks.
//! The driver then tells the SMMU to make Non-cacheable accesses (SMMU_CR1 §6.3.11, STE
//! S2IR0/S2OR0/S2SH0 §5.2) and cleans every line it writes to the point of coherency.
//!
//! [`Dma`] does the cleaning: every table and queue update goes through it, so no writer can
//! forget. It cleans each word right after writing it (and a whole allocation right after it
//! is zeroed), before any barrier or MMIO write that lets the SMMU read it: the order the
//! writers already keep (a table filled before it is linked, an STE's other words before word
//! 0, commands before CMDQ_PROD) is therefore the order in which the SMMU can see the writes.
//!
//! The other direction: the only memory the SMMU writes is the event queue (no hardware
//! access/dirty flag updates are enabled). A non-coherent SMMU's record goes to memory, not
//! into the CPU's cache, which may still hold an older copy of the slot (the previous lap's
//! record, or a line fetched speculatively). [`Dma::invalidate_for_cpu`] makes the event-queue
//! drain invalidate each record before reading it.

/// The driver's view of its memory: [`iommu_core::Cleaned`], which cleans each write when the
/// SMMU is not coherent and invalidates event records before they are read.
pub(crate) type Dma<'m, M> = iommu_core::Cleaned<'m, M>;
