//! `include/smmu.h` is what cbindgen generates from this crate now: regenerate it and compare.
//! `SMMU_WRITE_HEADER=1` rewrites the committed file instead of failing.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8 header");
    let path = dir.join("include/smmu.h");
    if std::env::var_os("SMMU_WRITE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/smmu.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/smmu.h is stale: regenerate it with \
         `SMMU_WRITE_HEADER=1 cargo test -p smmuman-capi --test header` and commit it"
    );
}
