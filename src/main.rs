//! The `bitmill` command: parses the command line and runs one subcommand.
//! Everything of substance lives in the library; see `src/lib.rs` for the layer map.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
