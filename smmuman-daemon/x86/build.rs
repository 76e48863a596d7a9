//! Links the bare-metal x86-64 binary with `boards/qemu-q35/image.ld` (load address 1 MiB, the
//! PVH note kept, `.note.gnu*` discarded), and names the board's `smmuman.conf` for the image
//! to embed (`include_str!(env!("SMMUMAN_BOARD_CONFIG"))`, as the aarch64 daemon's `build.rs`
//! does): the config the image uses when QEMU passes no `-initrd`. Only for a target without
//! an OS is the linker script passed: host builds of the library and its tests link normally.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let script = manifest_dir.join("../../boards/qemu-q35/image.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    let config = manifest_dir.join("../../boards/qemu-q35/smmuman.conf");
    println!("cargo:rerun-if-changed={}", config.display());
    println!("cargo:rustc-env=SMMUMAN_BOARD_CONFIG={}", config.display());
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none")
        && env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
    {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // The target links static PIE by default; the 32-bit trampoline uses absolute 32-bit
        // addresses (R_X86_64_32) and QEMU's PVH loader places segments at their link
        // addresses without relocating, so the image is a fixed-address executable.
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
