//! The user configuration, `smmuman.conf`: a line-oriented text format (`docs/config.md`)
//! parsed without allocation into a [`Topology`].
//!
//! Parsing is all or nothing: the first error (file order, then the checks that need the
//! whole file) is returned with its file, line and column, and no topology.

mod error;
mod lexer;
mod values;

pub use error::{ConfigError, ConfigErrorKind, Found};
pub use lexer::Pos;

use crate::device::{Device, StreamSource};
use crate::irq::{Irq, IrqName, Trigger};
use crate::number::{parse_number, NumberError};
use crate::topology::{
    CapacityExceeded, Mode, Origin, ReservedRegion, ReservedSids, StaticWindow, StreamBinding,
    Topology, MAX_BINDINGS, MAX_FAULT_LOG, MAX_MAPPINGS, MAX_REGIONS, MAX_REGION_DEVICES,
    MAX_UNITS,
};
use crate::unit::{unit_name, IommuKind, IommuUnit, Stated, Unclaimed, UnitId};
use crate::vm::{
    is_vm_name, PeerBar, RamGrant, VmAssignment, VmName, MAX_BAR, MAX_PEERS_PER_VM, MAX_RAM_PER_VM,
    MAX_VMS,
};
use crate::vtd::{requester_id, whole_segment};
use heapless::Vec;
use iommu_core::{Bdf, Iova, PhysAddr, StreamId, PAGE_SIZE};
use lexer::{Line, Token};

/// SMMUv3 register frames are made of 64 KiB pages (IHI 0070 §6.1), so base and size are
/// multiples of it.
const SMMU_PAGE: u64 = 0x1_0000;

const TOP_KEYS: [&str; 4] = ["mode", "fault-log", "mappings", "mappings-per-vm"];
const UNIT_KEYS: [&str; 7] = [
    "base",
    "size",
    "irq",
    "coherent",
    "unclaimed",
    "allow-bypass",
    "reserve-sid",
];
const VTD_KEYS: [&str; 8] = [
    "base",
    "size",
    "segment",
    "include-pci-all",
    "unclaimed",
    "allow-bypass",
    "reserve-rid",
    "reserved",
];
const DEVICE_KEYS: [&str; 5] = ["unit", "sid", "shared", "raw-sid", "window"];
const VM_KEYS: [&str; 2] = ["ram", "peer"];

const IN_TOP: &str = "at the top of the file, before any section";
const IN_UNIT: &str = "in an [smmu NAME] section";
const IN_VTD: &str = "in a [vtd NAME] section";
const IN_DEVICE: &str = "in a [device pci|mmio ADDRESS] section";
const IN_VM: &str = "in a [vm NAME] section";

/// Parses `text`, the contents of the file called `file` (the name only appears in errors).
///
/// # Errors
/// The first [`ConfigError`]; nothing of the file is kept.
pub fn parse<'a>(file: &'a str, text: &'a str) -> Result<Topology, ConfigError<'a>> {
    let mut p = Parser::new(file);
    for (i, raw) in text.split('\n').enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        p.line(Line::new(number, raw))?;
    }
    p.finish()
}

/// [`parse`] for bytes loaded by the boot loader (a QEMU `-initrd` blob): they must be UTF-8;
/// NUL bytes at the end (padding) are ignored.
///
/// # Errors
/// [`ConfigErrorKind::NotUtf8`] at the first byte that is not UTF-8, else as [`parse`].
pub fn parse_bytes<'a>(file: &'a str, bytes: &'a [u8]) -> Result<Topology, ConfigError<'a>> {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    match core::str::from_utf8(bytes) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let good = core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let line = good.matches('\n').count() + 1;
            let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(ConfigError {
                file,
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
                kind: ConfigErrorKind::NotUtf8,
            })
        }
    }
}

#[derive(Clone, Copy)]
enum Section {
    Top,
    Unit(usize),
    Device(usize),
    Vm(usize),
}

/// An `[smmu]` or `[vtd]` section as read so far (`unit.kind` says which).
struct UnitDraft<'a> {
    name: &'a str,
    header: Pos,
    unit: IommuUnit,
    base: Option<Pos>,
    size: Option<u32>,
    coherent: Option<u32>,
    unclaimed: Option<u32>,
    /// Where `bypass` was written, to point at it if the opt-in is missing.
    bypass: Option<Pos>,
    allow_bypass: Option<(u32, bool)>,
    irq: [Option<u32>; 5],
    /// VT-d: where `segment` was given.
    segment: Option<u32>,
    /// VT-d: where `include-pci-all` was given.
    include_all: Option<Pos>,
}

/// A `[device]` section as read so far.
struct DeviceDraft<'a> {
    device: Device,
    header: Pos,
    unit: Option<Token<'a>>,
    sid: Option<(StreamId, Pos)>,
    shared: Option<(bool, Pos)>,
    raw_sid: Option<(bool, Pos)>,
    windows: usize,
}

/// A `[vm]` section as read so far.
struct VmDraft<'a> {
    name: &'a str,
    vm: VmAssignment,
}

struct Parser<'a> {
    file: &'a str,
    topology: Topology,
    section: Section,
    mode: Option<u32>,
    fault_log: Option<u32>,
    mappings: Option<u32>,
    mappings_per_vm: Option<u32>,
    units: Vec<UnitDraft<'a>, MAX_UNITS>,
    devices: Vec<DeviceDraft<'a>, MAX_BINDINGS>,
    vms: Vec<VmDraft<'a>, MAX_VMS>,
    /// `reserved` lines: the `[vtd]` section's index and the region (its segment is set
    /// from the section at the end of the file).
    regions: Vec<(usize, ReservedRegion), MAX_REGIONS>,
}

type Res<'a, T> = Result<T, ConfigError<'a>>;

impl<'a> Parser<'a> {
    fn new(file: &'a str) -> Self {
        Self {
            file,
            topology: Topology::new(),
            section: Section::Top,
            mode: None,
            fault_log: None,
            mappings: None,
            mappings_per_vm: None,
            units: Vec::new(),
            devices: Vec::new(),
            vms: Vec::new(),
            regions: Vec::new(),
        }
    }

    fn err(&self, pos: Pos, kind: ConfigErrorKind<'a>) -> ConfigError<'a> {
        ConfigError {
            file: self.file,
            line: pos.line,
            column: pos.column,
            kind,
        }
    }

    fn full(&self, pos: Pos, c: CapacityExceeded) -> ConfigError<'a> {
        self.err(pos, ConfigErrorKind::TooMany(c))
    }

    // ---- lines ---------------------------------------------------------------------------

    fn line(&mut self, mut line: Line<'a>) -> Res<'a, ()> {
        if line.is_blank() {
            return Ok(());
        }
        if line.content().trim_start().starts_with('[') {
            return self.header(&line);
        }
        let Some(key) = line.next_token() else {
            return Ok(());
        };
        match self.section {
            Section::Top => self.top_key(key, &mut line)?,
            Section::Unit(i) => self.unit_key(i, key, &mut line)?,
            Section::Device(i) => self.device_key(i, key, &mut line)?,
            Section::Vm(i) => self.vm_key(i, key, &mut line)?,
        }
        self.end_of_line(&mut line)
    }

    fn end_of_line(&self, line: &mut Line<'a>) -> Res<'a, ()> {
        match line.next_token() {
            None => Ok(()),
            Some(t) => Err(self.err(
                t.pos,
                ConfigErrorKind::Expected {
                    what: "end of line",
                    found: Found::Token(t.text),
                },
            )),
        }
    }

    /// The next token, which must exist.
    fn value(&self, line: &mut Line<'a>, what: &'static str) -> Res<'a, Token<'a>> {
        line.next_token().ok_or_else(|| {
            self.err(
                line.end(),
                ConfigErrorKind::Expected {
                    what,
                    found: Found::EndOfLine,
                },
            )
        })
    }

    /// A number token, at most `max`.
    fn number(&self, t: Token<'a>, what: &'static str, max: u64) -> Res<'a, u64> {
        let v = parse_number(t.text).map_err(|e| {
            self.err(
                t.pos,
                match e {
                    NumberError::Malformed => ConfigErrorKind::BadNumber {
                        what,
                        found: t.text,
                    },
                    NumberError::Ambiguous => ConfigErrorKind::AmbiguousNumber { found: t.text },
                    NumberError::Overflow => ConfigErrorKind::NumberTooLarge {
                        what,
                        found: t.text,
                        max,
                    },
                },
            )
        })?;
        if v > max {
            return Err(self.err(
                t.pos,
                ConfigErrorKind::NumberTooLarge {
                    what,
                    found: t.text,
                    max,
                },
            ));
        }
        Ok(v)
    }

    /// The next token, which must be one of `words`; returns its index.
    fn choice(&self, line: &mut Line<'a>, words: &[&str], what: &'static str) -> Res<'a, usize> {
        let t = self.value(line, what)?;
        words.iter().position(|w| *w == t.text).ok_or_else(|| {
            self.err(
                t.pos,
                ConfigErrorKind::Expected {
                    what,
                    found: Found::Token(t.text),
                },
            )
        })
    }

    fn yes_no(&self, line: &mut Line<'a>) -> Res<'a, bool> {
        Ok(self.choice(line, &["yes", "no"], "yes or no")? == 0)
    }

    /// The literal word `word` (e.g. `pa` inside a `window` statement); `quoted` is how
    /// errors show it.
    fn literal(
        &self,
        line: &mut Line<'a>,
        word: &'static str,
        quoted: &'static str,
    ) -> Res<'a, ()> {
        self.choice(line, &[word], quoted).map(|_| ())
    }

    /// Records that `key` was given on `line`; an error if it was given before.
    fn once(&self, seen: &mut Option<u32>, key: &'a str, at: Pos) -> Res<'a, ()> {
        if let Some(first_line) = *seen {
            return Err(self.err(at, ConfigErrorKind::DuplicateKey { key, first_line }));
        }
        *seen = Some(at.line);
        Ok(())
    }

    /// The error for a key that is not one of `section`'s.
    fn stray_key(
        &self,
        key: Token<'a>,
        section: &'static str,
        expected: &'static str,
    ) -> ConfigError<'a> {
        let belongs = if TOP_KEYS.contains(&key.text) {
            Some(IN_TOP)
        } else if UNIT_KEYS.contains(&key.text) {
            Some(IN_UNIT)
        } else if VTD_KEYS.contains(&key.text) {
            Some(IN_VTD)
        } else if DEVICE_KEYS.contains(&key.text) {
            Some(IN_DEVICE)
        } else if VM_KEYS.contains(&key.text) {
            Some(IN_VM)
        } else {
            None
        };
        let kind = match belongs {
            Some(belongs) => ConfigErrorKind::MisplacedKey {
                key: key.text,
                belongs,
            },
            None => ConfigErrorKind::UnknownKey {
                key: key.text,
                section,
                expected,
            },
        };
        self.err(key.pos, kind)
    }

    // ---- section headers -----------------------------------------------------------------

    fn header(&mut self, line: &Line<'a>) -> Res<'a, ()> {
        let content = line.content();
        let open = content.find('[').unwrap_or(0);
        let Some(close) = content.find(']') else {
            return Err(self.err(
                line.end(),
                ConfigErrorKind::Expected {
                    what: "\"]\" closing the section header",
                    found: Found::EndOfLine,
                },
            ));
        };
        let mut after = line.part(close + 1, content.len());
        self.end_of_line(&mut after)?;
        let mut inner = line.part(open + 1, close);
        let kind = self.value(&mut inner, "a section kind (smmu, vtd, device or vm)")?;
        let bracket = line.pos_of(open);
        match kind.text {
            "smmu" => self.unit_header(&mut inner, bracket, IommuKind::SmmuV3),
            "vtd" => self.unit_header(&mut inner, bracket, IommuKind::Vtd),
            "device" => self.device_header(&mut inner, bracket),
            "vm" => self.vm_header(&mut inner, bracket),
            other => Err(self.err(kind.pos, ConfigErrorKind::UnknownSection { found: other })),
        }
    }

    fn unit_header(&mut self, inner: &mut Line<'a>, header: Pos, kind: IommuKind) -> Res<'a, ()> {
        let name = self.value(inner, "a unit name")?;
        if !values::is_name(name.text) {
            return Err(self.err(name.pos, ConfigErrorKind::BadName { found: name.text }));
        }
        self.end_of_line(inner)?;
        if let Some(first) = self.units.iter().find(|u| u.name == name.text) {
            return Err(self.err(
                name.pos,
                ConfigErrorKind::DuplicateUnit {
                    name: name.text,
                    first_line: first.header.line,
                },
            ));
        }
        let origin = Origin::Config { line: header.line };
        let unit = match kind {
            IommuKind::SmmuV3 => IommuUnit::smmu_v3(unit_name(name.text), PhysAddr(0), origin),
            IommuKind::Vtd => IommuUnit::vtd(unit_name(name.text), PhysAddr(0), origin),
        };
        let draft = UnitDraft {
            name: name.text,
            header,
            unit,
            base: None,
            size: None,
            coherent: None,
            unclaimed: None,
            bypass: None,
            allow_bypass: None,
            irq: [None; 5],
            segment: None,
            include_all: None,
        };
        self.units.push(draft).map_err(|_| {
            self.full(
                header,
                CapacityExceeded {
                    what: "[smmu] and [vtd] sections",
                    max: MAX_UNITS,
                },
            )
        })?;
        self.section = Section::Unit(self.units.len() - 1);
        Ok(())
    }

    fn device_header(&mut self, inner: &mut Line<'a>, header: Pos) -> Res<'a, ()> {
        let bus = self.choice(inner, &["pci", "mmio"], "pci or mmio")?;
        let addr = self.value(
            inner,
            if bus == 0 {
                "a PCI address (e.g. 00:01.0)"
            } else {
                "an address"
            },
        )?;
        let device = if bus == 0 {
            let (segment, bdf) = values::pci_address(addr.text).map_err(|reason| {
                self.err(
                    addr.pos,
                    ConfigErrorKind::BadPciAddress {
                        found: addr.text,
                        reason,
                    },
                )
            })?;
            Device::Pci { segment, bdf }
        } else {
            Device::Mmio(PhysAddr(self.number(addr, "an address", u64::MAX)?))
        };
        self.end_of_line(inner)?;
        if let Some(first) = self.devices.iter().find(|d| d.device == device) {
            return Err(self.err(
                addr.pos,
                ConfigErrorKind::DuplicateDevice {
                    device,
                    first_line: first.header.line,
                },
            ));
        }
        let draft = DeviceDraft {
            device,
            header,
            unit: None,
            sid: None,
            shared: None,
            raw_sid: None,
            windows: 0,
        };
        self.devices.push(draft).map_err(|_| {
            self.full(
                header,
                CapacityExceeded {
                    what: "[device] sections",
                    max: MAX_BINDINGS,
                },
            )
        })?;
        self.section = Section::Device(self.devices.len() - 1);
        Ok(())
    }

    fn vm_header(&mut self, inner: &mut Line<'a>, header: Pos) -> Res<'a, ()> {
        let name = self.value(inner, "a VM name")?;
        if !is_vm_name(name.text) {
            return Err(self.err(name.pos, ConfigErrorKind::BadVmName { found: name.text }));
        }
        self.end_of_line(inner)?;
        if let Some(first) = self.vms.iter().find(|v| v.name == name.text) {
            return Err(self.err(
                name.pos,
                ConfigErrorKind::DuplicateVm {
                    name: name.text,
                    first_line: first.vm.line,
                },
            ));
        }
        let mut bounded = VmName::new();
        // Fits: `is_vm_name` allows at most `VM_NAME_LEN` ASCII characters.
        let _ = bounded.push_str(name.text);
        let draft = VmDraft {
            name: name.text,
            vm: VmAssignment::new(bounded, header.line),
        };
        self.vms.push(draft).map_err(|_| {
            self.full(
                header,
                CapacityExceeded {
                    what: "[vm] sections",
                    max: MAX_VMS,
                },
            )
        })?;
        self.section = Section::Vm(self.vms.len() - 1);
        Ok(())
    }

    // ---- keys ----------------------------------------------------------------------------

    fn top_key(&mut self, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        match key.text {
            "mode" => {
                let mut seen = self.mode;
                self.once(&mut seen, key.text, key.pos)?;
                self.mode = seen;
                let mode = match self.choice(line, &["override", "merge"], "override or merge")? {
                    0 => Mode::Override,
                    _ => Mode::Merge,
                };
                self.topology.set_mode(mode);
            }
            "fault-log" => {
                let mut seen = self.fault_log;
                self.once(&mut seen, key.text, key.pos)?;
                self.fault_log = seen;
                let t = self.value(line, "a number of fault records")?;
                let n = self.number(t, "a number of fault records", u64::from(MAX_FAULT_LOG))?;
                if n == 0 {
                    return Err(self.err(
                        t.pos,
                        ConfigErrorKind::OutOfRange {
                            what: "fault-log",
                            value: n,
                            allowed: "1 to 0x100000 records",
                        },
                    ));
                }
                self.topology.set_fault_log(Some(n as u32));
            }
            "mappings" | "mappings-per-vm" => {
                let per_vm = key.text == "mappings-per-vm";
                let mut seen = if per_vm {
                    self.mappings_per_vm
                } else {
                    self.mappings
                };
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "a number of mappings")?;
                let n = self.number(t, "a number of mappings", u64::from(MAX_MAPPINGS))?;
                if n == 0 {
                    return Err(self.err(
                        t.pos,
                        ConfigErrorKind::OutOfRange {
                            what: if per_vm {
                                "mappings-per-vm"
                            } else {
                                "mappings"
                            },
                            value: n,
                            allowed: "1 to 0x100_0000 mappings",
                        },
                    ));
                }
                if per_vm {
                    self.mappings_per_vm = seen;
                } else {
                    self.mappings = seen;
                }
                let (mut total, mut each) = self.topology.mappings_stated();
                if per_vm {
                    each = Some(n as u32);
                } else {
                    total = Some(n as u32);
                }
                self.topology.set_mappings(total, each);
            }
            _ => {
                return Err(self.stray_key(
                    key,
                    "the top of the file",
                    "mode, fault-log, mappings, mappings-per-vm, or a [section]",
                ))
            }
        }
        Ok(())
    }

    fn unit_key(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        let vtd = self.units[i].unit.kind == IommuKind::Vtd;
        // SMMUv3 frames are 64 KiB pages (IHI 0070 §6.1); a VT-d register set is 4 KiB pages
        // (VT-d §8.3, DRHD Size).
        let (page, base_what, size_what, allowed_size) = if vtd {
            (
                PAGE_SIZE,
                "VT-d base",
                "VT-d register set size",
                "a non-zero multiple of 0x1000",
            )
        } else {
            (
                SMMU_PAGE,
                "SMMU base",
                "SMMU frame size",
                "a non-zero multiple of 0x10000",
            )
        };
        if vtd && !VTD_KEYS.contains(&key.text) {
            return Err(self.stray_key(
                key,
                "a [vtd] section",
                "base, size, segment, include-pci-all, unclaimed, allow-bypass, reserve-rid or reserved",
            ));
        }
        match key.text {
            "base" => {
                let mut seen = self.units[i].base.map(|p| p.line);
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "an address")?;
                let base = self.number(t, "an address", u64::MAX)?;
                if base % page != 0 {
                    return Err(self.err(
                        t.pos,
                        ConfigErrorKind::Misaligned {
                            what: base_what,
                            value: base,
                            align: page,
                        },
                    ));
                }
                let u = &mut self.units[i];
                u.base = Some(t.pos);
                u.unit.base = PhysAddr(base);
                self.check_frame(i, t.pos)?;
            }
            "size" => {
                let mut seen = self.units[i].size;
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "a length")?;
                let size = self.number(t, "a length", u64::MAX)?;
                if size == 0 || size % page != 0 {
                    return Err(self.err(
                        t.pos,
                        ConfigErrorKind::OutOfRange {
                            what: size_what,
                            value: size,
                            allowed: allowed_size,
                        },
                    ));
                }
                let u = &mut self.units[i];
                u.size = seen;
                u.unit.size = size;
                u.unit.stated |= Stated::SIZE;
                self.check_frame(i, t.pos)?;
            }
            "coherent" => {
                let mut seen = self.units[i].coherent;
                self.once(&mut seen, key.text, key.pos)?;
                let yes = self.yes_no(line)?;
                let u = &mut self.units[i];
                u.coherent = seen;
                u.unit.coherent = yes;
                u.unit.stated |= Stated::COHERENT;
            }
            "unclaimed" => {
                let mut seen = self.units[i].unclaimed;
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "deny or bypass")?;
                let policy = match t.text {
                    "deny" => Unclaimed::DenyAndRecord,
                    "bypass" => Unclaimed::Bypass,
                    _ => {
                        return Err(self.err(
                            t.pos,
                            ConfigErrorKind::Expected {
                                what: "deny or bypass",
                                found: Found::Token(t.text),
                            },
                        ))
                    }
                };
                let u = &mut self.units[i];
                u.unclaimed = seen;
                u.unit.unclaimed = policy;
                u.unit.stated |= Stated::UNCLAIMED;
                u.bypass = (policy == Unclaimed::Bypass).then_some(t.pos);
            }
            "allow-bypass" => {
                let mut seen = self.units[i].allow_bypass.map(|(l, _)| l);
                self.once(&mut seen, key.text, key.pos)?;
                let yes = self.yes_no(line)?;
                self.units[i].allow_bypass = Some((key.pos.line, yes));
            }
            "irq" => self.irq(i, key, line)?,
            "reserve-sid" => self.reserve_sid(i, line)?,
            "segment" if vtd => {
                let mut seen = self.units[i].segment;
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "a PCI segment")?;
                let segment = self.number(t, "a PCI segment", u64::from(u16::MAX))?;
                let u = &mut self.units[i];
                u.segment = seen;
                u.unit.segment = segment as u16;
                u.unit.stated |= Stated::SEGMENT;
            }
            "include-pci-all" if vtd => {
                let mut seen = self.units[i].include_all.map(|p| p.line);
                self.once(&mut seen, key.text, key.pos)?;
                let yes = self.yes_no(line)?;
                let u = &mut self.units[i];
                u.include_all = Some(key.pos);
                u.unit.include_pci_all = yes;
                u.unit.stated |= Stated::INCLUDE_PCI_ALL;
            }
            "reserve-rid" if vtd => self.reserve_rid(i, line)?,
            "reserved" if vtd => self.reserved_region(i, key, line)?,
            _ => {
                return Err(self.stray_key(
                    key,
                    "an [smmu] section",
                    "base, size, irq, coherent, unclaimed, allow-bypass or reserve-sid",
                ))
            }
        }
        Ok(())
    }

    /// `base + size` must not wrap.
    fn check_frame(&self, i: usize, at: Pos) -> Res<'a, ()> {
        let u = &self.units[i].unit;
        if u.base.checked_add(u.size - 1).is_none() {
            return Err(self.err(
                at,
                ConfigErrorKind::Wraps {
                    what: if u.kind == IommuKind::Vtd {
                        "VT-d base + size"
                    } else {
                        "SMMU base + size"
                    },
                },
            ));
        }
        Ok(())
    }

    /// A PCI function of a `[vtd]` line, `BB:DD.F` (the section's segment applies).
    fn vtd_function(&self, t: Token<'a>) -> Res<'a, Bdf> {
        let bad = |reason| {
            self.err(
                t.pos,
                ConfigErrorKind::BadPciAddress {
                    found: t.text,
                    reason,
                },
            )
        };
        if t.text.matches(':').count() > 1 {
            return Err(bad("no segment here: the [vtd] section's segment applies"));
        }
        values::pci_address(t.text).map(|(_, bdf)| bdf).map_err(bad)
    }

    /// `reserve-rid BB:DD.F` or `BB:DD.F-BB:DD.F`: requester IDs no client may claim.
    fn reserve_rid(&mut self, i: usize, line: &mut Line<'a>) -> Res<'a, ()> {
        let t = self.value(
            line,
            "a PCI function or a range first-last (e.g. 00:1f.0-00:1f.7)",
        )?;
        let (first, last) = match t.text.split_once('-') {
            None => {
                let bdf = self.vtd_function(t)?;
                (bdf, bdf)
            }
            Some((a, b)) => {
                let first = self.vtd_function(Token {
                    text: a,
                    pos: t.pos,
                })?;
                let last = self.vtd_function(Token {
                    text: b,
                    pos: t.pos_at(a.len() + 1),
                })?;
                (first, last)
            }
        };
        let (first, last) = (requester_id(first), requester_id(last));
        if last < first {
            return Err(self.err(
                t.pos,
                ConfigErrorKind::InvertedRange {
                    first: u64::from(first.0),
                    last: u64::from(last.0),
                },
            ));
        }
        self.push_reserved_ids(i, t, first, last)
    }

    /// `reserved ADDR LEN pci BB:DD.F [BB:DD.F ...]`: memory those functions keep reaching.
    fn reserved_region(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        let start_tok = self.value(line, "an address")?;
        let start = self.number(start_tok, "an address", u64::MAX)?;
        let start = self.page_aligned(start_tok, "reserved address", start)?;
        let (len_tok, len) = self.page_length(line, "reserved length")?;
        if start.checked_add(len - 1).is_none() {
            return Err(self.err(
                len_tok.pos,
                ConfigErrorKind::Wraps {
                    what: "reserved address + length",
                },
            ));
        }
        self.literal(line, "pci", "\"pci\"")?;
        let mut region = ReservedRegion {
            start: PhysAddr(start),
            len,
            segment: 0,
            devices: Vec::new(),
            origin: Origin::Config { line: key.pos.line },
        };
        const FUNCTION: &str = "a PCI function (e.g. 00:14.0)";
        let mut next = Some(self.value(line, FUNCTION)?);
        while let Some(t) = next {
            let bdf = self.vtd_function(t)?;
            if region.devices.contains(&bdf) {
                return Err(self.err(t.pos, ConfigErrorKind::RegionDeviceTwice { bdf }));
            }
            region.devices.push(bdf).map_err(|_| {
                self.full(
                    t.pos,
                    CapacityExceeded {
                        what: "devices of one reserved memory region",
                        max: MAX_REGION_DEVICES,
                    },
                )
            })?;
            next = line.next_token();
        }
        if let Some((_, other)) = self
            .regions
            .iter()
            .find(|(_, r)| r.overlaps(region.start, region.len))
        {
            let other_line = other.origin.line();
            return Err(self.err(
                start_tok.pos,
                ConfigErrorKind::ReservedOverlap { other_line },
            ));
        }
        self.regions.push((i, region)).map_err(|_| {
            self.full(
                key.pos,
                CapacityExceeded {
                    what: "reserved memory regions",
                    max: MAX_REGIONS,
                },
            )
        })
    }

    fn irq(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        const KEYS: [&str; 5] = [
            "irq eventq",
            "irq priq",
            "irq cmdq-sync",
            "irq gerror",
            "irq combined",
        ];
        const NAMES: &str = "an interrupt name (eventq, priq, cmdq-sync, gerror or combined)";
        let t = self.value(line, NAMES)?;
        let name = IrqName::parse(t.text).ok_or_else(|| {
            self.err(
                t.pos,
                ConfigErrorKind::Expected {
                    what: NAMES,
                    found: Found::Token(t.text),
                },
            )
        })?;
        let slot = IrqName::ALL.iter().position(|n| *n == name).unwrap_or(0);
        let mut seen = self.units[i].irq[slot];
        self.once(&mut seen, KEYS[slot], key.pos)?;
        let v = self.value(line, "an interrupt ID or none")?;
        let irq = if v.text == "none" {
            None
        } else {
            let intid = self.number(v, "an interrupt ID", u64::from(u32::MAX))?;
            if !Irq::is_spi(intid as u32) {
                return Err(self.err(
                    v.pos,
                    ConfigErrorKind::OutOfRange {
                        what: "interrupt ID",
                        value: intid,
                        allowed: "an SPI: 32-1019 or 4096-5119",
                    },
                ));
            }
            let trigger = match self.choice(line, &["edge", "level"], "edge or level")? {
                0 => Trigger::Edge,
                _ => Trigger::Level,
            };
            Some(Irq {
                intid: intid as u32,
                trigger,
            })
        };
        let u = &mut self.units[i];
        u.irq[slot] = seen;
        u.unit.irqs.set(name, irq);
        u.unit.stated |= Stated::irq(name);
        Ok(())
    }

    fn reserve_sid(&mut self, i: usize, line: &mut Line<'a>) -> Res<'a, ()> {
        const WHAT: &str = "a StreamID";
        let t = self.value(line, "a StreamID or a range first-last")?;
        let max = u64::from(u32::MAX);
        let (first, last) = match t.text.split_once('-') {
            None => {
                let v = self.number(t, WHAT, max)?;
                (v, v)
            }
            Some((a, b)) => {
                let first = self.number(
                    Token {
                        text: a,
                        pos: t.pos,
                    },
                    WHAT,
                    max,
                )?;
                let second = Token {
                    text: b,
                    pos: t.pos_at(a.len() + 1),
                };
                let last = self.number(second, WHAT, max)?;
                if last < first {
                    return Err(self.err(t.pos, ConfigErrorKind::InvertedRange { first, last }));
                }
                (first, last)
            }
        };
        self.push_reserved_ids(i, t, StreamId(first as u32), StreamId(last as u32))
    }

    /// IDs `first..=last` of unit `i` reserved, unless they overlap a reservation before.
    fn push_reserved_ids(
        &mut self,
        i: usize,
        t: Token<'a>,
        first: StreamId,
        last: StreamId,
    ) -> Res<'a, ()> {
        let unit = UnitId(i as u8);
        if let Some(other) = self
            .topology
            .reserved()
            .iter()
            .find(|r| r.unit == unit && r.first <= last && first <= r.last)
        {
            let other_line = other.origin.line();
            return Err(self.err(t.pos, ConfigErrorKind::ReservedOverlap { other_line }));
        }
        self.topology
            .push_reserved(ReservedSids {
                unit,
                first,
                last,
                origin: Origin::Config { line: t.pos.line },
            })
            .map_err(|c| self.full(t.pos, c))
    }

    fn device_key(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        match key.text {
            "unit" => {
                let mut seen = self.devices[i].unit.map(|t| t.pos.line);
                self.once(&mut seen, key.text, key.pos)?;
                let t = self.value(line, "a unit name")?;
                if !values::is_name(t.text) {
                    return Err(self.err(t.pos, ConfigErrorKind::BadName { found: t.text }));
                }
                self.devices[i].unit = Some(t);
            }
            "sid" => {
                let t = self.value(line, "a StreamID")?;
                let sid = StreamId(self.number(t, "a StreamID", u64::from(u32::MAX))? as u32);
                if let Some((first, at)) = self.devices[i].sid {
                    let kind = if first == sid {
                        ConfigErrorKind::DuplicateKey {
                            key: key.text,
                            first_line: at.line,
                        }
                    } else {
                        ConfigErrorKind::ConflictingSid {
                            first,
                            first_line: at.line,
                            second: sid,
                        }
                    };
                    return Err(self.err(t.pos, kind));
                }
                self.devices[i].sid = Some((sid, t.pos));
            }
            "shared" => {
                let mut seen = self.devices[i].shared.map(|(_, p)| p.line);
                self.once(&mut seen, key.text, key.pos)?;
                let yes = self.yes_no(line)?;
                self.devices[i].shared = Some((yes, key.pos));
            }
            "raw-sid" => {
                let mut seen = self.devices[i].raw_sid.map(|(_, p)| p.line);
                self.once(&mut seen, key.text, key.pos)?;
                let yes = self.yes_no(line)?;
                self.devices[i].raw_sid = Some((yes, key.pos));
            }
            "window" => self.window(i, key, line)?,
            _ => {
                return Err(self.stray_key(
                    key,
                    "a [device] section",
                    "unit, sid, shared, raw-sid or window",
                ))
            }
        }
        Ok(())
    }

    fn vm_key(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        match key.text {
            "ram" => self.ram(i, key, line),
            "peer" => self.peer(i, key, line),
            _ => Err(self.stray_key(key, "a [vm] section", "ram or peer")),
        }
    }

    /// `v` (read from `t`) when it is a multiple of 4 KiB; else an error naming `what`.
    fn page_aligned(&self, t: Token<'a>, what: &'static str, v: u64) -> Res<'a, u64> {
        if v.is_multiple_of(PAGE_SIZE) {
            Ok(v)
        } else {
            Err(self.err(
                t.pos,
                ConfigErrorKind::Misaligned {
                    what,
                    value: v,
                    align: PAGE_SIZE,
                },
            ))
        }
    }

    /// The next value of `line` as a length: a non-zero multiple of 4 KiB (errors name
    /// `what`); with its token, for later errors about it.
    fn page_length(&self, line: &mut Line<'a>, what: &'static str) -> Res<'a, (Token<'a>, u64)> {
        let t = self.value(line, "a length")?;
        let len = self.number(t, "a length", u64::MAX)?;
        if len == 0 {
            return Err(self.err(
                t.pos,
                ConfigErrorKind::OutOfRange {
                    what,
                    value: 0,
                    allowed: "a non-zero multiple of 0x1000",
                },
            ));
        }
        Ok((t, self.page_aligned(t, what, len)?))
    }

    /// `ram ADDR LEN [shared]`.
    fn ram(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        let start_tok = self.value(line, "an address")?;
        let start = self.number(start_tok, "an address", u64::MAX)?;
        let start = self.page_aligned(start_tok, "ram address", start)?;
        let (len_tok, len) = self.page_length(line, "ram length")?;
        if start.checked_add(len - 1).is_none() {
            return Err(self.err(
                len_tok.pos,
                ConfigErrorKind::Wraps {
                    what: "ram address + length",
                },
            ));
        }
        let shared = match line.next_token() {
            None => false,
            Some(t) if t.text == "shared" => true,
            Some(t) => {
                return Err(self.err(
                    t.pos,
                    ConfigErrorKind::Expected {
                        what: "\"shared\" or end of line",
                        found: Found::Token(t.text),
                    },
                ))
            }
        };
        let grant = RamGrant {
            start: PhysAddr(start),
            len,
            shared,
            line: key.pos.line,
        };
        if let Some(other) = self.vms[i].vm.ram.iter().find(|g| g.overlaps(&grant)) {
            return Err(self.err(
                start_tok.pos,
                ConfigErrorKind::RamOverlap {
                    start,
                    other_line: other.line,
                },
            ));
        }
        for (j, other_vm) in self.vms.iter().enumerate() {
            let clash = other_vm
                .vm
                .ram
                .iter()
                .find(|g| g.overlaps(&grant) && !(g.shared && shared));
            if let (true, Some(other)) = (j != i, clash) {
                return Err(self.err(
                    start_tok.pos,
                    ConfigErrorKind::RamOverlapsVm {
                        start,
                        other: other_vm.name,
                        other_line: other.line,
                    },
                ));
            }
        }
        self.vms[i].vm.ram.push(grant).map_err(|_| {
            self.full(
                key.pos,
                CapacityExceeded {
                    what: "ram lines in one [vm] section",
                    max: MAX_RAM_PER_VM,
                },
            )
        })
    }

    /// `peer pci [SEG:]BB:DD.F bar N`.
    fn peer(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        self.literal(line, "pci", "\"pci\"")?;
        let addr = self.value(line, "a PCI address (e.g. 00:01.0)")?;
        let (segment, bdf) = values::pci_address(addr.text).map_err(|reason| {
            self.err(
                addr.pos,
                ConfigErrorKind::BadPciAddress {
                    found: addr.text,
                    reason,
                },
            )
        })?;
        self.literal(line, "bar", "\"bar\"")?;
        let t = self.value(line, "a BAR index")?;
        let bar = self.number(t, "a BAR index", u64::MAX)?;
        if bar > u64::from(MAX_BAR) {
            return Err(self.err(
                t.pos,
                ConfigErrorKind::OutOfRange {
                    what: "BAR index",
                    value: bar,
                    allowed: "0 to 5",
                },
            ));
        }
        let peer = PeerBar {
            segment,
            bdf,
            bar: bar as u8,
            line: key.pos.line,
        };
        if let Some(first) = self.vms[i].vm.peer(segment, bdf, peer.bar) {
            return Err(self.err(
                addr.pos,
                ConfigErrorKind::DuplicatePeer {
                    device: peer.device(),
                    bar: peer.bar,
                    first_line: first.line,
                },
            ));
        }
        self.vms[i].vm.peers.push(peer).map_err(|_| {
            self.full(
                key.pos,
                CapacityExceeded {
                    what: "peer lines in one [vm] section",
                    max: MAX_PEERS_PER_VM,
                },
            )
        })
    }

    /// `window iova A pa B len C access R`.
    fn window(&mut self, i: usize, key: Token<'a>, line: &mut Line<'a>) -> Res<'a, ()> {
        let aligned =
            |p: &Self, t: Token<'a>, what: &'static str, v: u64| p.page_aligned(t, what, v);
        self.literal(line, "iova", "\"iova\"")?;
        let t = self.value(line, "an IOVA")?;
        let iova = aligned(self, t, "window iova", self.number(t, "an IOVA", u64::MAX)?)?;
        self.literal(line, "pa", "\"pa\"")?;
        let t = self.value(line, "a physical address")?;
        let pa = aligned(
            self,
            t,
            "window pa",
            self.number(t, "a physical address", u64::MAX)?,
        )?;
        self.literal(line, "len", "\"len\"")?;
        let (len_tok, len) = self.page_length(line, "window len")?;
        if iova.checked_add(len - 1).is_none() {
            return Err(self.err(
                len_tok.pos,
                ConfigErrorKind::Wraps {
                    what: "window iova + len",
                },
            ));
        }
        if pa.checked_add(len - 1).is_none() {
            return Err(self.err(
                len_tok.pos,
                ConfigErrorKind::Wraps {
                    what: "window pa + len",
                },
            ));
        }
        self.literal(line, "access", "\"access\"")?;
        const ACCESS: &str = "an access (r, w, x or a combination such as rw)";
        let t = self.value(line, ACCESS)?;
        let access = values::access(t.text).ok_or_else(|| {
            self.err(
                t.pos,
                ConfigErrorKind::Expected {
                    what: ACCESS,
                    found: Found::Token(t.text),
                },
            )
        })?;
        let device = self.devices[i].device;
        let end = iova + (len - 1);
        if let Some(other) = self.topology.windows_of(device).find(|w| {
            let w_end = w.iova.0 + (w.len - 1);
            w.iova.0 <= end && iova <= w_end
        }) {
            let other_line = other.origin.line();
            return Err(self.err(key.pos, ConfigErrorKind::WindowOverlap { other_line }));
        }
        self.topology
            .push_window(StaticWindow {
                device,
                iova: Iova(iova),
                pa: PhysAddr(pa),
                len,
                access,
                origin: Origin::Config { line: key.pos.line },
            })
            .map_err(|c| self.full(key.pos, c))?;
        self.devices[i].windows += 1;
        Ok(())
    }

    // ---- whole-file checks ---------------------------------------------------------------

    /// The binding of `d` to VT-d unit `target`: by requester ID, so no `sid` (nor `shared`,
    /// `raw-sid`), a PCI function only, of the unit's segment.
    fn vtd_binding(
        &self,
        d: &DeviceDraft<'a>,
        unit: Token<'a>,
        unit_id: UnitId,
        target: &IommuUnit,
    ) -> Res<'a, StreamBinding> {
        let stray = [
            d.sid.map(|(_, p)| ("sid", p)),
            d.shared.map(|(_, p)| ("shared", p)),
            d.raw_sid.map(|(_, p)| ("raw-sid", p)),
        ];
        if let Some((key, at)) = stray.into_iter().flatten().min_by_key(|(_, p)| p.line) {
            return Err(self.err(
                at,
                ConfigErrorKind::SidForVtd {
                    key,
                    unit: unit.text,
                },
            ));
        }
        let Device::Pci { segment, bdf } = d.device else {
            return Err(self.err(unit.pos, ConfigErrorKind::MmioOnVtd { unit: unit.text }));
        };
        if segment != target.segment {
            return Err(self.err(
                unit.pos,
                ConfigErrorKind::WrongSegment {
                    device: d.device,
                    unit: unit.text,
                    segment: target.segment,
                },
            ));
        }
        Ok(StreamBinding {
            unit: unit_id,
            source: StreamSource::Device(d.device),
            sid: requester_id(bdf),
            shared: false,
            raw_sid: false,
            origin: Origin::Config {
                line: unit.pos.line,
            },
        })
    }

    fn finish(mut self) -> Res<'a, Topology> {
        for (i, d) in self.units.iter().enumerate() {
            let Some(base_pos) = d.base else {
                return Err(self.err(d.header, ConfigErrorKind::MissingKey { key: "base" }));
            };
            if let Some(at) = d.bypass {
                if !matches!(d.allow_bypass, Some((_, true))) {
                    return Err(self.err(at, ConfigErrorKind::BypassWithoutOptIn));
                }
            }
            for e in &self.units[..i] {
                let kind = if e.unit.base == d.unit.base {
                    ConfigErrorKind::DuplicateUnitBase {
                        base: d.unit.base,
                        first_line: e.base.map_or(e.header.line, |p| p.line),
                    }
                } else if e.unit.overlaps(&d.unit) {
                    ConfigErrorKind::UnitsOverlap {
                        other: e.name,
                        other_line: e.header.line,
                    }
                } else {
                    continue;
                };
                return Err(self.err(base_pos, kind));
            }
        }
        let units = core::mem::take(&mut self.units);
        for d in &units {
            self.topology
                .push_unit(d.unit.clone())
                .map_err(|c| self.full(d.header, c))?;
        }
        for (i, d) in units.iter().enumerate() {
            let Some(at) = d.include_all else { continue };
            let clash = units[..i].iter().find(|o| {
                o.unit.include_pci_all && d.unit.include_pci_all && o.unit.segment == d.unit.segment
            });
            if let Some(o) = clash {
                return Err(self.err(
                    at,
                    ConfigErrorKind::TwoIncludeAll {
                        other: o.name,
                        other_line: o.include_all.map_or(o.header.line, |p| p.line),
                    },
                ));
            }
        }
        for i in 0..self.devices.len() {
            let d = &self.devices[i];
            let Some(unit) = d.unit else {
                match d.sid {
                    Some(_) => {
                        return Err(self.err(d.header, ConfigErrorKind::MissingKey { key: "unit" }))
                    }
                    None if d.shared.is_some() || d.raw_sid.is_some() => {
                        return Err(self.err(d.header, ConfigErrorKind::MissingKey { key: "sid" }))
                    }
                    None if d.windows == 0 => {
                        return Err(self.err(d.header, ConfigErrorKind::EmptySection))
                    }
                    None => continue,
                }
            };
            let Some(unit_index) = units.iter().position(|u| u.name == unit.text) else {
                return Err(self.err(unit.pos, ConfigErrorKind::UnknownUnit { name: unit.text }));
            };
            let unit_id = UnitId(unit_index as u8);
            let target = &units[unit_index].unit;
            let binding = if target.kind == IommuKind::Vtd {
                self.vtd_binding(d, unit, unit_id, target)?
            } else {
                let Some((sid, sid_pos)) = d.sid else {
                    return Err(self.err(d.header, ConfigErrorKind::MissingKey { key: "sid" }));
                };
                let shared = matches!(d.shared, Some((true, _)));
                if let Some(other) = self.devices[..i].iter().find(|o| {
                    o.unit.is_some_and(|u| u.text == unit.text)
                        && o.sid.is_some_and(|(s, _)| s == sid)
                        && !(shared && matches!(o.shared, Some((true, _))))
                }) {
                    return Err(self.err(
                        sid_pos,
                        ConfigErrorKind::UndeclaredSharing {
                            sid,
                            unit: unit.text,
                            other: other.device,
                            other_line: other.sid.map_or(other.header.line, |(_, p)| p.line),
                        },
                    ));
                }
                StreamBinding {
                    unit: unit_id,
                    source: StreamSource::Device(d.device),
                    sid,
                    shared,
                    raw_sid: matches!(d.raw_sid, Some((true, _))),
                    origin: Origin::Config { line: sid_pos.line },
                }
            };
            let header = d.header;
            self.topology
                .push_stream(binding)
                .map_err(|c| self.full(header, c))?;
        }
        // INCLUDE_PCI_ALL after every other binding: the first range covering a function wins.
        for (i, d) in units.iter().enumerate() {
            let (Some(at), true) = (d.include_all, d.unit.include_pci_all) else {
                continue;
            };
            let binding = StreamBinding {
                unit: UnitId(i as u8),
                source: StreamSource::PciRange(whole_segment(d.unit.segment)),
                sid: StreamId(0),
                shared: false,
                raw_sid: false,
                origin: Origin::Config { line: at.line },
            };
            self.topology
                .push_stream(binding)
                .map_err(|c| self.full(at, c))?;
        }
        for (i, mut region) in core::mem::take(&mut self.regions) {
            region.segment = units.get(i).map_or(0, |u| u.unit.segment);
            let at = Pos {
                line: region.origin.line(),
                column: 1,
            };
            self.topology
                .push_region(region)
                .map_err(|c| self.full(at, c))?;
        }
        for v in core::mem::take(&mut self.vms) {
            let line = v.vm.line;
            self.topology.push_vm(v.vm).map_err(|c| {
                let at = Pos { line, column: 1 };
                self.full(at, c)
            })?;
        }
        Ok(self.topology)
    }
}
