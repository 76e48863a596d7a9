//! `/chosen/bootargs`: space-separated words; the guests read `key=<hex>` words.

/// A `key=` word's value is not a hexadecimal address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadHex<'a> {
    /// The key.
    pub key: &'a str,
    /// The value given.
    pub value: &'a str,
}

/// The value of the word `key=<hex>` (with or without `0x`), or `None` when absent.
///
/// # Errors
/// [`BadHex`] when the value is empty, not hexadecimal or over 64 bits.
pub fn hex<'a>(args: &'a str, key: &'a str) -> Result<Option<u64>, BadHex<'a>> {
    let Some(value) = args
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    else {
        return Ok(None);
    };
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    let ok =
        !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_hexdigit());
    match u64::from_str_radix(digits, 16) {
        Ok(v) if ok => Ok(Some(v)),
        _ => Err(BadHex { key, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_words_are_found_by_exact_key() {
        let args = "console=x rogue.outside=0x80000000 rogue.host=51800000 rogue.hostx=1";
        assert_eq!(hex(args, "rogue.outside"), Ok(Some(0x8000_0000)));
        assert_eq!(hex(args, "rogue.host"), Ok(Some(0x5180_0000)));
        assert_eq!(hex(args, "rogue.smmu"), Ok(None));
        for bad in [
            "rogue.smmu=",
            "rogue.smmu=0x",
            "rogue.smmu=+1",
            "rogue.smmu=0x1_0000_0000_0000_0000",
            "rogue.smmu=zz",
        ] {
            assert!(hex(bad, "rogue.smmu").is_err(), "{bad}");
        }
    }
}
