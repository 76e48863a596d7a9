//! The QEMU test harness: boots the daemon image with a scenario, captures the console, and
//! parses its records so that tests assert on values, not on text.
//!
//! The image is `SMMUMAN_IMAGE` when set (as `cargo xtask test` does); otherwise the harness
//! builds it once per test process with a separate target directory (`<target>/qemu-image`), so
//! that it does not wait on the `cargo test` that is running it.
//!
//! A missing or wrong QEMU is a test failure whose message says how to install QEMU 10; a run
//! that exceeds its time limit is killed and fails with everything it printed.

#![deny(unsafe_code, missing_docs)]

pub mod host;
pub mod operator;
pub mod plain;
pub mod q35;
pub mod records;

pub use records::{parse_records, Record};

use std::env;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use xtask::{image, paths, qemu};

/// How long one boot may take before it is killed (override: `SMMUMAN_QEMU_TIMEOUT` seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one QEMU run produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// The bootargs passed with `-append`.
    pub bootargs: String,
    /// QEMU's exit code (the daemon's, through semihosting).
    pub exit_code: Option<i32>,
    /// Everything QEMU wrote (stdout, then stderr).
    pub console: String,
    /// The structured records in the console output, in order.
    pub records: Vec<Record>,
}

impl Run {
    /// The `RESULT` record (the last one, if there are several).
    pub fn result(&self) -> Option<&Record> {
        self.records("RESULT").last()
    }

    /// All records of one kind (`PCI`, `BOARD`...).
    pub fn records<'r>(&'r self, kind: &str) -> impl Iterator<Item = &'r Record> + 'r {
        let kind = kind.to_string();
        self.records.iter().filter(move |r| r.kind == kind)
    }

    /// The first record of `kind`.
    pub fn record(&self, kind: &str) -> Option<&Record> {
        self.records(kind).next()
    }

    /// A description of the run for assertion messages: bootargs, exit code and console.
    pub fn describe(&self) -> String {
        format!(
            "bootargs \"{}\", exit code {:?}, console:\n{}",
            self.bootargs, self.exit_code, self.console
        )
    }

    /// Panics (fails the test) unless the run exited 0 with `RESULT ... status=pass` and no
    /// `FATAL` record (a stack overflow, stuck clients, an IOMMU failure) anywhere in it.
    pub fn assert_pass(&self) {
        let status = self.result().and_then(|r| r.get("status"));
        assert!(
            self.exit_code == Some(0) && status == Some("pass"),
            "expected a pass; {}",
            self.describe()
        );
        assert!(
            self.record("FATAL").is_none(),
            "a passing run printed FATAL; {}",
            self.describe()
        );
    }
}

/// Panics (fails the test) unless every name in `expected` is among `checks` (a guest's
/// `(name, ok)` CHECK lines) with ok, and no check failed; `context` (the console) goes into the
/// message.
pub fn assert_checks(checks: &[(String, bool)], expected: &[&str], context: &str) {
    for name in expected {
        assert!(
            checks.iter().any(|(n, ok)| n == name && *ok),
            "CHECK {name} missing or failed; {context}"
        );
    }
    assert!(
        checks.iter().all(|(_, ok)| *ok),
        "a CHECK failed; {context}"
    );
}

/// The boot image, built at most once per process.
///
/// # Errors
/// When the build fails (the message has cargo's reason).
pub fn image() -> Result<PathBuf, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            env_or_build("SMMUMAN_IMAGE", || {
                image::build_with(
                    &paths::target_dir().join("qemu-image"),
                    image::Flavour::Scenarios,
                )
                .map_err(|e| e.to_string())
            })
        })
        .clone()
}

/// The file the environment variable `var` names (as `cargo xtask test` sets them), or what
/// `build` makes when it is unset or empty.
///
/// # Errors
/// When `var` names no file, or the build fails.
pub(crate) fn env_or_build(
    var: &str,
    build: impl FnOnce() -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    match env::var_os(var) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{var}={} is not a file", path.display()))
            }
        }
        _ => build(),
    }
}

/// Checks QEMU once per process.
///
/// # Errors
/// When QEMU 10 is missing; the message says how to install it.
pub fn qemu_ready() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| qemu::check().map(|_| ()).map_err(|e| e.to_string()))
        .clone()
}

pub(crate) fn timeout() -> Duration {
    env::var("SMMUMAN_QEMU_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Boots the daemon with `scenario=<scenario>` followed by `extra` bootargs and waits for it to
/// exit.
///
/// # Errors
/// When QEMU is missing, the image cannot be built, QEMU cannot start, or the run exceeds the
/// time limit (the message then includes the console so far).
pub fn run(scenario: &str, extra: &[&str]) -> Result<Run, String> {
    run_with_qemu_args(scenario, extra, &[])
}

/// [`run`] with more QEMU arguments after the board's (extra devices, say).
///
/// # Errors
/// As [`run`].
pub fn run_with_qemu_args(
    scenario: &str,
    extra: &[&str],
    qemu_args: &[&str],
) -> Result<Run, String> {
    run_on(
        &Boot {
            qemu_args,
            ..Boot::default()
        },
        scenario,
        extra,
    )
}

/// Where and with what to boot: as `cargo xtask run --board NAME --initrd FILE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Boot<'a> {
    /// The board (a directory under `boards/` with a `qemu.args`); `None`: `qemu-virt`.
    pub board: Option<&'a str>,
    /// The config file QEMU passes as initrd; the daemon reads it instead of the config the
    /// image embeds. `None`: no initrd (whatever the board).
    pub initrd: Option<&'a Path>,
    /// More QEMU arguments after the board's.
    pub qemu_args: &'a [&'a str],
}

/// A file of the repository, by its path from the workspace root (a config fixture, a board's
/// `smmuman.conf`).
pub fn repo_file(path: &str) -> PathBuf {
    paths::workspace_root().join(path)
}

/// Boots the daemon as `boot` says with `scenario=<scenario>` and `extra` bootargs and waits
/// for it to exit.
///
/// # Errors
/// As [`run`], and when the board is unknown or the initrd is not a file.
pub fn run_on(boot: &Boot<'_>, scenario: &str, extra: &[&str]) -> Result<Run, String> {
    qemu_ready()?;
    let image = image()?;
    let bootargs = std::iter::once(format!("scenario={scenario}"))
        .chain(extra.iter().map(|s| s.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    boot_image(&image, boot, bootargs)
}

/// Boots `image` as `boot` says with `bootargs` and waits for it to exit.
pub(crate) fn boot_image(image: &Path, boot: &Boot<'_>, bootargs: String) -> Result<Run, String> {
    boot_image_until(image, boot, bootargs, None)
}

/// [`boot_image`], but when `until` is given, QEMU is killed as soon as its console shows that
/// text (a resident host that would serve forever); the run then has no exit code.
pub(crate) fn boot_image_until(
    image: &Path,
    boot: &Boot<'_>,
    bootargs: String,
    until: Option<&str>,
) -> Result<Run, String> {
    let mut cmd = qemu::boot_command(&qemu::Boot {
        board: boot.board.unwrap_or(paths::DEFAULT_BOARD),
        image,
        bootargs: &bootargs,
        initrd: boot.initrd,
    })
    .map_err(|e| e.to_string())?;
    cmd.args(boot.qemu_args);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu::binary().display()))?;
    let stdout = capture(child.stdout.take());
    let stderr = capture(child.stderr.take());
    let limit = timeout();
    let exit = match (until, &stdout) {
        (Some(text), Some((buf, _))) => wait_for_text(&mut child, limit, buf, text),
        _ => wait(&mut child, limit),
    };
    let console = collect(stdout, stderr);
    let exit_code = match exit {
        Ok(code) => code,
        Err(()) => {
            return Err(format!(
            "QEMU did not exit within {} s (killed); bootargs \"{bootargs}\", console:\n{console}",
            limit.as_secs()
        ))
        }
    };
    Ok(Run {
        records: parse_records(&console),
        bootargs,
        exit_code,
        console,
    })
}

pub(crate) type Captured = (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>);

pub(crate) fn capture(pipe: Option<impl Read + Send + 'static>) -> Option<Captured> {
    let mut pipe = pipe?;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let handle = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = sink.lock() {
                b.extend_from_slice(&chunk[..n]);
            }
        }
    });
    Some((buf, handle))
}

pub(crate) fn collect(stdout: Option<Captured>, stderr: Option<Captured>) -> String {
    let mut text = String::new();
    for (buf, handle) in [stdout, stderr].into_iter().flatten() {
        let _ = handle.join();
        if let Ok(b) = buf.lock() {
            text.push_str(&String::from_utf8_lossy(&b).replace('\r', ""));
        }
    }
    text
}

/// Waits until the captured console shows `text` (then kills the child: `Ok(None)`), the child
/// exits (its code), or the deadline passes (`Err` after killing it).
fn wait_for_text(
    child: &mut Child,
    limit: Duration,
    console: &Arc<Mutex<Vec<u8>>>,
    text: &str,
) -> Result<Option<i32>, ()> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = console
            .lock()
            .map(|b| String::from_utf8_lossy(&b).contains(text))
            .unwrap_or(false);
        if seen {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(());
            }
        }
    }
}

/// The exit code, or `Err` after killing the child at the deadline.
pub(crate) fn wait(child: &mut Child, limit: Duration) -> Result<Option<i32>, ()> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(());
            }
        }
    }
}
