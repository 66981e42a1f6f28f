use clap::Parser;
use ferry::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if only_reports(&cli.command) {
        end_quietly_on_a_closed_stdout();
    }
    std::process::exit(ferry::cli::run(cli));
}

/// Commands that only print a report: `ferry logs | head` may close their stdout early.
/// Not the commands that hold a terminal in raw mode or a VM, which must clean up.
fn only_reports(command: &Command) -> bool {
    matches!(
        command,
        Command::Runs { .. }
            | Command::Status { .. }
            | Command::Logs { .. }
            | Command::Plan { .. }
            | Command::Doctor { .. }
            | Command::Recipe { .. }
            | Command::Images { .. }
            | Command::Inspect { .. }
            | Command::Cache { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
    )
}

/// Rust ignores SIGPIPE, so `println!` into a closed pipe panics; a report reader that went
/// away should end the process silently, as it ends `cat`.
fn end_quietly_on_a_closed_stdout() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the default action, set before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
