//! Prints every op's section of `docs/protocol.md` (heading, request and reply layouts) as the
//! op table declares it; paste it into the doc after changing the table
//! (`cargo run -p smmuman-api --example protocol_layouts`). A test fails until the doc matches.

fn main() {
    let mut out = String::new();
    for info in smmuman_api::OPS {
        info.write_markdown(&mut out)
            .expect("writing to a String cannot fail");
        out.push('\n');
    }
    print!("{out}");
}
