//! `optarch`: design neural-network structures from optimization algorithms.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
