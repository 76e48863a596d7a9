//! VMSAv8-64 stage-2 translation tables with the 4 KiB granule, as the Arm SMMUv3 walks them for
//! a stage-2 STE (IHI 0070 §5.2 STE.S2TTB/S2T0SZ/S2SL0, Arm ARM D8.2 for the walk, D8.3 for the
//! descriptors).
//!
//! Safe Rust over [`DmaMemory`](iommu_core::DmaMemory): tables are named by physical address and
//! read or written one 64-bit word at a time, so the same code runs on bare metal and, against
//! `iommu_core::fake::FakeMemory`, in host tests.
//!
//! # Formats
//! One walker, several descriptor formats ([`format`], after Linux's `generic_pt`):
//! [`Stage2Table`] is generic over [`format::PtFormat`], with the VMSAv8-64 stage-2 format
//! ([`format::Vmsav8`], a zero-sized type) as the default, and the Intel VT-d second-level
//! format ([`format::VtdSecondLevel`], VT-d §9.8) as the second, built with
//! [`Stage2Table::with_format`]. Everything below (all-or-nothing changes, bookkeeping,
//! ordering, the returned [`Invalidation`], deferred free) holds for both; what this section
//! says of descriptors and STE fields is the VMSAv8 format's.
//!
//! # Layout
//! * One 4 KiB root table, no concatenation: level 0 for 40..=48 input bits, level 1 for
//!   31..=39, level 2 for 25..=30 ([`Stage2Config::start_level`]); [`Stage2Table::t0sz`] and
//!   [`Stage2Table::sl0`] give the matching STE fields.
//! * Leaves ([`descriptor`]): Normal Write-Back memory (MemAttr = 0b1111), Inner Shareable,
//!   AF = 1, S2AP from [`Access::READ`](iommu_core::Access::READ)/`WRITE`, XN = 0b10 unless
//!   `EXEC`. Output addresses have at most 48 bits (no FEAT_LPA2).
//! * [`Stage2Table::map`] uses 1 GiB and 2 MiB blocks wherever IOVA, PA and length allow, pages
//!   elsewhere.
//!
//! # Changing a live table
//! * **All or nothing.** A change checks what it would overwrite and allocates every table it
//!   needs before it writes anything: a page or block in an existing table is checked and
//!   written in one walk; a range that needs new tables or spans several is checked and counted
//!   first, then applied (see [`table`]). Any error (including running out of memory) leaves the
//!   table exactly as it was; nothing needs rolling back.
//! * **Bookkeeping.** Each table's count of valid entries is kept in side pages that no
//!   descriptor points at (see [`table::bookkeeping`]), so an unmap learns that a table became
//!   empty without scanning it. [`Stage2Table::bookkeeping_pages`] says how many it holds.
//! * **Ordering.** A live descriptor is changed by one 64-bit store. A new table is filled first,
//!   then [`DmaMemory::publish`](iommu_core::DmaMemory::publish), then linked. Every changing
//!   call publishes before it returns.
//! * **Invalidation.** Mapping only fills invalid entries, which the SMMU never caches (IHI 0070
//!   §3.21.1), so it needs no TLB maintenance. Unmapping returns an [`Invalidation`]: the IOVA
//!   range to invalidate (only what was actually removed), whether a table descriptor went away
//!   (non-leaf invalidation needed), and hints (smallest leaf size, TTL). Merge them with
//!   [`Invalidation::merge`] to flush a batch at once.
//! * **Split unmap.** Unmapping part of a 2 MiB or 1 GiB block replaces the block, in one store,
//!   with a table that maps the rest of it as before; the caller then invalidates the unmapped
//!   range (which evicts the old block). This is what Linux io-pgtable-arm does; it relies on
//!   SMMU_IDR3.BBML = 2 (IHI 0070 §3.21.1.3), which QEMU's SMMUv3 reports.
//! * **Deferred free.** Tables emptied by an unmap (never the root) are unlinked at once but only
//!   freed by [`Stage2Table::reclaim`], which the caller calls once the invalidation has completed:
//!   until then the SMMU may still walk them through its walk caches.
//!
//! # Example
//! ```
//! use iommu_core::{fake::FakeMemory, Access, Iova, PhysAddr};
//! use stage2::{Stage2Config, Stage2Table};
//!
//! let mut mem = FakeMemory::default();
//! let mut table = Stage2Table::new(&mut mem, Stage2Config { ias_bits: 32, oas_bits: 44 })?;
//! // STE.S2TTB = table.root(), STE.S2T0SZ = table.t0sz() (32), STE.S2SL0 = table.sl0() (1).
//! table.map(&mut mem, Iova(0x20_0000), PhysAddr(0x4020_0000), 0x20_0000, Access::RW)?;
//! let t = table.translate(&mem, Iova(0x20_1234)).unwrap();
//! assert_eq!((t.pa, t.size), (PhysAddr(0x4020_1234), 0x20_0000)); // one 2 MiB block
//!
//! let unmapped = table.unmap(&mut mem, Iova(0x20_0000), 0x1000)?; // splits the block
//! assert_eq!(unmapped.invalidation.range(), Some((Iova(0x20_0000), 0x1000)));
//! // ... invalidate that range (CMD_TLBI_S2_IPA, CMD_SYNC), then:
//! table.reclaim(&mut mem);
//! assert_eq!(table.translate(&mem, Iova(0x20_1000)).unwrap().pa, PhysAddr(0x4020_1000));
//! table.destroy(&mut mem);
//! # Ok::<(), stage2::MapError>(())
//! ```
//!
//! The design follows the spirit of Google's `aarch64-paging` (typed addresses, memory behind a
//! trait, one error enum), which the differential tests compare against.

#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]
#![forbid(unsafe_code)]

pub mod config;
pub mod descriptor;
pub mod error;
pub mod format;
pub mod geometry;
pub mod invalidation;
mod page_chain;
mod reserve;
pub mod table;

pub use config::Stage2Config;
pub use error::MapError;
pub use invalidation::{Invalidation, Unmapped, LEAF_LIST_CAPACITY};
pub use reserve::TableReserve;
pub use table::{BookkeepingError, Stage2Table, Translation};
