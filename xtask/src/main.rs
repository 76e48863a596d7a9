//! `cargo xtask <task>`: build, run and test smmuman.
//!
//! * `build`: the daemon for `aarch64-unknown-none` (release, `--features bare`), flattened into
//!   the raw arm64 Image `target/smmuman-daemon.bin`; `build --scenarios`: the test image
//!   (binary `smmuman-daemon-scenarios`, `smmuman-daemon/scenarios/`, `--features scenarios`),
//!   `target/smmuman-daemon-scenarios.bin`.
//! * `run [--board NAME] [--plan FILE] [key=value ...]`: build the product image and the qvm
//!   guests, pack `boards/NAME/smmuman.conf`, the host plan (`boards/NAME/host.plan` or FILE)
//!   and the guests into an initrd archive, and boot under QEMU with `boards/NAME/qemu.args`
//!   (default `qemu-virt`), console on the terminal; exits with QEMU's exit code.
//!   `--operator unix:PATH|tcp:HOST:PORT` connects the board's second UART (the daemon's
//!   operator channel, `smmuctl`) to that socket; `--stay` boots with `stay=1` (the host stays
//!   resident once its VMs stopped) and, without `--operator`, opens the channel at
//!   `unix:smmuman-admin.sock`.
//! * `run [--board NAME] [--initrd FILE] scenario [key=value ...]`: the test image with
//!   `-append "scenario=<scenario> key=value ..."`. `--initrd FILE` hands the daemon FILE as
//!   its `smmuman.conf`; without it, a board other than `qemu-virt` gets its own
//!   `smmuman.conf` (the image embeds `qemu-virt`'s).
//! * `run --board qemu-q35 [scenario] [key=value ...]`: the x86-64 image (`smmuman-daemon/x86/`,
//!   `x86_64-unknown-none`, PVH ELF) on QEMU `q35` with `intel-iommu` and `edu`
//!   (`boards/qemu-q35/qemu.args`), `-append "scenario=<scenario> key=value ..."` (default
//!   scenario `boot`); installs `qemu-system-x86` and the target when missing; exits with the
//!   image's exit code.
//! * `guests`: the qvm test guests (`tests-qemu/guests`) for `aarch64-unknown-none`, copied to
//!   `target/guests/<name>.elf` (for qvm) and `<name>.bin` (raw Image for plain QEMU).
//! * `test`: format check, clippy (host and bare-metal), host tests (QEMU boots included), docs.
//! * `qemu`: check for QEMU 10, installing it from bookworm-backports when root.

#![deny(unsafe_code, missing_docs)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use xtask::{bench, guests, image, paths, qemu, toolchain, x86, Error, Result};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  build [--scenarios]            build target/smmuman-daemon.bin (the product image), or
                                 target/smmuman-daemon-scenarios.bin (with the test scenarios)
  run [--board NAME] [--plan FILE] [--stay] [--operator unix:PATH|tcp:HOST:PORT] [key=value...]
                                 build the product image and the guests, and boot the host
                                 under QEMU (default board: qemu-virt) with an initrd holding
                                 the board's smmuman.conf, its host.plan (or FILE) and the
                                 guests: the VMs the plan names start and run. --operator
                                 connects the operator's channel (smmuctl) to that socket;
                                 --stay keeps the host resident once its VMs stopped (and
                                 opens the channel at unix:smmuman-admin.sock unless
                                 --operator names another)
  run [--board NAME] [--initrd FILE] scenario [key=value...]
                                 build the test image and boot one test scenario; --initrd
                                 FILE passes FILE as the daemon's smmuman.conf (default: the
                                 board's own, except for qemu-virt, whose config the image
                                 embeds)
  run --board qemu-q35 [scenario] [key=value...]
                                 build the x86-64 image and boot it on QEMU q35 with VT-d
                                 and edu: scenario boot (default), deny, window or remap
  guests                         build the qvm test guests into target/guests/
  test                           fmt, clippy, host + QEMU tests, docs (what CI runs)
  qemu                           check for QEMU 10; install it when root on Debian bookworm
  bench                          every crate's benches (instruction counts), summary table";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => {
            let built = if args.get(1).map(String::as_str) == Some("--scenarios") {
                toolchain::ensure()
                    .and_then(|()| qemu::ensure_cross_cc())
                    .and_then(|()| {
                        image::build_with(&paths::target_dir(), image::Flavour::Scenarios)
                    })
            } else {
                build()
            };
            built.map(|image| {
                println!("{}", image.display());
                ExitCode::SUCCESS
            })
        }
        Some("run") => run(&args[1..]),
        Some("guests") => build_guests().map(|guests| {
            for g in guests {
                println!("{} {}", g.elf.display(), g.image.display());
            }
            ExitCode::SUCCESS
        }),
        Some("test") => test().map(|()| ExitCode::SUCCESS),
        Some("bench") => bench::run().map(|()| ExitCode::SUCCESS),
        Some("qemu") => qemu::ensure().map(|v| {
            println!("QEMU {v} at {}", qemu::binary().display());
            ExitCode::SUCCESS
        }),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        ExitCode::FAILURE
    })
}

fn build() -> Result<std::path::PathBuf> {
    toolchain::ensure()?;
    image::build(&paths::target_dir())
}

fn build_guests() -> Result<Vec<guests::Guest>> {
    toolchain::ensure()?;
    guests::build(&paths::target_dir())
}

/// What `cargo xtask run` was asked for.
#[derive(Debug, PartialEq, Eq)]
struct RunArgs {
    board: String,
    initrd: Option<PathBuf>,
    /// A host plan other than the board's `host.plan`.
    plan: Option<PathBuf>,
    /// A test scenario (then the scenario image boots instead of the product).
    scenario: Option<String>,
    bootargs: String,
    /// `--operator unix:PATH|tcp:HOST:PORT`: the operator's channel for `smmuctl`.
    operator: Option<String>,
}

/// Parses `[--board NAME] [--initrd FILE] [--plan FILE] [scenario] [key=value...]` (options
/// first).
fn parse_run_args(args: &[String]) -> Result<RunArgs> {
    let mut board = paths::DEFAULT_BOARD.to_string();
    let mut initrd = None;
    let mut plan = None;
    let mut operator = None;
    let mut stay = false;
    let mut rest = args;
    loop {
        match rest {
            [flag, tail @ ..] if flag == "--stay" => {
                stay = true;
                rest = tail;
            }
            [flag, value, tail @ ..] if flag == "--board" => {
                board = value.clone();
                rest = tail;
            }
            [flag, value, tail @ ..] if flag == "--initrd" => {
                initrd = Some(PathBuf::from(value));
                rest = tail;
            }
            [flag, value, tail @ ..] if flag == "--plan" => {
                plan = Some(PathBuf::from(value));
                rest = tail;
            }
            [flag, value, tail @ ..] if flag == "--operator" => {
                operator = Some(value.clone());
                rest = tail;
            }
            [flag, tail @ ..] if flag == "--stay" => {
                stay = true;
                rest = tail;
            }
            [flag, ..] if flag.starts_with("--") => {
                return Err(Error(format!(
                    "run: unknown or incomplete option {flag}\n{USAGE}"
                )))
            }
            _ => break,
        }
    }
    let (scenario, extra) = match rest.split_first() {
        Some((first, tail)) if !first.contains('=') => (Some(first.clone()), tail),
        _ => (None, rest),
    };
    if scenario.is_some() && plan.is_some() {
        return Err(Error(format!(
            "run: --plan runs the product image's host plan; a scenario runs the test image: give one\n{USAGE}"
        )));
    }
    if stay && scenario.is_some() {
        return Err(Error(format!(
            "run: --stay keeps the product image's host resident; a scenario runs the test image\n{USAGE}"
        )));
    }
    // --stay without --operator: the default socket, so that smmuctl can reach the host.
    if stay && operator.is_none() {
        operator = Some(qemu::DEFAULT_OPERATOR.to_string());
    }
    let bootargs = scenario
        .iter()
        .map(|s| format!("scenario={s}"))
        .chain(stay.then(|| "stay=1".to_string()))
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(RunArgs {
        board,
        initrd,
        plan,
        scenario,
        bootargs,
        operator,
    })
}

fn run(args: &[String]) -> Result<ExitCode> {
    let RunArgs {
        board,
        initrd,
        plan,
        scenario,
        bootargs,
        operator,
    } = parse_run_args(args)?;
    if x86::is_x86_board(&board) {
        if operator.is_some() {
            return Err(Error(format!(
                "run: board {board} has no operator channel yet (--stay, --operator: qemu-virt boards)"
            )));
        }
        if plan.is_some() {
            return Err(Error(format!(
                "run: board {board} takes no --plan (its image runs no VMs yet); --initrd FILE passes a config"
            )));
        }
        let initrd = match initrd {
            Some(file) => Some(
                std::path::absolute(&file)
                    .map_err(|e| Error(format!("--initrd {}: {e}", file.display())))?,
            ),
            None => None,
        };
        return run_x86(&bootargs, scenario.is_none(), initrd.as_deref());
    }
    let initrd = match (initrd, &scenario) {
        (Some(file), _) => Some(
            std::path::absolute(&file)
                .map_err(|e| Error(format!("--initrd {}: {e}", file.display())))?,
        ),
        // A test scenario: the board's config as before.
        (None, Some(_)) => qemu::default_initrd(&board)?,
        // The product: the board's config, the host plan and the guests in one archive.
        (None, None) => {
            let plan = match plan {
                Some(p) => std::path::absolute(&p)
                    .map_err(|e| Error(format!("--plan {}: {e}", p.display())))?,
                None => qemu::board_dir_of(&board)?.join("host.plan"),
            };
            let elfs: Vec<PathBuf> = build_guests()?.into_iter().map(|g| g.elf).collect();
            Some(guests::initrd_for(&board, &plan, &elfs)?)
        }
    };
    let image = if scenario.is_some() {
        toolchain::ensure()?;
        qemu::ensure_cross_cc()?;
        image::build_with(&paths::target_dir(), image::Flavour::Scenarios)?
    } else {
        build()?
    };
    qemu::ensure()?;
    let mut cmd = qemu::boot_command(&qemu::Boot {
        board: &board,
        image: &image,
        bootargs: &bootargs,
        initrd: initrd.as_deref(),
    })?;
    if let Some(channel) = &operator {
        cmd.args(qemu::operator_args(channel)?);
        eprintln!(
            "xtask: the operator's channel is {channel}: in another terminal, smmuctl --connect {channel} vms (cargo run -q -p smmuctl -- ...)"
        );
    }
    eprintln!(
        "xtask: booting {} on board {board} with \"{bootargs}\"{} (QEMU: Ctrl-A X quits)",
        image.display(),
        initrd
            .as_ref()
            .map(|f| format!(", config {}", f.display()))
            .unwrap_or_default()
    );
    let status = cmd
        .status()
        .map_err(|e| Error(format!("cannot run {}: {e}", qemu::binary().display())))?;
    // QEMU's exit code is the daemon's (semihosting SYS_EXIT); killed by a signal: failure.
    Ok(ExitCode::from(
        status.code().map_or(1, |c| c.clamp(0, 255) as u8),
    ))
}

/// Boots the x86-64 image on `qemu-q35` with `bootargs` (`scenario=boot` when none named).
fn run_x86(bootargs: &str, no_scenario: bool, initrd: Option<&Path>) -> Result<ExitCode> {
    let bootargs = if no_scenario {
        format!("scenario=boot {bootargs}").trim_end().to_string()
    } else {
        bootargs.to_string()
    };
    let elf = x86::build(&paths::target_dir())?;
    x86::ensure_qemu()?;
    let mut cmd = x86::boot_command_with_initrd(&elf, &bootargs, initrd)?;
    eprintln!(
        "xtask: booting {} on board {} with \"{bootargs}\" (QEMU: Ctrl-A X quits)",
        elf.display(),
        x86::BOARD
    );
    let status = cmd
        .status()
        .map_err(|e| Error(format!("cannot run {}: {e}", x86::binary().display())))?;
    // isa-debug-exit: 33 is a pass, 2c+1 is the image's exit code c.
    let code = x86::daemon_code(status.code()).unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Runs one step of `test`, stopping everything at the first failure.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\nxtask test: ==> {name}");
    let status = cmd
        .current_dir(paths::workspace_root())
        .status()
        .map_err(|e| Error(format!("{name}: cannot start: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error(format!(
            "test step `{name}` failed ({status}); stopping"
        )))
    }
}

/// Names of the `no_std` library crates under `crates/`: those whose `src/lib.rs` declares
/// `no_std` (also through `cfg_attr`), read from their manifests.
fn no_std_crates(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("crates");
    let mut names = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(manifest) = std::fs::read_to_string(path.join("Cargo.toml")) else {
            continue;
        };
        let Ok(lib) = std::fs::read_to_string(path.join("src").join("lib.rs")) else {
            continue;
        };
        if !declares_no_std(&lib) {
            continue;
        }
        if let Some(name) = package_name(&manifest) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether a crate root has a `#![no_std]` or `#![cfg_attr(..., no_std)]` attribute.
fn declares_no_std(lib: &str) -> bool {
    lib.lines()
        .map(str::trim)
        .any(|l| l.starts_with("#![") && l.contains("no_std"))
}

/// The `name = "..."` of a manifest's `[package]` section.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line
                .strip_prefix("name")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('='))
            {
                return Some(value.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

fn test() -> Result<()> {
    // The tools the tests need, first: installed when running as root on Debian, otherwise a
    // clear stop with the commands to run, before any long step.
    toolchain::ensure()?;
    qemu::ensure()?;
    x86::ensure_qemu()?;
    qemu::ensure_dtc()?;
    // The test image links a C VMM (scenario vmm-c); clippy of the scenarios builds it too.
    qemu::ensure_cross_cc()?;
    let cargo = paths::cargo();
    let root = paths::workspace_root();
    step(
        "cargo fmt --all -- --check",
        Command::new(&cargo).args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy --workspace --all-targets -- -D warnings",
        Command::new(&cargo).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut bare = Command::new(&cargo);
    bare.args(["clippy", "--target", image::TARGET]);
    for name in no_std_crates(&root)? {
        bare.args(["--package", &name]);
    }
    // The qvm test guests are bare-metal binaries too (their host build is a stub).
    bare.args(["--package", guests::PACKAGE]);
    // With `scenarios`, both daemon binaries (the product shim and the test image) and the
    // library's test hooks; the product build alone follows.
    bare.args([
        "--package",
        image::PACKAGE,
        "--features",
        "smmuman-daemon/scenarios",
        "--",
        "-D",
        "warnings",
    ]);
    step(
        &format!(
            "cargo clippy (no_std crates + {} + {} --features scenarios) --target {}",
            guests::PACKAGE,
            image::PACKAGE,
            image::TARGET
        ),
        &mut bare,
    )?;
    step(
        &format!(
            "cargo clippy {} --features bare (the product image) --target {}",
            image::PACKAGE,
            image::TARGET
        ),
        Command::new(&cargo).args([
            "clippy",
            "--target",
            image::TARGET,
            "--package",
            image::PACKAGE,
            "--features",
            "smmuman-daemon/bare",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    toolchain::ensure_target(x86::TARGET)?;
    step(
        &format!(
            "cargo clippy {} --features bare (the x86-64 image) --target {}",
            x86::PACKAGE,
            x86::TARGET
        ),
        Command::new(&cargo).args([
            "clippy",
            "--target",
            x86::TARGET,
            "--package",
            x86::PACKAGE,
            "--features",
            "bare",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    eprintln!("\nxtask test: ==> cargo xtask build (the product image)");
    let product = build()?;
    eprintln!("\nxtask test: ==> cargo xtask build --scenarios (the test image)");
    let image = image::build_with(&paths::target_dir(), image::Flavour::Scenarios)?;
    eprintln!("\nxtask test: ==> the x86-64 image (board {})", x86::BOARD);
    let x86_image = x86::build(&paths::target_dir())?;
    step(
        "cargo test --workspace",
        Command::new(&cargo)
            .args(["test", "--workspace"])
            .env("SMMUMAN_IMAGE", &image)
            .env("SMMUMAN_PRODUCT_IMAGE", &product)
            .env("SMMUMAN_X86_IMAGE", &x86_image),
    )?;
    step(
        "cargo doc --workspace --no-deps",
        Command::new(&cargo)
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("\nxtask test: all steps passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_takes_board_and_initrd_before_the_scenario() {
        let r = parse_run_args(&strings(&[
            "--board",
            "qemu-virt-bridge",
            "--initrd",
            "x.conf",
            "window",
            "st=2level",
        ]))
        .unwrap();
        assert_eq!(r.board, "qemu-virt-bridge");
        assert_eq!(r.initrd, Some(PathBuf::from("x.conf")));
        assert_eq!(r.bootargs, "scenario=window st=2level");
        assert_eq!(r.scenario.as_deref(), Some("window"));
        let d = parse_run_args(&strings(&["st=2level"])).unwrap();
        assert_eq!((d.board.as_str(), d.initrd), ("qemu-virt", None));
        assert_eq!((d.scenario, d.bootargs.as_str()), (None, "st=2level"));
        let p = parse_run_args(&strings(&["--plan", "x.plan"])).unwrap();
        assert_eq!(p.plan, Some(PathBuf::from("x.plan")));
        assert!(parse_run_args(&strings(&["--plan", "x.plan", "window"])).is_err());
        let p = parse_run_args(&strings(&["--plan", "x.plan", "--stay", "k=v"])).unwrap();
        assert_eq!(p.bootargs, "stay=1 k=v");
        assert!(parse_run_args(&strings(&["--stay", "window"])).is_err());
        assert!(parse_run_args(&strings(&["--board"])).is_err());
        assert!(parse_run_args(&strings(&["--bord", "x"])).is_err());
    }

    #[test]
    fn stay_keeps_the_host_and_opens_the_operator_channel() {
        let r = parse_run_args(&strings(&["--stay"])).unwrap();
        assert_eq!(r.bootargs, "stay=1");
        assert_eq!(r.operator.as_deref(), Some(qemu::DEFAULT_OPERATOR));
        let r = parse_run_args(&strings(&["--operator", "tcp:127.0.0.1:4000", "--stay"])).unwrap();
        assert_eq!(r.operator.as_deref(), Some("tcp:127.0.0.1:4000"));
        // Control: without either, the run is what it was.
        let r = parse_run_args(&strings(&[])).unwrap();
        assert_eq!((r.bootargs.as_str(), r.operator), ("", None));
        assert!(parse_run_args(&strings(&["--stay", "window"])).is_err());
    }

    #[test]
    fn no_std_is_recognised_in_both_spellings_and_only_as_an_attribute() {
        assert!(declares_no_std("//! doc\n#![no_std]\n"));
        assert!(declares_no_std("#![cfg_attr(not(test), no_std)]\n"));
        assert!(!declares_no_std("//! placeholder, will be no_std later\n"));
    }

    #[test]
    fn package_name_comes_from_the_package_section() {
        let manifest = "[package]\nname = \"stage2\"\n\n[dependencies]\nname-thing = \"1\"\n";
        assert_eq!(package_name(manifest).as_deref(), Some("stage2"));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
    }

    #[test]
    fn the_workspace_driver_crates_are_selected_and_placeholders_are_not() {
        let crates = no_std_crates(&paths::workspace_root()).unwrap();
        assert!(crates.iter().any(|c| c == "iommu-core"), "{crates:?}");
        for name in &crates {
            let lib = std::fs::read_to_string(
                paths::workspace_root()
                    .join("crates")
                    .join(name)
                    .join("src/lib.rs"),
            )
            .unwrap();
            assert!(declares_no_std(&lib), "{name}");
        }
    }
}
