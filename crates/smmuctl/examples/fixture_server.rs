//! Serves the end-to-end tests' fixture (two VMs with their windows and a rogue DMA's faults,
//! over the fake IOMMU) on a Unix socket, to try `smmuctl` without booting anything:
//!
//! ```sh
//! cargo run -p smmuctl --example fixture_server -- /tmp/smmuman-admin.sock &
//! cargo run -p smmuctl -- --connect unix:/tmp/smmuman-admin.sock vms
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smmuman-admin.sock".to_string());
    let path = std::path::PathBuf::from(path);
    let _ = std::fs::remove_file(&path);
    eprintln!("serving the smmuctl fixture on unix:{}", path.display());
    let manager = std::sync::Arc::new(std::sync::Mutex::new(common::manager()));
    common::serve(&path, manager);
}
