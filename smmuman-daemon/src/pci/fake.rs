//! A configuration space with devices and bridges, for enumeration tests. Devices behind a
//! bridge answer on whatever bus number the bridge's secondary register holds, as hardware
//! routes configuration cycles.

use super::config::*;
use iommu_core::Bdf;

/// A BAR's behaviour when written: bits outside `writable` keep `fixed`.
#[derive(Clone, Copy, Default, Debug)]
pub struct FakeBar {
    pub writable: u32,
    pub fixed: u32,
}

impl FakeBar {
    pub fn mem32(size: u32) -> [FakeBar; 1] {
        [FakeBar {
            writable: !(size - 1),
            fixed: 0,
        }]
    }
    pub fn mem64_prefetchable(size: u64) -> [FakeBar; 2] {
        let mask = !(size - 1);
        [
            FakeBar {
                writable: mask as u32 & !0xf,
                fixed: 0b1100,
            },
            FakeBar {
                writable: (mask >> 32) as u32,
                fixed: 0,
            },
        ]
    }
    pub fn io(size: u32) -> [FakeBar; 1] {
        [FakeBar {
            writable: !(size - 1) & 0xffff,
            fixed: 1,
        }]
    }
}

#[derive(Clone, Debug)]
pub struct FakeFunction {
    /// Index of the bridge it sits behind (`None`: the root bus).
    pub parent: Option<usize>,
    pub dev: u8,
    pub func: u8,
    pub regs: [u32; 64],
    pub bars: [FakeBar; 6],
}

#[derive(Default, Debug)]
pub struct FakeConfig {
    pub functions: Vec<FakeFunction>,
    pub root_bus: u8,
}

impl FakeConfig {
    /// Adds a function and returns its index.
    pub fn add(
        &mut self,
        parent: Option<usize>,
        dev: u8,
        func: u8,
        ids: (u16, u16),
        header: u8,
        bars: &[FakeBar],
    ) -> usize {
        let mut regs = [0u32; 64];
        regs[0] = u32::from(ids.0) | (u32::from(ids.1) << 16);
        regs[2] = 0x00ff_0010; // class 0x00ff00, revision 0x10
        regs[3] = u32::from(header) << 16;
        let mut all = [FakeBar::default(); 6];
        all[..bars.len()].copy_from_slice(bars);
        for (i, b) in all.iter().enumerate() {
            regs[4 + i] = b.fixed;
        }
        self.functions.push(FakeFunction {
            parent,
            dev,
            func,
            regs,
            bars: all,
        });
        self.functions.len() - 1
    }

    pub fn endpoint(&mut self, parent: Option<usize>, dev: u8, bars: &[FakeBar]) -> usize {
        self.add(parent, dev, 0, (0x1234, 0x11e8), HEADER_TYPE_ENDPOINT, bars)
    }

    /// A bridge; with `pcie_type`, it has a PCI Express capability at 0x40 with that
    /// Device/Port Type.
    pub fn bridge(&mut self, parent: Option<usize>, dev: u8, pcie_type: Option<u8>) -> usize {
        let i = self.add(parent, dev, 0, (0x1b36, 0x000e), HEADER_TYPE_BRIDGE, &[]);
        let regs = &mut self.functions[i].regs;
        regs[2] = 0x0604_0000;
        if let Some(t) = pcie_type {
            regs[1] |= u32::from(STATUS_CAP_LIST) << 16;
            regs[usize::from(CAPABILITIES_POINTER / 4)] = 0x40;
            regs[0x40 / 4] = u32::from(CAP_ID_PCIE) | (u32::from(t) << 20);
        }
        i
    }

    /// The bus a function currently answers on, if it is reachable.
    fn bus_of(&self, index: usize) -> Option<u8> {
        match self.functions[index].parent {
            None => Some(self.root_bus),
            Some(p) => {
                self.bus_of(p)?;
                let secondary = (self.functions[p].regs[6] >> 8) as u8;
                (secondary != 0).then_some(secondary)
            }
        }
    }

    pub fn index_of(&self, bdf: Bdf) -> Option<usize> {
        (0..self.functions.len()).find(|&i| {
            let f = &self.functions[i];
            f.dev == bdf.dev && f.func == bdf.func && self.bus_of(i) == Some(bdf.bus)
        })
    }

    pub fn reg(&self, bdf: Bdf, offset: u16) -> u32 {
        self.functions[self.index_of(bdf).expect("no such function")].regs[usize::from(offset / 4)]
    }

    pub fn command(&self, bdf: Bdf) -> u16 {
        self.reg(bdf, COMMAND) as u16
    }

    fn store(&mut self, bdf: Bdf, offset: u16, value: u32) {
        let Some(i) = self.index_of(bdf) else { return };
        let f = &mut self.functions[i];
        let word = usize::from(offset / 4);
        let bar_count = if (f.regs[3] >> 16) as u8 & 0x7f == HEADER_TYPE_BRIDGE {
            2
        } else {
            6
        };
        match offset {
            0x00 | 0x08 | 0x0c => {} // IDs, class and header type are read-only here.
            o if (BAR0..BAR0 + 4 * bar_count).contains(&o) => {
                let b = f.bars[word - 4];
                f.regs[word] = (value & b.writable) | b.fixed;
            }
            _ => f.regs[word] = value,
        }
    }
}

impl ConfigSpace for FakeConfig {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self.index_of(bdf) {
            Some(i) => self.functions[i].regs[usize::from(offset / 4)],
            None => u32::MAX,
        }
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        self.store(bdf, offset, value);
    }

    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) {
        let shift = (offset & 2) * 8;
        let old = self.read32(bdf, offset & !3);
        let new = (old & !(0xffff << shift)) | (u32::from(value) << shift);
        self.store(bdf, offset & !3, new);
    }
}
