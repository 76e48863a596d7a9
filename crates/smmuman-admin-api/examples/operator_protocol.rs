//! Prints the generated sections of `docs/operator-protocol.md` (every admin op's semantics,
//! refusals and layouts, then every row type) as the op table declares them, or, with
//! `--write FILE`, replaces them in FILE:
//! `cargo run -p smmuman-admin-api --example operator_protocol -- --write docs/operator-protocol.md`.
//! A test fails until the document matches the declaration.

use smmuman_admin_api::declare::{replace_generated, write_operations};

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
            eprintln!("{path}: operations written");
        }
        _ => {
            eprintln!("usage: operator_protocol [--write FILE]");
            std::process::exit(2);
        }
    }
}
