//! The operator's channel under QEMU: the product image booted as a host whose second UART
//! QEMU connects to a Unix socket (`xtask::qemu::operator_args`, as `cargo xtask run
//! --operator` does), left running while the test reads its console and runs `smmuctl`
//! against the socket; QEMU is killed when the [`Resident`] is dropped.
//!
//! `smmuctl` is `SMMUMAN_SMMUCTL` when set, otherwise built once per process into
//! `<target>/qemu-tools` (so the build does not wait on the running `cargo test`).

use crate::host::{pack, product_image, HostBoot};
use crate::{capture, qemu_ready, Boot, Captured};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};
use xtask::{paths, qemu};

/// The `smmuctl` binary, built at most once per process.
///
/// # Errors
/// When the build fails.
pub fn smmuctl() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        crate::env_or_build("SMMUMAN_SMMUCTL", || {
            let dir = paths::target_dir().join("qemu-tools");
            let status = Command::new(paths::cargo())
                .current_dir(paths::workspace_root())
                .args(["build", "-q", "-p", "smmuctl", "--target-dir"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p smmuctl failed: {status}"));
            }
            Ok(dir.join("debug").join("smmuctl"))
        })
    })
    .clone()
}

/// A host running under QEMU with its operator channel on a socket.
pub struct Resident {
    child: Child,
    stdout: Option<Captured>,
    socket: PathBuf,
}

impl Resident {
    /// Packs `boot` (as [`crate::host::run_host`]) and boots the product image with `bootargs`
    /// and the operator channel at `<target>/qemu-operator/<name>.sock`, without waiting.
    ///
    /// # Errors
    /// When QEMU, the image or a guest is missing, or QEMU cannot start.
    pub fn boot(boot: &HostBoot<'_>, bootargs: &str) -> Result<Self, String> {
        qemu_ready()?;
        let initrd = pack(boot)?;
        let image = product_image()?;
        let dir = paths::target_dir().join("qemu-operator");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join(format!("{}.sock", boot.name));
        let _ = std::fs::remove_file(&socket);
        let b = Boot {
            board: None,
            initrd: Some(&initrd),
            qemu_args: boot.qemu_args,
        };
        let mut cmd = qemu::boot_command(&qemu::Boot {
            board: b.board.unwrap_or(paths::DEFAULT_BOARD),
            image: &image,
            bootargs,
            initrd: b.initrd,
        })
        .map_err(|e| e.to_string())?;
        cmd.args(b.qemu_args);
        cmd.args(
            qemu::operator_args(&format!("unix:{}", socket.display()))
                .map_err(|e| e.to_string())?,
        );
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", qemu::binary().display()))?;
        let stdout = capture(child.stdout.take());
        Ok(Self {
            child,
            stdout,
            socket,
        })
    }

    /// The console so far (`\r` removed).
    pub fn console(&self) -> String {
        self.stdout
            .as_ref()
            .and_then(|(buf, _)| {
                buf.lock()
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            })
            .unwrap_or_default()
    }

    /// Waits until `done(console)` holds; the console then.
    ///
    /// # Errors
    /// At `limit`, or when QEMU exits first; the message has the console.
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let console = self.console();
            if done(&console) {
                return Ok(console);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "QEMU exited ({status}) before {what}; console:\n{console}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {what} within {} s; console:\n{console}",
                    limit.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The operator channel's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `smmuctl --connect unix:<socket> args...`.
    ///
    /// # Errors
    /// When `smmuctl` cannot be built or started.
    pub fn smmuctl(&self, args: &[&str]) -> Result<Output, String> {
        Command::new(smmuctl()?)
            .arg("--connect")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run smmuctl: {e}"))
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
