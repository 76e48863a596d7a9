//! Where the boot loader put the initrd (`/chosen/linux,initrd-start` and `-end`, Linux
//! `Documentation/devicetree/bindings/chosen.txt`). smmuman uses it to carry `smmuman.conf`:
//! QEMU's `-initrd FILE` loads FILE into RAM and writes these two properties.

use super::error::{DtError, DtErrorKind};
use super::tree::cells;
use fdt::Fdt;
use iommu_core::PhysAddr;

/// The initrd's place in RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Initrd {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl Initrd {
    /// Its length in bytes ([`initrd`] returns no range whose end lies before its start; one
    /// built by hand that does has length 0).
    pub fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The initrd, or `None` when `/chosen` names none.
///
/// # Errors
/// [`DtErrorKind::Missing`] when only one of the two properties is present,
/// [`DtErrorKind::NotOneOrTwoCells`] for a value of another length,
/// [`DtErrorKind::InitrdRange`] when the end lies before the start.
pub fn initrd(fdt: &Fdt<'_>) -> Result<Option<Initrd>, DtError> {
    const PATH: &str = "/chosen";
    let Some(chosen) = fdt.find_node(PATH) else {
        return Ok(None);
    };
    let read = |property: &'static str| -> Result<Option<u64>, DtError> {
        match chosen.property(property) {
            None => Ok(None),
            Some(p) if p.value.len() == 4 || p.value.len() == 8 => {
                Ok(Some(cells(p.value, 0, p.value.len() / 4)))
            }
            Some(p) => Err(DtError::new(
                PATH,
                property,
                DtErrorKind::NotOneOrTwoCells {
                    bytes: p.value.len(),
                },
            )),
        }
    };
    match (read("linux,initrd-start")?, read("linux,initrd-end")?) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(DtError::new(PATH, "linux,initrd-end", DtErrorKind::Missing)),
        (None, Some(_)) => Err(DtError::new(
            PATH,
            "linux,initrd-start",
            DtErrorKind::Missing,
        )),
        (Some(start), Some(end)) if end < start => Err(DtError::new(
            PATH,
            "linux,initrd-end",
            DtErrorKind::InitrdRange { start, end },
        )),
        (Some(start), Some(end)) => Ok(Some(Initrd {
            start: PhysAddr(start),
            end: PhysAddr(end),
        })),
    }
}
