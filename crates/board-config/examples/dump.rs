//! Prints what board-config makes of a device-tree blob and, optionally, a config file:
//! `cargo run -p board-config --example dump -- virt.dtb [smmuman.conf]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dtb) = args.first() else {
        eprintln!("usage: dump BLOB.dtb [CONFIG]");
        return ExitCode::from(2);
    };
    let blob = match std::fs::read(dtb) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{dtb}: {e}");
            return ExitCode::from(2);
        }
    };
    let firmware = match board_config::dt::from_blob(&blob) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{dtb}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("# firmware\n{firmware}");
    let text;
    let user = match args.get(1) {
        None => None,
        Some(path) => {
            text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    return ExitCode::from(2);
                }
            };
            match board_config::config::parse(path, &text) {
                Ok(t) => {
                    println!("# config\n{t}");
                    Some(t)
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match board_config::combine(&firmware, user.as_ref()) {
        Ok(t) => {
            println!("# combined\n{t}");
            for g in t.groups() {
                let members: Vec<String> = g.members().map(|d| d.to_string()).collect();
                println!("group: {} sid {}: {}", g.unit, g.sid, members.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
