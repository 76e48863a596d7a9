//! QEMU: finding a suitable `qemu-system-aarch64`, installing one, and the command line that
//! boots the daemon (`boards/qemu-virt/qemu.args` + `-kernel` + `-append`).

use crate::{paths, Error, Result};
use std::env;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The emulator binary (override with `SMMUMAN_QEMU=/path/to/qemu-system-aarch64`).
pub const BINARY: &str = "qemu-system-aarch64";
/// The QEMU major version whose SMMUv3 model the daemon is written against (7.2's has no
/// stage 2).
pub const REQUIRED_MAJOR: u32 = 10;
/// Shell commands that install QEMU 10 on Debian bookworm (as root).
pub const INSTALL_COMMANDS: &str = "echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list\n\
apt-get update\n\
apt-get install -y -t bookworm-backports qemu-system-arm";

/// A QEMU version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The emulator to run: `SMMUMAN_QEMU` or [`BINARY`] from `PATH`.
pub fn binary() -> PathBuf {
    env::var_os("SMMUMAN_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINARY))
}

/// The version in `qemu-system-aarch64 --version` output ("QEMU emulator version 10.0.2 ...").
pub fn parse_version(text: &str) -> Option<Version> {
    let rest = text.split("version").nth(1)?.split_whitespace().next()?;
    let mut parts = rest.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    Some(Version {
        major: parts.next()??,
        minor: parts.next()??,
        micro: parts.next().flatten().unwrap_or(0),
    })
}

/// How to get QEMU 10, for error messages.
pub fn install_hint() -> String {
    format!(
        "install QEMU {REQUIRED_MAJOR} (Debian bookworm: from bookworm-backports), as root:\n\n{INSTALL_COMMANDS}\n\n\
         or run `cargo xtask qemu` as root, or point SMMUMAN_QEMU at a qemu-system-aarch64 {REQUIRED_MAJOR}.x"
    )
}

/// The installed emulator's version, if it is a QEMU [`REQUIRED_MAJOR`].x.
///
/// # Errors
/// When it is missing, unrunnable or another version; the message says how to install it.
pub fn check() -> Result<Version> {
    let bin = binary();
    let output = Command::new(&bin).arg("--version").output().map_err(|e| {
        Error(format!(
            "cannot run {}: {e}\n{}",
            bin.display(),
            install_hint()
        ))
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_version(&text) {
        Some(v) if v.major == REQUIRED_MAJOR => Ok(v),
        Some(v) => Err(Error(format!(
            "{} is QEMU {v}; smmuman needs {REQUIRED_MAJOR}.x (its SMMUv3 model has stage 2)\n{}",
            bin.display(),
            install_hint()
        ))),
        None => Err(Error(format!(
            "cannot read the version of {} (output: {:?})\n{}",
            bin.display(),
            text.trim(),
            install_hint()
        ))),
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // The effective UID is the third field of the `Uid:` line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Whether the host is Debian bookworm.
pub fn is_bookworm() -> bool {
    fs::read_to_string("/etc/os-release")
        .is_ok_and(|s| s.lines().any(|l| l == "VERSION_CODENAME=bookworm"))
}

/// Makes sure QEMU [`REQUIRED_MAJOR`].x is there, installing it from bookworm-backports when
/// running as root on bookworm.
///
/// # Errors
/// When it is missing and cannot be installed here; the message gives the commands.
pub fn ensure() -> Result<Version> {
    match check() {
        Ok(v) => return Ok(v),
        Err(e) if !is_root() || !is_bookworm() || env::var_os("SMMUMAN_QEMU").is_some() => {
            return Err(Error(format!(
                "{e}\n(not installing: needs root on Debian bookworm)"
            )))
        }
        Err(e) => {
            eprintln!("xtask: {e}\nxtask: installing QEMU {REQUIRED_MAJOR} from bookworm-backports")
        }
    }
    fs::write(
        "/etc/apt/sources.list.d/backports.list",
        "deb http://deb.debian.org/debian bookworm-backports main\n",
    )
    .map_err(|e| {
        Error(format!(
            "cannot write /etc/apt/sources.list.d/backports.list: {e}"
        ))
    })?;
    apt_get(&["update"])?;
    apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
        "qemu-system-arm",
    ])?;
    check()
}

/// Runs `apt-get ARGS` non-interactively.
pub(crate) fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| Error(format!("cannot run apt-get: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error(format!(
            "apt-get {} failed ({status})",
            args.join(" ")
        )))
    }
}

/// The command that installs `dtc`, which the board-config tests use to compile their
/// device-tree fixtures.
pub const DTC_INSTALL: &str = "apt-get install -y device-tree-compiler";

/// Makes sure `dtc` runs: installs Debian's `device-tree-compiler` when missing and running as
/// root on Debian, otherwise stops with the command to run.
///
/// # Errors
/// When `dtc` is missing and cannot be installed here.
pub fn ensure_dtc() -> Result<()> {
    let runs = || Command::new("dtc").arg("--version").output().is_ok();
    if runs() {
        return Ok(());
    }
    if !is_root() || fs::metadata("/etc/debian_version").is_err() {
        return Err(Error(format!(
            "dtc (device-tree-compiler) is missing; the board-config tests need it. As root:\n\n    {DTC_INSTALL}"
        )));
    }
    eprintln!("xtask: installing dtc (device-tree-compiler)");
    apt_get(&["update"])?;
    apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        "device-tree-compiler",
    ])?;
    if runs() {
        Ok(())
    } else {
        Err(Error(format!(
            "dtc is still missing after installing device-tree-compiler; try: {DTC_INSTALL}"
        )))
    }
}

/// How to install the cross C compiler by hand.
pub const CROSS_CC_INSTALL: &str =
    "apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu";

/// Makes sure the test image's C VMM (`smmuman-daemon/c/c_vmm.c`, scenario `vmm-c`) can be
/// compiled for the bare-metal target: `SMMUMAN_CROSS_CC` when set, else Debian's
/// `aarch64-linux-gnu-gcc`, installed (as root on Debian) when missing.
///
/// # Errors
/// When it is missing and cannot be installed here (the message says how).
pub fn ensure_cross_cc() -> Result<()> {
    if std::env::var_os("SMMUMAN_CROSS_CC").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let runs = || {
        Command::new("aarch64-linux-gnu-gcc")
            .arg("--version")
            .output()
            .is_ok()
    };
    if runs() {
        return Ok(());
    }
    if !is_root() || fs::metadata("/etc/debian_version").is_err() {
        return Err(Error(format!(
            "aarch64-linux-gnu-gcc is missing; the test image's C VMM needs it (or set \
             SMMUMAN_CROSS_CC to another aarch64 C compiler). As root:\n\n    {CROSS_CC_INSTALL}"
        )));
    }
    eprintln!("xtask: installing gcc-aarch64-linux-gnu (the test image's C VMM)");
    apt_get(&["update"])?;
    apt_get(&[
        "install",
        "-y",
        "--no-install-recommends",
        "gcc-aarch64-linux-gnu",
    ])?;
    if runs() {
        Ok(())
    } else {
        Err(Error(format!(
            "aarch64-linux-gnu-gcc is still missing after installing it; try: {CROSS_CC_INSTALL}"
        )))
    }
}

/// The arguments in a `qemu.args` file: one per line, `#` comments and blank lines skipped.
pub fn parse_args(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The default board's QEMU arguments from `boards/qemu-virt/qemu.args`.
///
/// # Errors
/// When the file cannot be read.
pub fn board_args() -> Result<Vec<String>> {
    board_args_of(paths::DEFAULT_BOARD)
}

/// The directory of board `name` (`boards/<name>`), which must have a `qemu.args`.
///
/// # Errors
/// When `name` is not a plain directory name or the board has no `qemu.args`; the message
/// lists the boards that have one.
pub fn board_dir_of(name: &str) -> Result<PathBuf> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && Path::new(name).file_name().is_some();
    let dir = paths::boards_dir().join(name);
    if plain && dir.join("qemu.args").is_file() {
        return Ok(dir);
    }
    let mut known: Vec<String> = fs::read_dir(paths::boards_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("qemu.args").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    Err(Error(format!(
        "no board \"{name}\" with a qemu.args under {} (boards QEMU can boot: {})",
        paths::boards_dir().display(),
        known.join(", ")
    )))
}

/// Board `name`'s QEMU arguments from `boards/<name>/qemu.args`.
///
/// # Errors
/// When the board is unknown or the file cannot be read.
pub fn board_args_of(name: &str) -> Result<Vec<String>> {
    let path = board_dir_of(name)?.join("qemu.args");
    let text = fs::read_to_string(&path)
        .map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    Ok(parse_args(&text))
}

/// The config file handed to the daemon for `board` when no `--initrd` is given: none for the
/// default board (the image embeds its `smmuman.conf`), the board's own `smmuman.conf`
/// otherwise, so that one image boots every board.
///
/// # Errors
/// When the board is unknown.
pub fn default_initrd(board: &str) -> Result<Option<PathBuf>> {
    let dir = board_dir_of(board)?;
    if board == paths::DEFAULT_BOARD {
        return Ok(None);
    }
    let conf = dir.join("smmuman.conf");
    Ok(conf.is_file().then_some(conf))
}

/// What to boot: the board, the image, its bootargs and the config file passed as initrd.
#[derive(Clone, Copy, Debug)]
pub struct Boot<'a> {
    /// A directory under `boards/` with a `qemu.args`.
    pub board: &'a str,
    /// The raw Image.
    pub image: &'a Path,
    /// The daemon's command line (`-append`).
    pub bootargs: &'a str,
    /// The config file QEMU loads with `-initrd` (the daemon reads it instead of its embedded
    /// one), if any.
    pub initrd: Option<&'a Path>,
}

/// The command that boots `image` with `bootargs` on the default board, without an initrd.
///
/// # Errors
/// When the board's arguments cannot be read.
pub fn command(image: &Path, bootargs: &str) -> Result<Command> {
    boot_command(&Boot {
        board: paths::DEFAULT_BOARD,
        image,
        bootargs,
        initrd: None,
    })
}

/// Where `cargo xtask run --stay` opens the operator's channel without `--operator`: the
/// socket `smmuctl` connects to by default.
pub const DEFAULT_OPERATOR: &str = "unix:smmuman-admin.sock";

/// QEMU arguments that connect the board's second UART (the daemon's operator channel) to
/// `channel`, `unix:PATH` or `tcp:HOST:PORT`, as a listening socket QEMU does not wait on;
/// the first UART stays the console on stdio.
///
/// # Errors
/// When `channel` is neither form.
pub fn operator_args(channel: &str) -> Result<Vec<String>> {
    let socket = if let Some(path) = channel.strip_prefix("unix:") {
        if path.is_empty() || path.contains(',') {
            return Err(Error(format!(
                "--operator {channel}: unix:PATH needs a path without ','"
            )));
        }
        format!("path={path}")
    } else if let Some((host, port)) = channel
        .strip_prefix("tcp:")
        .and_then(|hp| hp.rsplit_once(':'))
    {
        if host.is_empty() || host.contains(',') || port.parse::<u16>().is_err() {
            return Err(Error(format!(
                "--operator {channel}: tcp:HOST:PORT needs a host and a port"
            )));
        }
        format!("host={host},port={port}")
    } else {
        return Err(Error(format!(
            "--operator {channel}: expected unix:PATH or tcp:HOST:PORT"
        )));
    };
    Ok([
        "-chardev".to_string(),
        format!("socket,id=operator,{socket},server=on,wait=off"),
        // Naming the serial ports replaces -nographic's default one: the console first.
        "-serial".to_string(),
        "mon:stdio".to_string(),
        "-serial".to_string(),
        "chardev:operator".to_string(),
    ]
    .into())
}

/// The command for `boot`: the board's `qemu.args`, then `-kernel`, `-append` and, with a
/// config file, `-initrd` (QEMU accepts `-initrd` only with `-kernel`).
///
/// # Errors
/// When the board is unknown, its arguments cannot be read, or the initrd file is missing.
pub fn boot_command(boot: &Boot<'_>) -> Result<Command> {
    let mut cmd = Command::new(binary());
    cmd.args(board_args_of(boot.board)?)
        .arg("-kernel")
        .arg(boot.image)
        .arg("-append")
        .arg(boot.bootargs);
    if let Some(initrd) = boot.initrd {
        if !initrd.is_file() {
            return Err(Error(format!("initrd {} is not a file", initrd.display())));
        }
        cmd.arg("-initrd").arg(initrd);
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_channel_is_the_second_serial_on_a_socket() {
        let a = operator_args("unix:/tmp/s.sock").unwrap();
        assert_eq!(
            a[1],
            "socket,id=operator,path=/tmp/s.sock,server=on,wait=off"
        );
        assert_eq!(
            a[2..],
            ["-serial", "mon:stdio", "-serial", "chardev:operator"]
        );
        let a = operator_args("tcp:127.0.0.1:4000").unwrap();
        assert_eq!(
            a[1],
            "socket,id=operator,host=127.0.0.1,port=4000,server=on,wait=off"
        );
        for bad in [
            "unix:",
            "tcp:host",
            "tcp::1",
            "tcp:h:notaport",
            "file:/x",
            "unix:a,b",
        ] {
            assert!(operator_args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_qemu_versions() {
        let v = parse_version(
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright",
        );
        assert_eq!(
            v,
            Some(Version {
                major: 10,
                minor: 0,
                micro: 2
            })
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2.15 (Debian)").map(|v| v.major),
            Some(7)
        );
        assert_eq!(
            parse_version("QEMU emulator version 9.1").map(|v| v.micro),
            Some(0)
        );
        assert_eq!(parse_version("bash: command not found"), None);
    }

    #[test]
    fn args_file_skips_comments_and_blank_lines() {
        let args = parse_args("# comment\n-machine\n  virt,iommu=smmuv3  \n\n-nic\nnone\n");
        assert_eq!(args, ["-machine", "virt,iommu=smmuv3", "-nic", "none"]);
    }

    #[test]
    fn every_board_boots_the_same_machine_and_unknown_boards_are_named() {
        for board in ["qemu-virt", "qemu-virt-bridge"] {
            let args = board_args_of(board).unwrap();
            assert!(args.iter().any(|a| a.contains("iommu=smmuv3")), "{board}");
        }
        let err = board_args_of("fvp-base-revc").unwrap_err().to_string();
        assert!(err.contains("qemu-virt, qemu-virt-bridge"), "{err}");
        assert!(board_dir_of("../xtask").is_err());
    }

    #[test]
    fn only_other_boards_get_their_config_as_initrd() {
        assert_eq!(default_initrd("qemu-virt").unwrap(), None);
        let bridge = default_initrd("qemu-virt-bridge").unwrap().unwrap();
        assert!(bridge.ends_with("boards/qemu-virt-bridge/smmuman.conf"));
    }

    #[test]
    fn an_initrd_follows_kernel_and_append() {
        let conf = paths::boards_dir().join("qemu-virt-bridge/smmuman.conf");
        let cmd = boot_command(&Boot {
            board: "qemu-virt-bridge",
            image: Path::new("/tmp/image.bin"),
            bootargs: "scenario=boot",
            initrd: Some(&conf),
        })
        .unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tail = &args[args.len() - 6..];
        assert_eq!(tail[0], "-kernel");
        assert_eq!(
            tail[2..4],
            ["-append".to_string(), "scenario=boot".to_string()]
        );
        assert_eq!(tail[4], "-initrd");
        assert!(args.iter().any(|a| a.starts_with("pcie-pci-bridge")));
        let missing = boot_command(&Boot {
            initrd: Some(Path::new("/nonexistent.conf")),
            board: "qemu-virt",
            image: Path::new("/tmp/image.bin"),
            bootargs: "",
        });
        assert!(missing.is_err());
    }

    #[test]
    fn the_board_file_asks_for_smmuv3_el2_semihosting_and_two_edus() {
        let args = board_args().unwrap();
        let machine = args
            .iter()
            .position(|a| a == "-machine")
            .map(|i| &args[i + 1])
            .unwrap();
        assert!(machine.contains("iommu=smmuv3") && machine.contains("virtualization=on"));
        assert!(args.iter().any(|a| a == "-semihosting"));
        let edus = args
            .iter()
            .filter(|a| a.starts_with("edu,") && a.contains("dma_mask=0xffffffffffffffff"));
        assert_eq!(edus.count(), 2);
    }
}
