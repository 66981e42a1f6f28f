//! The command line's definitions (clap): commands, their options and help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::arch::Arch;
use crate::host::disk::parse_size;
use crate::install::{self, Options, ProfileSource, Request};
use crate::ops;
use crate::ops::live::OnFailure;
use crate::profile::{Accel, Firmware};
use crate::run::RunDir;
use crate::style::ColorChoice;

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
    /// Log what ferry does on stderr: -v info, -vv debug, -vvv trace (FERRY_LOG, a tracing
    /// filter such as `ferry=debug`, takes precedence). A run's full log is `ferry logs --ferry`.
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colour errors and warnings on stderr: auto (on a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t, global = true)]
    pub color: ColorChoice,
}

const INSTALL_EXAMPLES: &str = "\
Examples:
  # A built-in recipe (or the catalog image it installs) onto the server's disk
  ferry install debian-12 --disk /dev/sda --ssh-key ~/.ssh/id_ed25519.pub --var hostname=web1
  # Your own profile, in the background; then watch it
  ferry install ./web.toml --disk /dev/nvme0n1 --yes --detach && ferry status
  # For scripts: the summary as JSON on stdout, fail rather than pause
  ferry install debian-12 --disk /dev/sda --yes --json --on-failure abort";

const PLAN_EXAMPLES: &str = "\
Examples:
  # What installing debian-12 onto /dev/sda would do (nothing is touched)
  ferry plan debian-12 --disk /dev/sda --ssh-key ~/.ssh/id_ed25519.pub
  # A catalog image's name plans with its recipe
  ferry plan ubuntu-24.04-server --disk disk.img --size 20G --json";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install onto a disk from a profile, then check that the disk boots.
    #[command(after_help = INSTALL_EXAMPLES)]
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
        /// Start the install in the background, print its run id and return.
        #[arg(long)]
        detach: bool,
        /// When a step fails: keep the VM running for `ferry attach`, then `ferry resume` or
        /// `ferry abort` (pause), or stop (abort) [default: pause on a terminal, else abort].
        #[arg(long, value_enum, value_name = "WHAT")]
        on_failure: Option<OnFailure>,
        /// After Ctrl-C (SIGINT/SIGTERM): how long the guest gets to power off after the ACPI
        /// power-down before QEMU is stopped.
        #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
        stop_grace: Duration,
    },
    /// Internal: the supervisor of a run, started by `ferry install` and `ferry boot` with
    /// the request they wrote into the run directory.
    #[command(hide = true)]
    Supervise {
        /// The run directory holding request.json.
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
    },
    /// Internal: what QEMU runs for each guest connection to the answer URL; copies the
    /// connection (stdin/stdout) to the answer server's socket in the run directory.
    #[command(hide = true)]
    Relay {
        /// The answer server's unix socket in the run directory.
        #[arg(value_name = "SOCKET")]
        socket: PathBuf,
    },
    /// List runs, newest first (or prune old ones).
    #[command(args_conflicts_with_subcommands = true)]
    Runs {
        #[command(subcommand)]
        command: Option<RunsCommand>,
        #[command(flatten)]
        runs: RunsArgs,
        /// Print the runs as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// A run's stage, current step, elapsed time and the last lines of its console.
    Status {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Console lines to show.
        #[arg(long, default_value_t = 10)]
        lines: usize,
    },
    /// Print a run's serial console log (or ferry's log).
    Logs {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
        /// ferry.log instead of the serial console.
        #[arg(long)]
        ferry: bool,
        /// Keep printing until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Join a running install's serial console on this terminal (Ctrl-] detaches).
    Attach {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
        /// Watch only: what you type is not sent to the guest.
        #[arg(long)]
        read_only: bool,
    },
    /// Continue a run paused after a failed step, with the next step.
    Resume {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// Fail a run paused after a failed step (QEMU is stopped).
    Abort {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// Stop a run from another shell, as Ctrl-C does: ACPI power-down, then QEMU is stopped.
    Stop {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// Boot an installer against the disk with its serial console on this terminal (no
    /// profile). Ends when the guest powers off; Ctrl-] detaches and leaves the VM running.
    Boot {
        /// The installer ISO.
        image: PathBuf,
        /// The disk the VM gets: a block device, or a disk image file.
        #[arg(long, value_name = "PATH")]
        disk: PathBuf,
        /// The ISO's boot-menu entry: "default", a label, a title, or "Options > Debug".
        #[arg(long, default_value = "default")]
        entry: String,
        /// Create the disk image with this size if it does not exist (e.g. 8G).
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// The QEMU binary to use [default: qemu-system-x86_64 on PATH].
        #[arg(long, value_name = "PATH")]
        qemu: Option<PathBuf>,
        /// The accelerator [default: kvm when it runs guests here, else tcg].
        #[arg(long, value_enum)]
        accel: Option<Accel>,
        /// The guest's architecture (x86_64 or aarch64) [default: this machine's]; a foreign
        /// one runs under TCG.
        #[arg(long, value_name = "ARCH")]
        arch: Option<Arch>,
        /// The firmware [default: as this machine boots].
        #[arg(long, value_enum)]
        firmware: Option<Firmware>,
        /// The VM's vCPUs [default: one per host CPU, at most 4].
        #[arg(long, value_name = "N", value_parser = cpus_range())]
        cpus: Option<u32>,
        /// Do not ask for the typed confirmation before the VM may write to the disk.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        runs: RunsArgs,
    },
    /// Write a support bundle (.tar.gz) of a run, secrets redacted.
    Bundle {
        /// Run id (directory name) or path [default: the newest run].
        run: Option<String>,
        #[command(flatten)]
        runs: RunsArgs,
        /// Output file [default: ferry-RUN.tar.gz].
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show every decision an install would make, touching nothing.
    #[command(after_help = PLAN_EXAMPLES)]
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the plan as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Print secret values (`[secrets]`, --secret, password variables) instead of
        /// [redacted].
        #[arg(long)]
        show_secrets: bool,
        /// Also write what the install would serve and run into DIR (created 0700, files
        /// 0600): the answer files (DIR/files/NAME), the kernel command line (DIR/cmdline)
        /// and QEMU's command line (DIR/qemu.args), secrets redacted unless --show-secrets.
        #[arg(long, value_name = "DIR")]
        render: Option<PathBuf>,
        /// With --render: write into a directory that is not empty (the files it writes
        /// are overwritten; others stay).
        #[arg(long, requires = "render")]
        force: bool,
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
        /// Where an install would get QEMU from when this machine has none.
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// The download cache: list it, prune what went unused, or clean it.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        /// The download cache [default: /var/cache/ferry as root, else $XDG_CACHE_HOME/ferry].
        #[arg(long, env = "FERRY_CACHE", value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// The built-in recipes: list them, or print one to copy out and adapt.
    Recipe {
        #[command(subcommand)]
        command: RecipeCommand,
    },
    /// Download an image from the catalog (by name) or a URL into the cache, and verify it.
    /// Prints the verified file's path on stdout.
    Fetch {
        /// A catalog name (`ferry images`) or an http(s) URL.
        image: String,
        /// The expected SHA-256 (instead of the catalog's or a SHA256SUMS file's).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Write here instead of into the cache.
        #[arg(long, short = 'o', value_name = "PATH")]
        output: Option<PathBuf>,
        /// Accept a URL without a checksum: the file is NOT verified.
        #[arg(long)]
        insecure_no_checksum: bool,
        #[command(flatten)]
        sources: SourceArgs,
        /// No progress on stderr.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List the image catalog.
    Images {
        #[command(flatten)]
        sources: SourceArgs,
        /// Print the catalog as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List an installer ISO's boot-menu entries with their kernel, initrd and command line.
    Inspect {
        /// The installer ISO to read.
        iso: PathBuf,
        /// Print the entries as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `source <(ferry completions bash)`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Internal: write ferry's man pages (ferry.1, ferry-install.1, …) into DIR
    /// (scripts/build-release.sh).
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Remove the run directories of runs that ended more than AGE ago (never a running or
    /// paused run).
    Prune {
        /// How long ago a run must have ended, e.g. 7d or 12h.
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Duration,
        #[command(flatten)]
        runs: RunsArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// What the cache holds: each download, partial download and QEMU, largest first.
    List {
        /// Print the listing as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove what has not been used for AGE (never a download in progress).
    Prune {
        /// How long an entry must have gone unused, e.g. 30d or 12h.
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Remove everything in the cache (but downloads in progress); the next install fetches
    /// again.
    Clean,
}

#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// The built-in recipes, one a line.
    List,
    /// Print a recipe's profile, or one of its templates with --file.
    Show {
        /// The recipe's name (see `ferry recipe list`).
        name: String,
        /// One of the recipe's templates (e.g. preseed.cfg.j2).
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
}

/// Where downloads go, and which catalog names images.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The download cache [default: /var/cache/ferry as root, else $XDG_CACHE_HOME/ferry].
    #[arg(long, env = "FERRY_CACHE", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Read the image catalog from this directory of TOML files instead of the built-in one.
    #[arg(long, env = "FERRY_CATALOG", value_name = "DIR")]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Where run directories are [default: as for `install`].
    #[arg(long, env = "FERRY_RUNS", value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

impl RunsArgs {
    pub(super) fn root(&self) -> PathBuf {
        crate::run::runs_root(self.runs_dir.as_deref())
    }
    pub(super) fn resolve(&self, run: Option<&str>) -> Result<RunDir, Error> {
        ops::runs::resolve(&self.root(), run)
    }
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
    /// The guest's architecture (x86_64 or aarch64) [default: this machine's]; a foreign
    /// one runs under TCG.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    /// Override the profile's firmware.
    #[arg(long, value_enum)]
    pub firmware: Option<Firmware>,
    /// Override the profile's [vm] cpus: the VM's vCPUs (0: one per host CPU, at most 4).
    #[arg(long, value_name = "N", value_parser = cpus_range())]
    pub cpus: Option<u32>,
    /// Set a template variable (repeatable): --var hostname=web1
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Set a secret (repeatable): redacted everywhere ferry writes. Visible in this
    /// command's own argv: prefer --secret-file or FERRY_SECRET_NAME.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// Set a secret from a file (repeatable; one trailing newline dropped).
    #[arg(long = "secret-file", value_name = "NAME=PATH")]
    pub secret_files: Vec<String>,
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
    /// The initrd to boot with --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Stream the downloaded image to QEMU, verified chunk by chunk, instead of storing it
    /// [default: only when it does not fit the cache's file system].
    #[arg(long)]
    pub stream: bool,
    /// The most memory the streamed image's verified chunks may take (e.g. 64M) [default: 256M].
    #[arg(long, value_name = "SIZE")]
    pub stream_cache: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

impl TargetArgs {
    pub(super) fn request(
        &self,
        runs_dir: Option<PathBuf>,
        yes: bool,
        quiet: bool,
    ) -> Result<Request, Error> {
        let vars = self
            .vars
            .iter()
            .map(|v| match v.split_once('=') {
                Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
                _ => Err(Error::Usage(format!("--var {v}: expected NAME=VALUE"))),
            })
            .collect::<Result<Vec<(String, String)>, _>>()?;
        // A password variable is a secret: it travels with them (never into request.json or
        // the supervisor's argv); a --secret of the same name wins.
        let (passwords, vars): (Vec<_>, Vec<_>) = vars
            .into_iter()
            .partition(|(k, _)| install::is_secret_var(k));
        let mut secrets = install::secret_inputs(
            &self.secrets,
            &self.secret_files,
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )?;
        for (name, value) in passwords {
            eprintln!(
                "ferry: warning: --var {name} holds a password: it is kept as a secret, but this \
                 command line shows it to `ps`; use --secret-file {name}=PATH or FERRY_SECRET_{}",
                name.to_uppercase()
            );
            secrets.entry(name).or_insert(value);
        }
        Ok(Request {
            profile: ProfileSource::Named(self.profile.clone()),
            options: Options {
                disk: self.disk.clone(),
                size: self.size.as_deref().map(parse_size).transpose()?,
                qemu: self.qemu.clone(),
                accel: self.accel,
                firmware: self.firmware,
                cpus: self.cpus,
                vars,
                host_root: None,
                efi_boot_entry: false,
                ssh_key: self.ssh_key.clone(),
                network: self.network.clone(),
                image: self.image.clone(),
                kernel: self.kernel.clone(),
                initrd: self.initrd.clone(),
                cache_dir: self.sources.cache_dir.clone(),
                catalog: self.sources.catalog.clone(),
                arch: self.arch,
                stream: self.stream,
                stream_cache: self
                    .stream_cache
                    .as_deref()
                    .map(|s| {
                        parse_size(s).map_err(|e| Error::Usage(format!("--stream-cache: {e}")))
                    })
                    .transpose()?,
            },
            runs_dir,
            yes,
            quiet,
            secrets,
        })
    }
}

/// `--cpus`: as `[vm] cpus`, 0 (one per host CPU) up to QEMU's most.
fn cpus_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(..=i64::from(crate::profile::MAX_CPUS))
}
