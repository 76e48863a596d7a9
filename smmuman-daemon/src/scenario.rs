//! The scenario registry: a scenario is a named function over the platform that returns an
//! [`Outcome`]. The binary owns the table; this module finds entries in it.

use crate::report::Outcome;

/// One entry of the registry. `C` is the platform context the binary passes in.
pub struct Scenario<C: ?Sized> {
    /// Name used in `scenario=<name>`.
    pub name: &'static str,
    /// One line saying what it shows.
    pub about: &'static str,
    /// The scenario itself.
    pub run: fn(&mut C) -> Outcome,
}

/// The entry called `name`.
pub fn find<'r, C: ?Sized>(registry: &'r [Scenario<C>], name: &str) -> Option<&'r Scenario<C>> {
    registry.iter().find(|s| s.name == name)
}

/// The registry's names, comma separated (for the "unknown scenario" message).
pub struct Names<'r, C: ?Sized>(pub &'r [Scenario<C>]);

impl<C: ?Sized> core::fmt::Display for Names<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(_: &mut u32) -> Outcome {
        Outcome::pass()
    }
    fn count(n: &mut u32) -> Outcome {
        *n += 1;
        Outcome::fail()
    }

    const REGISTRY: &[Scenario<u32>] = &[
        Scenario {
            name: "boot",
            about: "boots",
            run: pass,
        },
        Scenario {
            name: "count",
            about: "counts",
            run: count,
        },
    ];

    #[test]
    fn finds_by_exact_name() {
        let mut n = 0;
        let s = find(REGISTRY, "count").unwrap();
        assert_eq!((s.run)(&mut n).status(), crate::report::Status::Fail);
        assert_eq!(n, 1);
        assert!(find(REGISTRY, "boo").is_none());
        assert_eq!(format!("{}", Names(REGISTRY)), "boot,count");
    }
}
