//! Device scopes (VT-d §8.3.1): which devices a DRHD, RMRR, ATSR or SATC speaks for, as a start
//! bus and a path of (device, function) hops through bridges.

use super::error::{DmarError, DmarErrorKind, LengthRule, PathProblem, ResolveError};
use super::read::u8_at;
use iommu_core::Bdf;

/// Bytes before a device scope's path: Type, Length, Flags, Reserved, Enumeration ID, Start Bus
/// Number (VT-d §8.3.1).
pub(crate) const SCOPE_HEADER_LEN: usize = 6;

/// A device scope's Type field (VT-d §8.3.1, table "Device Scope Entry Types").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ScopeType {
    /// 1: a PCI endpoint device; the path ends at the device itself.
    PciEndpoint,
    /// 2: a PCI-PCI bridge and every device below it; the path ends at the bridge.
    PciSubHierarchy,
    /// 3: an I/O APIC; Enumeration ID is its I/O APIC id, the path its source-id.
    IoApic,
    /// 4: an MSI-capable HPET; Enumeration ID is its HPET number, the path its source-id.
    MsiCapableHpet,
    /// 5: an ACPI namespace device; Enumeration ID is its ANDD's ACPI Device Number.
    AcpiNamespaceDevice,
    /// 0 or 6 and above: reserved by the spec; kept so a newer table still reads.
    Reserved(u8),
}

impl ScopeType {
    /// The type from its encoding.
    pub const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::PciEndpoint,
            2 => Self::PciSubHierarchy,
            3 => Self::IoApic,
            4 => Self::MsiCapableHpet,
            5 => Self::AcpiNamespaceDevice,
            other => Self::Reserved(other),
        }
    }

    /// The encoding.
    pub const fn raw(self) -> u8 {
        match self {
            Self::PciEndpoint => 1,
            Self::PciSubHierarchy => 2,
            Self::IoApic => 3,
            Self::MsiCapableHpet => 4,
            Self::AcpiNamespaceDevice => 5,
            Self::Reserved(raw) => raw,
        }
    }
}

/// One hop of a device-scope path: a (device, function) on the current bus (VT-d §8.3.1 "Path").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PathEntry {
    /// PCI device number (0..=31 in a table that parsed).
    pub device: u8,
    /// PCI function number (0..=7 in a table that parsed).
    pub function: u8,
}

/// A device scope's route to its device: start at `start_bus`, and for every entry but the last
/// go through that bridge to its secondary bus (VT-d §8.3.2 "Device Scope Example").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ScopePath<'a> {
    start_bus: u8,
    /// The path bytes: whole (device, function) pairs.
    entries: &'a [u8],
}

impl<'a> ScopePath<'a> {
    /// A path over `entries` (pairs of bytes; a trailing odd byte is ignored).
    pub const fn new(start_bus: u8, entries: &'a [u8]) -> Self {
        Self { start_bus, entries }
    }

    /// The Start Bus Number: the bus the first entry sits on.
    pub const fn start_bus(&self) -> u8 {
        self.start_bus
    }

    /// How many (device, function) entries it has.
    pub const fn len(&self) -> usize {
        self.entries.len() / 2
    }

    /// Whether it has no entry (never, in a table that parsed).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, first hop first.
    pub fn entries(&self) -> impl Iterator<Item = PathEntry> + 'a {
        self.entries.chunks_exact(2).map(|pair| match *pair {
            [device, function] => PathEntry { device, function },
            // `chunks_exact(2)` yields only 2-byte chunks.
            _ => PathEntry {
                device: 0xff,
                function: 0xff,
            },
        })
    }

    /// The device the path names, on the bus numbering the platform runs with now.
    ///
    /// Every entry but the last is a bridge: `read_secondary_bus` reads its Secondary Bus Number
    /// (PCI-to-PCI bridge header, config offset 0x19), and the next entry sits on that bus.
    ///
    /// # Errors
    /// [`ResolveError`]: an empty path, an out-of-range entry, or a bridge on the way whose
    /// secondary bus `read_secondary_bus` cannot tell (absent, or not a bridge).
    pub fn resolve(
        &self,
        read_secondary_bus: impl Fn(Bdf) -> Option<u8>,
    ) -> Result<Bdf, ResolveError> {
        let mut bus = self.start_bus;
        let mut here: Option<Bdf> = None;
        for entry in self.entries() {
            if let Some(bridge) = here {
                bus = read_secondary_bus(bridge).ok_or(ResolveError::NoSecondaryBus { bridge })?;
            }
            here = Some(Bdf::new(bus, entry.device, entry.function).map_err(|_| {
                ResolveError::BadEntry {
                    device: entry.device,
                    function: entry.function,
                }
            })?);
        }
        here.ok_or(ResolveError::EmptyPath)
    }
}

/// One device scope entry (VT-d §8.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceScope<'a> {
    /// Byte offset of the entry from the start of the table.
    pub offset: usize,
    /// Type: what kind of device it names.
    pub scope_type: ScopeType,
    /// Flags (byte 2; reserved, 0, in tables before VT-d rev 3.x).
    pub flags: u8,
    /// Enumeration ID: the I/O APIC id, HPET number or ACPI device number for those types;
    /// unused for PCI types.
    pub enumeration_id: u8,
    /// The route to the device.
    pub path: ScopePath<'a>,
}

/// The device scopes of one structure, in table order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceScopes<'a> {
    /// The whole table, so offsets and errors are table offsets.
    table: &'a [u8],
    /// First byte of the first scope.
    start: usize,
    /// One past the structure's last byte.
    end: usize,
    /// Error label, e.g. `"DRHD device scope"`.
    structure: &'static str,
}

impl<'a> DeviceScopes<'a> {
    pub(crate) const fn new(
        table: &'a [u8],
        start: usize,
        end: usize,
        structure: &'static str,
    ) -> Self {
        Self {
            table,
            start,
            end,
            structure,
        }
    }

    /// The scopes, each checked as it is read (the walk [`super::Dmar::parse`] runs).
    pub(crate) fn checked(&self) -> CheckedScopes<'a> {
        CheckedScopes {
            scopes: *self,
            at: self.start,
            failed: false,
        }
    }

    /// The scopes in table order.
    pub fn iter(&self) -> ScopeIter<'a> {
        ScopeIter(self.checked())
    }

    /// Whether the structure lists no scope.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

impl<'a> IntoIterator for DeviceScopes<'a> {
    type Item = DeviceScope<'a>;
    type IntoIter = ScopeIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The device scopes of one structure, in table order ([`DeviceScopes::iter`]).
#[derive(Clone, Debug)]
pub struct ScopeIter<'a>(CheckedScopes<'a>);

impl<'a> Iterator for ScopeIter<'a> {
    type Item = DeviceScope<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // A table that parsed has been walked by `checked` already: no entry fails here (and
        // the walk stops at the first that would).
        self.0.next()?.ok()
    }
}

/// The scope walk that checks every length and path entry; stops after the first error.
#[derive(Clone, Debug)]
pub(crate) struct CheckedScopes<'a> {
    scopes: DeviceScopes<'a>,
    at: usize,
    failed: bool,
}

impl<'a> CheckedScopes<'a> {
    fn error(&mut self, offset: usize, field: &'static str, kind: DmarErrorKind) -> DmarError {
        self.failed = true;
        DmarError {
            offset,
            structure: self.scopes.structure,
            field,
            kind,
        }
    }

    fn read(&mut self) -> Result<DeviceScope<'a>, DmarError> {
        let at = self.at;
        let table = self.scopes.table;
        let available = self.scopes.end.saturating_sub(at);
        // §8.3.1: Type (byte 0) and Length (byte 1) come first; Length covers the whole entry.
        let (true, Some(raw_type), Some(length)) =
            (available >= 2, u8_at(table, at), u8_at(table, at + 1))
        else {
            return Err(self.error(
                at,
                "Length",
                DmarErrorKind::Truncated {
                    needed: SCOPE_HEADER_LEN,
                    available,
                },
            ));
        };
        let length = usize::from(length);
        if length < SCOPE_HEADER_LEN {
            return Err(self.error(
                at + 1,
                "Length",
                DmarErrorKind::BadLength {
                    length,
                    rule: LengthRule::AtLeast(SCOPE_HEADER_LEN),
                },
            ));
        }
        if !(length - SCOPE_HEADER_LEN).is_multiple_of(2) {
            return Err(self.error(
                at + 1,
                "Length",
                DmarErrorKind::BadLength {
                    length,
                    rule: LengthRule::HeaderPlusPathEntries,
                },
            ));
        }
        if length > available {
            return Err(self.error(
                at + 1,
                "Length",
                DmarErrorKind::Truncated {
                    needed: length,
                    available,
                },
            ));
        }
        let path_at = at + SCOPE_HEADER_LEN;
        let end = at + length;
        let (Some(flags), Some(enumeration_id), Some(start_bus), Some(entries)) = (
            u8_at(table, at + 2),
            u8_at(table, at + 4),
            u8_at(table, at + 5),
            table.get(path_at..end),
        ) else {
            // Unreachable: `end` lies within the structure, which lies within the table.
            return Err(self.error(
                at + 1,
                "Length",
                DmarErrorKind::Truncated {
                    needed: length,
                    available: table.len().saturating_sub(at),
                },
            ));
        };
        // §8.3.1: every scope type names its device (or source-id) by at least one hop. The
        // path would start at `path_at`, which is `end`: past the scope and, for the table's
        // last scope, past the table. The byte at fault is the Length that left no room for it.
        if entries.is_empty() {
            return Err(self.error(
                at + 1,
                "Length",
                DmarErrorKind::ScopePath {
                    problem: PathProblem::Empty,
                },
            ));
        }
        for (i, pair) in entries.chunks_exact(2).enumerate() {
            if let [device, function] = *pair {
                let problem = if device > 31 {
                    Some((0, PathProblem::Device(device)))
                } else if function > 7 {
                    Some((1, PathProblem::Function(function)))
                } else {
                    None
                };
                if let Some((byte, problem)) = problem {
                    return Err(self.error(
                        path_at + 2 * i + byte,
                        "Path",
                        DmarErrorKind::ScopePath { problem },
                    ));
                }
            }
        }
        self.at = end;
        Ok(DeviceScope {
            offset: at,
            scope_type: ScopeType::from_raw(raw_type),
            flags,
            enumeration_id,
            path: ScopePath::new(start_bus, entries),
        })
    }
}

impl<'a> Iterator for CheckedScopes<'a> {
    type Item = Result<DeviceScope<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.scopes.end {
            return None;
        }
        Some(self.read())
    }
}
