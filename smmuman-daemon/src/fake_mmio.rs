//! A recording register block for driver tests.

use crate::mmio::Mmio;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Register contents by offset.
pub type Regs = BTreeMap<usize, u64>;

/// A device model hook: runs on every access, after a write or before a read, and may change
/// the registers (a device making progress).
pub type Hook = Box<dyn Fn(&mut Regs, usize)>;

/// Registers that read back what was written, with an optional device model, logging every
/// access.
#[derive(Default)]
pub struct FakeRegs {
    pub regs: RefCell<Regs>,
    pub reads: RefCell<Vec<usize>>,
    pub writes: Vec<(usize, u64)>,
    pub on_read: Option<Hook>,
    pub on_write: Option<Hook>,
}

impl FakeRegs {
    pub fn with(values: &[(usize, u64)]) -> Self {
        Self {
            regs: RefCell::new(values.iter().copied().collect()),
            ..Self::default()
        }
    }

    fn read(&self, offset: usize) -> u64 {
        self.reads.borrow_mut().push(offset);
        let mut regs = self.regs.borrow_mut();
        if let Some(hook) = &self.on_read {
            hook(&mut regs, offset);
        }
        regs.get(&offset).copied().unwrap_or(0)
    }

    fn write(&mut self, offset: usize, value: u64) {
        self.writes.push((offset, value));
        let regs = self.regs.get_mut();
        regs.insert(offset, value);
        if let Some(hook) = &self.on_write {
            hook(regs, offset);
        }
    }
}

impl Mmio for FakeRegs {
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset) as u32
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.write(offset, value.into())
    }
    fn read64(&self, offset: usize) -> u64 {
        self.read(offset)
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.write(offset, value)
    }
}
