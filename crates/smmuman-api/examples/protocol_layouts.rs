//! Prints the "Operations" section of `docs/protocol.md` (every op's heading, semantics,
//! refusals and request and reply layouts) as the op table declares it, or, with
//! `--write FILE`, replaces that section of FILE with it:
//! `cargo run -p smmuman-api --example protocol_layouts -- --write docs/protocol.md`.
//! A test fails until the document matches the declaration.

use smmuman_api::declare::{replace_generated, write_operations};

fn main() {
    let mut out = String::new();
    write_operations(&mut out).expect("writing to a String cannot fail");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => print!("{out}"),
        [flag, path] if flag == "--write" => {
            let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let new: String = replace_generated(&doc, &out)
                .unwrap_or_else(|| panic!("{path} lacks the generated-section markers"))
                .collect();
            std::fs::write(path, new).unwrap_or_else(|e| panic!("{path}: {e}"));
            eprintln!("{path}: operations section written");
        }
        _ => {
            eprintln!("usage: protocol_layouts [--write FILE]");
            std::process::exit(2);
        }
    }
}
