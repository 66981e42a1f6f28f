//! The plan: every decision of an install, made up front from the profile, the command line
//! and the host's facts, before anything is written. `ferry plan` prints it; `install` runs it.
//!
//! [`make`] takes each concern from its file: [`source`] (the image, the boot and QEMU),
//! [`vm`] (firmware, accelerator, memory, CPUs, NIC and disk), [`context`] (the templates'
//! variables) and [`render`] (the plan as the operator reads it).

mod context;
mod netboot;
mod render;
mod source;
mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::arch::Arch;
use crate::fetch::Request;
use crate::host::Facts;
use crate::host::disk::Target;
use crate::image::BootEntry;
use crate::profile::{Accel, BootMode, ConsoleSource, Firmware, Pattern, Profile, Renderer};
use crate::qemu::{AccelKind, CacheMode, QemuBinary};
pub use context::{host_context, partition_prefix};
pub use netboot::{Netboot, NetbootUnpack, TreeBoot};
pub use render::render;
pub use source::{compose_cmdline, locate_qemu, serial_console};
pub use vm::{GuestBus, GuestFirmware};

/// An install that cannot be planned as asked; each message names the profile field
/// (`file:line:column`) or the option, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A profile field or a command-line option that cannot be used as it is.
    #[error("{at}: {message}")]
    Input { at: String, message: String },
    /// Command-line options that exclude or need each other.
    #[error("{0}")]
    Options(&'static str),
    /// This machine cannot run the VM as asked.
    #[error("{0}")]
    Machine(String),
    /// Not an input error: a stage asked for what only the fetch stage completes.
    #[error("{0}")]
    NotFetched(&'static str),
}

impl PlanError {
    /// An error at a profile field's position.
    fn field<T>(
        profile: &Profile,
        value: &serde_spanned::Spanned<T>,
        message: impl std::fmt::Display,
    ) -> PlanError {
        PlanError::Input {
            at: profile.location_of(value),
            message: message.to_string(),
        }
    }

    /// An error about a command-line option's file.
    fn option(option: &str, path: &Path, message: impl std::fmt::Display) -> PlanError {
        PlanError::Input {
            at: format!("{option} {}", path.display()),
            message: message.to_string(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            PlanError::Input { .. } | PlanError::Options(_) | PlanError::Machine(_) => 2,
            PlanError::NotFetched(_) => 1,
        }
    }
}

/// What the command line adds to or overrides in the profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    pub disk: PathBuf,
    pub size: Option<u64>,
    pub qemu: Option<PathBuf>,
    pub accel: Option<Accel>,
    pub firmware: Option<Firmware>,
    /// `--cpus N`: instead of the profile's `[vm] cpus` (0 is `auto` there too).
    #[serde(default)]
    pub cpus: Option<u32>,
    pub vars: Vec<(String, String)>,
    /// Read the host's facts from this recorded tree instead of / (`ferry plan --host-root`,
    /// for tests: see tests/fixtures/hosts/).
    pub host_root: Option<PathBuf>,
    /// After the install, add a boot entry for `\EFI\BOOT\BOOTX64.EFI` to the real firmware
    /// with efibootmgr.
    pub efi_boot_entry: bool,
    /// `--ssh-key FILE`: its contents become `vars.ssh_key`.
    pub ssh_key: Option<PathBuf>,
    /// `--network FILE`: the installed system's network (TOML, see `recipe::network::Network`).
    pub network: Option<PathBuf>,
    /// `--image ISO`, or `--kernel` and `--initrd`: instead of the profile's `[image]`.
    pub image: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// The download cache (`--cache-dir`); `None`: the default.
    pub cache_dir: Option<PathBuf>,
    /// The guest's architecture (`--arch`); `None`: this machine's. A foreign one runs under
    /// TCG.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// The image catalog directory (`--catalog`); `None`: the built-in catalog.
    pub catalog: Option<PathBuf>,
    /// `--stream`: serve a downloaded image to QEMU by verified streaming, never storing it.
    #[serde(default)]
    pub stream: bool,
    /// `--stream-cache SIZE`: the bound of the streamed chunks kept in memory; `None`: the
    /// default ([`crate::fetch::stream::DEFAULT_CACHE_LIMIT`]).
    #[serde(default)]
    pub stream_cache: Option<u64>,
}

impl Options {
    /// The guest's architecture: `--arch`, else this machine's.
    pub fn arch(&self) -> Arch {
        self.arch.unwrap_or_else(Arch::host)
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Plan {
    pub profile: PathBuf,
    pub description: String,
    /// The guest's architecture: which QEMU, machine, firmware and serial console.
    pub arch: Arch,
    /// The download of the image (a `url` or catalog `name`), made before QEMU starts.
    pub fetch: Option<FetchPlan>,
    /// `None` only while a downloaded image is not in the cache yet: its boot menu is read
    /// once it is (`install` plans again after the fetch).
    pub boot: Option<BootPlan>,
    /// How it boots (the profile's `[boot] mode`), known before the image is downloaded.
    pub boot_mode: BootMode,
    pub qemu: QemuPlan,
    pub accel: AccelPlan,
    pub memory_mib: u64,
    /// How the memory size was reached, with the numbers.
    pub memory_reason: String,
    pub cpus: u32,
    pub cpus_reason: String,
    /// The VM NIC's MAC address: the host's primary NIC's, so an installed configuration
    /// bound to the MAC matches the real machine.
    pub mac: Option<String>,
    pub mac_reason: String,
    /// Add a boot entry to the real firmware after the install (`--efi-boot-entry`).
    pub efi_boot_entry: bool,
    pub firmware: GuestFirmware,
    pub firmware_reason: String,
    pub disk: DiskPlan,
    /// The base URL of the answer files as the guest sees it.
    pub serve_url: String,
    pub files: Vec<ServedFile>,
    pub steps: Vec<Step>,
    pub finish: FinishPlan,
}

impl Plan {
    /// Whether a step reads the VGA screen (QEMU then gets a screen monitor).
    pub fn reads_screen(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.console == ConsoleSource::Screen)
    }

    /// What boots; an error while the image is not downloaded yet.
    pub fn boot(&self) -> Result<&BootPlan, Error> {
        self.boot.as_ref().ok_or_else(|| {
            PlanError::NotFetched("the image is not downloaded yet, so its boot menu was not read")
                .into()
        })
    }

    /// The QEMU to run; an error while it is not downloaded yet.
    pub fn qemu(&self) -> Result<&QemuBinary, Error> {
        match &self.qemu {
            QemuPlan::Ready(qemu) => Ok(qemu),
            QemuPlan::Bundle { .. } => {
                Err(PlanError::NotFetched("the portable QEMU bundle is not downloaded yet").into())
            }
            QemuPlan::Archive { .. } => {
                Err(PlanError::NotFetched("QEMU is not assembled from Debian's archive yet").into())
            }
        }
    }
}

/// Which QEMU runs the install.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum QemuPlan {
    Ready(QemuBinary),
    /// No usable QEMU on this machine: the catalog's portable bundle, downloaded, verified and
    /// unpacked into `cache_dir` by the fetch stage (the install plans again after it).
    Bundle {
        fetch: FetchPlan,
        cache_dir: PathBuf,
        /// What is wrong with the machine's own QEMU.
        why: String,
    },
    /// No usable QEMU on this machine: Debian's QEMU packages, fetched through the archive's
    /// signed chain and unpacked into `cache_dir` by the fetch stage.
    Archive {
        source: crate::qemu::archive::Source,
        /// The archive's URL.
        archive: String,
        cache_dir: PathBuf,
        /// What is in the cache already, and so what the fetch stage will download.
        origin: crate::qemu::archive::Origin,
        why: String,
    },
}

impl QemuPlan {
    /// Where QEMU comes from, in one line (`ferry plan`, `ferry doctor`).
    pub fn describe(&self) -> String {
        match self {
            QemuPlan::Ready(qemu) => format!(
                "{} {} ({})",
                qemu.program.display(),
                qemu.version,
                qemu.source
            ),
            QemuPlan::Bundle { fetch, why, .. } => format!(
                "the catalog's portable bundle, downloaded from {} first ({why})",
                fetch.request.url()
            ),
            QemuPlan::Archive {
                origin,
                archive,
                why,
                ..
            } => format!(
                "{} from {archive}, before QEMU starts ({why})",
                origin.describe()
            ),
        }
    }
}

/// What the fetch stage downloads, known before the plan is made: the image, and QEMU when
/// this machine has none. Reads no host facts and renders no template, so the install makes
/// its one plan after the fetch, from what is in the cache then.
#[derive(Debug)]
pub struct Downloads {
    pub image: Option<FetchPlan>,
    pub qemu: QemuPlan,
}

/// What an install of `profile` downloads before QEMU starts.
pub fn downloads(profile: &Profile, opts: &Options) -> Result<Downloads, Error> {
    Ok(Downloads {
        image: source::image_download(profile, opts)?,
        qemu: locate_qemu(
            opts.arch(),
            opts.qemu.as_deref(),
            opts.catalog.as_deref(),
            opts.cache_dir.as_deref(),
        )?,
    })
}

/// An image to download into the cache and verify, or to stream.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FetchPlan {
    pub request: Request,
    /// Whether the cache holds the file already (it is verified again before use).
    pub cached: bool,
    /// Downloaded into the cache, or streamed to QEMU: decided in the plan.
    pub delivery: Delivery,
    /// Netboot files booted directly instead of an ISO's menu entry.
    pub netboot: Option<Netboot>,
}

/// How a fetched image reaches QEMU. Decided by the plan (`--stream`, or the image does not fit
/// the cache's file system), so the fetch stage and the boot follow one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Delivery {
    /// Downloaded into the cache and verified, then attached as a file.
    Download { why: DownloadWhy },
    /// Verified streaming (`crate::fetch::stream`): nothing stored but the chunk record, at
    /// most `cache_limit` bytes of verified chunks in memory.
    Stream { cache_limit: u64, why: StreamWhy },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum DownloadWhy {
    /// The cache holds it already.
    Cached,
    /// It fits the cache's file system.
    Fits { size: u64, free: u64 },
    /// The server did not say its size; the download is tried.
    SizeUnknown { error: String },
    /// Not an ISO QEMU reads (a netboot package to unpack, QEMU's bundle).
    NotAnIso,
    /// An installer tree's kernel and initrd: smaller than its ISO, whose root image the
    /// installer fetches from the tree itself.
    Tree,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum StreamWhy {
    /// `--stream`.
    Asked,
    /// Larger than the free space of the cache's file system.
    TooLarge { size: u64, free: u64 },
    /// The cache is in memory (a rescue system's tmpfs): stored there, the image would leave
    /// less than the VM and the host need (`needed`) of the `available` memory.
    LeavesTooLittleMemory {
        size: u64,
        available: u64,
        needed: u64,
    },
}

impl Delivery {
    /// The decision and why, in one line (`ferry plan`).
    pub fn describe(&self) -> String {
        let mib = |n: &u64| format!("{} MiB", n.div_ceil(1 << 20));
        match self {
            Delivery::Download { why } => match why {
                DownloadWhy::Cached => "download: the cache holds it".into(),
                DownloadWhy::Fits { size, free } => format!(
                    "download: {} fits the cache's file system ({} free; --stream streams it instead)",
                    mib(size),
                    mib(free)
                ),
                DownloadWhy::SizeUnknown { error } => {
                    format!("download: its size is unknown ({error})")
                }
                DownloadWhy::NotAnIso => "download: unpacked, not read by QEMU".into(),
                DownloadWhy::Tree => "download: the installer tree's kernel and initrd only; the \
                     installer fetches the rest of itself from the tree into the VM's memory"
                    .into(),
            },
            Delivery::Stream { cache_limit, why } => {
                let why = match why {
                    StreamWhy::Asked => "--stream".to_string(),
                    StreamWhy::TooLarge { size, free } => format!(
                        "{} does not fit the cache's file system ({} free)",
                        mib(size),
                        mib(free)
                    ),
                    StreamWhy::LeavesTooLittleMemory {
                        size,
                        available,
                        needed,
                    } => format!(
                        "the cache is in memory: {} stored there would leave {} of the {} \
                         available, and the VM and the host need {}",
                        mib(size),
                        mib(&available.saturating_sub(*size)),
                        mib(available),
                        mib(needed)
                    ),
                };
                format!(
                    "verified streaming, at most {} of chunks in memory ({why})",
                    mib(cache_limit)
                )
            }
        }
    }

    pub fn streams(&self) -> bool {
        matches!(self, Delivery::Stream { .. })
    }
}

/// What boots under [`BootMode::Loader`].
pub const LOADER_TITLE: &str = "the ISO's own boot loader";

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BootPlan {
    /// `loader`: the ISO boots through its own boot loader, and the fields below but `iso`
    /// are empty.
    pub mode: BootMode,
    /// The installer ISO, attached as a CD-ROM; none for a netboot kernel.
    pub iso: Option<IsoSource>,
    /// The ISO's boot-menu entry the kernel comes from.
    pub entry: Option<BootEntry>,
    /// Paths on the ISO when there is one, else files on this machine.
    pub kernel: String,
    pub initrd: Vec<String>,
    /// The kernel command line ferry boots with.
    pub cmdline: String,
}

impl BootPlan {
    /// What boots, for progress messages: the menu entry's title or the kernel's file name.
    pub fn title(&self) -> String {
        if self.mode == BootMode::Loader {
            return LOADER_TITLE.to_string();
        }
        match &self.entry {
            Some(entry) => entry.title.clone(),
            None => self
                .kernel
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// Where the installer ISO is read from. In plan.json a file is its path (as before streaming
/// existed), a stream `{"url": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum IsoSource {
    /// A local (or downloaded and verified) file.
    File(PathBuf),
    /// The verified stream of the image at `url` (the first mirror), served to QEMU over NBD.
    Stream { url: String },
}

impl IsoSource {
    pub fn describe(&self) -> String {
        match self {
            IsoSource::File(path) => path.display().to_string(),
            IsoSource::Stream { url } => format!("{url} (streamed)"),
        }
    }
}

/// What the fetch stage made of the image, for the plan made after it: the download plan it
/// followed, and the image when it is streamed.
#[derive(Clone)]
pub struct FetchedImage {
    pub plan: FetchPlan,
    pub streamed: Option<std::sync::Arc<crate::fetch::stream::StreamedImage>>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AccelPlan {
    pub first: AccelKind,
    /// Restart under TCG if the guest stays silent under KVM.
    pub fallback_to_tcg: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DiskPlan {
    pub target: Target,
    pub bus: GuestBus,
    pub bus_reason: String,
    pub guest_path: String,
    pub cache: CacheMode,
    /// Serial number and model shown to the guest (the host disk's).
    pub serial: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ServedFile {
    pub name: String,
    pub url: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Step {
    pub name: String,
    /// Where `expect` waits: the serial console or the VGA screen.
    pub console: ConsoleSource,
    pub expect: Vec<Pattern>,
    pub send: Option<String>,
    /// Keys to type (Packer's syntax, rendered; checked when the profile was parsed).
    pub keys: Option<String>,
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub timeout: Duration,
    pub fail: Vec<Pattern>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FinishPlan {
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub poweroff_timeout: Duration,
    pub verify: Option<VerifyPlan>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VerifyPlan {
    pub expect: Vec<Pattern>,
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub timeout: Duration,
    pub fail: Vec<Pattern>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Default step timeout when neither the step nor `[defaults]` names one.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// Makes the plan. Reads the profile's templates and the image's boot menu; writes nothing.
/// `fetched`: what the fetch stage did with the image (the install plans after it); `None`
/// decides here (`ferry plan`, the confirmation).
pub fn make(
    profile: &Profile,
    opts: &Options,
    facts: &Facts,
    serve_url: &str,
    fetched: Option<&FetchedImage>,
) -> Result<Plan, Error> {
    // Asking QEMU its version takes tens of milliseconds: do it while the rest is planned.
    let plan = std::thread::scope(|scope| {
        let qemu = scope.spawn(|| {
            locate_qemu(
                opts.arch(),
                opts.qemu.as_deref(),
                opts.catalog.as_deref(),
                opts.cache_dir.as_deref(),
            )
        });
        plan_with(profile, opts, facts, serve_url, fetched, qemu)
    })?;
    let cmdline = plan.boot.as_ref().map(|b| b.cmdline.as_str());
    tracing::info!(accel = ?plan.accel, ?cmdline, "plan made");
    Ok(plan)
}

fn plan_with(
    profile: &Profile,
    opts: &Options,
    facts: &Facts,
    serve_url: &str,
    fetched: Option<&FetchedImage>,
    qemu: std::thread::ScopedJoinHandle<'_, Result<QemuPlan, Error>>,
) -> Result<Plan, Error> {
    let spec = &profile.spec;
    let root = opts
        .host_root
        .as_deref()
        .map_or_else(crate::host::Root::system, crate::host::Root::at);
    let target = Target::inspect_at(&root, &opts.disk, opts.size)?;
    let network = opts
        .network
        .as_deref()
        .map(context::read_network)
        .transpose()?;
    let vm = vm::shape(spec, opts, facts, network.as_ref(), target)?;
    let context =
        context::template_context(profile, opts, facts, &vm, network.as_ref(), serve_url)?;
    let renderer = Renderer::new(&context);
    let render = |value: &serde_spanned::Spanned<String>| {
        renderer
            .render(&profile.location_of(value), value.get_ref())
            .map_err(Error::from)
    };

    let fetch = match fetched {
        Some(fetched) => Some(FetchPlan {
            cached: fetched.plan.request.dest.is_file(),
            ..fetched.plan.clone()
        }),
        None => source::image_download(profile, opts)?,
    };
    let streamed = fetched.and_then(|f| f.streamed.as_ref());
    let mut boot = source::boot_source(profile, opts, fetch.as_ref(), streamed)?;
    let extra = spec
        .boot
        .append
        .as_ref()
        .map(render)
        .transpose()?
        .unwrap_or_default();
    if let Some(boot) = &mut boot
        && boot.mode == BootMode::Kernel
    {
        boot.cmdline = compose_cmdline(opts.arch(), &boot.cmdline, &extra);
    }

    let mut files = Vec::new();
    for file in &spec.files {
        let name = file.name.get_ref().clone();
        let content = match (&file.template, &file.content) {
            (Some(path), _) => {
                let (shown, text) = profile.read_template(path.get_ref()).map_err(|e| {
                    PlanError::field(profile, path, format!("cannot read template: {e}"))
                })?;
                renderer.render(&shown, &text)?
            }
            (None, Some(inline)) => render(inline)?,
            (None, None) => unreachable!("checked when the profile was parsed"),
        };
        let url = format!("{serve_url}/{name}");
        files.push(ServedFile {
            name,
            url,
            bytes: content.len(),
            content: content.into_bytes(),
        });
    }

    let default_timeout = spec
        .defaults
        .timeout
        .map_or(STEP_TIMEOUT, |t| t.as_duration());
    let mut steps = Vec::new();
    for step in &spec.steps {
        steps.push(Step {
            name: step.name.clone(),
            console: step.console,
            expect: step.expect.clone(),
            send: step.send.as_ref().map(render).transpose()?,
            keys: step.keys.as_ref().map(render).transpose()?,
            timeout: step.timeout.map_or(default_timeout, |t| t.as_duration()),
            fail: spec
                .defaults
                .fail
                .iter()
                .chain(&step.fail)
                .cloned()
                .collect(),
        });
    }
    let verify = &spec.finish.verify;
    let finish = FinishPlan {
        poweroff_timeout: spec.finish.poweroff_timeout.as_duration(),
        verify: verify.enabled.then(|| VerifyPlan {
            expect: verify.expect.clone(),
            timeout: verify.timeout.as_duration(),
            fail: verify.fail.clone(),
        }),
    };

    let qemu = qemu.join().expect("the QEMU probe does not panic")?;
    let accel = vm::probe_accel(vm.accel, opts.accel.unwrap_or(spec.vm.accel), facts, &qemu);
    Ok(Plan {
        profile: profile.path.clone(),
        description: spec.description.clone(),
        arch: opts.arch(),
        fetch,
        boot,
        boot_mode: *spec.boot.mode.get_ref(),
        qemu,
        accel,
        memory_mib: vm.sizing.memory_mib,
        memory_reason: vm.sizing.memory_reason,
        cpus: vm.sizing.cpus,
        cpus_reason: vm.sizing.cpus_reason,
        mac: vm.mac,
        mac_reason: vm.mac_reason,
        efi_boot_entry: opts.efi_boot_entry,
        firmware: vm.firmware,
        firmware_reason: vm.firmware_reason,
        disk: vm.disk,
        serve_url: serve_url.to_string(),
        files,
        steps,
        finish,
    })
}
