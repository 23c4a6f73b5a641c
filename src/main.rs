//! The `corelay` command (see [`corelay::cli::main`]).

fn main() -> std::process::ExitCode {
    corelay::cli::main()
}
