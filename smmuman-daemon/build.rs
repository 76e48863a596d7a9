//! Links the bare-metal binary with the board's linker script and picks the board's
//! `smmuman.conf` to embed.
//!
//! `SMMUMAN_BOARD` names a directory under `boards/` (default `qemu-virt`); its `smmuman.conf`
//! is the config the daemon uses when the boot loader passes none (no initrd). The code reads
//! it with `include_str!(env!("SMMUMAN_BOARD_CONFIG"))`. Every QEMU board shares the
//! `qemu-virt` linker script (same RAM base and boot protocol).
//!
//! Only when building for a target without an OS (`aarch64-unknown-none`) is the linker script
//! passed: host builds of the library and its tests must link normally.

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

/// The board built when `SMMUMAN_BOARD` is unset.
const DEFAULT_BOARD: &str = "qemu-virt";

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let boards = manifest_dir.join("../boards");
    let script = boards.join("qemu-virt/image.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SMMUMAN_BOARD");
    let board = env::var("SMMUMAN_BOARD")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_BOARD.to_string());
    if board.contains(['/', '\\']) || board.starts_with('.') {
        eprintln!("SMMUMAN_BOARD=\"{board}\" is not a directory name under boards/");
        return ExitCode::FAILURE;
    }
    let config = boards.join(&board).join("smmuman.conf");
    if !config.is_file() {
        eprintln!(
            "SMMUMAN_BOARD={board}: no {} (every board directory has a smmuman.conf)",
            config.display()
        );
        return ExitCode::FAILURE;
    }
    println!("cargo:rerun-if-changed={}", config.display());
    println!("cargo:rustc-env=SMMUMAN_BOARD_NAME={board}");
    println!("cargo:rustc-env=SMMUMAN_BOARD_CONFIG={}", config.display());
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
    ExitCode::SUCCESS
}
