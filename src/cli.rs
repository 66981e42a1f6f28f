//! The command line: clap definitions and what each command prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::host::disk::parse_size;
use crate::install::{self, Options, Request};
use crate::profile::{Accel, Firmware};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Reinstall a server from its rescue system: boot an installer in QEMU \
    against the real disk and drive it over the serial console"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install onto a disk from a profile, then check that the disk boots.
    Install {
        #[command(flatten)]
        target: TargetArgs,
        /// Do not ask for the typed confirmation before erasing the disk.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Where run directories go [default: /var/lib/ferry/runs as root, else ~/.local/state/ferry/runs].
        #[arg(long, env = "FERRY_RUNS", value_name = "DIR")]
        runs_dir: Option<PathBuf>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// No progress lines on stderr.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show every decision an install would make, touching nothing.
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        json: bool,
    },
    /// The built-in recipes: list them, or print one to copy out and adapt.
    Recipe {
        #[command(subcommand)]
        command: RecipeCommand,
    },
    /// List an installer ISO's boot-menu entries with their kernel, initrd and command line.
    Inspect {
        iso: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// The built-in recipes, one a line.
    List,
    /// Print a recipe's profile, or one of its templates with --file.
    Show {
        name: String,
        /// One of the recipe's templates (e.g. preseed.cfg.j2).
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The install profile (a TOML file) or a built-in recipe's name (see `ferry recipe list`).
    pub profile: PathBuf,
    /// The disk to install onto: a block device, or a disk image file.
    #[arg(long, value_name = "PATH")]
    pub disk: PathBuf,
    /// Create the disk image with this size if it does not exist (e.g. 8G).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// The QEMU binary to use [default: qemu-system-x86_64 on PATH].
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// Override the profile's accelerator.
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// Override the profile's firmware.
    #[arg(long, value_enum)]
    pub firmware: Option<Firmware>,
    /// Set a template variable (repeatable): --var hostname=web1
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Public SSH keys for the installed system's root (sets vars.ssh_key).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// The installed system's network, a TOML file (name, mac, addresses, gateways, dns, dhcp).
    #[arg(long, value_name = "FILE")]
    pub network: Option<PathBuf>,
    /// Boot this installer ISO instead of the profile's [image].
    #[arg(long, value_name = "ISO")]
    pub image: Option<PathBuf>,
    /// Boot this netboot kernel instead of the profile's [image] (with --initrd).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
}

impl TargetArgs {
    fn request(&self, runs_dir: Option<PathBuf>, yes: bool, quiet: bool) -> Result<Request, Error> {
        let vars = self
            .vars
            .iter()
            .map(|v| match v.split_once('=') {
                Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
                _ => Err(Error::Usage(format!("--var {v}: expected NAME=VALUE"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Request {
            profile: self.profile.clone(),
            options: Options {
                disk: self.disk.clone(),
                size: self.size.as_deref().map(parse_size).transpose()?,
                qemu: self.qemu.clone(),
                accel: self.accel,
                firmware: self.firmware,
                vars,
                ssh_key: self.ssh_key.clone(),
                network: self.network.clone(),
                image: self.image.clone(),
                kernel: self.kernel.clone(),
                initrd: self.initrd.clone(),
            },
            runs_dir,
            yes,
            quiet,
        })
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Install {
            target,
            yes,
            runs_dir,
            json,
            quiet,
        } => {
            let request = target.request(runs_dir, yes, quiet || json)?;
            let outcome = install::install(&request)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome).map_err(std::io::Error::other)?
                );
            } else {
                print_outcome(&outcome);
            }
        }
        Command::Plan { target, json } => {
            let plan = install::plan(&target.request(None, false, true)?)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).map_err(std::io::Error::other)?
                );
            } else {
                print!("{}", install::plan::render(&plan));
            }
        }
        Command::Recipe { command } => recipe(command)?,
        Command::Inspect { iso, json } => {
            let image = crate::image::Iso::open(&iso)?;
            let entries = crate::image::boot_entries(&image)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).map_err(std::io::Error::other)?
                );
            } else {
                println!("{} (volume {})", iso.display(), image.volume_id());
                print!("{}", crate::image::render_table(&entries));
            }
        }
    }
    Ok(())
}

fn recipe(command: RecipeCommand) -> Result<(), Error> {
    match command {
        RecipeCommand::List => {
            for recipe in crate::recipe::RECIPES {
                println!("{:<12} {}", recipe.name, recipe.description());
            }
        }
        RecipeCommand::Show { name, file } => {
            let recipe = crate::recipe::find(&name).ok_or_else(|| {
                Error::Usage(format!(
                    "no built-in recipe {name} (see `ferry recipe list`)"
                ))
            })?;
            match file {
                None => print!("{}", recipe.profile),
                Some(file) => {
                    let text = recipe.file(&file).ok_or_else(|| {
                        let names: Vec<&str> = recipe.files.iter().map(|(n, _)| *n).collect();
                        Error::Usage(format!(
                            "recipe {name} has no file {file} (its files: {})",
                            names.join(", ")
                        ))
                    })?;
                    print!("{text}");
                }
            }
        }
    }
    Ok(())
}

fn print_outcome(outcome: &install::Outcome) {
    match outcome.verified_after {
        Some(secs) => println!(
            "installed onto {}; boot check passed (login prompt {secs:.1}s after power-on)",
            outcome.disk.display()
        ),
        None => println!(
            "installed onto {}; boot check skipped (the profile disables it)",
            outcome.disk.display()
        ),
    }
    for (stage, secs) in &outcome.stages {
        println!("  {:<7} {secs:>7.1}s", stage.name());
    }
    println!("  run directory: {}", outcome.run_dir.display());
}
