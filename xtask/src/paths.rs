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

/// The board `cargo xtask run` and the tests boot when none is named, and whose linker script
/// and `smmuman.conf` the image embeds.
pub const DEFAULT_BOARD: &str = "qemu-virt";

/// The directory of the default board, with the linker script and QEMU arguments.
pub fn board_dir() -> PathBuf {
    boards_dir().join(DEFAULT_BOARD)
}

/// `boards/`: one directory per board (`qemu.args`, `smmuman.conf`, `README.md`).
pub fn boards_dir() -> PathBuf {
    workspace_root().join("boards")
}

/// The `cargo` that is running us, or `cargo` from `PATH`.
pub fn cargo() -> PathBuf {
    env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}
