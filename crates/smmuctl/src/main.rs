//! `smmuctl`: the operator's CLI of the smmuman manager (`smmuctl --help`, `docs/operator.md`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = smmuctl::run(&args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    std::process::exit(code);
}
