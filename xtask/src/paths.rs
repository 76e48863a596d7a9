//! Where things are.

use std::env;
use std::path::PathBuf;

/// The workspace root (the directory above `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the workspace root if
/// relative), otherwise `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The board directory with the linker script and QEMU arguments.
pub fn board_dir() -> PathBuf {
    workspace_root().join("boards").join("qemu-virt")
}

/// The `cargo` that is running us, or `cargo` from `PATH`.
pub fn cargo() -> PathBuf {
    env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}
