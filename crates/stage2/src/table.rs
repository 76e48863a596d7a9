//! [`Stage2Table`]: one stage-2 translation table hierarchy and its map/unmap/translate walks.
//!
//! # One walk per call
//! Every change first **descends** from the root, one entry per level, while the range lies
//! inside a single entry that is already a table. The common calls end there: a page or a run
//! of pages in one last-level table, a block or a run of blocks in one table, an unmap of pages
//! in one table. Their check (is any target entry already valid?) reads exactly the entries the
//! change then writes, so nothing has been written when a check fails, and the call reads each
//! descriptor on its path once.
//!
//! Only a range that needs new tables or spans several tables, or an unmap that must split a
//! block, takes the two-pass path from the table where the descent stopped: a first pass that
//! writes nothing checks for overlaps and counts the pages the change needs (tables and side
//! pages), those are reserved, and a second pass applies the change taking pages from that
//! reserve. Both passes are the same code over the same state, so the count is exact and the
//! second pass cannot fail part-way. A new subtree is counted without being visited entry by
//! entry, and an unmap whose ends are aligned to the table's entries cannot split and skips the
//! first pass.
//!
//! A call inside the same 2 MiB as the previous call starts at the last-level table that call
//! ended in (a one-entry hint, dropped whenever any table is unlinked), so runs of per-page
//! calls skip the descent too; an unmap that could empty that table takes the full descent,
//! which it needs to unlink the table.
//!
//! # Bookkeeping
//! Each table's count of valid entries lives in a side page beside the tables (see
//! [`bookkeeping`]), so an unmap knows that a table became empty without scanning it.

pub mod bookkeeping;
#[cfg(test)]
mod tests;

use crate::config::Stage2Config;
use crate::descriptor::{Descriptor, LEAF_LEVEL};
use crate::error::MapError;
use crate::format::{PtFormat, Vmsav8};
use crate::geometry::{
    entry_addr, entry_at, level_shift, level_size, ENTRIES, PAGE_SHIFT, TABLE_BYTES,
};
use crate::invalidation::{Invalidation, Unmapped};
use crate::page_chain::PageChain;
use bookkeeping::{child_word_of, live_of, Meta, ONE_LIVE};
use iommu_core::{Access, DmaMemory, Iova, PhysAddr, PAGE_SIZE};

/// Where one IOVA leads: the result of [`Stage2Table::translate`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The physical address the IOVA translates to.
    pub pa: PhysAddr,
    /// The permissions of the leaf that maps it.
    pub access: Access,
    /// Size of that leaf: 4 KiB (page), 2 MiB or 1 GiB (blocks).
    pub size: u64,
}

/// Where [`Stage2Table::check_bookkeeping`] found the bookkeeping to disagree with the tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BookkeepingError {
    /// The table whose recorded counts are wrong.
    pub table: PhysAddr,
    /// Its level.
    pub level: u8,
    /// Recorded (valid entries, table descriptors, has a side page).
    pub recorded: (u64, u64, bool),
    /// Found in the table (valid entries, table descriptors, has a side page).
    pub found: (u64, u64, bool),
}

/// A translation table hierarchy for one translation domain (one STE.S2TTB, or one VT-d
/// context entry's SLPTPTR), in the descriptor format `F` (VMSAv8-64 stage 2 by default).
///
/// All memory is reached through the [`DmaMemory`] passed to each call, which must be the same
/// one every time. Dropping the value leaks its tables: call [`destroy`](Self::destroy).
#[derive(Debug)]
pub struct Stage2Table<F: PtFormat = Vmsav8> {
    /// The descriptor format (a ZST for [`Vmsav8`]).
    fmt: F,
    root: PhysAddr,
    cfg: Stage2Config,
    start_level: u8,
    /// Bookkeeping of the root, encoded as a side-page word (the others' is in side pages).
    root_word: u64,
    /// Tables reachable from the root, the root included.
    linked: usize,
    /// Side pages held (see [`bookkeeping`]).
    side_pages: usize,
    /// Tables unlinked by [`unmap`](Self::unmap), waiting for [`reclaim`](Self::reclaim).
    retired: PageChain,
    /// Side pages given up by [`unmap`](Self::unmap), freed with the retired tables. The SMMU
    /// never reads them, but freeing nothing before the invalidation completes keeps one rule
    /// for the caller: an unmap frees no memory, [`reclaim`](Self::reclaim) does.
    retired_sides: PageChain,
    /// The last-level table the previous call ended in, so that the next call in the same
    /// 2 MiB skips the descent. Cleared whenever any table is unlinked (the only way it can stop
    /// being that table, or its bookkeeping word move).
    hint: Option<LeafHint>,
}

/// A last-level table still linked where a walk found it.
#[derive(Clone, Copy, Debug)]
struct LeafHint {
    /// The 2 MiB of IOVA it covers.
    base: u64,
    /// The table.
    table: PhysAddr,
    /// Its bookkeeping word (in its parent's side page).
    at: PhysAddr,
}

impl LeafHint {
    /// The hint's table, when `[start, end)` lies in it and maps there as pages (no 2 MiB block
    /// fits: `pa` is `None` for an unmap, which then must not cover the whole 2 MiB).
    fn covers(
        hint: Option<Self>,
        start: u64,
        end: u64,
        pa: Option<u64>,
        min_block: u8,
    ) -> Option<Self> {
        let hint = hint?;
        let inside = start & !(level_size(2) - 1) == hint.base && end <= hint.base + level_size(2);
        let block = match pa {
            Some(pa) => leaf_run(2, start, end, pa, min_block),
            None => start == hint.base && end == hint.base + level_size(2),
        };
        (inside && !block).then_some(hint)
    }
}

impl Stage2Table<Vmsav8> {
    /// Allocates an empty root table for `cfg`, in the VMSAv8-64 stage-2 format of the SMMUv3.
    ///
    /// # Errors
    /// [`MapError::IasBits`] / [`MapError::OasBits`] for a size out of range,
    /// [`MapError::OutOfMemory`] when the root page cannot be allocated.
    pub fn new(mem: &mut impl DmaMemory, cfg: Stage2Config) -> Result<Self, MapError> {
        Self::with_format(mem, cfg, Vmsav8)
    }

    /// STE.S2T0SZ (IHI 0070 §5.2): `64 - ias_bits`.
    pub const fn t0sz(&self) -> u8 {
        self.cfg.t0sz()
    }

    /// STE.S2SL0 for the 4 KiB granule (IHI 0070 §5.2): 0 = start at level 2, 1 = level 1,
    /// 2 = level 0. See [`Stage2Config::start_level`] for how the level is chosen.
    pub const fn sl0(&self) -> u8 {
        self.cfg.sl0()
    }
}

impl<F: PtFormat> Stage2Table<F> {
    /// Allocates an empty root table for `cfg` in the descriptor format `fmt` (for a VT-d
    /// unit, [`VtdSecondLevel`](crate::format::VtdSecondLevel) with `ias_bits` 39 or 48, its
    /// AGAW; smaller sizes that still start at level 0 or 1 just limit the IOVAs).
    ///
    /// # Errors
    /// [`MapError::IasBits`] / [`MapError::OasBits`] for a size out of range, or an input size
    /// whose root level the format cannot walk ([`PtFormat::root_level_ok`]);
    /// [`MapError::OutOfMemory`] when the root page cannot be allocated.
    pub fn with_format(
        mem: &mut impl DmaMemory,
        cfg: Stage2Config,
        fmt: F,
    ) -> Result<Self, MapError> {
        cfg.validate()?;
        if !fmt.root_level_ok(cfg.start_level()) {
            return Err(MapError::IasBits(cfg.ias_bits));
        }
        let root = mem.alloc_zeroed(TABLE_BYTES, TABLE_BYTES)?;
        Ok(Self {
            fmt,
            root,
            cfg,
            start_level: cfg.start_level(),
            root_word: Meta::EMPTY.encode(),
            linked: 1,
            side_pages: 0,
            retired: PageChain::new(),
            retired_sides: PageChain::new(),
            hint: None,
        })
    }

    /// The descriptor format.
    pub const fn format(&self) -> F {
        self.fmt
    }

    /// The sizes this table was created with.
    pub const fn config(&self) -> Stage2Config {
        self.cfg
    }

    /// Physical address of the root table, for STE.S2TTB (IHI 0070 §5.2) or a VT-d context
    /// entry's SLPTPTR (VT-d §9.3).
    pub const fn root(&self) -> PhysAddr {
        self.root
    }

    /// Level of the root table (0, 1 or 2).
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Table pages this table holds from its [`DmaMemory`]: the root, every table reachable from
    /// it, and the tables waiting for [`reclaim`](Self::reclaim). Side pages are not tables:
    /// see [`bookkeeping_pages`](Self::bookkeeping_pages).
    pub const fn table_pages(&self) -> usize {
        self.linked + self.retired.len()
    }

    /// Side pages this table holds from its [`DmaMemory`] for its per-table counts: one for each
    /// table that links at least one table (never read by the SMMU). All the memory the table
    /// holds is [`table_pages`](Self::table_pages) + this.
    pub const fn bookkeeping_pages(&self) -> usize {
        self.side_pages + self.retired_sides.len()
    }

    /// Tables that [`unmap`](Self::unmap) unlinked and that are not freed yet.
    pub const fn retired_pages(&self) -> usize {
        self.retired.len()
    }

    /// Frees the tables unlinked by earlier [`unmap`](Self::unmap) calls, and the side pages
    /// they gave up. Returns how many tables.
    ///
    /// Call it only once the invalidations those unmaps returned have **completed** (CMD_SYNC
    /// consumed): until then the SMMU's walk caches may still point into the unlinked tables
    /// (IHI 0070 §3.21.1), and freeing them earlier would let it walk whatever reuses the pages.
    pub fn reclaim(&mut self, mem: &mut impl DmaMemory) -> usize {
        self.retired_sides.free_all(mem);
        self.retired.free_all(mem)
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` with `access`.
    ///
    /// Uses a 1 GiB block wherever the IOVA and PA of a 1 GiB-aligned stretch are both aligned
    /// and the stretch lies inside the range, 2 MiB blocks likewise, and 4 KiB pages elsewhere.
    /// All-or-nothing: overlaps are found and the tables the mapping needs are allocated before
    /// anything is written, so on any error the table is unchanged. A new table is filled before
    /// the descriptor linking it is written, with a [`DmaMemory::publish`] in between, so the SMMU
    /// never walks a half-built table. Writing invalid entries needs no TLB maintenance (the SMMU
    /// caches valid translations only, IHI 0070 §3.21.1): the result is always
    /// [`Invalidation::none`], kept as a value so callers treat map and unmap alike.
    ///
    /// # Errors
    /// Checked in this order: [`MapError::Length`] (zero or not a multiple of 4 KiB),
    /// [`MapError::UnalignedIova`], [`MapError::UnalignedPa`], [`MapError::InvalidAccess`]
    /// (empty), [`MapError::IovaOutOfRange`] (beyond `2^ias_bits`), [`MapError::PaOutOfRange`]
    /// (beyond `2^min(oas_bits, 48)`), [`MapError::Overlap`] (names the lowest IOVA of the range
    /// that is already mapped), [`MapError::OutOfMemory`].
    pub fn map(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<Invalidation, MapError> {
        let end = self.check_map(iova, pa, len, access)?;

        let (start, out) = (iova.get(), pa.get());
        // Down while the range lies inside one entry that is already a table (no writes).
        // `word` is the current table's bookkeeping, encoded; `at` is where it is stored (`None`:
        // the root's, in `self`).
        let (mut table, mut level) = (self.root, self.start_level);
        let (mut at, mut word) = (None, self.root_word);
        if let Some(hint) =
            LeafHint::covers(self.hint, start, end, Some(out), self.fmt.min_block_level())
        {
            (table, level, at) = (hint.table, LEAF_LEVEL, Some(hint.at));
            word = mem.read_u64(hint.at);
        }
        while !leaf_run(level, start, end, out, self.fmt.min_block_level()) {
            let size = level_size(level);
            if end - (start & !(size - 1)) > size {
                break;
            }
            let i = index(start, level);
            let raw = mem.read_u64(entry_at(table, i));
            let Descriptor::Table { next } = self.fmt.decode(level, raw) else {
                break;
            };
            let child = child_word_of(word, i);
            word = mem.read_u64(child);
            (table, level, at) = (next, level + 1, Some(child));
        }
        let before = word;
        if leaf_run(level, start, end, out, self.fmt.min_block_level()) {
            // Leaves of this one table: check them, then write them.
            word += ONE_LIVE * write_leaves(self.fmt, mem, table, level, start, end, out, access)?;
            if let (LEAF_LEVEL, Some(at)) = (level, at) {
                let base = start & !(level_size(2) - 1);
                self.hint = Some(LeafHint { base, table, at });
            }
        } else {
            let mut meta = Meta::decode(word);
            self.map_slow(mem, (table, level), &mut meta, (start, end, out), access)?;
            word = meta.encode();
        }
        if word != before {
            match at {
                Some(at) => mem.write_u64(at, word),
                None => self.root_word = word,
            }
        }
        mem.publish();
        Ok(Invalidation::none())
    }

    /// Removes every mapping in `[iova, iova + len)`; unmapped holes in the range are fine.
    ///
    /// A 2 MiB or 1 GiB block only partly inside the range is **split**: a new next-level table
    /// is built that maps the parts of the block outside the range exactly as before (with the
    /// largest blocks that fit), then one 64-bit store replaces the block descriptor with a table
    /// descriptor pointing at it. The caller then invalidates the returned range, which removes
    /// the old block from the TLBs. This is the rule Linux io-pgtable-arm follows for a split
    /// unmap; it changes the size of a live translation without break-before-make, which the SMMU
    /// permits when SMMU_IDR3.BBML is 2 (IHI 0070 §3.21.1.3; QEMU reports 2). The tables a split
    /// needs (at most two per level, one at each end of the range) are allocated before anything
    /// changes, so [`MapError::OutOfMemory`] leaves the table untouched.
    ///
    /// Tables left empty (never the root) are unlinked and retired: they stay allocated until
    /// [`reclaim`](Self::reclaim), to be called after the returned invalidation has completed.
    ///
    /// # Errors
    /// Checked in this order: [`MapError::Length`], [`MapError::UnalignedIova`],
    /// [`MapError::IovaOutOfRange`], [`MapError::OutOfMemory`] (only when a block must be split).
    pub fn unmap(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        len: u64,
    ) -> Result<Unmapped, MapError> {
        let end = self.check_unmap(iova, len)?;
        let start = iova.get();
        // Down while the range lies inside one entry, not the whole of it, that is a table;
        // `path` keeps each table passed (its entry, where its bookkeeping is) to unlink
        // tables the unmap empties on the way back.
        let (mut table, mut level) = (self.root, self.start_level);
        let (mut at, mut word) = (None, self.root_word);
        let mut path = [(PhysAddr(0), 0, None, 0); 3];
        let mut depth = 0;
        if let Some(hint) =
            LeafHint::covers(self.hint, start, end, None, self.fmt.min_block_level())
        {
            // Only when the table cannot become empty: unlinking it needs the path.
            let hinted = mem.read_u64(hint.at);
            if live_of(hinted) > (end - start) >> PAGE_SHIFT {
                (table, level, at, word) = (hint.table, LEAF_LEVEL, Some(hint.at), hinted);
            }
        }
        while level < LEAF_LEVEL {
            let size = level_size(level);
            let entry_start = start & !(size - 1);
            if end - entry_start > size || (start == entry_start && end == entry_start + size) {
                break;
            }
            let i = index(start, level);
            match self.fmt.decode(level, mem.read_u64(entry_at(table, i))) {
                Descriptor::Invalid => {
                    return Ok(Unmapped {
                        bytes: 0,
                        invalidation: Invalidation::none(),
                    })
                }
                // A block partly inside the range: the walk below splits it.
                Descriptor::Leaf { .. } => break,
                Descriptor::Table { next } => {
                    path[depth] = (table, i, at, word);
                    depth += 1;
                    let child = child_word_of(word, i);
                    word = mem.read_u64(child);
                    (table, level, at) = (next, level + 1, Some(child));
                }
            }
        }
        let before = word;
        let mut removed = Removed::default();
        if level == LEAF_LEVEL {
            word -= ONE_LIVE * unmap_pages(self.fmt, mem, table, start, end, &mut removed);
        } else if let Some(slot) = single_block(self.fmt, mem, table, level, start, end) {
            // Exactly one block (or nothing): remove it here.
            if self.fmt.is_present(mem.read_u64(slot)) {
                mem.write_u64(slot, 0);
                word -= ONE_LIVE;
                removed.leaf_removed(level, start, end);
            }
        } else {
            let mut meta = Meta::decode(word);
            removed = self.unmap_slow(mem, (table, level), &mut meta, (start, end))?;
            word = meta.encode();
        }
        if let (LEAF_LEVEL, Some(at)) = (level, at) {
            let base = start & !(level_size(2) - 1);
            self.hint = Some(LeafHint { base, table, at });
        }
        // Unlink the tables left empty, from the bottom up (never the root).
        let mut changed = word != before;
        while live_of(word) == 0 && depth > 0 {
            depth -= 1;
            self.hint = None;
            let (parent, i, parent_at, parent_word) = path[depth];
            mem.write_u64(entry_at(parent, i), 0);
            if let Some(word) = at {
                mem.write_u64(word, 0);
            }
            self.retired.push(mem, table);
            self.linked -= 1;
            removed.table_removed = true;
            let mut meta = Meta::decode(parent_word);
            meta.live -= 1;
            meta.tables -= 1;
            if meta.tables == 0 {
                if let Some(side) = meta.side.take() {
                    self.retired_sides.push(mem, side);
                    self.side_pages -= 1;
                }
            }
            (table, at, word) = (parent, parent_at, meta.encode());
            changed = true;
        }
        if changed {
            match at {
                Some(at) => mem.write_u64(at, word),
                None => self.root_word = word,
            }
        }
        mem.publish();
        Ok(removed.result())
    }

    /// The rest of a map that needs new tables or spans several tables, from `at` = (table,
    /// level) down. Kept out of line so the common path stays small.
    #[inline(never)]
    fn map_slow(
        &mut self,
        mem: &mut impl DmaMemory,
        at: (PhysAddr, u8),
        meta: &mut Meta,
        (start, end, pa): (u64, u64, u64),
        access: Access,
    ) -> Result<(), MapError> {
        let retired = (&mut self.retired, &mut self.retired_sides);
        let mut walk = Walk::new(self.fmt, &mut *mem, retired, access);
        walk.map_descend(at.0, meta, at.1, start, end, pa)?;
        self.linked += walk.linked;
        self.side_pages += walk.sides_added;
        Ok(())
    }

    /// The rest of an unmap that spans several entries or splits a block, from `at` = (table,
    /// level) down. Kept out of line so the common path stays small.
    #[inline(never)]
    fn unmap_slow(
        &mut self,
        mem: &mut impl DmaMemory,
        at: (PhysAddr, u8),
        meta: &mut Meta,
        (start, end): (u64, u64),
    ) -> Result<Removed, MapError> {
        self.hint = None;
        let retired = (&mut self.retired, &mut self.retired_sides);
        let mut walk = Walk::new(self.fmt, &mut *mem, retired, Access::READ);
        walk.unmap_descend(at.0, meta, at.1, start, end)?;
        self.linked = self.linked + walk.linked - walk.unlinked;
        self.side_pages = self.side_pages + walk.sides_added - walk.sides_freed;
        Ok(walk.removed)
    }

    /// How many pages (new tables and their bookkeeping pages) [`map`](Self::map) of the same
    /// arguments would allocate, after every check `map` makes except memory; changes
    /// nothing. A caller mapping several windows at once checks each with this first and makes
    /// sure the sum (an upper bound: windows that share a new table count it once each) can be
    /// allocated.
    ///
    /// # Errors
    /// As [`map`](Self::map), except [`MapError::OutOfMemory`].
    pub fn map_tables(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<usize, MapError> {
        let end = self.check_map(iova, pa, len, access)?;
        let mut walk = Walk::new(
            self.fmt,
            &mut *mem,
            (&mut self.retired, &mut self.retired_sides),
            access,
        );
        walk.pass = Pass::Count(Needed::default());
        let mut meta = Meta::decode(self.root_word);
        walk.map_walk(
            Some(self.root),
            &mut meta,
            self.start_level,
            iova.get(),
            end,
            pa.get(),
        )?;
        let needed = walk.pass.needed();
        Ok(needed.tables + needed.sides)
    }

    /// How many new tables [`unmap`](Self::unmap) of `[iova, iova + len)` would link, that is,
    /// how many blocks it would split (0: it removes whole leaves only). Changes nothing.
    ///
    /// A split replaces a live block with a table in one store. That is only safe without
    /// break-before-make when the SMMU implements IHI 0070 §3.21.1.3 level 2 (IDR3.BBML = 2); a
    /// caller on other hardware uses this to refuse such an unmap.
    ///
    /// # Errors
    /// As [`unmap`](Self::unmap), except [`MapError::OutOfMemory`].
    pub fn split_tables(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        len: u64,
    ) -> Result<usize, MapError> {
        Ok(self.split_needed(mem, iova, len)?.tables)
    }

    /// How many pages [`unmap`](Self::unmap) of `[iova, iova + len)` would allocate: the
    /// tables its block splits link and the bookkeeping side pages of the tables that link
    /// their first table (0: it removes whole leaves only). A caller that unmaps several
    /// ranges as one all-or-nothing batch sets this many pages aside (summed over the ranges,
    /// an upper bound) before it changes anything. Changes nothing.
    ///
    /// # Errors
    /// As [`split_tables`](Self::split_tables).
    pub fn split_pages(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        len: u64,
    ) -> Result<usize, MapError> {
        let n = self.split_needed(mem, iova, len)?;
        Ok(n.tables + n.sides)
    }

    /// The counting pass of an unmap.
    fn split_needed(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        len: u64,
    ) -> Result<Needed, MapError> {
        let end = self.check_unmap(iova, len)?;
        let mut walk = Walk::new(
            self.fmt,
            &mut *mem,
            (&mut self.retired, &mut self.retired_sides),
            Access::READ,
        );
        walk.pass = Pass::Count(Needed::default());
        let mut meta = Meta::decode(self.root_word);
        walk.unmap_walk(self.root, &mut meta, self.start_level, iova.get(), end)?;
        Ok(walk.pass.needed())
    }

    /// Validates a map's arguments, in `map`'s documented order; returns the range's end.
    fn check_map(
        &self,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<u64, MapError> {
        check_length(len)?;
        if !iova.is_aligned(PAGE_SIZE) {
            return Err(MapError::UnalignedIova(iova));
        }
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(MapError::UnalignedPa(pa));
        }
        if access.is_empty() || !Access::all().contains(access) {
            return Err(MapError::InvalidAccess(access));
        }
        let end = self.iova_end(iova, len)?;
        let pa_limit = 1u64 << self.cfg.oas_bits.min(self.fmt.oa_bits());
        if pa.checked_add(len).is_none_or(|e| e.get() > pa_limit) {
            return Err(MapError::PaOutOfRange { pa, len });
        }
        Ok(end)
    }

    /// Validates an unmap's range; returns its end.
    fn check_unmap(&self, iova: Iova, len: u64) -> Result<u64, MapError> {
        check_length(len)?;
        if !iova.is_aligned(PAGE_SIZE) {
            return Err(MapError::UnalignedIova(iova));
        }
        self.iova_end(iova, len)
    }

    /// Checks the per-table counts against the tables themselves (walking every table): for
    /// tests and debugging.
    ///
    /// # Errors
    /// The first table whose recorded counts differ from its entries.
    pub fn check_bookkeeping(&self, mem: &impl DmaMemory) -> Result<(), BookkeepingError> {
        let sides = audit(
            self.fmt,
            mem,
            self.root,
            Meta::decode(self.root_word),
            self.start_level,
        )?;
        if sides != self.side_pages {
            return Err(BookkeepingError {
                table: self.root,
                level: self.start_level,
                recorded: (0, 0, self.side_pages != 0),
                found: (0, 0, sides != 0),
            });
        }
        Ok(())
    }
    /// Where `iova` leads, walking the table as the SMMU would (Arm ARM D8.2), or `None` when it
    /// is unmapped or beyond `2^ias_bits`.
    pub fn translate(&self, mem: &impl DmaMemory, iova: Iova) -> Option<Translation> {
        if iova.get() >> self.cfg.ias_bits != 0 {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            match self
                .fmt
                .decode(level, mem.read_u64(entry_addr(table, level, iova.get())))
            {
                Descriptor::Table { next } if level < LEAF_LEVEL => {
                    table = next;
                    level += 1;
                }
                Descriptor::Leaf { pa, access } => {
                    let size = level_size(level);
                    let pa = PhysAddr(pa.get() + (iova.get() & (size - 1)));
                    return Some(Translation { pa, access, size });
                }
                Descriptor::Table { .. } | Descriptor::Invalid => return None,
            }
        }
    }

    /// Frees every table: the tree, the root and the retired tables.
    ///
    /// The SMMU must no longer use the table: its STE has been changed and invalidated
    /// (CMD_CFGI_STE), and its TLB entries invalidated (CMD_TLBI_S12_VMALL), both completed.
    pub fn destroy(mut self, mem: &mut impl DmaMemory) {
        free_tree(
            self.fmt,
            mem,
            self.root,
            Meta::decode(self.root_word),
            self.start_level,
        );
        self.retired.free_all(mem);
        self.retired_sides.free_all(mem);
    }

    /// End of `[iova, iova + len)`, checked against the input size.
    fn iova_end(&self, iova: Iova, len: u64) -> Result<u64, MapError> {
        match iova.checked_add(len) {
            Some(end) if end.get() <= 1u64 << self.cfg.ias_bits => Ok(end.get()),
            _ => Err(MapError::IovaOutOfRange { iova, len }),
        }
    }
}

/// `len` must be a non-zero multiple of the 4 KiB granule.
fn check_length(len: u64) -> Result<(), MapError> {
    if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Length(len));
    }
    Ok(())
}

/// Index of the entry for `iova` in a table at `level`.
const fn index(iova: u64, level: u8) -> u64 {
    (iova >> level_shift(level)) & (ENTRIES - 1)
}

/// Frees `table` (at `level`, with bookkeeping `meta`), every table below it and their side pages.
fn free_tree(fmt: impl PtFormat, mem: &mut impl DmaMemory, table: PhysAddr, meta: Meta, level: u8) {
    if let Some(side) = meta.side {
        for i in 0..ENTRIES {
            if let Descriptor::Table { next } = fmt.decode(level, mem.read_u64(entry_at(table, i)))
            {
                let child = Meta::decode(mem.read_u64(meta.child_word(i)));
                free_tree(fmt, mem, next, child, level + 1);
            }
        }
        mem.free(side, TABLE_BYTES);
    }
    mem.free(table, TABLE_BYTES);
}

/// Compares the bookkeeping of `table` and everything below it with their entries; returns the
/// number of side pages found.
fn audit(
    fmt: impl PtFormat,
    mem: &impl DmaMemory,
    table: PhysAddr,
    meta: Meta,
    level: u8,
) -> Result<usize, BookkeepingError> {
    let (mut live, mut tables, mut sides) = (0, 0, usize::from(meta.side.is_some()));
    for i in 0..ENTRIES {
        match fmt.decode(level, mem.read_u64(entry_at(table, i))) {
            Descriptor::Invalid => {}
            Descriptor::Leaf { .. } => live += 1,
            Descriptor::Table { next } => {
                live += 1;
                tables += 1;
                if meta.side.is_some() {
                    let child = Meta::decode(mem.read_u64(meta.child_word(i)));
                    sides += audit(fmt, mem, next, child, level + 1)?;
                }
            }
        }
    }
    let found = (live, tables, tables > 0);
    let recorded = (meta.live, meta.tables, meta.side.is_some());
    if found != recorded {
        return Err(BookkeepingError {
            table,
            level,
            recorded,
            found,
        });
    }
    Ok(sides)
}

/// What a counting pass found the change needs.
#[derive(Clone, Copy, Default, Debug)]
struct Needed {
    /// New tables.
    tables: usize,
    /// New side pages.
    sides: usize,
}

/// Which of the two passes of a change is running.
enum Pass {
    /// Counting the pages the change needs; nothing is written.
    Count(Needed),
    /// Applying the change, taking new pages from those reserved after counting.
    Apply(PageChain),
}

/// Stands for a side page that a counting pass has decided to create.
const PLANNED: PhysAddr = PhysAddr(0);

impl Pass {
    const fn is_apply(&self) -> bool {
        matches!(self, Self::Apply(_))
    }

    /// The count of a counting pass.
    fn needed(&self) -> Needed {
        match self {
            Self::Count(n) => *n,
            Self::Apply(_) => Needed::default(),
        }
    }

    /// A new, zeroed page: `None` while counting (the page does not exist yet; a walk below a new
    /// table sees only invalid entries), a reserved page while applying.
    fn new_page(
        &mut self,
        mem: &mut impl DmaMemory,
        side: bool,
    ) -> Result<Option<PhysAddr>, MapError> {
        match self {
            Self::Count(n) => {
                if side {
                    n.sides += 1;
                } else {
                    n.tables += 1;
                }
                Ok(None)
            }
            Self::Apply(spare) => {
                debug_assert!(spare.len() > 0, "the counting pass reserved too few pages");
                match spare.pop(mem) {
                    Some(page) => Ok(Some(page)),
                    // Not reached: the counting pass took the same decisions. Allocating keeps
                    // this total rather than panicking.
                    None => Ok(Some(mem.alloc_zeroed(TABLE_BYTES, TABLE_BYTES)?)),
                }
            }
        }
    }

    /// Frees reserved pages the pass did not use (none, when the count was exact).
    fn release(&mut self, mem: &mut impl DmaMemory) {
        if let Self::Apply(spare) = self {
            debug_assert_eq!(spare.len(), 0, "the counting pass reserved too many pages");
            spare.free_all(mem);
        }
    }
}

/// One change in progress: the memory, the pass, and what the change did so far.
struct Walk<'m, M: DmaMemory, F: PtFormat> {
    fmt: F,
    mem: &'m mut M,
    pass: Pass,
    retired: &'m mut PageChain,
    retired_sides: &'m mut PageChain,
    /// The access of a map.
    access: Access,
    /// A page descriptor for output address 0 with the map's access (OR the address in).
    page_bits: u64,
    /// New tables linked into the tree (by maps and splits).
    linked: usize,
    /// Tables unlinked from the tree (and retired).
    unlinked: usize,
    /// Side pages taken and freed.
    sides_added: usize,
    sides_freed: usize,
    /// What the unmap removed so far.
    removed: Removed,
}

impl<'m, M: DmaMemory, F: PtFormat> Walk<'m, M, F> {
    fn new(
        fmt: F,
        mem: &'m mut M,
        retired: (&'m mut PageChain, &'m mut PageChain),
        access: Access,
    ) -> Self {
        Self {
            fmt,
            mem,
            pass: Pass::Apply(PageChain::new()),
            retired: retired.0,
            retired_sides: retired.1,
            access,
            page_bits: fmt.leaf_bits(LEAF_LEVEL, access),
            linked: 0,
            unlinked: 0,
            sides_added: 0,
            sides_freed: 0,
            removed: Removed::default(),
        }
    }

    /// Runs `f` twice from `table`: counting, then (after reserving what the count asks for)
    /// applying. `meta` is updated only by the applying pass.
    fn two_pass(
        &mut self,
        meta: &mut Meta,
        f: impl Fn(&mut Self, &mut Meta) -> Result<(), MapError>,
    ) -> Result<(), MapError> {
        self.pass = Pass::Count(Needed::default());
        let mut scratch = *meta;
        f(self, &mut scratch)?;
        let needed = self.pass.needed();
        self.pass = Pass::Apply(PageChain::allocate(self.mem, needed.tables + needed.sides)?);
        let applied = f(self, meta);
        let mut pass = core::mem::replace(&mut self.pass, Pass::Apply(PageChain::new()));
        pass.release(self.mem);
        applied
    }

    /// Gives the table with bookkeeping `meta` a side page if it has none (it is about to link
    /// its first table).
    fn ensure_side(&mut self, meta: &mut Meta) -> Result<(), MapError> {
        if meta.side.is_none() {
            let page = self.pass.new_page(self.mem, true)?;
            if page.is_some() {
                self.sides_added += 1;
            }
            meta.side = Some(page.unwrap_or(PLANNED));
        }
        Ok(())
    }

    /// Gives up the side page of a table that no longer links any table.
    fn drop_unused_side(&mut self, meta: &mut Meta) {
        if meta.tables == 0 {
            if let Some(side) = meta.side.take() {
                self.retire_side(side);
            }
        }
    }

    /// Queues a side page for [`Stage2Table::reclaim`].
    fn retire_side(&mut self, side: PhysAddr) {
        self.retired_sides.push(self.mem, side);
        self.sides_freed += 1;
    }

    // ---------------------------------------------------------------- map

    /// Maps `[start, end)` → `pa..`, which lies inside `table` (at `level`, bookkeeping `meta`):
    /// goes down while the range lies inside one entry that is a table, then maps there.
    fn map_descend(
        &mut self,
        table: PhysAddr,
        meta: &mut Meta,
        level: u8,
        start: u64,
        end: u64,
        pa: u64,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let entry_start = start & !(size - 1);
        if level < LEAF_LEVEL
            && end - entry_start <= size
            && !leaf_run(level, start, end, pa, self.fmt.min_block_level())
        {
            let i = index(start, level);
            match self
                .fmt
                .decode(level, self.mem.read_u64(entry_at(table, i)))
            {
                Descriptor::Leaf { .. } => return Err(MapError::Overlap { iova: Iova(start) }),
                Descriptor::Table { next } => {
                    let word = meta.child_word(i);
                    let before = Meta::decode(self.mem.read_u64(word));
                    let mut child = before;
                    self.map_descend(next, &mut child, level + 1, start, end, pa)?;
                    if child != before {
                        self.mem.write_u64(word, child.encode());
                    }
                    return Ok(());
                }
                Descriptor::Invalid => {}
            }
        }
        if leaf_run(level, start, end, pa, self.fmt.min_block_level()) {
            meta.live += write_leaves(
                self.fmt,
                self.mem,
                table,
                level,
                start,
                end,
                pa,
                self.access,
            )?;
            return Ok(());
        }
        self.two_pass(meta, |w, m| {
            w.map_walk(Some(table), m, level, start, end, pa)
        })
    }

    /// One pass of a map of `[start, end)` → `pa..`, which lies inside `table` (at `level`).
    /// `table` is `None` for a table the counting pass has decided to create.
    fn map_walk(
        &mut self,
        table: Option<PhysAddr>,
        meta: &mut Meta,
        level: u8,
        start: u64,
        end: u64,
        pa: u64,
    ) -> Result<(), MapError> {
        let apply = self.pass.is_apply();
        if level == LEAF_LEVEL {
            // A new last-level table only holds pages: nothing to check or count.
            let Some(table) = table else { return Ok(()) };
            if apply {
                // The counting pass found every target entry invalid.
                let first = index(start, level);
                let bits = self.page_bits;
                let n = (end - start) >> PAGE_SHIFT;
                for k in 0..n {
                    let out = pa + (k << PAGE_SHIFT);
                    self.mem.write_u64(entry_at(table, first + k), bits | out);
                }
                meta.live += n;
                return Ok(());
            }
            return self.map_leaves_check(table, start, end);
        }
        let size = level_size(level);
        let mut cur = start;
        while cur < end {
            let entry_start = cur & !(size - 1);
            let chunk_end = end.min(entry_start + size);
            let out = pa + (cur - start);
            let i = index(cur, level);
            let raw = table.map_or(0, |t| self.mem.read_u64(entry_at(t, i)));
            match self.fmt.decode(level, raw) {
                Descriptor::Leaf { .. } => return Err(MapError::Overlap { iova: Iova(cur) }),
                Descriptor::Table { next } => {
                    let word = meta.child_word(i);
                    let mut child = Meta::decode(self.mem.read_u64(word));
                    self.map_walk(Some(next), &mut child, level + 1, cur, chunk_end, out)?;
                    if apply {
                        self.mem.write_u64(word, child.encode());
                    }
                }
                Descriptor::Invalid => {
                    let whole_block = cur == entry_start
                        && chunk_end - cur == size
                        && out & (size - 1) == 0
                        && level >= self.fmt.min_block_level();
                    if whole_block {
                        if let (true, Some(t)) = (apply, table) {
                            self.mem.write_u64(
                                entry_at(t, i),
                                self.fmt.leaf_bits(level, self.access) | out,
                            );
                        }
                        meta.live += 1;
                    } else {
                        self.ensure_side(meta)?;
                        let new = self.pass.new_page(self.mem, false)?;
                        let mut child = Meta::EMPTY;
                        self.map_walk(new, &mut child, level + 1, cur, chunk_end, out)?;
                        if let (Some(t), Some(new)) = (table, new) {
                            self.mem.write_u64(meta.child_word(i), child.encode());
                            // The filled table must be visible before the descriptor linking it
                            // (Linux io-pgtable-arm puts a dma_wmb() at the same place).
                            self.mem.publish();
                            self.mem
                                .write_u64(entry_at(t, i), self.fmt.encode_table(new));
                            self.linked += 1;
                        }
                        meta.live += 1;
                        meta.tables += 1;
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(())
    }

    /// The counting pass's check of pages `[start, end)` of an existing last-level table.
    fn map_leaves_check(&self, table: PhysAddr, start: u64, end: u64) -> Result<(), MapError> {
        let first = index(start, LEAF_LEVEL);
        for k in 0..(end - start) >> PAGE_SHIFT {
            if self
                .fmt
                .is_present(self.mem.read_u64(entry_at(table, first + k)))
            {
                let iova = start + (k << PAGE_SHIFT);
                return Err(MapError::Overlap { iova: Iova(iova) });
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------- unmap

    fn retire(&mut self, table: PhysAddr) {
        self.retired.push(self.mem, table);
        self.unlinked += 1;
    }

    /// Unlinks the emptied child table `next` of entry `i` of `table` (bookkeeping `meta`).
    fn unlink_empty(
        &mut self,
        table: PhysAddr,
        meta: &mut Meta,
        i: u64,
        next: PhysAddr,
        at: u64,
        bytes_before: u64,
    ) {
        self.mem.write_u64(entry_at(table, i), 0);
        self.mem.write_u64(meta.child_word(i), 0);
        self.retire(next);
        self.removed.table_removed(at, bytes_before);
        meta.live -= 1;
        meta.tables -= 1;
    }

    /// Unmaps `[start, end)`, which lies inside `table` (at `level`, bookkeeping `meta`): goes
    /// down while the range lies inside one entry, not the whole of it, that is a table.
    fn unmap_descend(
        &mut self,
        table: PhysAddr,
        meta: &mut Meta,
        level: u8,
        start: u64,
        end: u64,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let entry_start = start & !(size - 1);
        let single = end - entry_start <= size;
        let whole = start == entry_start && end == entry_start + size;
        if level < LEAF_LEVEL && single && !whole {
            let i = index(start, level);
            match self
                .fmt
                .decode(level, self.mem.read_u64(entry_at(table, i)))
            {
                Descriptor::Invalid => return Ok(()),
                Descriptor::Table { next } => {
                    let word = meta.child_word(i);
                    let before = Meta::decode(self.mem.read_u64(word));
                    let mut child = before;
                    let bytes_before = self.removed.bytes;
                    self.unmap_descend(next, &mut child, level + 1, start, end)?;
                    if child.live == 0 {
                        self.unlink_empty(table, meta, i, next, start, bytes_before);
                        self.drop_unused_side(meta);
                    } else if child != before {
                        self.mem.write_u64(word, child.encode());
                    }
                    return Ok(());
                }
                // A block partly inside the range: split below.
                Descriptor::Leaf { .. } => {}
            }
        }
        if level == LEAF_LEVEL || (start & (size - 1) == 0 && end & (size - 1) == 0) {
            // Every entry is whole: nothing to split, nothing to allocate.
            return self.unmap_walk(table, meta, level, start, end);
        }
        self.two_pass(meta, |w, m| w.unmap_walk(table, m, level, start, end))
    }

    /// One pass of an unmap of `[start, end)`, which lies inside `table` (at `level`).
    fn unmap_walk(
        &mut self,
        table: PhysAddr,
        meta: &mut Meta,
        level: u8,
        start: u64,
        end: u64,
    ) -> Result<(), MapError> {
        let apply = self.pass.is_apply();
        if level == LEAF_LEVEL {
            if apply {
                meta.live -= unmap_pages(self.fmt, self.mem, table, start, end, &mut self.removed);
            }
            return Ok(());
        }
        let size = level_size(level);
        let mut cur = start;
        while cur < end {
            let entry_start = cur & !(size - 1);
            let chunk_end = end.min(entry_start + size);
            let whole = cur == entry_start && chunk_end == entry_start + size;
            let i = index(cur, level);
            let slot = entry_at(table, i);
            match self.fmt.decode(level, self.mem.read_u64(slot)) {
                Descriptor::Invalid => {}
                Descriptor::Leaf { .. } if whole => {
                    if apply {
                        self.mem.write_u64(slot, 0);
                        meta.live -= 1;
                        self.removed.leaf_removed(level, cur, chunk_end);
                    }
                }
                Descriptor::Leaf { pa, access } => {
                    // A block partly inside the range (pages are always whole: the range is
                    // page-aligned). Build its replacement off-line, then swap it in.
                    self.ensure_side(meta)?;
                    let new = self.pass.new_page(self.mem, false)?;
                    let mut child = Meta::EMPTY;
                    let hole = (cur, chunk_end);
                    let leaf = (pa.get(), access);
                    self.split(new, &mut child, level + 1, entry_start, leaf, hole)?;
                    if let Some(new) = new {
                        self.mem.write_u64(meta.child_word(i), child.encode());
                        self.mem.publish();
                        self.mem.write_u64(slot, self.fmt.encode_table(new));
                        self.linked += 1;
                        meta.tables += 1;
                        self.removed.leaf_removed(level, cur, chunk_end);
                    }
                }
                Descriptor::Table { next } if whole => {
                    if apply {
                        let word = meta.child_word(i);
                        let child = Meta::decode(self.mem.read_u64(word));
                        let bytes_before = self.removed.bytes;
                        self.mem.write_u64(slot, 0);
                        self.mem.write_u64(word, 0);
                        self.retire_tree(next, child, level + 1, entry_start);
                        self.removed.table_removed(cur, bytes_before);
                        meta.live -= 1;
                        meta.tables -= 1;
                    }
                }
                Descriptor::Table { next } => {
                    let word = meta.child_word(i);
                    let before = Meta::decode(self.mem.read_u64(word));
                    let mut child = before;
                    let bytes_before = self.removed.bytes;
                    self.unmap_walk(next, &mut child, level + 1, cur, chunk_end)?;
                    if apply {
                        if child.live == 0 {
                            self.unlink_empty(table, meta, i, next, cur, bytes_before);
                        } else if child != before {
                            self.mem.write_u64(word, child.encode());
                        }
                    }
                }
            }
            cur = chunk_end;
        }
        if apply {
            self.drop_unused_side(meta);
        }
        Ok(())
    }

    /// Fills `table` (at `level`, covering `base..`) with the mapping of a split block, `base`
    /// → `pa..` with the access of `leaf` = (pa, access), except for the IOVAs in `hole`.
    /// `table` is `None` while counting.
    fn split(
        &mut self,
        table: Option<PhysAddr>,
        meta: &mut Meta,
        level: u8,
        base: u64,
        leaf: (u64, Access),
        hole: (u64, u64),
    ) -> Result<(), MapError> {
        if table.is_none() && level == LEAF_LEVEL {
            return Ok(());
        }
        let (pa, access) = leaf;
        let size = level_size(level);
        // The leaves of a split block keep its access, with this level's leaf encoding (a
        // VMSAv8 page sets the type bit a block clears, Arm ARM D8.3; a VT-d PTE has no PS,
        // VT-d §9.8).
        let leaf_bits = self.fmt.leaf_bits(level, access);
        for i in 0..ENTRIES {
            let (start, end) = (base + i * size, base + (i + 1) * size);
            let out = pa + i * size;
            let inside = hole.0 <= start && end <= hole.1;
            let outside = end <= hole.0 || start >= hole.1;
            if inside {
                continue;
            }
            if outside || level == LEAF_LEVEL {
                if let Some(table) = table {
                    self.mem.write_u64(entry_at(table, i), leaf_bits | out);
                }
                meta.live += 1;
            } else {
                self.ensure_side(meta)?;
                let new = self.pass.new_page(self.mem, false)?;
                let mut child = Meta::EMPTY;
                let sub_hole = (hole.0.max(start), hole.1.min(end));
                self.split(new, &mut child, level + 1, start, (out, access), sub_hole)?;
                if let (Some(table), Some(new)) = (table, new) {
                    self.mem.write_u64(meta.child_word(i), child.encode());
                    self.mem.publish();
                    self.mem
                        .write_u64(entry_at(table, i), self.fmt.encode_table(new));
                    self.linked += 1;
                }
                meta.live += 1;
                meta.tables += 1;
            }
        }
        Ok(())
    }

    /// Retires `table` (at `level`, covering `base..`, already unlinked) and every table below
    /// it, counting the leaves they held as removed, and frees their side pages.
    fn retire_tree(&mut self, table: PhysAddr, meta: Meta, level: u8, base: u64) {
        if level == LEAF_LEVEL {
            // All pages: the count gives the bytes; only the ends are read, for the range.
            let valid = |i: &u64| self.fmt.is_present(self.mem.read_u64(entry_at(table, *i)));
            if let (Some(first), Some(last)) =
                ((0..ENTRIES).find(valid), (0..ENTRIES).rev().find(valid))
            {
                self.removed.bytes += meta.live << PAGE_SHIFT;
                self.removed.leaf_levels |= 1 << LEAF_LEVEL;
                self.removed.touch(
                    base + (first << PAGE_SHIFT),
                    base + ((last + 1) << PAGE_SHIFT),
                );
            }
        } else {
            let size = level_size(level);
            let mut seen = 0;
            for i in 0..ENTRIES {
                if seen == meta.live {
                    break;
                }
                let start = base + i * size;
                match self
                    .fmt
                    .decode(level, self.mem.read_u64(entry_at(table, i)))
                {
                    Descriptor::Table { next } => {
                        seen += 1;
                        let child = Meta::decode(self.mem.read_u64(meta.child_word(i)));
                        self.retire_tree(next, child, level + 1, start);
                    }
                    Descriptor::Leaf { .. } => {
                        seen += 1;
                        self.removed.leaf_removed(level, start, start + size);
                    }
                    Descriptor::Invalid => {}
                }
            }
            if let Some(side) = meta.side {
                self.retire_side(side);
            }
        }
        // After reading entry 0: retiring overwrites it with the chain link.
        self.retire(table);
    }
}

/// What an unmap removed: bytes, the IOVA span, leaf levels, and whether a table went.
#[derive(Clone, Copy, Debug)]
struct Removed {
    /// Bytes of IOVA whose leaf was removed.
    bytes: u64,
    /// Lowest and end of the IOVAs whose translation was removed.
    lo: u64,
    hi: u64,
    /// Bit `n`: a leaf at level `n` was removed or replaced.
    leaf_levels: u8,
    /// A table descriptor was removed.
    table_removed: bool,
}

impl Default for Removed {
    fn default() -> Self {
        Self {
            bytes: 0,
            lo: u64::MAX,
            hi: 0,
            leaf_levels: 0,
            table_removed: false,
        }
    }
}

impl Removed {
    fn result(&self) -> Unmapped {
        let invalidation = if self.lo < self.hi {
            Invalidation::new(
                Iova(self.lo),
                self.hi - self.lo,
                !self.table_removed,
                self.leaf_levels,
            )
        } else {
            Invalidation::none()
        };
        Unmapped {
            bytes: self.bytes,
            invalidation,
        }
    }

    fn touch(&mut self, start: u64, end: u64) {
        self.lo = self.lo.min(start);
        self.hi = self.hi.max(end);
    }

    fn leaf_removed(&mut self, level: u8, start: u64, end: u64) {
        self.bytes += end - start;
        self.leaf_levels |= 1 << level;
        self.touch(start, end);
    }

    /// A table descriptor for the entry containing `at` was removed. `bytes_before` is
    /// [`Self::bytes`] before the table's leaves were counted: if it had none (never the case
    /// while every non-root table holds a mapping), the range still names one of its IOVAs so a
    /// non-leaf invalidation reaches the walk-cache entry.
    fn table_removed(&mut self, at: u64, bytes_before: u64) {
        self.table_removed = true;
        if self.bytes == bytes_before {
            self.touch(at, at + PAGE_SIZE);
        }
    }
}

/// Maps `[start, end)` → `pa..` as leaves of `table` itself (at `level`: pages at level 3, else
/// blocks whose size divides the range and the PA): checks every target entry, then writes them.
/// Returns how many it wrote.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_leaves(
    fmt: impl PtFormat,
    mem: &mut impl DmaMemory,
    table: PhysAddr,
    level: u8,
    start: u64,
    end: u64,
    pa: u64,
    access: Access,
) -> Result<u64, MapError> {
    let shift = level_shift(level);
    let first = index(start, level);
    let n = (end - start) >> shift;
    for k in 0..n {
        let raw = mem.read_u64(entry_at(table, first + k));
        if fmt.is_present(raw) {
            let at = start + (k << shift);
            return Err(MapError::Overlap {
                iova: Iova(first_mapped(fmt, mem, level, raw, at)),
            });
        }
    }
    let bits = fmt.leaf_bits(level, access);
    for k in 0..n {
        mem.write_u64(entry_at(table, first + k), bits | (pa + (k << shift)));
    }
    Ok(n)
}

/// The lowest mapped IOVA under the valid descriptor `raw` of a table at `level`, whose entry
/// starts at `at`. Tables below the root are never empty, so one exists.
fn first_mapped(fmt: impl PtFormat, mem: &impl DmaMemory, level: u8, raw: u64, at: u64) -> u64 {
    let Descriptor::Table { next } = fmt.decode(level, raw) else {
        return at;
    };
    let shift = level_shift(level + 1);
    for i in 0..ENTRIES {
        let raw = mem.read_u64(entry_at(next, i));
        if fmt.is_present(raw) {
            return first_mapped(fmt, mem, level + 1, raw, at + (i << shift));
        }
    }
    at
}

/// Removes the pages `[start, end)` of the last-level `table`, recording them in `removed`.
/// Returns how many were valid.
#[inline]
fn unmap_pages(
    fmt: impl PtFormat,
    mem: &mut impl DmaMemory,
    table: PhysAddr,
    start: u64,
    end: u64,
    removed: &mut Removed,
) -> u64 {
    let first = index(start, LEAF_LEVEL);
    let (mut lo, mut hi, mut count) = (u64::MAX, 0, 0);
    for k in 0..(end - start) >> PAGE_SHIFT {
        let slot = entry_at(table, first + k);
        if fmt.is_present(mem.read_u64(slot)) {
            mem.write_u64(slot, 0);
            let at = start + (k << PAGE_SHIFT);
            lo = lo.min(at);
            hi = at + PAGE_SIZE;
            count += 1;
        }
    }
    if count > 0 {
        removed.bytes += count << PAGE_SHIFT;
        removed.leaf_levels |= 1 << LEAF_LEVEL;
        removed.touch(lo, hi);
    }
    count
}

/// The entry of `table` (at `level`, 1 or 2) that `[start, end)` is exactly, when it holds a
/// block or nothing (not a table). Kept out of line: only unmaps of whole blocks use it.
#[inline(never)]
fn single_block(
    fmt: impl PtFormat,
    mem: &impl DmaMemory,
    table: PhysAddr,
    level: u8,
    start: u64,
    end: u64,
) -> Option<PhysAddr> {
    let size = level_size(level);
    if level < fmt.min_block_level() || start & (size - 1) != 0 || end - start != size {
        return None;
    }
    let slot = entry_at(table, index(start, level));
    match fmt.decode(level, mem.read_u64(slot)) {
        Descriptor::Leaf { .. } | Descriptor::Invalid => Some(slot),
        Descriptor::Table { .. } => None,
    }
}

/// Whether `[start, end)` → `pa..` maps as leaves of one level-`level` table alone: pages at the
/// last level, else blocks whose size divides the range's ends and the PA (the largest leaves
/// that fit, as [`Stage2Table::map`] promises, because the descent stopped above any larger one).
/// `min_block` is the format's [`PtFormat::min_block_level`].
const fn leaf_run(level: u8, start: u64, end: u64, pa: u64, min_block: u8) -> bool {
    let mask = level_size(level) - 1;
    level == LEAF_LEVEL || (level >= min_block && (start | end | pa) & mask == 0)
}

// The walk arithmetic above relies on whole tables covering aligned, non-overflowing ranges.
const _: () = assert!(PAGE_SHIFT == 12 && PAGE_SIZE == 4096);
