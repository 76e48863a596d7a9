//! [`Stage2Table`]: one stage-2 translation table hierarchy and its map/unmap/translate walks.
//!
//! Each changing operation runs the same walk twice. The first pass changes nothing: it checks
//! for overlaps and counts the tables the change needs. The tables are then allocated (a refusal
//! here changes nothing either), and the second pass applies the change, taking tables from that
//! reserve. Because both passes are the same code over the same table state, the count is exact
//! and the second pass cannot fail part-way.

#[cfg(test)]
mod tests;

use crate::config::Stage2Config;
use crate::descriptor::{decode, encode_leaf, encode_table, Descriptor, LEAF_LEVEL, VALID};
use crate::error::MapError;
use crate::geometry::{
    entry_addr, entry_at, level_shift, level_size, ENTRIES, MIN_BLOCK_LEVEL, PAGE_SHIFT,
    TABLE_BYTES,
};
use crate::invalidation::{Invalidation, Unmapped};
use crate::page_chain::PageChain;
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

/// A stage-2 translation table hierarchy for one translation domain (one STE.S2TTB).
///
/// All memory is reached through the [`DmaMemory`] passed to each call, which must be the same
/// one every time. Dropping the value leaks its tables: call [`destroy`](Self::destroy).
#[derive(Debug)]
pub struct Stage2Table {
    root: PhysAddr,
    cfg: Stage2Config,
    start_level: u8,
    /// Tables reachable from the root, the root included.
    linked: usize,
    /// Tables unlinked by [`unmap`](Self::unmap), waiting for [`reclaim`](Self::reclaim).
    retired: PageChain,
}

impl Stage2Table {
    /// Allocates an empty root table for `cfg`.
    ///
    /// # Errors
    /// [`MapError::IasBits`] / [`MapError::OasBits`] for a size out of range,
    /// [`MapError::OutOfMemory`] when the root page cannot be allocated.
    pub fn new(mem: &mut impl DmaMemory, cfg: Stage2Config) -> Result<Self, MapError> {
        cfg.validate()?;
        let root = mem.alloc_zeroed(TABLE_BYTES, TABLE_BYTES)?;
        Ok(Self {
            root,
            cfg,
            start_level: cfg.start_level(),
            linked: 1,
            retired: PageChain::new(),
        })
    }

    /// The sizes this table was created with.
    pub const fn config(&self) -> Stage2Config {
        self.cfg
    }

    /// Physical address of the root table, for STE.S2TTB (IHI 0070 §5.2).
    pub const fn root(&self) -> PhysAddr {
        self.root
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

    /// Level of the root table (0, 1 or 2).
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Table pages this table holds from its [`DmaMemory`]: the root, every table reachable from
    /// it, and the tables waiting for [`reclaim`](Self::reclaim).
    pub const fn table_pages(&self) -> usize {
        self.linked + self.retired.len()
    }

    /// Tables that [`unmap`](Self::unmap) unlinked and that are not freed yet.
    pub const fn retired_pages(&self) -> usize {
        self.retired.len()
    }

    /// Frees the tables unlinked by earlier [`unmap`](Self::unmap) calls. Returns how many.
    ///
    /// Call it only once the invalidations those unmaps returned have **completed** (CMD_SYNC
    /// consumed): until then the SMMU's walk caches may still point into the unlinked tables
    /// (IHI 0070 §3.21.1), and freeing them earlier would let it walk whatever reuses the pages.
    pub fn reclaim(&mut self, mem: &mut impl DmaMemory) -> usize {
        self.retired.free_all(mem)
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` with `access`.
    ///
    /// Uses a 1 GiB block wherever the IOVA and PA of a 1 GiB-aligned stretch are both aligned
    /// and the stretch lies inside the range, 2 MiB blocks likewise, and 4 KiB pages elsewhere.
    /// All-or-nothing: the tables the mapping needs are allocated before anything is written, so
    /// on any error the table is unchanged. A new table is filled before the descriptor linking
    /// it is written, with a [`DmaMemory::publish`] in between, so the SMMU never walks a
    /// half-built table. Writing invalid entries needs no TLB maintenance (the SMMU caches valid
    /// translations only, IHI 0070 §3.21.1): the result is always [`Invalidation::none`], kept as
    /// a value so callers treat map and unmap alike.
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
        let (end, needed) = self.count_map(mem, iova, pa, len, access)?;
        let spare = PageChain::allocate(mem, needed)?;

        let mut apply = MapWalk {
            mem: &mut *mem,
            pass: Pass::Apply(spare),
            access,
            linked: 0,
        };
        let applied = apply.walk(Some(self.root), self.start_level, iova.get(), end, pa.get());
        self.linked += apply.linked;
        let mut pass = apply.pass;
        pass.release(mem);
        mem.publish();
        applied.map(|()| Invalidation::none())
    }

    /// How many new tables [`map`](Self::map) of the same arguments would allocate, after
    /// every check `map` makes except memory; changes nothing. A caller mapping several windows
    /// at once checks each with this first and makes sure the sum (an upper bound: windows
    /// that share a new table count it once each) can be allocated.
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
        self.count_map(mem, iova, pa, len, access)
            .map(|(_, tables)| tables)
    }

    /// The checking pass of a map: validates the arguments and counts the tables the mapping
    /// needs, writing nothing. Returns the range's end and that count.
    fn count_map(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        access: Access,
    ) -> Result<(u64, usize), MapError> {
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
        let pa_limit = 1u64 << self.cfg.pa_bits();
        if pa.checked_add(len).is_none_or(|e| e.get() > pa_limit) {
            return Err(MapError::PaOutOfRange { pa, len });
        }
        let mut count = MapWalk {
            mem: &mut *mem,
            pass: Pass::Count(0),
            access,
            linked: 0,
        };
        count.walk(Some(self.root), self.start_level, iova.get(), end, pa.get())?;
        Ok((end, count.pass.tables()))
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
        let (end, needed) = self.count_unmap(mem, iova, len)?;
        let spare = PageChain::allocate(mem, needed)?;

        let mut apply = UnmapWalk::new(&mut *mem, Pass::Apply(spare), &mut self.retired);
        let applied = apply.walk(self.root, self.start_level, iova.get(), end);
        let unmapped = apply.result();
        self.linked = self.linked + apply.linked - apply.unlinked;
        let mut pass = apply.pass;
        pass.release(mem);
        mem.publish();
        applied.map(|()| unmapped)
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
        self.count_unmap(mem, iova, len).map(|(_, tables)| tables)
    }

    /// The checking pass of an unmap: validates the range and counts the tables its splits
    /// need, writing nothing. Returns the range's end and that count.
    fn count_unmap(
        &mut self,
        mem: &mut impl DmaMemory,
        iova: Iova,
        len: u64,
    ) -> Result<(u64, usize), MapError> {
        check_length(len)?;
        if !iova.is_aligned(PAGE_SIZE) {
            return Err(MapError::UnalignedIova(iova));
        }
        let end = self.iova_end(iova, len)?;
        let mut count = UnmapWalk::new(&mut *mem, Pass::Count(0), &mut self.retired);
        count.walk(self.root, self.start_level, iova.get(), end)?;
        Ok((end, count.pass.tables()))
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
            match decode(level, mem.read_u64(entry_addr(table, level, iova.get()))) {
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
        free_tree(mem, self.root, self.start_level);
        self.retired.free_all(mem);
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

/// Frees `table` (at `level`) and every table below it.
fn free_tree(mem: &mut impl DmaMemory, table: PhysAddr, level: u8) {
    if level < LEAF_LEVEL {
        for i in 0..ENTRIES {
            if let Descriptor::Table { next } = decode(level, mem.read_u64(entry_at(table, i))) {
                free_tree(mem, next, level + 1);
            }
        }
    }
    mem.free(table, TABLE_BYTES);
}

/// Which of the two passes of a change is running.
enum Pass {
    /// Counting the new tables the change needs; nothing is written.
    Count(usize),
    /// Applying the change, taking new tables from the pages reserved after counting.
    Apply(PageChain),
}

impl Pass {
    const fn is_apply(&self) -> bool {
        matches!(self, Self::Apply(_))
    }

    /// The count of a counting pass.
    const fn tables(&self) -> usize {
        match self {
            Self::Count(n) => *n,
            Self::Apply(_) => 0,
        }
    }

    /// A new, zeroed table: `None` while counting (the table does not exist yet; a walk below it
    /// sees only invalid entries), a reserved page while applying.
    fn new_table(&mut self, mem: &mut impl DmaMemory) -> Result<Option<PhysAddr>, MapError> {
        match self {
            Self::Count(n) => {
                *n += 1;
                Ok(None)
            }
            Self::Apply(spare) => {
                debug_assert!(spare.len() > 0, "the counting pass reserved too few tables");
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
            debug_assert_eq!(spare.len(), 0, "the counting pass reserved too many tables");
            spare.free_all(mem);
        }
    }
}

/// One pass of [`Stage2Table::map`].
struct MapWalk<'m, M: DmaMemory> {
    mem: &'m mut M,
    pass: Pass,
    access: Access,
    /// New tables linked into the tree.
    linked: usize,
}

impl<M: DmaMemory> MapWalk<'_, M> {
    /// Maps `[start, end)`, which lies inside `table` (at `level`), to `pa..`. `table` is `None`
    /// for a table the counting pass has decided to create.
    fn walk(
        &mut self,
        table: Option<PhysAddr>,
        level: u8,
        start: u64,
        end: u64,
        pa: u64,
    ) -> Result<(), MapError> {
        if table.is_none() && level == LEAF_LEVEL {
            // A new last-level table only holds pages: nothing more to count.
            return Ok(());
        }
        let size = level_size(level);
        let mut cur = start;
        while cur < end {
            let entry_start = cur & !(size - 1);
            let chunk_end = end.min(entry_start + size);
            let out = pa + (cur - start);
            let slot = table.map(|t| entry_addr(t, level, cur));
            let raw = slot.map_or(0, |s| self.mem.read_u64(s));
            match decode(level, raw) {
                Descriptor::Leaf { .. } => return Err(MapError::Overlap { iova: Iova(cur) }),
                Descriptor::Table { next } => {
                    self.walk(Some(next), level + 1, cur, chunk_end, out)?;
                }
                Descriptor::Invalid => {
                    let whole_block = cur == entry_start
                        && chunk_end - cur == size
                        && out & (size - 1) == 0
                        && level >= MIN_BLOCK_LEVEL;
                    if level == LEAF_LEVEL || whole_block {
                        if let (true, Some(slot)) = (self.pass.is_apply(), slot) {
                            let leaf = encode_leaf(level, PhysAddr(out), self.access);
                            self.mem.write_u64(slot, leaf);
                        }
                    } else {
                        let child = self.pass.new_table(self.mem)?;
                        self.walk(child, level + 1, cur, chunk_end, out)?;
                        if let (Some(slot), Some(child)) = (slot, child) {
                            // The filled table must be visible before the descriptor linking it
                            // (Linux io-pgtable-arm puts a dma_wmb() at the same place).
                            self.mem.publish();
                            self.mem.write_u64(slot, encode_table(child));
                            self.linked += 1;
                        }
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(())
    }
}

/// One pass of [`Stage2Table::unmap`], with what it removed.
struct UnmapWalk<'m, M: DmaMemory> {
    mem: &'m mut M,
    pass: Pass,
    retired: &'m mut PageChain,
    /// New tables linked into the tree (by splits).
    linked: usize,
    /// Tables unlinked from the tree (and retired).
    unlinked: usize,
    /// Bytes of IOVA whose leaf was removed.
    bytes: u64,
    /// Lowest and end of the IOVAs whose translation changed.
    lo: u64,
    hi: u64,
    /// Bit `n`: a leaf at level `n` was removed or replaced.
    leaf_levels: u8,
    /// A table descriptor was removed.
    table_removed: bool,
    /// The removed leaves, one by one (only its leaf list is used).
    listed: Invalidation,
}

impl<'m, M: DmaMemory> UnmapWalk<'m, M> {
    fn new(mem: &'m mut M, pass: Pass, retired: &'m mut PageChain) -> Self {
        Self {
            mem,
            pass,
            retired,
            linked: 0,
            unlinked: 0,
            bytes: 0,
            lo: u64::MAX,
            hi: 0,
            leaf_levels: 0,
            table_removed: false,
            listed: Invalidation::none(),
        }
    }

    fn result(&self) -> Unmapped {
        let invalidation = if self.lo < self.hi {
            Invalidation::new(
                Iova(self.lo),
                self.hi - self.lo,
                !self.table_removed,
                self.leaf_levels,
            )
            .with_leaves_of(&self.listed)
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
        self.listed.add_leaf(start, level);
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
            self.listed.add_leaf(at, LEAF_LEVEL);
        }
    }

    fn retire(&mut self, table: PhysAddr) {
        self.retired.push(self.mem, table);
        self.unlinked += 1;
    }

    /// Unmaps `[start, end)`, which lies inside `table` (at `level`).
    fn walk(&mut self, table: PhysAddr, level: u8, start: u64, end: u64) -> Result<(), MapError> {
        let apply = self.pass.is_apply();
        let size = level_size(level);
        let mut cur = start;
        while cur < end {
            let entry_start = cur & !(size - 1);
            let chunk_end = end.min(entry_start + size);
            let whole = cur == entry_start && chunk_end == entry_start + size;
            let slot = entry_addr(table, level, cur);
            match decode(level, self.mem.read_u64(slot)) {
                Descriptor::Invalid => {}
                Descriptor::Leaf { .. } if whole => {
                    if apply {
                        self.mem.write_u64(slot, 0);
                    }
                    self.leaf_removed(level, cur, chunk_end);
                }
                Descriptor::Leaf { pa, access } => {
                    // A block partly inside the range (pages are always whole: the range is
                    // page-aligned). Build its replacement off-line, then swap it in.
                    let child = self.pass.new_table(self.mem)?;
                    let hole = (cur, chunk_end);
                    self.split(child, level + 1, entry_start, pa.get(), access, hole)?;
                    if let Some(child) = child {
                        self.mem.publish();
                        self.mem.write_u64(slot, encode_table(child));
                        self.linked += 1;
                    }
                    self.leaf_removed(level, cur, chunk_end);
                }
                Descriptor::Table { next } if whole => {
                    if apply {
                        let bytes_before = self.bytes;
                        self.mem.write_u64(slot, 0);
                        self.retire_tree(next, level + 1, entry_start);
                        self.table_removed(cur, bytes_before);
                    }
                }
                Descriptor::Table { next } => {
                    let bytes_before = self.bytes;
                    self.walk(next, level + 1, cur, chunk_end)?;
                    if apply && self.is_empty(next, level + 1, cur, chunk_end) {
                        self.mem.write_u64(slot, 0);
                        self.retire(next);
                        self.table_removed(cur, bytes_before);
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(())
    }

    /// Fills `table` (at `level`, covering `base..`) with the mapping of a split block, `base`
    /// → `pa` with `access`, except for the IOVAs in `hole`. `table` is `None` while counting.
    fn split(
        &mut self,
        table: Option<PhysAddr>,
        level: u8,
        base: u64,
        pa: u64,
        access: Access,
        hole: (u64, u64),
    ) -> Result<(), MapError> {
        if table.is_none() && level == LEAF_LEVEL {
            return Ok(());
        }
        let size = level_size(level);
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
                    self.mem.write_u64(
                        entry_at(table, i),
                        encode_leaf(level, PhysAddr(out), access),
                    );
                }
            } else {
                let child = self.pass.new_table(self.mem)?;
                let sub_hole = (hole.0.max(start), hole.1.min(end));
                self.split(child, level + 1, start, out, access, sub_hole)?;
                if let (Some(table), Some(child)) = (table, child) {
                    self.mem.publish();
                    self.mem.write_u64(entry_at(table, i), encode_table(child));
                    self.linked += 1;
                }
            }
        }
        Ok(())
    }

    /// Retires `table` (at `level`, covering `base..`, already unlinked) and every table below
    /// it, counting the leaves they held as removed.
    fn retire_tree(&mut self, table: PhysAddr, level: u8, base: u64) {
        let size = level_size(level);
        for i in 0..ENTRIES {
            let start = base + i * size;
            match decode(level, self.mem.read_u64(entry_at(table, i))) {
                Descriptor::Table { next } => self.retire_tree(next, level + 1, start),
                Descriptor::Leaf { .. } => self.leaf_removed(level, start, start + size),
                Descriptor::Invalid => {}
            }
        }
        // After reading entry 0: retiring overwrites it with the chain link.
        self.retire(table);
    }

    /// Whether no entry of `table` (at `level`) is valid, right after `[start, end)` was unmapped
    /// from it. The entries strictly inside the range are invalid now; the search starts at the
    /// two ends and moves outwards, so the usual cases (neighbouring mappings, unmapping in
    /// ascending or descending order) find a valid entry after a read or two instead of a scan.
    fn is_empty(&self, table: PhysAddr, level: u8, start: u64, end: u64) -> bool {
        let shift = level_shift(level);
        let first = (start >> shift) & (ENTRIES - 1);
        let last = ((end - 1) >> shift) & (ENTRIES - 1);
        let valid = |i: u64| self.mem.read_u64(entry_at(table, i)) & VALID != 0;
        if valid(first) || valid(last) {
            return false;
        }
        let (mut below, mut above) = (first, last + 1);
        while below > 0 || above < ENTRIES {
            if above < ENTRIES {
                if valid(above) {
                    return false;
                }
                above += 1;
            }
            if below > 0 {
                below -= 1;
                if valid(below) {
                    return false;
                }
            }
        }
        true
    }
}

// The walk arithmetic above relies on whole tables covering aligned, non-overflowing ranges.
const _: () = assert!(PAGE_SHIFT == 12 && PAGE_SIZE == 4096);
