//! `smmuctl`: the operator's CLI of the smmuman manager.
//!
//! It speaks the operator's protocol (`smmuman-admin-api`, `docs/operator-protocol.md`) over
//! a byte stream to the manager's operator channel: a Unix socket or a TCP address (on QEMU,
//! the socket of the chardev behind the daemon's operator console). Usage: [`USAGE`];
//! `docs/operator.md` shows each command.
//!
//! The arguments are parsed by hand: ten subcommands with at most two options each do not need
//! a parser crate, and the CLI stays free of dependencies beyond the workspace's own crates.

pub mod conn;
pub mod faults;
pub mod snapshot;
pub mod svg;
pub mod table;

use conn::{Endpoint, Stream};
use smmuman_admin_api::{AdminCallError, AdminClient, Name};
use smmuman_api::{DomainError, Transport};
use snapshot::Snapshot;
use std::io::Write;
use std::time::Duration;

/// What `smmuctl --help` prints.
pub const USAGE: &str = "\
usage: smmuctl [--connect unix:PATH|tcp:HOST:PORT] COMMAND [ARGS]

  units                    the IOMMU units the host drives
  devices                  DMA masters: StreamID, group, holder, assignee
  groups                   isolation groups (devices sharing a StreamID)
  vms                      VMs and clients: state, objects, devices, mappings, faults; quotas, heap
  windows [VM]             each VM object's windows: IOVA -> HPA, size, access; quota and heap use
  faults [VM] [--follow] [--interval MS] [--polls N]
                           fault ledgers as DMA_FAULT lines, one per burst (read-only: the VMM
                           still reads every record); --follow shows new ones as they arrive
  start VM                 start a VM of the host plan
  stop VM                  stop a running VM
  map --svg FILE           an SVG of the host-physical memory map, each VM's assignment and
                           each device's windows and faults

The channel: --connect, else $SMMUCTL_CONNECT, else unix:smmuman-admin.sock.
Exit status: 0 done, 1 the manager refused or the channel failed, 2 bad arguments.
";

/// A parsed command line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Args {
    /// Where the manager is.
    pub connect: Endpoint,
    /// What to do.
    pub command: Command,
}

/// One subcommand.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// `units`.
    Units,
    /// `devices`.
    Devices,
    /// `groups`.
    Groups,
    /// `vms`.
    Vms,
    /// `windows [VM]`.
    Windows(Option<String>),
    /// `faults [VM] [--follow] [--interval MS] [--polls N]`.
    Faults {
        /// Only this VM's ledgers.
        vm: Option<String>,
        /// Keep reading.
        follow: bool,
        /// Between two reads.
        interval: Duration,
        /// Stop after this many reads (`None`: never, with `--follow`).
        polls: Option<u64>,
    },
    /// `start VM`.
    Start(String),
    /// `stop VM`.
    Stop(String),
    /// `map --svg FILE`.
    Map(String),
    /// `--help`.
    Help,
}

/// Parses the arguments (without the program name); `Err` holds what to tell the user.
///
/// # Errors
/// A message naming the bad argument.
pub fn parse(args: &[String], default_connect: Option<&str>) -> Result<Args, String> {
    let mut connect = Endpoint::parse(default_connect.unwrap_or("unix:smmuman-admin.sock"));
    let mut rest: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "--connect" => {
                connect = Endpoint::parse(it.next().ok_or("--connect needs an address")?);
            }
            "-h" | "--help" => {
                return Ok(Args {
                    connect,
                    command: Command::Help,
                })
            }
            _ => rest.push(a),
        }
    }
    let (cmd, rest) = rest.split_first().ok_or("no command given")?;
    let no_more = |rest: &[&str]| match rest.first() {
        Some(x) => Err(format!("{cmd}: unexpected argument {x:?}")),
        None => Ok(()),
    };
    let one_vm = |rest: &[&str]| -> Result<Option<String>, String> {
        match rest {
            [] => Ok(None),
            [vm] if !vm.starts_with("--") => Ok(Some(vm.to_string())),
            [_, x, ..] | [x] => Err(format!("{cmd}: unexpected argument {x:?}")),
        }
    };
    let command = match *cmd {
        "units" => no_more(rest).map(|()| Command::Units)?,
        "devices" => no_more(rest).map(|()| Command::Devices)?,
        "groups" => no_more(rest).map(|()| Command::Groups)?,
        "vms" => no_more(rest).map(|()| Command::Vms)?,
        "windows" => Command::Windows(one_vm(rest)?),
        "faults" => {
            let (mut vm, mut follow, mut interval, mut polls) =
                (None, false, Duration::from_millis(500), None);
            let mut it = rest.iter();
            while let Some(&a) = it.next() {
                let mut number = |what: &str| -> Result<u64, String> {
                    let v = it.next().ok_or(format!("faults: {what} needs a number"))?;
                    v.parse()
                        .map_err(|_| format!("faults: {what} {v:?} is not a number"))
                };
                match a {
                    "--follow" => follow = true,
                    "--interval" => interval = Duration::from_millis(number("--interval")?),
                    "--polls" => polls = Some(number("--polls")?.max(1)),
                    x if !x.starts_with("--") && vm.is_none() => vm = Some(x.to_string()),
                    x => return Err(format!("faults: unexpected argument {x:?}")),
                }
            }
            Command::Faults {
                vm,
                follow,
                interval,
                polls,
            }
        }
        "start" | "stop" => {
            let vm = match rest {
                [vm] => vm.to_string(),
                [] => return Err(format!("{cmd}: which VM?")),
                [_, x, ..] => return Err(format!("{cmd}: unexpected argument {x:?}")),
            };
            Name::new(&vm).map_err(|e| format!("{cmd}: {vm:?}: {e}"))?;
            if *cmd == "start" {
                Command::Start(vm)
            } else {
                Command::Stop(vm)
            }
        }
        "map" => match rest {
            ["--svg", file] => Command::Map(file.to_string()),
            _ => return Err("map: usage: map --svg FILE".to_string()),
        },
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Args { connect, command })
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The manager refused or the channel failed.
    Call(AdminCallError),
    /// Writing the output failed.
    Io(std::io::Error),
}

impl From<AdminCallError> for Failure {
    fn from(e: AdminCallError) -> Self {
        Failure::Call(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Runs one command over `c`, writing to `out`.
///
/// # Errors
/// [`Failure`].
pub fn execute<T: Transport>(
    c: &mut AdminClient<T>,
    command: &Command,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match command {
        Command::Help => out.write_all(USAGE.as_bytes())?,
        Command::Units => out.write_all(table::units(&Snapshot::read(c)?).as_bytes())?,
        Command::Devices => out.write_all(table::devices(&Snapshot::read(c)?).as_bytes())?,
        Command::Groups => out.write_all(table::groups(&Snapshot::read(c)?).as_bytes())?,
        Command::Vms => out.write_all(table::vms(&Snapshot::read(c)?).as_bytes())?,
        Command::Windows(vm) => {
            out.write_all(table::windows(&Snapshot::read(c)?, vm.as_deref()).as_bytes())?
        }
        Command::Faults {
            vm,
            follow,
            interval,
            polls,
        } => {
            let mut ledgers = Vec::new();
            let rounds = match (follow, polls) {
                (_, Some(n)) => *n,
                (true, None) => u64::MAX,
                (false, None) => 1,
            };
            for round in 0..rounds {
                if round > 0 {
                    std::thread::sleep(*interval);
                }
                faults::refresh(c, vm.as_deref(), &mut ledgers)?;
                let devices = snapshot::devices(c)?;
                faults::poll(c, &mut ledgers, &devices, out)?;
                out.flush()?;
            }
            if !follow {
                faults::summary(&ledgers, out)?;
            }
        }
        Command::Start(vm) => {
            c.start_vm(Name::new(vm).unwrap_or_default())?;
            writeln!(out, "started {vm}")?;
        }
        Command::Stop(vm) => {
            c.stop_vm(Name::new(vm).unwrap_or_default())?;
            writeln!(out, "stopped {vm}")?;
        }
        Command::Map(file) => {
            let snap = Snapshot::read(c)?;
            let mut ledgers = Vec::new();
            faults::refresh(c, None, &mut ledgers)?;
            let seen = faults::poll(c, &mut ledgers, &snap.devices, &mut std::io::sink())?;
            std::fs::write(file, svg::render(&snap, &seen))?;
            writeln!(
                out,
                "wrote {file}: {} region(s), {} VM(s), {} device(s), {} fault burst(s)",
                snap.regions.len(),
                snap.vms.len(),
                snap.devices.len(),
                seen.len()
            )?;
        }
    }
    Ok(())
}

/// What to tell the operator about a failure of `command`.
pub fn explain(command: &Command, f: &Failure) -> String {
    match f {
        Failure::Io(e) => format!("output: {e}"),
        Failure::Call(AdminCallError::Refused(r)) => {
            let what = match command {
                Command::Start(vm) => format!("start {vm}"),
                Command::Stop(vm) => format!("stop {vm}"),
                _ => "request".to_string(),
            };
            match (command, r.error) {
                (Command::Start(vm) | Command::Stop(vm), DomainError::NotFound) => {
                    format!("{what}: the host plan has no VM {vm:?}")
                }
                (Command::Start(vm), DomainError::Busy) => format!("{what}: {vm} is running"),
                (Command::Stop(vm), DomainError::Busy) => format!("{what}: {vm} is not running"),
                (Command::Start(_) | Command::Stop(_), DomainError::Unsupported) => {
                    format!("{what}: not supported by this host (it cannot start or stop VMs at run time)")
                }
                _ => format!("{what}: refused: {r}"),
            }
        }
        Failure::Call(AdminCallError::Transport(smmuman_api::TransportError::Other { code })) => {
            match *code {
                conn::NOT_SMMUMAN => "the peer on the channel does not speak the smmuman \
                                      protocol (its reply header is not one): is this the \
                                      manager's operator channel?"
                    .to_string(),
                conn::ENDLESS => "the manager's listing never ended".to_string(),
                conn::OUTPUT => "writing the output failed".to_string(),
                conn::NO_REPLY => format!(
                    "no reply within {} s: is the manager polling its operator channel (a host \
                     booted with a second UART on this socket)?",
                    conn::REPLY_TIMEOUT.as_secs()
                ),
                c => format!("channel error (OS error {c})"),
            }
        }
        Failure::Call(e) => e.to_string(),
    }
}

/// The whole CLI: parses `args`, connects, runs, reports; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let env = std::env::var("SMMUCTL_CONNECT").ok();
    let args = match parse(args, env.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "smmuctl: {e}\n{USAGE}");
            return 2;
        }
    };
    if args.command == Command::Help {
        let _ = out.write_all(USAGE.as_bytes());
        return 0;
    }
    let stream = match Stream::connect(&args.connect) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "smmuctl: {}: {e}", args.connect);
            return 1;
        }
    };
    let mut c = AdminClient::new(stream);
    match execute(&mut c, &args.command, out) {
        Ok(()) => 0,
        Err(f) => {
            let _ = writeln!(err, "smmuctl: {}", explain(&args.command, &f));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse_and_bad_arguments_are_named() {
        let a = parse(&args("--connect tcp:127.0.0.1:7000 windows vm1"), None).unwrap();
        assert_eq!(a.connect, Endpoint::Tcp("127.0.0.1:7000".into()));
        assert_eq!(a.command, Command::Windows(Some("vm1".into())));
        let a = parse(&args("faults vm2 --follow --interval 20"), Some("/run/s")).unwrap();
        assert_eq!(a.connect, Endpoint::Unix("/run/s".into()));
        assert_eq!(
            a.command,
            Command::Faults {
                vm: Some("vm2".into()),
                follow: true,
                interval: Duration::from_millis(20),
                polls: None
            }
        );
        assert_eq!(
            parse(&args("vms extra"), None).unwrap_err(),
            "vms: unexpected argument \"extra\""
        );
        assert_eq!(
            parse(&args("faults --interval soon"), None).unwrap_err(),
            "faults: --interval \"soon\" is not a number"
        );
        assert_eq!(
            parse(&args("map out.svg"), None).unwrap_err(),
            "map: usage: map --svg FILE"
        );
        assert_eq!(parse(&args("stop"), None).unwrap_err(), "stop: which VM?");
        assert_eq!(
            parse(&args("start vm\u{7f}"), None).unwrap_err(),
            "start: \"vm\\u{7f}\": name byte 2 is not printable ASCII without spaces (0x21..=0x7e)"
        );
        assert_eq!(parse(&[], None).unwrap_err(), "no command given");
    }
}
