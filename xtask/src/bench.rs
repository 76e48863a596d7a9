//! `cargo xtask bench`: instruction counts of every workspace crate's benchmarks, with the
//! reference each is measured against printed beside it.
//!
//! The benchmarks use iai-callgrind, which runs each one under valgrind's callgrind and counts
//! instructions: repeatable to the instruction on a loaded machine, unlike wall time. Its
//! library drives a separate `iai-callgrind-runner` binary of exactly the same version, which
//! this task installs with `cargo install` when it is missing or another version (as
//! `cargo xtask test` installs QEMU), and valgrind itself from Debian when running as root.
//!
//! Conventions the summary relies on: a benchmark function named `<case>_stage2` (ours) has a
//! twin `<case>_aarch64_paging` (the reference) measured in the same run, and a benchmark id
//! ends in `<unit>_<count>` (e.g. `pages_262144`), the number of units the function handles,
//! by which the instruction count is divided.

use crate::paths;
use crate::qemu;
use crate::{Error, Result};
use std::process::Command;

/// The iai-callgrind version the benchmarks depend on; the runner must be the same.
pub const RUNNER_VERSION: &str = "0.16.1";

/// One benchmark's result, as the runner prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The benchmark function (last segment of its path).
    pub function: String,
    /// The benchmark id (`pages_262144`).
    pub id: String,
    /// Instructions executed.
    pub instructions: u64,
}

/// Reads the runner's output: a header line `module::group::function id:args` (not indented)
/// followed by an indented `Instructions: N|...` line.
pub fn parse(output: &str) -> Vec<Measurement> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in output.lines() {
        if !line.starts_with(char::is_whitespace) && line.contains("::") {
            let mut words = line.splitn(2, ' ');
            let path = words.next().unwrap_or_default();
            let id = words.next().unwrap_or_default();
            let function = path.rsplit("::").next().unwrap_or_default().to_string();
            let id = id.split(':').next().unwrap_or_default().to_string();
            current = Some((function, id));
        } else if let Some(rest) = line.trim_start().strip_prefix("Instructions:") {
            let value = rest
                .trim_start()
                .split(['|', ' '])
                .next()
                .unwrap_or_default();
            if let (Some((function, id)), Ok(instructions)) = (current.take(), value.parse()) {
                out.push(Measurement {
                    function,
                    id,
                    instructions,
                });
            }
        }
    }
    out
}

/// `(unit, count)` from an id ending in `<unit>_<count>`.
pub fn units(id: &str) -> Option<(&str, u64)> {
    let (unit, count) = id.rsplit_once('_')?;
    let count: u64 = count.parse().ok()?;
    (count > 0).then_some((unit, count))
}

/// The summary table (Markdown): each `<case>_stage2` with its `<case>_aarch64_paging` twin,
/// per unit, and the ratio; benchmarks outside the convention are listed with their totals.
pub fn summary(measurements: &[Measurement]) -> String {
    let mut table = String::from(
        "| case | per | stage2 | aarch64-paging | stage2 / aarch64-paging |\n\
         |---|---|---:|---:|---:|\n",
    );
    // (case, unit, ours per unit, reference per unit)
    let mut rows: Vec<(String, String, f64, Option<f64>)> = Vec::new();
    let mut others = String::new();
    for m in measurements {
        if let Some(case) = m.function.strip_suffix("_stage2") {
            let twin = format!("{case}_aarch64_paging");
            let (unit, count) = units(&m.id).unwrap_or(("calls", 1));
            let per = |n: u64| n as f64 / count as f64;
            let theirs = measurements
                .iter()
                .find(|t| t.function == twin && t.id == m.id)
                .map(|t| per(t.instructions));
            let unit = unit.strip_suffix('s').unwrap_or(unit).to_string();
            rows.push((case.to_string(), unit, per(m.instructions), theirs));
        } else if !m.function.ends_with("_aarch64_paging") {
            others.push_str(&format!(
                "| {} {} | {} |\n",
                m.function, m.id, m.instructions
            ));
        }
    }
    // A map and the unmap of the same case, added up (the per-page goal).
    let mut pairs = Vec::new();
    for (case, unit, ours, theirs) in &rows {
        let Some(rest) = case.strip_prefix("map_") else {
            continue;
        };
        let undo = format!("unmap_{rest}");
        if let Some((_, _, o2, t2)) = rows.iter().find(|r| r.0 == undo && &r.1 == unit) {
            let both = theirs.zip(*t2).map(|(a, b)| a + b);
            pairs.push((format!("map + unmap {rest}"), unit.clone(), ours + o2, both));
        }
    }
    for (case, unit, ours, theirs) in rows.iter().chain(&pairs) {
        let (reference, ratio) = match theirs {
            Some(t) => (format!("{t:.1}"), format!("{:.2}", ours / t)),
            None => ("-".into(), "-".into()),
        };
        table.push_str(&format!(
            "| {case} | {unit} | {ours:.1} | {reference} | {ratio} |\n"
        ));
    }
    if !others.is_empty() {
        table.push_str("\n| other benchmark | instructions |\n|---|---:|\n");
        table.push_str(&others);
    }
    table
}

/// The version of `iai-callgrind-runner` that `cargo install` put on this machine, read from
/// `cargo install --list` (the runner has no plain `--version`).
fn runner_version() -> Option<String> {
    let out = Command::new(paths::cargo())
        .args(["install", "--list"])
        .output()
        .ok()?;
    installed_version(
        &String::from_utf8_lossy(&out.stdout),
        "iai-callgrind-runner",
    )
}

/// The version of `package` in `cargo install --list` output (`name v1.2.3:` lines).
pub fn installed_version(list: &str, package: &str) -> Option<String> {
    list.lines().find_map(|l| {
        let rest = l.strip_prefix(package)?.strip_prefix(" v")?;
        Some(rest.trim_end_matches(':').to_string())
    })
}

/// Makes sure valgrind and `iai-callgrind-runner` [`RUNNER_VERSION`] are there.
///
/// # Errors
/// When one is missing and cannot be installed here.
pub fn ensure() -> Result<()> {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_valgrind {
        if !qemu::is_root() {
            return Err(Error(
                "valgrind is missing; install it (Debian: apt-get install valgrind)".into(),
            ));
        }
        eprintln!("xtask: installing valgrind");
        qemu::apt_get(&["install", "-y", "--no-install-recommends", "valgrind"])?;
    }
    let version = runner_version();
    if version
        .as_deref()
        .is_some_and(|v| v.ends_with(RUNNER_VERSION))
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing iai-callgrind-runner {RUNNER_VERSION} (found: {})",
        version.as_deref().unwrap_or("none")
    );
    let status = Command::new(paths::cargo())
        .args([
            "install",
            "iai-callgrind-runner",
            "--version",
            RUNNER_VERSION,
            "--locked",
        ])
        .status()
        .map_err(|e| Error(format!("cannot run cargo install: {e}")))?;
    if !status.success() {
        return Err(Error(format!(
            "cargo install iai-callgrind-runner --version {RUNNER_VERSION} failed ({status})"
        )));
    }
    Ok(())
}

/// Installs what is missing, runs `cargo bench --workspace --benches` and prints its output, then the
/// summary table.
///
/// # Errors
/// When a tool cannot be installed or a benchmark fails.
pub fn run() -> Result<()> {
    ensure()?;
    let out = Command::new(paths::cargo())
        .args(["bench", "--workspace", "--benches"])
        .current_dir(paths::workspace_root())
        .output()
        .map_err(|e| Error(format!("cannot run cargo bench: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    print!("{stdout}");
    if !out.status.success() {
        return Err(Error(format!(
            "cargo bench --workspace --benches failed ({})",
            out.status
        )));
    }
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "\nInstructions per unit (callgrind via iai-callgrind {RUNNER_VERSION}, {valgrind}):\n"
    );
    print!("{}", summary(&parse(&stdout)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
tables::g::map_4k_each_stage2 pages_262144:ours_empty()
  Instructions:                    70052348|76852702             (-8.84851%) [-1.09708x]
  L1 Hits:                        194748450|N/A                  (*********)
tables::g::map_4k_each_aarch64_paging pages_262144:theirs_empty()
  Instructions:                   131732248|N/A                  (*********)
tables::g::lonely bench:x()
  Instructions:                         100|N/A                  (*********)
";

    #[test]
    fn the_runner_output_is_read_per_benchmark() {
        let m = parse(OUTPUT);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            Measurement {
                function: "map_4k_each_stage2".into(),
                id: "pages_262144".into(),
                instructions: 70_052_348,
            }
        );
        assert_eq!(m[1].instructions, 131_732_248);
    }

    #[test]
    fn the_summary_divides_by_the_units_and_puts_the_reference_beside() {
        let s = summary(&parse(OUTPUT));
        assert!(
            s.contains("| map_4k_each | page | 267.2 | 502.5 | 0.53 |"),
            "{s}"
        );
        assert!(s.contains("| lonely bench | 100 |"), "{s}");
        // With the unmap twin (2 pages: 50 and 150 per page), a map + unmap row adds them up.
        let more = "t::g::unmap_4k_each_stage2 pages_2:x()\n  Instructions: 100|N/A\n\
                    t::g::unmap_4k_each_aarch64_paging pages_2:x()\n  Instructions: 300|N/A\n";
        let s = summary(&parse(&format!("{OUTPUT}{more}")));
        assert!(
            s.contains("| map + unmap 4k_each | page | 317.2 | 652.5 | 0.49 |"),
            "{s}"
        );
        assert_eq!(units("blocks_512"), Some(("blocks", 512)));
        assert_eq!(units("nounits"), None);
    }

    #[test]
    fn the_installed_runner_version_is_read_from_cargo_install_list() {
        let list = "iai-callgrind-runner v0.16.1:\n    iai-callgrind-runner\nripgrep v14.1.0:\n";
        let v = installed_version(list, "iai-callgrind-runner");
        assert_eq!(v.as_deref(), Some("0.16.1"));
        assert_eq!(installed_version(list, "iai-callgrind"), None);
    }

    #[test]
    fn the_runner_version_matches_the_benchmarks_dependency() {
        let manifest =
            std::fs::read_to_string(paths::workspace_root().join("crates/stage2/Cargo.toml"))
                .unwrap();
        assert!(
            manifest.contains(&format!("iai-callgrind = \"{RUNNER_VERSION}\"")),
            "crates/stage2/Cargo.toml must ask for iai-callgrind {RUNNER_VERSION}"
        );
    }
}
