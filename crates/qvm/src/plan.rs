//! The host plan: which VMs the host starts, each with its RAM size, pass-through PCI
//! functions, guest image, boot arguments and time limit. `docs/host-plan.md` documents the
//! format; this parser borrows every string from the input and allocates nothing.
//!
//! ```text
//! manager on               # run smmuman (off: no manager, for the client-rule tests)
//! [vm vm1]
//! ram 2M
//! pass pci 00:01.0
//! guest driver
//! bootargs "check=all"
//! time-limit 10s
//! ```

use heapless::Vec;
use iommu_core::Bdf;

/// VMs one plan may name.
pub const MAX_VMS: usize = 4;
/// Pass-through functions one VM may have.
pub const MAX_PASS: usize = 2;
/// The most restarts one VM's `restart` key may ask.
pub const MAX_RESTARTS: u8 = 16;
/// Longest VM name.
pub const MAX_NAME: usize = 16;
/// Longest guest image name.
pub const MAX_GUEST: usize = 32;
/// Longest `bootargs` string.
pub const MAX_BOOTARGS: usize = 200;
/// Smallest guest RAM.
pub const MIN_RAM: u64 = 1 << 20;
/// Largest guest RAM (RAM sits at [`crate::abi::RAM_BASE`], 1 GiB below the 2 GiB mark).
pub const MAX_RAM: u64 = 1 << 30;
/// Time limit when the plan gives none.
pub const DEFAULT_TIME_LIMIT_MS: u64 = 10_000;
/// Longest time limit: one hour.
pub const MAX_TIME_LIMIT_MS: u64 = 3_600_000;

/// A parsed host plan.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HostPlan<'a> {
    /// Whether the host runs the smmuman manager (`manager on|off`, default on).
    pub manager: bool,
    /// The VMs, in plan order.
    pub vms: Vec<VmPlan<'a>, MAX_VMS>,
}

/// One pass-through PCI function as the plan names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PassPlan<'a> {
    /// The function's host bus:device.function.
    pub bdf: Bdf,
    /// How the plan spelled it (`pci 00:01.0` is spelled `00:01.0`), for messages.
    pub text: &'a str,
}

/// One `[vm NAME]` section.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmPlan<'a> {
    /// The VM's name (the board config's `[vm NAME]` section gives its RAM).
    pub name: &'a str,
    /// The section header's line.
    pub line: u32,
    /// Guest RAM size in bytes (a multiple of 4 KiB, [`MIN_RAM`]..=[`MAX_RAM`]).
    pub ram: u64,
    /// GPA == HPA: the RAM sits at its host-physical address.
    pub unity: bool,
    /// The pass-through functions (1..=[`MAX_PASS`]).
    pub pass: Vec<PassPlan<'a>, MAX_PASS>,
    /// The guest image's name (`guests/<name>` in the initrd).
    pub guest: &'a str,
    /// The guest's `/chosen/bootargs` (empty when the plan gives none).
    pub bootargs: &'a str,
    /// Run time after which the VMM stops the guest, in milliseconds.
    pub time_limit_ms: u64,
    /// How many times the host starts the VM again, in the same RAM with the same devices,
    /// after its guest stops (`restart N`, 0..=[`MAX_RESTARTS`]; default 0). Each start
    /// follows the previous run's quiesce, object teardown and RAM scrub.
    pub restarts: u8,
}

impl VmPlan<'_> {
    /// The devices the host assigns this VM's client together with its RAM
    /// (`smmuman_server::Manager::assign`, before the VMM runs): each pass-through function.
    /// The manager refuses the VMM's attach of any other device.
    pub fn devices(&self) -> impl Iterator<Item = smmuman_api::DeviceSel> + '_ {
        self.pass.iter().map(|p| smmuman_api::DeviceSel::pci(p.bdf))
    }
}

mod error;
pub use error::{PlanError, PlanErrorKind};

/// A word of a line and the column it starts at.
#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    col: u32,
    quoted: bool,
}

/// The words of one line (up to 8; more are reported as unexpected).
struct Line<'a> {
    tokens: Vec<Token<'a>, 8>,
    /// The column of the first word past the 8th, or of the end of the line.
    end_col: u32,
    extra: Option<Token<'a>>,
}

fn col_of(line: &str, byte: usize) -> u32 {
    let prefix = line.get(..byte).unwrap_or(line);
    u32::try_from(prefix.chars().count())
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

fn tokenize(line: &str, n: u32) -> Result<Line<'_>, PlanError<'_>> {
    let mut tokens = Vec::new();
    let mut extra = None;
    let mut rest = line.char_indices().peekable();
    while let Some(&(i, c)) = rest.peek() {
        if c.is_whitespace() {
            rest.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let (text, quoted) = if c == '"' {
            rest.next();
            let mut end = None;
            for (j, d) in rest.by_ref() {
                if d == '"' {
                    end = Some(j);
                    break;
                }
            }
            let Some(end) = end else {
                return Err(PlanError {
                    line: n,
                    col: col_of(line, i),
                    kind: PlanErrorKind::UnterminatedString,
                });
            };
            (line.get(i + 1..end).unwrap_or(""), true)
        } else {
            let mut end = line.len();
            while let Some(&(j, d)) = rest.peek() {
                if d.is_whitespace() || d == '#' {
                    end = j;
                    break;
                }
                rest.next();
            }
            (line.get(i..end).unwrap_or(""), false)
        };
        let token = Token {
            text,
            col: col_of(line, i),
            quoted,
        };
        if tokens.push(token).is_err() && extra.is_none() {
            extra = Some(token);
        }
    }
    Ok(Line {
        tokens,
        end_col: col_of(line, line.trim_end().len()),
        extra,
    })
}

/// The state of the VM section being read.
struct Section<'a> {
    vm: VmPlan<'a>,
    ram_line: Option<u32>,
    guest_line: Option<u32>,
    bootargs_line: Option<u32>,
    limit_line: Option<u32>,
    restart_line: Option<u32>,
    unity_line: Option<u32>,
}

/// Parses a host plan.
///
/// # Errors
/// The first [`PlanError`] in the text, with its line and column.
pub fn parse(text: &str) -> Result<HostPlan<'_>, PlanError<'_>> {
    let mut plan = HostPlan {
        manager: true,
        vms: Vec::new(),
    };
    let mut manager_line: Option<u32> = None;
    let mut section: Option<Section<'_>> = None;
    let mut pass_lines: Vec<(Bdf, u32), { MAX_VMS * MAX_PASS }> = Vec::new();
    let mut last = 0u32;
    for (i, raw) in text.split('\n').enumerate() {
        let n = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        last = n;
        let line = tokenize(raw, n)?;
        let Some(first) = line.tokens.first().copied() else {
            continue;
        };
        let err = |col: u32, kind| PlanError { line: n, col, kind };
        let tok = |k: usize| line.tokens.get(k).copied();
        // The value at word `k`, or an error at the end of the line.
        let want = |k: usize, what: &'static str| {
            tok(k).ok_or(err(
                line.end_col,
                PlanErrorKind::Expected { what, found: None },
            ))
        };
        let expect_end = |k: usize| match tok(k).or(line.extra) {
            Some(t) => Err(err(
                t.col,
                PlanErrorKind::Expected {
                    what: "end of line",
                    found: Some(t.text),
                },
            )),
            None => Ok(()),
        };
        if first.text.starts_with('[') && !first.quoted {
            if let Some(s) = section.take() {
                finish(&mut plan, s)?;
            }
            if first.text != "[vm" {
                return Err(err(
                    first.col,
                    PlanErrorKind::Expected {
                        what: "\"[vm NAME]\"",
                        found: Some(first.text),
                    },
                ));
            }
            let name_tok = want(1, "a VM name followed by \"]\"")?;
            let Some(name) = name_tok.text.strip_suffix(']') else {
                return Err(err(
                    name_tok.col,
                    PlanErrorKind::Expected {
                        what: "a VM name followed by \"]\"",
                        found: Some(name_tok.text),
                    },
                ));
            };
            if !is_name(name, MAX_NAME) {
                return Err(err(
                    name_tok.col,
                    PlanErrorKind::Expected {
                        what: "a VM name of 1 to 16 letters, digits, '-' or '_'",
                        found: Some(name),
                    },
                ));
            }
            expect_end(2)?;
            if let Some(other) = plan.vms.iter().find(|v| v.name == name) {
                return Err(err(
                    name_tok.col,
                    PlanErrorKind::DuplicateVm {
                        name,
                        first: other.line,
                    },
                ));
            }
            if plan.vms.len() >= MAX_VMS {
                return Err(err(first.col, PlanErrorKind::TooManyVms));
            }
            section = Some(Section {
                vm: VmPlan {
                    name,
                    line: n,
                    ram: 0,
                    unity: false,
                    pass: Vec::new(),
                    guest: "",
                    bootargs: "",
                    time_limit_ms: DEFAULT_TIME_LIMIT_MS,
                    restarts: 0,
                },
                restart_line: None,
                ram_line: None,
                guest_line: None,
                bootargs_line: None,
                limit_line: None,
                unity_line: None,
            });
            continue;
        }
        let key = first.text;
        let Some(s) = section.as_mut() else {
            // The top of the file: global keys only.
            if key != "manager" || first.quoted {
                return Err(err(
                    first.col,
                    PlanErrorKind::UnknownKey {
                        key,
                        allowed: "manager, [vm NAME]",
                    },
                ));
            }
            if let Some(l) = manager_line {
                return Err(err(
                    first.col,
                    PlanErrorKind::DuplicateKey { key, first: l },
                ));
            }
            let v = want(1, "\"on\" or \"off\"")?;
            plan.manager = match v.text {
                "on" => true,
                "off" => false,
                other => {
                    return Err(err(
                        v.col,
                        PlanErrorKind::Expected {
                            what: "\"on\" or \"off\"",
                            found: Some(other),
                        },
                    ))
                }
            };
            expect_end(2)?;
            manager_line = Some(n);
            continue;
        };
        let once = |seen: Option<u32>| match seen {
            Some(l) => Err(err(
                first.col,
                PlanErrorKind::DuplicateKey { key, first: l },
            )),
            None => Ok(()),
        };
        match key {
            "ram" if !first.quoted => {
                once(s.ram_line)?;
                let v = want(1, "a size (2M, 0x200000, 512K)")?;
                let size = parse_size(v.text).ok_or(err(
                    v.col,
                    PlanErrorKind::Expected {
                        what: "a size (2M, 0x200000, 512K)",
                        found: Some(v.text),
                    },
                ))?;
                if !(MIN_RAM..=MAX_RAM).contains(&size) || !size.is_multiple_of(4096) {
                    return Err(err(
                        v.col,
                        PlanErrorKind::OutOfRange {
                            key: "ram",
                            range: "a multiple of 4K from 1M to 1G",
                        },
                    ));
                }
                expect_end(2)?;
                s.vm.ram = size;
                s.ram_line = Some(n);
            }
            "unity" if !first.quoted => {
                once(s.unity_line)?;
                expect_end(1)?;
                s.vm.unity = true;
                s.unity_line = Some(n);
            }
            "pass" if !first.quoted => {
                let kind = want(1, "\"pci\"")?;
                if kind.text != "pci" {
                    return Err(err(
                        kind.col,
                        PlanErrorKind::Expected {
                            what: "\"pci\"",
                            found: Some(kind.text),
                        },
                    ));
                }
                let v = want(2, "a PCI address bb:dd.f (hex bus and device)")?;
                let bdf = parse_bdf(v.text).ok_or(err(
                    v.col,
                    PlanErrorKind::Expected {
                        what: "a PCI address bb:dd.f (hex bus and device)",
                        found: Some(v.text),
                    },
                ))?;
                expect_end(3)?;
                if let Some(&(_, l)) = pass_lines.iter().find(|(b, _)| *b == bdf) {
                    return Err(err(v.col, PlanErrorKind::DuplicateDevice { bdf, first: l }));
                }
                s.vm.pass
                    .push(PassPlan { bdf, text: v.text })
                    .map_err(|_| err(first.col, PlanErrorKind::TooManyDevices))?;
                // Capacity: MAX_VMS sections of MAX_PASS each.
                let _ = pass_lines.push((bdf, n));
            }
            "guest" if !first.quoted => {
                once(s.guest_line)?;
                let v = want(1, "a guest image name")?;
                if !is_name(v.text, MAX_GUEST) {
                    return Err(err(
                        v.col,
                        PlanErrorKind::Expected {
                            what: "a guest image name of 1 to 32 letters, digits, '-' or '_'",
                            found: Some(v.text),
                        },
                    ));
                }
                expect_end(2)?;
                s.vm.guest = v.text;
                s.guest_line = Some(n);
            }
            "bootargs" if !first.quoted => {
                once(s.bootargs_line)?;
                let v = want(1, "a quoted string")?;
                if !v.quoted {
                    return Err(err(
                        v.col,
                        PlanErrorKind::Expected {
                            what: "a quoted string",
                            found: Some(v.text),
                        },
                    ));
                }
                if v.text.len() > MAX_BOOTARGS || !v.text.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    return Err(err(
                        v.col,
                        PlanErrorKind::OutOfRange {
                            key: "bootargs",
                            range: "at most 200 printable ASCII characters",
                        },
                    ));
                }
                expect_end(2)?;
                s.vm.bootargs = v.text;
                s.bootargs_line = Some(n);
            }
            "time-limit" if !first.quoted => {
                once(s.limit_line)?;
                let v = want(1, "a duration (10s, 500ms)")?;
                let ms = parse_duration_ms(v.text).ok_or(err(
                    v.col,
                    PlanErrorKind::Expected {
                        what: "a duration (10s, 500ms)",
                        found: Some(v.text),
                    },
                ))?;
                if ms == 0 || ms > MAX_TIME_LIMIT_MS {
                    return Err(err(
                        v.col,
                        PlanErrorKind::OutOfRange {
                            key: "time-limit",
                            range: "from 1ms to 3600s",
                        },
                    ));
                }
                expect_end(2)?;
                s.vm.time_limit_ms = ms;
                s.limit_line = Some(n);
            }
            "restart" if !first.quoted => {
                once(s.restart_line)?;
                let v = want(1, "a count (0 to 16)")?;
                let count =
                    (!v.quoted && v.text.len() <= 2 && v.text.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| v.text.parse::<u8>().ok())
                        .flatten()
                        .ok_or(err(
                            v.col,
                            PlanErrorKind::Expected {
                                what: "a count (0 to 16)",
                                found: Some(v.text),
                            },
                        ))?;
                if count > MAX_RESTARTS {
                    return Err(err(
                        v.col,
                        PlanErrorKind::OutOfRange {
                            key: "restart",
                            range: "from 0 to 16",
                        },
                    ));
                }
                expect_end(2)?;
                s.vm.restarts = count;
                s.restart_line = Some(n);
            }
            _ => {
                return Err(err(
                    first.col,
                    PlanErrorKind::UnknownKey {
                        key,
                        allowed: "ram, unity, pass, guest, bootargs, time-limit, restart",
                    },
                ))
            }
        }
    }
    if let Some(s) = section.take() {
        finish(&mut plan, s)?;
    }
    if plan.vms.is_empty() {
        return Err(PlanError {
            line: last.max(1),
            col: 1,
            kind: PlanErrorKind::NoVm,
        });
    }
    Ok(plan)
}

/// Checks a finished section for its required keys and keeps it.
fn finish<'a>(plan: &mut HostPlan<'a>, s: Section<'a>) -> Result<(), PlanError<'a>> {
    let missing = |key| PlanError {
        line: s.vm.line,
        col: 1,
        kind: PlanErrorKind::Missing { vm: s.vm.name, key },
    };
    if s.ram_line.is_none() {
        return Err(missing("ram"));
    }
    if s.guest_line.is_none() {
        return Err(missing("guest"));
    }
    if s.vm.pass.is_empty() {
        return Err(missing("pass"));
    }
    let line = s.vm.line;
    plan.vms.push(s.vm).map_err(|_| PlanError {
        line,
        col: 1,
        kind: PlanErrorKind::TooManyVms,
    })
}

/// A name: 1 to `max` ASCII letters, digits, `-` or `_`.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `bb:dd.f` with a hex bus (2 digits), hex device (2 digits, up to 1f) and function 0..=7.
pub fn parse_bdf(s: &str) -> Option<Bdf> {
    let (bus, rest) = s.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    if bus.len() != 2 || dev.len() != 2 || func.len() != 1 {
        return None;
    }
    let hex = |t: &str| {
        if t.bytes().all(|b| b.is_ascii_hexdigit()) {
            u8::from_str_radix(t, 16).ok()
        } else {
            None
        }
    };
    Bdf::new(hex(bus)?, hex(dev)?, hex(func)?).ok()
}

/// A size: `0x` hex or decimal digits, optionally followed by `K`, `M` or `G` (powers of two).
fn parse_size(s: &str) -> Option<u64> {
    let (body, mul) = match s.as_bytes().last()? {
        b'K' => (s.get(..s.len() - 1)?, 1u64 << 10),
        b'M' => (s.get(..s.len() - 1)?, 1 << 20),
        b'G' => (s.get(..s.len() - 1)?, 1 << 30),
        _ => (s, 1),
    };
    let v = match body.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) => {
            body.parse::<u64>().ok()?
        }
        None => return None,
    };
    v.checked_mul(mul)
}

/// A duration: decimal digits followed by `ms` or `s`.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let (body, mul) = if let Some(b) = s.strip_suffix("ms") {
        (b, 1)
    } else {
        (s.strip_suffix('s')?, 1000u64)
    };
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    body.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
pub(crate) mod tests;
