//! Parsers for the non-numeric values of the config: unit names, PCI addresses, access
//! letters. Plain functions over one token each.

use crate::unit::UNIT_NAME_LEN;
use iommu_core::{Access, Bdf};

/// Whether `s` is a valid unit name: an ASCII letter, then letters, digits, `-` or `_`, at
/// most [`UNIT_NAME_LEN`] characters.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= UNIT_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `[segment:]bus:device.function`, every field hex without prefix (as `lspci` prints it).
///
/// # Errors
/// A reason, for [`super::ConfigErrorKind::BadPciAddress`].
pub fn pci_address(s: &str) -> Result<(u16, Bdf), &'static str> {
    const SHAPE: &str = "expected [segment:]bus:device.function in hex, e.g. 00:01.0";
    let (head, func) = s.rsplit_once('.').ok_or(SHAPE)?;
    let mut parts = head.rsplitn(3, ':');
    let dev = parts.next().ok_or(SHAPE)?;
    let bus = parts.next().ok_or(SHAPE)?;
    let segment = parts.next();
    let field = |t: &str, max_digits: usize| -> Result<u32, &'static str> {
        if t.is_empty() || t.len() > max_digits {
            return Err(SHAPE);
        }
        u32::from_str_radix(t, 16).map_err(|_| SHAPE)
    };
    let segment = match segment {
        Some(t) => field(t, 4)? as u16,
        None => 0,
    };
    let bus = field(bus, 2)? as u8;
    let dev = field(dev, 2)?;
    let func = field(func, 1)?;
    if dev > 0x1f {
        return Err("device number above 0x1f");
    }
    if func > 7 {
        return Err("function number above 7");
    }
    Bdf::new(bus, dev as u8, func as u8)
        .map(|bdf| (segment, bdf))
        .map_err(|_| SHAPE)
}

/// Access letters: `r`, `w`, `x`, each at most once, at least one.
pub fn access(s: &str) -> Option<Access> {
    let mut a = Access::empty();
    for c in s.chars() {
        let bit = match c {
            'r' => Access::READ,
            'w' => Access::WRITE,
            'x' => Access::EXEC,
            _ => return None,
        };
        if a.contains(bit) {
            return None;
        }
        a |= bit;
    }
    (!a.is_empty()).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("smmu0"));
        assert!(is_name("pcie-smmu_1"));
        assert!(!is_name("0smmu"));
        assert!(!is_name(""));
        assert!(!is_name("smmu.0"));
        assert!(!is_name(&"a".repeat(UNIT_NAME_LEN + 1)));
    }

    #[test]
    fn pci_addresses_with_and_without_segment() {
        let bdf = |b, d, f| Bdf::new(b, d, f).unwrap();
        assert_eq!(pci_address("00:01.0"), Ok((0, bdf(0, 1, 0))));
        assert_eq!(pci_address("0001:ff:1f.7"), Ok((1, bdf(0xff, 0x1f, 7))));
        assert_eq!(pci_address("1:2.3"), Ok((0, bdf(1, 2, 3))));
        assert_eq!(pci_address("00:20.0"), Err("device number above 0x1f"));
        assert_eq!(pci_address("00:01.8"), Err("function number above 7"));
        for bad in [
            "00:01",
            "0:0:0:01.0",
            "100:01.0",
            "00:01.00",
            "zz:01.0",
            ":01.0",
            "00:01.",
        ] {
            assert!(pci_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_letters() {
        assert_eq!(access("rw"), Some(Access::RW));
        assert_eq!(access("wr"), Some(Access::RW));
        assert_eq!(access("r"), Some(Access::READ));
        assert_eq!(access("rwx"), Some(Access::RW | Access::EXEC));
        assert_eq!(access("rr"), None);
        assert_eq!(access(""), None);
        assert_eq!(access("rW"), None);
    }
}
