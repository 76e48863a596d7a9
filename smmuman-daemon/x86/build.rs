//! Links the bare-metal x86-64 binary with `boards/qemu-q35/image.ld` (load address 1 MiB, the
//! PVH note kept, `.note.gnu*` discarded). Only for a target without an OS: host builds of the
//! library and its tests link normally.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let script = manifest_dir.join("../../boards/qemu-q35/image.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
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
