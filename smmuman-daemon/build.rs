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
        if env::var_os("CARGO_FEATURE_SCENARIOS").is_some() {
            if let Err(e) = c_vmm(&manifest_dir) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The C compiler for the test image's C VMM: `SMMUMAN_CROSS_CC`, else Debian's cross gcc
/// (`cargo xtask build --scenarios` installs it when missing).
const CROSS_CC: &str = "aarch64-linux-gnu-gcc";

/// Compiles the test image's C VMM (`c/c_vmm.c`, scenario `vmm-c`) freestanding for the
/// bare-metal target and links it into the binary; it calls libsmmu (`smmuman-capi`).
fn c_vmm(manifest_dir: &std::path::Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=SMMUMAN_CROSS_CC");
    let src = manifest_dir.join("c");
    let header = manifest_dir.join("../crates/smmuman-capi/include");
    for f in [
        src.join("c_vmm.c"),
        src.join("c_vmm.h"),
        header.join("smmu.h"),
    ] {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("c_vmm.o");
    let cc = env::var("SMMUMAN_CROSS_CC").unwrap_or_else(|_| CROSS_CC.to_string());
    let status = std::process::Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-ffreestanding",
        ])
        .args([
            "-fno-builtin",
            "-nostdlib",
            "-fno-pic",
            "-fno-pie",
            "-fno-stack-protector",
        ])
        // No FP/SIMD registers: the C VMM runs in a host task like the Rust ones.
        .arg("-mgeneral-regs-only")
        .arg("-I")
        .arg(&header)
        .arg("-c")
        .arg(src.join("c_vmm.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .map_err(|e| {
            format!(
                "the test image's C VMM needs a C compiler for aarch64: {cc}: {e}\n\
                 (Debian: apt-get install gcc-aarch64-linux-gnu, or set SMMUMAN_CROSS_CC)"
            )
        })?;
    if !status.success() {
        return Err(format!("{cc} failed to compile c/c_vmm.c ({status})"));
    }
    // Into the test image only: the product binary holds no scenario.
    println!(
        "cargo:rustc-link-arg-bin=smmuman-daemon-scenarios={}",
        out.display()
    );
    Ok(())
}
