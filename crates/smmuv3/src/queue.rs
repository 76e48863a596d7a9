//! Circular queue index arithmetic (IHI 0070 §3.5).
//!
//! A queue of 2^LOG2SIZE entries is described by two pointers, PROD and CONS. Each holds the
//! entry index in bits `[LOG2SIZE-1:0]` and a wrap flag in bit `LOG2SIZE` that toggles every time
//! the index passes the end. The queue is empty when both index and wrap match, and full when the
//! indexes match but the wrap flags differ. Bits above the wrap flag (CMDQ_CONS.ERR,
//! EVENTQ_PROD.OVFLG ...) are not part of the pointer and are masked off here.

/// Largest LOG2SIZE the PROD/CONS registers can express (WR/RD are 20 bits: index + wrap).
pub const MAX_LOG2SIZE: u8 = 19;

/// The size of one queue; all arithmetic on its pointers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueGeometry {
    log2size: u8,
}

impl QueueGeometry {
    /// A queue of 2^`log2size` entries; `log2size` is clamped to [`MAX_LOG2SIZE`].
    pub const fn new(log2size: u8) -> Self {
        Self {
            log2size: if log2size > MAX_LOG2SIZE {
                MAX_LOG2SIZE
            } else {
                log2size
            },
        }
    }

    /// LOG2SIZE.
    pub const fn log2size(self) -> u8 {
        self.log2size
    }

    /// Number of entries.
    pub const fn entries(self) -> u32 {
        1 << self.log2size
    }

    /// The bits of a register value that form the pointer (index and wrap flag).
    pub const fn ptr_mask(self) -> u32 {
        (1 << (self.log2size + 1)) - 1
    }

    /// The pointer part of a register value.
    pub const fn ptr(self, reg: u32) -> u32 {
        reg & self.ptr_mask()
    }

    /// The entry index a pointer designates.
    pub const fn index(self, p: u32) -> u32 {
        p & (self.entries() - 1)
    }

    /// The wrap flag of a pointer.
    pub const fn wrap(self, p: u32) -> bool {
        (p >> self.log2size) & 1 == 1
    }

    /// No entries between CONS and PROD.
    pub const fn is_empty(self, prod: u32, cons: u32) -> bool {
        self.ptr(prod) == self.ptr(cons)
    }

    /// Every entry is between CONS and PROD.
    pub const fn is_full(self, prod: u32, cons: u32) -> bool {
        self.index(prod) == self.index(cons) && self.wrap(prod) != self.wrap(cons)
    }

    /// Number of entries between CONS and PROD.
    pub const fn used(self, prod: u32, cons: u32) -> u32 {
        self.distance(cons, prod)
    }

    /// Number of free entries.
    pub const fn space(self, prod: u32, cons: u32) -> u32 {
        self.entries() - self.used(prod, cons)
    }

    /// The pointer `n` entries after `p` (wrap flag toggled as needed).
    pub const fn advance(self, p: u32, n: u32) -> u32 {
        self.ptr(p.wrapping_add(n))
    }

    /// How many entries `to` is ahead of `from` (0 ..= entries for pointers of one queue).
    pub const fn distance(self, from: u32, to: u32) -> u32 {
        self.ptr(to.wrapping_sub(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn four_entry_queue() {
        let q = QueueGeometry::new(2);
        assert_eq!(q.entries(), 4);
        assert_eq!(q.ptr_mask(), 0b111);
        assert!(q.is_empty(0, 0));
        assert!(q.is_full(0b100, 0));
        assert!(q.is_full(0b001, 0b101));
        assert!(!q.is_full(0b011, 0));
        assert_eq!(q.space(0b011, 0), 1);
        assert_eq!(q.used(0b001, 0b111), 2);
        assert_eq!(q.advance(0b011, 1), 0b100);
        assert_eq!(q.advance(0b111, 1), 0);
        assert_eq!(q.index(0b110), 2);
        assert!(q.wrap(0b110));
        // CMDQ_CONS.ERR and EVENTQ_PROD.OVFLG are not part of the pointer.
        assert!(q.is_empty(0x8000_0003, 0x0100_0003));
    }

    #[test]
    fn clamped_to_register_width() {
        assert_eq!(QueueGeometry::new(25).log2size(), 19);
        assert_eq!(QueueGeometry::new(19).ptr_mask(), 0xf_ffff);
        assert_eq!(QueueGeometry::new(0).entries(), 1);
    }

    proptest! {
        /// Driving a queue with random pushes and pops agrees with a counter model.
        #[test]
        fn matches_a_counter_model(log2 in 0u8..=19, ops in proptest::collection::vec(any::<(bool, u16)>(), 1..64)) {
            let q = QueueGeometry::new(log2);
            let (mut prod, mut cons) = (0u32, 0u32);
            let mut used = 0u64;
            for (push, n) in ops {
                let n = u32::from(n);
                if push {
                    let k = n.min(q.space(prod, cons));
                    prod = q.advance(prod, k);
                    used += u64::from(k);
                } else {
                    let k = n.min(q.used(prod, cons));
                    cons = q.advance(cons, k);
                    used -= u64::from(k);
                }
                prop_assert_eq!(u64::from(q.used(prod, cons)), used);
                prop_assert_eq!(q.is_empty(prod, cons), used == 0);
                prop_assert_eq!(q.is_full(prod, cons), used == u64::from(q.entries()));
                prop_assert_eq!(q.space(prod, cons) + q.used(prod, cons), q.entries());
                prop_assert!(prod <= q.ptr_mask() && cons <= q.ptr_mask());
            }
        }

        /// Advancing by `n` and measuring the distance back gives `n`.
        #[test]
        fn advance_and_distance_agree(log2 in 0u8..=19, start: u32, n in 0u32..(1 << 20)) {
            let q = QueueGeometry::new(log2);
            let p = q.ptr(start);
            let n = n % (2 * q.entries());
            prop_assert_eq!(q.distance(p, q.advance(p, n)), n);
        }
    }
}
