//! The `tutor` binary: parses the command line, starts logging, runs the command, and turns
//! an error into one line on stderr and a non-zero exit code.

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// jemalloc: glibc's allocator spent about a fifth of the CPU of an answer through a model
/// (many short-lived strings and buffers across threads); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = tutor::cli::Cli::parse();
    let default_level = if cli.is_serve() { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TUTOR_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a file or a log collector gets plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match tutor::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}
