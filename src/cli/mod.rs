//! The command line: which function runs each command ([`args`] holds the definitions),
//! and how results are printed.

mod args;
pub mod schemas;

pub use args::*;

use std::path::PathBuf;

use clap::CommandFactory;

use crate::Error;
use crate::fetch::{self, Sha256Digest};
use crate::install::{self, Decision};
use crate::ops;
use crate::run::{RunDir, Secrets};
use crate::style::Style;

/// Runs a parsed command line; returns the exit code (errors are printed on stderr).
pub fn run(cli: Cli) -> i32 {
    crate::run::private_files();
    let style = Style::for_stderr(cli.color);
    let result =
        crate::logging::stderr_filter(cli.verbose, std::env::var("FERRY_LOG").ok().as_deref())
            .map_err(Error::Usage)
            .and_then(|filter| {
                crate::logging::init(filter, style.colours());
                dispatch(cli.command, style)
            });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", style.error(&error));
            error.exit_code()
        }
    }
}

fn dispatch(command: Command, style: Style) -> Result<i32, Error> {
    match command {
        Command::Install {
            target,
            yes,
            runs_dir,
            efi_boot_entry,
            json,
            quiet,
            detach,
            on_failure,
            stop_grace,
        } => {
            // --json is for stdout: the progress on stderr stays.
            let mut request = target.request(runs_dir, yes, quiet)?;
            request.options.efi_boot_entry = efi_boot_entry;
            return ops::supervise::launch(ops::supervise::Launch {
                request,
                json,
                detach,
                on_failure,
                stop_grace,
            });
        }
        Command::Supervise { run_dir } => {
            return Ok(ops::supervise::supervise(&RunDir::at(run_dir)));
        }
        Command::Relay { socket } => install::serve::relay(&socket)?,
        Command::Runs {
            command: Some(RunsCommand::Prune { older_than, runs }),
            ..
        } => {
            let pruned = ops::runs::prune(&runs.root(), older_than)?;
            for run in &pruned.removed {
                println!("removed {run}");
            }
            eprintln!(
                "ferry: removed {} run(s) that ended over {} ago; kept {} live run(s)",
                pruned.removed.len(),
                humantime::format_duration(older_than),
                pruned.live.len()
            );
        }
        Command::Runs {
            command: None,
            runs,
            json,
        } => match json {
            true => print_json(&Versioned::new(&ops::runs::list(&runs.root())))?,
            false => ops::runs::print_list(&runs.root()),
        },
        Command::Status {
            run,
            runs,
            json,
            lines,
        } => {
            let report = ops::runs::report(&runs.resolve(run.as_deref())?, lines)?;
            match json {
                true => print_json(&report)?,
                false => ops::runs::print_report(&report),
            }
        }
        Command::Logs {
            run,
            runs,
            ferry,
            follow,
        } => ops::runs::logs(&runs.resolve(run.as_deref())?, ferry, follow)?,
        Command::Attach {
            run,
            runs,
            read_only,
        } => ops::attach::attach(&runs.resolve(run.as_deref())?, read_only)?,
        Command::Stop { run, runs } => {
            eprintln!(
                "ferry: {}",
                ops::control::stop(&runs.resolve(run.as_deref())?)?
            );
        }
        Command::Boot {
            image,
            disk,
            entry,
            size,
            qemu,
            accel,
            arch,
            firmware,
            cpus,
            yes,
            runs,
        } => {
            let target = TargetArgs {
                profile: PathBuf::new(),
                disk,
                size,
                qemu,
                accel,
                arch,
                firmware,
                cpus,
                vars: Vec::new(),
                secrets: Vec::new(),
                secret_files: Vec::new(),
                ssh_key: None,
                network: None,
                image: None,
                kernel: None,
                initrd: None,
                stream: false,
                stream_cache: None,
                sources: SourceArgs {
                    cache_dir: None,
                    catalog: None,
                },
            };
            let request = target.request(runs.runs_dir, yes, true)?;
            return ops::supervise::boot(ops::supervise::ManualBoot {
                image,
                entry,
                request,
            });
        }
        Command::Resume { run, runs } => {
            let done = ops::control::decide(&runs.resolve(run.as_deref())?, Decision::Resume)?;
            eprintln!("ferry: {done}");
        }
        Command::Abort { run, runs } => {
            let done = ops::control::decide(&runs.resolve(run.as_deref())?, Decision::Abort)?;
            eprintln!("ferry: {done}");
        }
        Command::Bundle {
            run,
            runs,
            output,
            force,
        } => {
            let path =
                ops::bundle::write(&runs.resolve(run.as_deref())?, output.as_deref(), force)?;
            println!("{}", path.display());
        }
        Command::Plan {
            target,
            json,
            show_secrets,
            render,
            force,
            host_root,
        } => {
            let mut request = target.request(None, false, true)?;
            request.options.host_root = host_root;
            let (plan, mut secrets) = install::plan(&request)?;
            if show_secrets {
                secrets = Secrets::default();
            }
            let rendered = match &render {
                Some(dir) => install::render::write(&plan, &secrets, dir, force)?,
                None => Vec::new(),
            };
            match json {
                true => println!("{}", secrets.to_json(&Versioned::new(&plan), true)?),
                false => print!("{}", secrets.redact(&install::plan::render(&plan))),
            }
            if let Some(dir) = render {
                let names: Vec<String> = rendered.iter().map(|p| p.display().to_string()).collect();
                // On stderr: stdout stays the plan alone (JSON with --json).
                eprintln!("rendered into {}: {}", dir.display(), names.join(", "));
            }
        }
        Command::Doctor {
            json,
            root,
            no_probe,
            qemu,
            sources,
        } => crate::doctor::run(
            json,
            &crate::doctor::Options {
                root: root.as_deref(),
                qemu: qemu.as_deref(),
                catalog: sources.catalog.as_deref(),
                cache_dir: sources.cache_dir.as_deref(),
                probe: !no_probe,
            },
        )?,
        Command::Cache { command, cache_dir } => {
            let dir = fetch::cache::cache_dir(cache_dir.as_deref());
            match command {
                CacheCommand::List { json: true } => {
                    print_json(&Versioned::new(&ops::cache::list(&dir)?))?
                }
                CacheCommand::List { json: false } => {
                    ops::cache::print_listing(&ops::cache::list(&dir)?)
                }
                CacheCommand::Prune { older_than } => {
                    ops::cache::print_removed(&ops::cache::remove(&dir, Some(older_than))?, &dir)
                }
                CacheCommand::Clean => {
                    ops::cache::print_removed(&ops::cache::remove(&dir, None)?, &dir)
                }
            }
        }
        Command::Recipe { command } => match command {
            RecipeCommand::List => crate::recipe::print_list(),
            RecipeCommand::Show { name, file } => {
                let catalog = fetch::catalog::Catalog::load(None)?;
                let recipe = install::find_recipe(&catalog, &name).ok_or_else(|| {
                    Error::Usage(format!(
                        "no built-in recipe {name} (see `ferry recipe list`)"
                    ))
                })?;
                crate::recipe::show(recipe, file.as_deref())?
            }
        },
        Command::Fetch {
            image,
            sha256,
            output,
            insecure_no_checksum,
            sources,
            quiet,
        } => {
            let digest = sha256
                .map(|hex| {
                    Sha256Digest::parse(&hex).ok_or_else(|| {
                        Error::Usage(format!("--sha256 {hex}: expected 64 hexadecimal digits"))
                    })
                })
                .transpose()?;
            let mut requests = fetch::resolve(
                &image,
                digest,
                insecure_no_checksum,
                sources.catalog.as_deref(),
                &fetch::cache::cache_dir(sources.cache_dir.as_deref()),
            )?;
            if let [request] = requests.as_mut_slice() {
                if let Some(output) = output {
                    request.dest = output;
                }
            } else if output.is_some() || digest.is_some() {
                return Err(Error::Usage(format!(
                    "{image} is {} files (an installer tree's kernel and initrd, each checked \
                     against the tree's checksums): drop --output and --sha256",
                    requests.len()
                )));
            }
            for request in &requests {
                fetch::fetch_command(request, quiet, style)?;
            }
        }
        Command::Images { sources, json } => {
            let catalog = fetch::catalog::Catalog::load(sources.catalog.as_deref())?;
            match json {
                true => print_json(&Versioned::new(&catalog))?,
                false => {
                    let cache = fetch::cache::cache_dir(sources.cache_dir.as_deref());
                    print!(
                        "{}",
                        catalog.render_table(
                            |e| {
                                e.requests(&cache)
                                    .is_ok_and(|files| files.iter().all(|r| r.dest.is_file()))
                            },
                            crate::table::stdout_width(),
                        )
                    );
                }
            }
        }
        Command::Inspect { iso, json } => {
            let image = crate::image::Iso::open(&iso)?;
            let entries = crate::image::boot_entries(&image)?;
            match json {
                true => print_json(&Versioned::new(&crate::image::Inspection {
                    iso: &iso,
                    volume_id: image.volume_id(),
                    entries: &entries,
                }))?,
                false => {
                    println!("{} (volume {})", iso.display(), image.volume_id());
                    print!(
                        "{}",
                        crate::image::render_table(&entries, crate::table::stdout_width())
                    );
                }
            }
        }
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(Cli::command(), &dir)?;
        }
    }
    Ok(0)
}

/// A `--json` document: `schema_version` first, then the value's fields.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Versioned<'a, T> {
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

impl<'a, T: serde::Serialize> Versioned<'a, T> {
    fn new(body: &'a T) -> Self {
        Versioned {
            schema_version: crate::run::events::SCHEMA_VERSION,
            body,
        }
    }
}

/// `--json`: the value, pretty-printed, on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every command (hidden ones too) says what it is for in `--help`.
    #[test]
    fn every_argument_and_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} (the command)"));
                }
                walk(sub, &path, missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "ferry", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
