//! Numbers in `smmuman.conf` (`docs/config.md` § Numbers).
//!
//! * `0x` then hex digits, or `0d` then decimal digits; `_` may separate digits.
//! * An optional suffix multiplies: `K` by 2^10, `M` by 2^20, `G` by 2^30.
//! * A number without a prefix is accepted only where nobody could read it two ways: a single
//!   digit (`0`..`9`), or decimal digits with a suffix (`64K`, `128K`, `2M`: sizes are written
//!   in decimal everywhere). Any other bare number (`10`, `256`) would be read as hex by people
//!   used to QNX's hex-by-default configs and as decimal by everybody else, so it is refused.

/// Why a token is not a number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NumberError {
    /// Not of the number syntax at all.
    Malformed,
    /// A bare number of two or more digits: hex or decimal?
    Ambiguous,
    /// Does not fit in 64 bits.
    Overflow,
}

/// Reads `token` as a number.
///
/// # Errors
/// [`NumberError`] says why it is not one.
pub fn parse_number(token: &str) -> Result<u64, NumberError> {
    let (body, multiplier) = match token.as_bytes().last() {
        Some(b'K') => (&token[..token.len() - 1], 1u64 << 10),
        Some(b'M') => (&token[..token.len() - 1], 1 << 20),
        Some(b'G') => (&token[..token.len() - 1], 1 << 30),
        _ => (token, 1),
    };
    let value = if let Some(hex) = body.strip_prefix("0x") {
        digits(hex, 16)?
    } else if let Some(dec) = body.strip_prefix("0d") {
        digits(dec, 10)?
    } else {
        let v = digits(body, 10)?;
        if v >= 10 && multiplier == 1 {
            return Err(NumberError::Ambiguous);
        }
        v
    };
    value.checked_mul(multiplier).ok_or(NumberError::Overflow)
}

/// `s` as digits of `radix`, with `_` allowed between digits.
fn digits(s: &str, radix: u32) -> Result<u64, NumberError> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') {
        return Err(NumberError::Malformed);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for c in s.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or(NumberError::Malformed)?;
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            // Keep scanning: a later bad character makes it malformed, not an overflow.
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumberError::Overflow)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_select_the_radix() {
        assert_eq!(parse_number("0x10"), Ok(16));
        assert_eq!(parse_number("0d10"), Ok(10));
        assert_eq!(parse_number("0x0905_0000"), Ok(0x0905_0000));
        assert_eq!(parse_number("0d1_000"), Ok(1000));
        assert_eq!(parse_number("0xffffffffffffffff"), Ok(u64::MAX));
    }

    #[test]
    fn suffixes_multiply_by_powers_of_two() {
        assert_eq!(parse_number("4K"), Ok(4096));
        assert_eq!(parse_number("2M"), Ok(0x20_0000));
        assert_eq!(parse_number("1G"), Ok(0x4000_0000));
        assert_eq!(parse_number("0x10K"), Ok(0x4000));
        assert_eq!(parse_number("0d64K"), Ok(65536));
    }

    #[test]
    fn bare_numbers_are_single_digits_or_decimal_sizes() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("9"), Ok(9));
        assert_eq!(parse_number("64K"), Ok(0x1_0000));
        assert_eq!(parse_number("128K"), Ok(0x2_0000));
        assert_eq!(parse_number("1_024M"), Ok(0x4000_0000));
        assert_eq!(parse_number("10"), Err(NumberError::Ambiguous));
        assert_eq!(parse_number("256"), Err(NumberError::Ambiguous));
        assert_eq!(parse_number("1a"), Err(NumberError::Malformed));
        assert_eq!(parse_number("ffK"), Err(NumberError::Malformed));
    }

    #[test]
    fn malformed_tokens() {
        for t in [
            "", "0x", "0d", "zz", "ff", "0xg", "0d1a", "0x_1", "0x1_", "4k", "0X10", "-1", "K",
        ] {
            assert_eq!(parse_number(t), Err(NumberError::Malformed), "{t:?}");
        }
    }

    #[test]
    fn overflow_is_reported() {
        assert_eq!(
            parse_number("0x1_0000_0000_0000_0000"),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            parse_number("0x4000_0000_0000_0000K"),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            parse_number("0d18446744073709551616"),
            Err(NumberError::Overflow)
        );
        assert_eq!(
            parse_number("0x1_0000_0000_0000_0000z"),
            Err(NumberError::Malformed),
            "a bad digit wins over overflow"
        );
    }

    proptest! {
        #[test]
        fn hex_and_decimal_spellings_round_trip(v: u64) {
            prop_assert_eq!(parse_number(&format!("0x{v:x}")), Ok(v));
            prop_assert_eq!(parse_number(&format!("0d{v}")), Ok(v));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_number(&s);
        }
    }
}
