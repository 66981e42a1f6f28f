use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    if let Err(error) = ferry::cli::run(cli) {
        eprintln!("ferry: error: {error}");
        std::process::exit(error.exit_code());
    }
}
