//! The Rust side of the set-up: the pinned toolchain's `aarch64-unknown-none` target and the
//! `rustfmt` / `clippy` components.
//!
//! `rust-toolchain.toml` lists them, but rustup honours that list only when it installs the
//! toolchain itself: on a machine that already has the pinned toolchain (CI's image does), the
//! target is missing and the first bare-metal build fails with "can't find crate for `core`".
//! So `run` and `test` check, and add what is missing with `rustup`, which acts on the toolchain
//! `rust-toolchain.toml` pins because it runs in the workspace root.

use crate::paths;
use crate::{Error, Result};
use std::process::Command;

use crate::image::TARGET;

/// Components `cargo xtask test` runs.
pub const COMPONENTS: [&str; 2] = ["rustfmt", "clippy"];

/// `rustup ARGS` in the workspace root (so the pinned toolchain is the one acted on); its stdout.
fn rustup(args: &[&str]) -> Result<String> {
    let out = Command::new("rustup")
        .args(args)
        .current_dir(paths::workspace_root())
        .output()
        .map_err(|e| {
            Error(format!(
                "cannot run rustup ({e}); install the target by hand: rustup target add {TARGET}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error(format!(
            "rustup {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether target `name` is a line of `listing` (rustup prints one installed target per line).
fn has_target(listing: &str, name: &str) -> bool {
    listing.lines().any(|l| l.trim() == name)
}

/// Whether component `name` is in `listing`: rustup prints components with the host triple
/// (`clippy-x86_64-unknown-linux-gnu`).
fn has_component(listing: &str, name: &str) -> bool {
    listing.lines().any(|l| {
        let l = l.trim();
        l == name
            || l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// Makes sure the pinned toolchain has target `name` (e.g. `x86_64-unknown-none` for the
/// q35 image, which `rust-toolchain.toml` does not list), adding it when missing.
///
/// # Errors
/// When rustup is missing or refuses.
pub fn ensure_target(name: &str) -> Result<()> {
    let targets = rustup(&["target", "list", "--installed"])?;
    if !has_target(&targets, name) {
        eprintln!("xtask: adding the {name} target to the pinned toolchain");
        rustup(&["target", "add", name])?;
    }
    Ok(())
}

/// Makes sure the pinned toolchain has [`TARGET`] and [`COMPONENTS`], adding what is missing.
///
/// # Errors
/// When rustup is missing or refuses; the message names the command to run.
pub fn ensure() -> Result<()> {
    let targets = rustup(&["target", "list", "--installed"])?;
    if !has_target(&targets, TARGET) {
        eprintln!("xtask: adding the {TARGET} target to the pinned toolchain");
        rustup(&["target", "add", TARGET])?;
    }
    let components = rustup(&["component", "list", "--installed"])?;
    let missing: Vec<&str> = COMPONENTS
        .iter()
        .copied()
        .filter(|c| !has_component(&components, c))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: adding {} to the pinned toolchain",
            missing.join(", ")
        );
        let mut args = vec!["component", "add"];
        args.extend(&missing);
        rustup(&args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_items_are_matched_whole_or_with_the_host_suffix() {
        let targets = "aarch64-unknown-none\nx86_64-unknown-linux-gnu\n";
        assert!(has_target(targets, TARGET));
        assert!(!has_target("x86_64-unknown-linux-gnu\n", TARGET));
        assert!(!has_target("aarch64-unknown-none-softfloat\n", TARGET));
        let components = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n";
        assert!(has_component(components, "clippy"));
        assert!(!has_component(components, "rustfmt"));
    }
}
