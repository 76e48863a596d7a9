//! Fixture helpers shared by the integration tests.

#![allow(dead_code)]

pub mod fdtblob;

use std::path::PathBuf;
use std::process::Command;

/// `tests/fixtures/<kind>/<name>`.
pub fn fixture(kind: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
        .join(name)
}

/// `boards/<board>/<file>` of the workspace.
pub fn board_file(board: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../boards")
        .join(board)
        .join(file)
}

/// The blob `dtc` compiles from `tests/fixtures/dt/<name>`. The fixtures are kept as source
/// so that each failure case is readable; `dtc` comes with the `device-tree-compiler`
/// package.
pub fn dtb(name: &str) -> Vec<u8> {
    let path = fixture("dt", name);
    let out = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run dtc ({e}); install it with the device-tree-compiler package \
                 (apt-get install device-tree-compiler)"
            )
        });
    assert!(
        out.status.success(),
        "dtc could not compile {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The text of `tests/fixtures/config/<name>`.
pub fn config_text(name: &str) -> String {
    let path = fixture("config", name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
