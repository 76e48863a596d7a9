//! The C smoke test: builds `libsmmu.a` (`crates/libsmmu`) with the test-only in-process manager (feature
//! `test-manager`, in a target directory of its own), compiles `tests/c/smoke.c` with the
//! system's C compiler (`$CC`, else `cc`) against it and the generated header, runs it and
//! checks what it printed: a C VMM attaches its device, maps an array of windows, gets a
//! refused map's code and message, unmaps, reads an injected fault and destroys its object,
//! with the model IOMMU showing where each DMA lands.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_c_vmm_drives_the_manager_through_libsmmu() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libsmmu-test-manager");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args([
            "build",
            "--lib",
            "--features",
            "test-manager",
            "--manifest-path",
        ])
        .arg(dir.join("../libsmmu/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target));
    let lib = target.join("debug/libsmmu.a");
    let exe = target.join("smoke");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(dir.join("include"))
        .arg(dir.join("tests/c/smoke.c"))
        .arg(&lib)
        // What Rust's std needs from the system on Linux (`--print native-static-libs`).
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
            "-o",
        ])
        .arg(&exe));
    let out = run(&mut Command::new(&exe));
    print!("{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .to_owned()
    };
    assert!(out.ends_with("SMOKE OK\n"), "{out}");
    // The refused map: its code, the fixed text and the message naming the host address.
    let steal = line("REFUSED map-other-vm ");
    assert!(steal.contains("status=113 "), "{steal}");
    assert!(
        steal.contains(
            "host memory outside the RAM and BARs the host assigned to this VM (0x90000000)"
        ),
        "{steal}"
    );
    let nic = line("REFUSED attach-nic ");
    assert!(nic.contains("status=115 "), "{nic}");
    // Refused by the library itself: named argument, nothing sent.
    let access = line("REFUSED map-access ");
    assert!(
        access.contains("status=2 ")
            && access.contains("entries[0]: access 0x8 is not a window's access")
            && access.contains("(nothing was sent)"),
        "{access}"
    );
    let dev = line("REFUSED attach-dev-32 ");
    assert!(dev.contains("dev: PCI device 32 is above 31"), "{dev}");
    assert_eq!(
        line("DMA "),
        "DMA sid=0x8 iova=0x40001234 lands pa=0x80001234"
    );
    assert_eq!(
        line("FAULT "),
        "FAULT seq=1 sid=0x8 addr=0x40200040 dir=write reason=1"
    );
    assert!(
        line("DECISION manager=no ").contains("needs the smmuman manager, which is not running")
    );
    assert!(line("DECISION manager=yes ").contains("DMA isolation: ok"));
}

/// The example of `docs/c-api.md` compiles against the committed header, warnings as errors.
#[test]
fn the_documented_example_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(dir.join("../../docs/c-api.md")).expect("docs/c-api.md");
    let start = doc.find("```c\n").expect("a C example") + 5;
    let len = doc[start..].find("```").expect("its end");
    let mut src = doc[start..start + len].to_owned();
    // The transport the example leaves to the system.
    src.push_str(
        "static int32_t my_call(void *ctx, const uint8_t *req, size_t req_len, uint8_t *reply,\n\
         size_t reply_cap, size_t *reply_len) {\n\
         (void)ctx; (void)req; (void)req_len; (void)reply; (void)reply_cap; (void)reply_len;\n\
         return SMMU_TRANSPORT_NO_MANAGER;\n}\n",
    );
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let c = tmp.join("c-api-example.c");
    std::fs::write(&c, src).expect("write the example");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c", "-I"])
        .arg(dir.join("include"))
        .arg(&c)
        .arg("-o")
        .arg(tmp.join("c-api-example.o")));
}
