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
        /// After a UEFI install, add a boot entry for \EFI\BOOT\BOOTX64.EFI on the disk to this
        /// machine's firmware (efibootmgr; UEFI hosts, block devices only).
        #[arg(long)]
        efi_boot_entry: bool,
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
        /// Read the host's facts from a recorded tree instead of / (tests; see
        /// tests/fixtures/hosts/README.md).
        #[arg(long, value_name = "DIR", hide = true)]
        host_root: Option<PathBuf>,
    },
    /// Explain this machine: firmware, CPU, KVM (probed), memory, disks, NICs, QEMU. Read-only.
    Doctor {
        /// Print the report as JSON (schema: docs/doctor.md).
        #[arg(long)]
        json: bool,
        /// Read the facts from a recorded tree instead of / (tests, support bundles).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Skip the KVM probe (the only part that takes more than a moment: ~2 s at most).
        #[arg(long)]
        no_probe: bool,
        /// The QEMU binary to report on and probe with [default: qemu-system-x86_64 on PATH].
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
    },
    /// List an installer ISO's boot-menu entries with their kernel, initrd and command line.
    Inspect {
        iso: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The install profile (TOML).
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
                host_root: None,
                efi_boot_entry: false,
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
            efi_boot_entry,
            json,
            quiet,
        } => {
            let mut request = target.request(runs_dir, yes, quiet || json)?;
            request.options.efi_boot_entry = efi_boot_entry;
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
        Command::Plan {
            target,
            json,
            host_root,
        } => {
            let mut request = target.request(None, false, true)?;
            request.options.host_root = host_root;
            let plan = install::plan(&request)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).map_err(std::io::Error::other)?
                );
            } else {
                print!("{}", install::plan::render(&plan));
            }
        }
        Command::Doctor {
            json,
            root,
            no_probe,
            qemu,
        } => crate::host::doctor::run(json, root, no_probe, qemu)?,
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
