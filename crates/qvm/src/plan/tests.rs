use super::*;

const GOOD: &str = "\
manager on               # run smmuman
[vm vm1]
ram 2M
pass pci 00:01.0
guest driver
bootargs \"rogue.outside=0x48000000\"
time-limit 500ms

[vm vm2]  # the second
ram 0x400000
unity
pass pci 00:02.0
pass pci 01:1f.7
guest rogue
";

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_good_plan_reads_back_every_value() {
    let plan = parse(GOOD).unwrap();
    assert!(plan.manager);
    assert_eq!(plan.vms.len(), 2);
    let a = &plan.vms[0];
    assert_eq!(a.name, "vm1");
    assert_eq!(a.line, 2);
    assert_eq!(a.ram, 2 << 20);
    assert!(!a.unity);
    assert_eq!(a.pass.len(), 1);
    assert_eq!(a.pass[0].bdf, Bdf::new(0, 1, 0).unwrap());
    assert_eq!(a.pass[0].text, "00:01.0");
    assert_eq!(a.guest, "driver");
    assert_eq!(a.bootargs, "rogue.outside=0x48000000");
    assert_eq!(a.time_limit_ms, 500);
    let b = &plan.vms[1];
    assert_eq!(b.ram, 4 << 20);
    assert!(b.unity);
    assert_eq!(b.pass[1].bdf, Bdf::new(1, 0x1f, 7).unwrap());
    assert_eq!(b.bootargs, "");
    assert_eq!(b.time_limit_ms, DEFAULT_TIME_LIMIT_MS);
}

#[test]
fn manager_off_and_defaults() {
    let plan = parse("manager off\n[vm u]\nram 1M\npass pci 00:01.0\nguest unity\ntime-limit 3s\n")
        .unwrap();
    assert!(!plan.manager);
    assert_eq!(plan.vms[0].time_limit_ms, 3000);
    // Without a `manager` line the manager runs.
    let plan = parse("[vm u]\nram 1M\npass pci 00:01.0\nguest g\n").unwrap();
    assert!(plan.manager);
}

#[test]
fn restart_counts_from_0_to_16() {
    let plan = parse("[vm u]\nram 1M\npass pci 00:01.0\nguest g\n").unwrap();
    assert_eq!(plan.vms[0].restarts, 0, "no restart by default");
    let plan = parse("[vm u]\nram 1M\npass pci 00:01.0\nguest g\nrestart 16\n").unwrap();
    assert_eq!(plan.vms[0].restarts, 16);
    assert_eq!(
        err("[vm a]\nrestart 17\n"),
        "line 2:9: restart must be from 0 to 16"
    );
    assert_eq!(
        err("[vm a]\nrestart -1\n"),
        "line 2:9: expected a count (0 to 16), found \"-1\""
    );
    assert_eq!(
        err("[vm a]\nrestart 1\nrestart 2\n"),
        "line 3:1: \"restart\" given twice (first on line 2)"
    );
}

#[test]
fn mistakes_name_line_column_and_what() {
    let vm = "[vm a]\nram 2M\npass pci 00:01.0\nguest g\n";
    assert_eq!(
        err("[vm a]\nram 2M\nram 2M\npass pci 00:01.0\nguest g\n"),
        "line 3:1: \"ram\" given twice (first on line 2)"
    );
    assert_eq!(
        err(&format!("{vm}[vm a]\nram 2M\npass pci 00:02.0\nguest g\n")),
        "line 5:5: VM \"a\" defined twice (first on line 1)"
    );
    assert_eq!(
        err("[vm a]\nram 2M\n  colour blue\n"),
        "line 3:3: unknown key \"colour\" (allowed here: ram, unity, pass, guest, bootargs, time-limit, restart)"
    );
    assert_eq!(
        err("ram 2M\n"),
        "line 1:1: unknown key \"ram\" (allowed here: manager, [vm NAME])"
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci 00:01.0\n"),
        "line 1:1: VM \"a\" has no \"guest\""
    );
    assert_eq!(
        err("[vm a]\npass pci 00:01.0\nguest g\n"),
        "line 1:1: VM \"a\" has no \"ram\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\nguest g\n"),
        "line 1:1: VM \"a\" has no \"pass\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci 00:20.0\nguest g\n"),
        "line 3:10: expected a PCI address bb:dd.f (hex bus and device), found \"00:20.0\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci 0:1.0\nguest g\n"),
        "line 3:10: expected a PCI address bb:dd.f (hex bus and device), found \"0:1.0\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci 00:01.8\nguest g\n"),
        "line 3:10: expected a PCI address bb:dd.f (hex bus and device), found \"00:01.8\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass usb 00:01.0\n"),
        "line 3:6: expected \"pci\", found \"usb\""
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci\n"),
        "line 3:9: expected a PCI address bb:dd.f (hex bus and device), found end of line"
    );
    assert_eq!(
        err("[vm a]\nram 3000\n"),
        "line 2:5: ram must be a multiple of 4K from 1M to 1G"
    );
    assert_eq!(
        err("[vm a]\nram 2G\n"),
        "line 2:5: ram must be a multiple of 4K from 1M to 1G"
    );
    assert_eq!(
        err("[vm a]\nram lots\n"),
        "line 2:5: expected a size (2M, 0x200000, 512K), found \"lots\""
    );
    assert_eq!(
        err("[vm a]\nram 2M extra\n"),
        "line 2:8: expected end of line, found \"extra\""
    );
    assert_eq!(
        err("[vm a]\ntime-limit 10\n"),
        "line 2:12: expected a duration (10s, 500ms), found \"10\""
    );
    assert_eq!(
        err("[vm a]\ntime-limit 0s\n"),
        "line 2:12: time-limit must be from 1ms to 3600s"
    );
    assert_eq!(
        err("[vm a]\nbootargs \"open\n"),
        "line 2:10: string not closed by '\"' on its line"
    );
    assert_eq!(
        err("[vm a]\nbootargs plain\n"),
        "line 2:10: expected a quoted string, found \"plain\""
    );
    assert_eq!(
        err("[vm a]\nguest ../etc/passwd\n"),
        "line 2:7: expected a guest image name of 1 to 32 letters, digits, '-' or '_', found \"../etc/passwd\""
    );
    assert_eq!(
        err("[vm a\n"),
        "line 1:5: expected a VM name followed by \"]\", found \"a\""
    );
    assert_eq!(
        err("[host h]\n"),
        "line 1:1: expected \"[vm NAME]\", found \"[host\""
    );
    assert_eq!(
        err("manager maybe\n"),
        "line 1:9: expected \"on\" or \"off\", found \"maybe\""
    );
    assert_eq!(
        err("# nothing\n\n"),
        "line 3:1: the plan names no VM ([vm NAME] section)"
    );
    assert_eq!(
        err("[vm a]\nram 2M\npass pci 00:01.0\npass pci 00:02.0\npass pci 00:03.0\n"),
        "line 5:1: more than 2 pass-through functions in one VM"
    );
    assert_eq!(
        err(&format!("{vm}[vm b]\nram 2M\npass pci 00:01.0\nguest g\n")),
        "line 7:10: pci 00:01.0 passed through twice (first on line 3)"
    );
}

#[test]
fn too_many_vms() {
    let mut text = String::new();
    for i in 0..5 {
        text += &format!("[vm v{i}]\nram 2M\npass pci 00:{:02x}.0\nguest g\n", i + 1);
    }
    assert_eq!(err(&text), "line 17:1: more than 4 VMs");
    // The control: four are fine.
    let four: String = text.lines().take(16).map(|l| format!("{l}\n")).collect();
    assert_eq!(parse(&four).unwrap().vms.len(), 4);
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes, one column.
    assert_eq!(
        err("[vm a]\n# é\nram é\n"),
        "line 3:5: expected a size (2M, 0x200000, 512K), found \"é\""
    );
    assert_eq!(err("[vm a]\n\u{e9} x\n").split(':').next(), Some("line 2"));
}

/// xorshift64*: reproducible random bytes without a dependency.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_text_never_panics() {
    let mut rng = Rng(0x1234_5678);
    let alphabet = b"[]vm ramunitypscigdebotr-l\"#\n0123456789abcdefxKMGs:.\t\xc3\xa9";
    for _ in 0..20_000 {
        let len = (rng.next() % 120) as usize;
        let bytes: std::vec::Vec<u8> = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse(&text) {
            assert!(e.line >= 1 && e.col >= 1);
            let _ = e.to_string();
        };
    }
    // Mutations of a good plan: one byte replaced.
    for _ in 0..20_000 {
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = (rng.next() % bytes.len() as u64) as usize;
        bytes[at] = alphabet[(rng.next() % alphabet.len() as u64) as usize];
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text).map_err(|e| e.to_string()).is_ok();
    }
}
