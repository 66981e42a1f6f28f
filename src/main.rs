use clap::Parser;

fn main() {
    std::process::exit(ferry::cli::run(ferry::cli::Cli::parse()));
}
