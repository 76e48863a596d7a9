//! The guest's flattened device tree (Devicetree Specification v0.4, chapter 5), written into
//! a caller buffer without a heap.
//!
//! Layout (§5.1): the 40-byte header, the memory reservation block, the structure block, the
//! strings block. The tree:
//! * `/`: `#address-cells` = `#size-cells` = 2, `compatible` = "qvm,guest", "linux,dummy-virt";
//! * `/chosen`: `stdout-path`, `bootargs`;
//! * `/memory@...`: the guest's RAM;
//! * `/pl011@9000000`: the console page ([`abi::UART_BASE`]);
//! * `/pcie@30000000`: the emulated ECAM host bridge, one bus, one 32-bit memory window.
//!
//! One `/memreserve/` entry covers the tree's own room ([`abi::DTB_MAX`] at the top of RAM).

use crate::abi;
use crate::gpa::{Gpa, GpaRange};
use core::fmt;

/// §5.2: FDT header magic.
const FDT_MAGIC: u32 = 0xd00d_feed;
/// §5.2: the version written, and the oldest it is compatible with.
const FDT_VERSION: u32 = 17;
const FDT_LAST_COMP_VERSION: u32 = 16;
/// §5.2: the header's size (ten 32-bit fields).
const HEADER_SIZE: usize = 40;
/// §5.4.1 structure block tokens.
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
/// Room for the strings block (property names, deduplicated).
const STRINGS_MAX: usize = 192;

/// Devicetree spec §2.3.8/PCI bus binding: phys.hi of a 32-bit memory space range
/// (ss = 0b10, "32-bit memory space").
const PCI_SPACE_MEM32: u32 = 0x0200_0000;

/// The buffer was too small for the tree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TooSmall {
    /// Bytes the buffer holds.
    pub have: usize,
}

impl fmt::Display for TooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the guest's device tree does not fit in {} bytes",
            self.have
        )
    }
}

/// What goes into a guest's tree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestDt<'a> {
    /// The guest's RAM.
    pub ram: GpaRange,
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
}

impl GuestDt<'_> {
    /// Where the tree goes: [`abi::DTB_MAX`] below the end of RAM.
    pub fn address(&self) -> Gpa {
        Gpa(self.ram.end().saturating_sub(abi::DTB_MAX))
    }

    /// Writes the tree into `buf` and returns its length.
    ///
    /// # Errors
    /// [`TooSmall`] when `buf` cannot hold it (the tree takes about 1 KiB).
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, TooSmall> {
        let mut w = Writer {
            buf,
            at: 0,
            strings: heapless::Vec::new(),
            ok: true,
        };
        // Header first, filled in at the end.
        w.pad_to(HEADER_SIZE);
        // §5.3: the reservation block, 8-byte aligned, pairs of u64 ended by a zero pair.
        w.align(8);
        let rsv = w.at;
        w.u64(self.address().get());
        w.u64(abi::DTB_MAX);
        w.u64(0);
        w.u64(0);
        let structure = w.at;
        self.nodes(&mut w);
        w.u32(FDT_END);
        let structure_len = w.at - structure;
        let strings = w.at;
        let names = w.strings.clone();
        w.bytes(&names);
        let total = w.at;
        if !w.ok {
            return Err(TooSmall { have: w.buf.len() });
        }
        // §5.2: every header field is big-endian u32.
        let header = [
            FDT_MAGIC,
            total as u32,
            structure as u32,
            strings as u32,
            rsv as u32,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            0, // boot_cpuid_phys
            names.len() as u32,
            structure_len as u32,
        ];
        for (i, v) in header.iter().enumerate() {
            if let Some(d) = w.buf.get_mut(i * 4..i * 4 + 4) {
                d.copy_from_slice(&v.to_be_bytes());
            }
        }
        Ok(total)
    }

    fn nodes(&self, w: &mut Writer<'_>) {
        let ram = self.ram;
        w.begin("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.prop_strs("compatible", &["qvm,guest", "linux,dummy-virt"]);
        w.prop_strs("model", &["qvm guest"]);

        w.begin("chosen");
        w.prop_strs("stdout-path", &["/pl011@9000000"]);
        w.prop_strs("bootargs", &[self.bootargs]);
        w.end();

        // §3.4: /memory, device_type "memory", reg = base and size.
        let mut name = NodeName::default();
        name.set("memory", ram.start().get());
        w.begin(name.as_str());
        w.prop_strs("device_type", &["memory"]);
        w.prop_u64_pairs("reg", &[(ram.start().get(), ram.len())]);
        w.end();

        name.set("pl011", abi::UART_BASE);
        w.begin(name.as_str());
        w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        w.prop_u64_pairs("reg", &[(abi::UART_BASE, 0x1000)]);
        w.end();

        // The generic ECAM host bridge binding (Linux
        // Documentation/devicetree/bindings/pci/host-generic-pci.yaml) over the PCI bus
        // binding's 3-cell addresses.
        name.set("pcie", abi::ECAM_BASE);
        w.begin(name.as_str());
        w.prop_strs("compatible", &["pci-host-ecam-generic"]);
        w.prop_strs("device_type", &["pci"]);
        w.prop_u64_pairs("reg", &[(abi::ECAM_BASE, abi::ECAM_SIZE)]);
        w.prop_u32s("bus-range", &[0, 0]);
        w.prop_u32s("#address-cells", &[3]);
        w.prop_u32s("#size-cells", &[2]);
        let (base, size) = (abi::PCI_MMIO_BASE, abi::PCI_MMIO_SIZE);
        // ranges: <child phys.hi phys.mid phys.lo, parent addr (2 cells), size (2 cells)>;
        // CPU address == PCI address.
        w.prop_u32s(
            "ranges",
            &[
                PCI_SPACE_MEM32,
                (base >> 32) as u32,
                base as u32,
                (base >> 32) as u32,
                base as u32,
                (size >> 32) as u32,
                size as u32,
            ],
        );
        w.end();

        w.end();
    }
}

/// A node name `name@hex-address`, no heap.
#[derive(Default)]
struct NodeName(heapless::String<32>);

impl NodeName {
    fn set(&mut self, name: &str, addr: u64) {
        use core::fmt::Write as _;
        self.0.clear();
        let _ = write!(self.0, "{name}@{addr:x}");
    }
    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
    strings: heapless::Vec<u8, STRINGS_MAX>,
    /// False once anything did not fit.
    ok: bool,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        let end = self.at.saturating_add(b.len());
        match self.buf.get_mut(self.at..end) {
            Some(d) => d.copy_from_slice(b),
            None => self.ok = false,
        }
        self.at = end;
    }
    fn pad_to(&mut self, n: usize) {
        while self.at < n && self.ok {
            self.bytes(&[0]);
        }
    }
    fn align(&mut self, a: usize) {
        while !self.at.is_multiple_of(a) && self.ok {
            self.bytes(&[0]);
        }
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    /// §5.4.1 FDT_BEGIN_NODE: the token, the name NUL-terminated, padded to 4 bytes.
    fn begin(&mut self, name: &str) {
        self.u32(FDT_BEGIN_NODE);
        self.bytes(name.as_bytes());
        self.bytes(&[0]);
        self.align(4);
    }
    fn end(&mut self) {
        self.u32(FDT_END_NODE);
    }
    /// The offset of `name` in the strings block, added when new.
    fn name_offset(&mut self, name: &str) -> u32 {
        let n = name.as_bytes();
        let mut start = 0;
        for (i, &b) in self.strings.iter().enumerate() {
            if b == 0 {
                if self.strings.get(start..i) == Some(n) {
                    return start as u32;
                }
                start = i + 1;
            }
        }
        let off = self.strings.len() as u32;
        if self.strings.extend_from_slice(n).is_err() || self.strings.push(0).is_err() {
            self.ok = false;
        }
        off
    }
    /// §5.4.1 FDT_PROP: token, value length, name offset, value padded to 4 bytes.
    fn prop_header(&mut self, name: &str, len: usize) {
        let off = self.name_offset(name);
        self.u32(FDT_PROP);
        self.u32(len as u32);
        self.u32(off);
    }
    fn prop_u32s(&mut self, name: &str, cells: &[u32]) {
        self.prop_header(name, cells.len() * 4);
        for &c in cells {
            self.u32(c);
        }
    }
    fn prop_u64_pairs(&mut self, name: &str, pairs: &[(u64, u64)]) {
        self.prop_header(name, pairs.len() * 16);
        for &(a, s) in pairs {
            self.u64(a);
            self.u64(s);
        }
    }
    /// A `<stringlist>` (§2.2.4.1): each string NUL-terminated.
    fn prop_strs(&mut self, name: &str, strs: &[&str]) {
        let len = strs.iter().map(|s| s.len() + 1).sum();
        self.prop_header(name, len);
        for s in strs {
            self.bytes(s.as_bytes());
            self.bytes(&[0]);
        }
        self.align(4);
    }
}

#[cfg(test)]
mod tests;
