//! The plan: every decision of an install, made up front from the profile, the command line
//! and the host's facts, before anything is written. `ferry plan` prints it; `install` runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Error;
use crate::fetch::{self, Request, Sha256Digest};
use crate::host::disk::Target;
use crate::host::disk::TargetKind;
use crate::host::{Bus, Facts};
use crate::image::{BootEntry, Iso};
use crate::profile::{Accel, DiskBus, DiskCache, Firmware, Memory, Pattern, Profile, Renderer};
use crate::qemu::{AccelKind, CacheMode, QemuBinary};

/// What the command line adds to or overrides in the profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    pub disk: PathBuf,
    pub size: Option<u64>,
    pub qemu: Option<PathBuf>,
    pub accel: Option<Accel>,
    pub firmware: Option<Firmware>,
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
    /// The image catalog directory (`--catalog`); `None`: the built-in catalog.
    pub catalog: Option<PathBuf>,
}

/// The serial console argument ferry adds; the last `console=` becomes /dev/console.
pub const SERIAL_CONSOLE: &str = "console=ttyS0,115200n8";

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub profile: PathBuf,
    pub description: String,
    /// The download of the image (a `url` or catalog `name`), made before QEMU starts.
    pub fetch: Option<FetchPlan>,
    /// `None` only while a downloaded image is not in the cache yet: its boot menu is read
    /// once it is (`install` plans again after the fetch).
    pub boot: Option<BootPlan>,
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
    pub firmware: Firmware,
    pub firmware_reason: String,
    pub disk: DiskPlan,
    /// The base URL of the answer files as the guest sees it.
    pub serve_url: String,
    pub files: Vec<ServedFile>,
    pub steps: Vec<Step>,
    pub finish: FinishPlan,
}

impl Plan {
    /// What boots; an error while the image is not downloaded yet.
    pub fn boot(&self) -> Result<&BootPlan, Error> {
        self.boot.as_ref().ok_or_else(|| {
            Error::Usage("the image is not downloaded yet, so its boot menu was not read".into())
        })
    }

    /// The QEMU to run; an error while the portable bundle is not downloaded yet.
    pub fn qemu(&self) -> Result<&QemuBinary, Error> {
        match &self.qemu {
            QemuPlan::Ready(qemu) => Ok(qemu),
            QemuPlan::Bundle { .. } => Err(Error::Usage(
                "the portable QEMU bundle is not downloaded yet".into(),
            )),
        }
    }
}

/// Which QEMU runs the install.
#[derive(Debug, Clone, Serialize)]
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
}

/// An image to download into the cache and verify.
#[derive(Debug, Clone, Serialize)]
pub struct FetchPlan {
    pub request: Request,
    /// Whether the cache holds the file already (it is verified again before use).
    pub cached: bool,
    /// For a Debian netboot package: where its kernel and initrd are unpacked.
    pub netboot: Option<NetbootUnpack>,
}

/// debian-installer's netboot kernel and initrd, unpacked from the fetched `.deb` into the
/// cache next to it.
#[derive(Debug, Clone, Serialize)]
pub struct NetbootUnpack {
    /// Debian's major version and architecture, which name the files' directory in the .deb.
    pub major: String,
    pub arch: String,
    pub dir: PathBuf,
}

impl NetbootUnpack {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("linux")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.gz")
    }
    /// Unpacked already, from this very .deb (not an older one).
    pub fn is_unpacked_from(&self, deb: &Path) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (
            modified(&self.kernel()),
            modified(&self.initrd()),
            modified(deb),
        ) {
            (Some(k), Some(i), Some(d)) => k >= d && i >= d,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BootPlan {
    /// The installer ISO, attached as a CD-ROM; none for a netboot kernel.
    pub iso: Option<PathBuf>,
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

#[derive(Debug, Clone, Serialize)]
pub struct AccelPlan {
    pub first: AccelKind,
    /// Restart under TCG if the guest stays silent under KVM.
    pub fallback_to_tcg: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskPlan {
    pub target: Target,
    /// Resolved: never `auto`.
    pub bus: DiskBus,
    pub bus_reason: String,
    pub guest_path: String,
    pub cache: CacheMode,
    /// Serial number and model shown to the guest (the host disk's).
    pub serial: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServedFile {
    pub name: String,
    pub url: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub expect: Vec<Pattern>,
    pub send: Option<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub fail: Vec<Pattern>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinishPlan {
    #[serde(with = "secs")]
    pub poweroff_timeout: Duration,
    pub verify: Option<VerifyPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyPlan {
    pub expect: Vec<Pattern>,
    #[serde(with = "secs")]
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
pub fn make(
    profile: &Profile,
    opts: &Options,
    facts: &Facts,
    serve_url: &str,
) -> Result<Plan, Error> {
    // Asking QEMU its version takes tens of milliseconds: do it while the rest is planned.
    std::thread::scope(|scope| {
        let qemu = scope.spawn(|| locate_qemu(opts));
        plan_with(profile, opts, facts, serve_url, qemu)
    })
}

/// `--qemu`, else a usable `qemu-system-x86_64` on PATH, else the catalog's portable bundle:
/// unpacked in the cache already, or to be downloaded by the fetch stage.
fn locate_qemu(opts: &Options) -> Result<QemuPlan, Error> {
    let missing = match QemuBinary::find(opts.qemu.as_deref()) {
        Ok(qemu) => return Ok(QemuPlan::Ready(qemu)),
        Err(e) if opts.qemu.is_some() => return Err(e.into()),
        Err(e) => e,
    };
    let catalog = fetch::catalog::Catalog::load(opts.catalog.as_deref())?;
    let Some(entry) = catalog.qemu_bundle() else {
        return Err(missing.into());
    };
    let why = match missing {
        crate::qemu::QemuError::Unusable { path, reason } => {
            format!("{}: {reason}", path.display())
        }
        _ => "no qemu-system-x86_64 on PATH".to_string(),
    };
    let cache_dir = fetch::cache::cache_dir(opts.cache_dir.as_deref());
    let digest = entry
        .sha256
        .expect("a qemu entry has a sha256 (checked when read)");
    if let Some(bundle) = crate::qemu::bundle::Bundle::cached(&cache_dir, &digest.to_hex()) {
        let mut qemu = bundle.qemu_binary()?;
        qemu.source = format!("{} from the catalog ({why})", qemu.source);
        return Ok(QemuPlan::Ready(qemu));
    }
    let request = entry.request(&cache_dir)?;
    Ok(QemuPlan::Bundle {
        fetch: FetchPlan {
            cached: request.dest.is_file(),
            request,
            netboot: None,
        },
        cache_dir,
        why,
    })
}

fn plan_with(
    profile: &Profile,
    opts: &Options,
    facts: &Facts,
    serve_url: &str,
    qemu: std::thread::ScopedJoinHandle<'_, Result<QemuPlan, Error>>,
) -> Result<Plan, Error> {
    let spec = &profile.spec;
    let root = opts
        .host_root
        .as_deref()
        .map_or_else(crate::host::Root::system, crate::host::Root::at);
    let target = Target::inspect_at(&root, &opts.disk, opts.size)?;

    let (firmware, firmware_reason) = match opts.firmware.unwrap_or(spec.vm.firmware) {
        Firmware::Auto => {
            let fw = if facts.firmware == "uefi" {
                Firmware::Uefi
            } else {
                Firmware::Bios
            };
            (
                fw,
                format!(
                    "auto: this host booted through {}",
                    facts.firmware.to_uppercase()
                ),
            )
        }
        fw => (fw, "set by the profile or --firmware".to_string()),
    };
    let accel = accel_plan(opts.accel.unwrap_or(spec.vm.accel), facts.kvm_openable);
    // A download into a cache on tmpfs takes RAM: the install plans again after its fetch
    // stage, with fresh facts, so `auto` memory is sized from what is left once it is there.
    let sizing = size_vm(spec.vm.memory, spec.vm.cpus, facts)?;
    let (memory_mib, cpus) = (sizing.memory_mib, sizing.cpus);
    let (bus, bus_reason) = choose_bus(spec.vm.disk_bus, &target);
    let (serial, model) = match (&target.info, bus) {
        (Some(info), DiskBus::Nvme | DiskBus::Sata | DiskBus::Scsi) => {
            (info.serial.clone(), info.model.clone())
        }
        _ => (None, None),
    };
    let (mac, mac_reason) = match facts.network.primary_nic() {
        Some(nic) if nic.mac.is_some() => (
            nic.mac.clone(),
            format!(
                "the MAC of {}, the host NIC with the default route",
                nic.name
            ),
        ),
        _ => (
            None,
            "no host NIC with a default route: QEMU's default MAC".to_string(),
        ),
    };
    if opts.efi_boot_entry {
        check_efi_boot_entry(firmware, facts, &target)?;
    }
    let cache = match (spec.vm.disk_cache, target.kind) {
        (DiskCache::Auto, TargetKind::BlockDevice) | (DiskCache::None, _) => CacheMode::None,
        (DiskCache::Auto, TargetKind::File) | (DiskCache::Writeback, _) => CacheMode::Writeback,
        (DiskCache::Unsafe, _) => CacheMode::Unsafe,
    };
    let disk = DiskPlan {
        guest_path: bus.guest_path().to_string(),
        target,
        bus,
        bus_reason,
        cache,
        serial,
        model,
    };

    let mut vars: BTreeMap<String, serde_json::Value> = spec
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    for (k, v) in &opts.vars {
        vars.insert(k.clone(), json!(v));
    }
    if let Some(path) = &opts.ssh_key {
        vars.insert("ssh_key".into(), json!(read_ssh_key(path)?));
    }
    // The installed system's network: as described with --network, else the host's own.
    let network = match opts.network.as_deref() {
        Some(path) => Some(read_network(path)?),
        None => crate::recipe::network::Network::from_host(&facts.network)
            .map(|n| n.render())
            .transpose()?,
    };
    let mut context = json!({
        "vars": vars,
        "secrets": spec.secrets,
        "disk": disk_context(&disk),
        "vm": { "firmware": firmware, "memory_mib": memory_mib, "cpus": cpus },
        "host": host_context(facts),
        "serve": { "url": serve_url },
    });
    if let Some(network) = network {
        context["network"] = json!(network);
    }
    let renderer = Renderer::new(&context);
    let render = |value: &serde_spanned::Spanned<String>| {
        renderer
            .render(&profile.location_of(value), value.get_ref())
            .map_err(Error::from)
    };

    let fetch = image_download(profile, opts)?;
    let mut boot = boot_source(profile, opts, fetch.as_ref())?;
    let extra = spec
        .boot
        .append
        .as_ref()
        .map(render)
        .transpose()?
        .unwrap_or_default();
    if let Some(boot) = &mut boot {
        boot.cmdline = compose_cmdline(&boot.cmdline, &extra);
    }

    let mut files = Vec::new();
    for file in &spec.files {
        let name = file.name.get_ref().clone();
        let content = match (&file.template, &file.content) {
            (Some(path), _) => {
                let (shown, text) = profile.read_template(path.get_ref()).map_err(|e| {
                    Error::Usage(format!(
                        "{}: cannot read template: {e}",
                        profile.location_of(path)
                    ))
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
            expect: step.expect.clone(),
            send: step.send.as_ref().map(render).transpose()?,
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
    Ok(Plan {
        profile: profile.path.clone(),
        description: spec.description.clone(),
        fetch,
        boot,
        qemu,
        accel,
        memory_mib,
        memory_reason: sizing.memory_reason,
        cpus,
        cpus_reason: sizing.cpus_reason,
        mac,
        mac_reason,
        efi_boot_entry: opts.efi_boot_entry,
        firmware,
        firmware_reason,
        disk,
        serve_url: serve_url.to_string(),
        files,
        steps,
        finish,
    })
}

/// What a disk's partition numbers are appended to: `/dev/vda` → `/dev/vda`,
/// `/dev/nvme0n1` → `/dev/nvme0n1p` (Linux adds `p` after a name ending in a digit).
pub fn partition_prefix(disk: &str) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p")
    } else {
        disk.to_string()
    }
}

/// `--ssh-key FILE`: one or more public keys, one a line.
fn read_ssh_key(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("--ssh-key {}: {e}", path.display())))?;
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() || keys.iter().any(|k| k.contains("PRIVATE KEY")) {
        return Err(Error::Usage(format!(
            "--ssh-key {}: expected public keys (ssh-ed25519 AAAA... or similar), one a line",
            path.display()
        )));
    }
    Ok(keys.join("\n"))
}

/// `--network FILE`: the installed system's network, checked and rendered for each OS.
fn read_network(path: &Path) -> Result<crate::recipe::network::Rendered, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("--network {}: {e}", path.display())))?;
    let network: crate::recipe::network::Network = toml::from_str(&text)
        .map_err(|e| Error::Usage(format!("--network {}: {}", path.display(), e.message())))?;
    Ok(network.render()?)
}

/// A file named on the command line; an error naming the option if it is missing.
fn existing_arg(option: &str, path: &Path) -> Result<PathBuf, Error> {
    let full = std::path::absolute(path)?;
    if !full.is_file() {
        return Err(Error::Usage(format!(
            "{option} {}: no such file",
            path.display()
        )));
    }
    Ok(full)
}

/// How a `url` or catalog `name` image is downloaded: into the cache, nothing fetched here.
fn image_download(profile: &Profile, opts: &Options) -> Result<Option<FetchPlan>, Error> {
    let image = &profile.spec.image;
    let cache_dir = fetch::cache::cache_dir(opts.cache_dir.as_deref());
    let sha256 = image.sha256.as_ref().map(|hex| {
        Sha256Digest::parse(hex.get_ref()).expect("checked when the profile was parsed")
    });
    if opts.image.is_some() || opts.kernel.is_some() {
        return Ok(None); // --image or --kernel replaces the profile's image
    }
    let request = match (&image.url, &image.name) {
        (Some(url), _) => fetch::resolve(url.get_ref(), sha256, false, None, &cache_dir)
            .map_err(|e| Error::Usage(format!("{}: {e}", profile.location_of(url))))?,
        (None, Some(name)) => {
            let catalog = fetch::catalog::Catalog::load(opts.catalog.as_deref())?;
            let entry = catalog
                .get(name.get_ref())
                .map_err(|e| Error::Usage(format!("{}: {e}", profile.location_of(name))))?;
            let mut request = entry.request(&cache_dir)?;
            if entry.kind == fetch::catalog::Kind::Qemu {
                return Err(Error::Usage(format!(
                    "{}: {} is ferry's portable QEMU, not an installer image",
                    profile.location_of(name),
                    entry.name
                )));
            }
            if entry.kind != fetch::catalog::Kind::Iso {
                let Some(package) = &entry.debian else {
                    return Err(Error::Usage(format!(
                        "{}: {} holds netboot files ferry cannot unpack; download them and use `kernel` and `initrd`",
                        profile.location_of(name),
                        entry.name
                    )));
                };
                let dir = PathBuf::from(format!("{}.files", request.dest.display()));
                let netboot = NetbootUnpack {
                    major: entry.version.clone(),
                    arch: package.arch.clone(),
                    dir,
                };
                let cached = request.dest.is_file();
                return Ok(Some(FetchPlan {
                    request,
                    cached,
                    netboot: Some(netboot),
                }));
            }
            if let Some(digest) = sha256 {
                request.checksum = fetch::ChecksumSource::Sha256(digest);
            }
            request
        }
        (None, None) => return Ok(None),
    };
    let cached = request.dest.is_file();
    Ok(Some(FetchPlan {
        request,
        cached,
        netboot: None,
    }))
}

/// The kernel, initrd and base command line: from the ISO's boot menu, or netboot files;
/// `--image` or `--kernel`/`--initrd` replace the profile's `[image]`. `None` for a downloaded
/// ISO that is not in the cache yet (its menu is read after the fetch).
fn boot_source(
    profile: &Profile,
    opts: &Options,
    download: Option<&FetchPlan>,
) -> Result<Option<BootPlan>, Error> {
    let image = &profile.spec.image;
    if opts.image.is_some() && opts.kernel.is_some() {
        return Err(Error::Usage(
            "--image (an ISO) and --kernel (netboot) exclude each other".into(),
        ));
    }
    if opts.initrd.is_some() && opts.kernel.is_none() {
        return Err(Error::Usage("--initrd goes with --kernel".into()));
    }
    if let Some(kernel) = &opts.kernel {
        let kernel = existing_arg("--kernel", kernel)?;
        let initrd = opts
            .initrd
            .as_deref()
            .map(|i| existing_arg("--initrd", i))
            .transpose()?;
        return Ok(Some(netboot(kernel, initrd, image.cmdline.clone())));
    }
    if let Some(download) = download
        && let Some(unpack) = &download.netboot
        && opts.image.is_none()
    {
        // Netboot files from a package: known once fetched and unpacked.
        if !(download.cached && unpack.is_unpacked_from(&download.request.dest)) {
            return Ok(None);
        }
        return Ok(Some(netboot(
            unpack.kernel(),
            Some(unpack.initrd()),
            image.cmdline.clone(),
        )));
    }
    let iso_path = match (&opts.image, &image.path, download) {
        (Some(path), _, _) => Some(existing_arg("--image", path)?),
        (None, Some(path), _) => Some(existing_file(profile, path)?),
        (None, None, Some(download)) if download.cached => Some(download.request.dest.clone()),
        (None, None, Some(_)) => return Ok(None),
        (None, None, None) => None,
    };
    if let Some(iso_path) = iso_path {
        return iso_boot(profile, iso_path).map(Some);
    }
    let kernel = image
        .kernel
        .as_ref()
        .expect("checked when the profile was parsed: path, url, name or kernel");
    let kernel = existing_file(profile, kernel)?;
    let initrd = image
        .initrd
        .as_ref()
        .map(|i| existing_file(profile, i))
        .transpose()?;
    Ok(Some(netboot(kernel, initrd, image.cmdline.clone())))
}

fn netboot(kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String) -> BootPlan {
    BootPlan {
        iso: None,
        entry: None,
        kernel: kernel.display().to_string(),
        initrd: initrd
            .into_iter()
            .map(|i| i.display().to_string())
            .collect(),
        cmdline,
    }
}

/// The boot-menu entry the profile chose from the ISO at `iso_path`.
fn iso_boot(profile: &Profile, iso_path: PathBuf) -> Result<BootPlan, Error> {
    let iso = Iso::open(&iso_path)?;
    let entries = crate::image::boot_entries(&iso)?;
    let entry = crate::image::select(&entries, profile.spec.boot.entry.get_ref())?.clone();
    Ok(BootPlan {
        iso: Some(iso_path),
        kernel: entry.kernel.clone(),
        initrd: entry.initrd.clone(),
        cmdline: entry.cmdline.clone(),
        entry: Some(entry),
    })
}

/// A file the profile names, made absolute; an error at the profile's position if missing.
fn existing_file(
    profile: &Profile,
    path: &serde_spanned::Spanned<String>,
) -> Result<PathBuf, Error> {
    let full = std::path::absolute(profile.resolve(path.get_ref()))?;
    if !full.is_file() {
        return Err(Error::Usage(format!(
            "{}: {} does not exist{}",
            profile.location_of(path),
            full.display(),
            fixture_hint(&full)
        )));
    }
    Ok(full)
}

/// The test fixtures are built, not checked in: say how.
fn fixture_hint(path: &Path) -> &'static str {
    if path.components().any(|c| c.as_os_str() == "fixtures") {
        " (build the test fixtures first: scripts/make-fixtures.sh)"
    } else {
        ""
    }
}

fn accel_plan(accel: Accel, kvm_openable: bool) -> AccelPlan {
    match accel {
        Accel::Tcg => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: "tcg requested".into(),
        },
        Accel::Kvm => AccelPlan {
            first: AccelKind::Kvm,
            fallback_to_tcg: false,
            reason: "kvm requested".into(),
        },
        Accel::Auto if kvm_openable => AccelPlan {
            first: AccelKind::Kvm,
            fallback_to_tcg: true,
            reason: "auto: /dev/kvm opens; TCG if the guest stays silent under KVM".into(),
        },
        Accel::Auto => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: "auto: /dev/kvm cannot be opened".into(),
        },
    }
}

/// VM memory and CPUs, with the reasons.
#[derive(Debug, PartialEq, Eq)]
struct Sizing {
    memory_mib: u64,
    memory_reason: String,
    cpus: u32,
    cpus_reason: String,
}

/// What the rescue system keeps for itself under `auto` memory.
const MARGIN_MIB: u64 = 384;
const MIN_MIB: u64 = 512;
const AUTO_MAX_MIB: u64 = 4096;

/// VM memory and CPUs. `auto` memory is the available RAM (files in tmpfs, such as cached
/// downloads on a rescue system, are not available) minus a margin for the rescue system,
/// capped.
fn size_vm(memory: Memory, cpus: u32, facts: &Facts) -> Result<Sizing, Error> {
    let (memory_mib, memory_reason) = match memory {
        Memory::Mib(mib) => (mib, "set by the profile".to_string()),
        Memory::Auto => {
            let available = facts.memory_available_mib;
            let usable = available.saturating_sub(MARGIN_MIB);
            let sum = format!(
                "{available} MiB available − {MARGIN_MIB} MiB kept for the host = {usable} MiB"
            );
            if usable < MIN_MIB {
                return Err(Error::Usage(format!(
                    "not enough memory for the VM: {sum}, at least {MIN_MIB} MiB needed; \
                     free memory (or tmpfs space), or set [vm] memory"
                )));
            }
            let mib = usable.min(AUTO_MAX_MIB);
            let cap = if usable > AUTO_MAX_MIB {
                format!(", capped at {AUTO_MAX_MIB} MiB")
            } else {
                String::new()
            };
            (mib, format!("auto: {sum}{cap}"))
        }
    };
    let (cpus, cpus_reason) = if cpus == 0 {
        let n = facts.cpus.clamp(1, 4);
        (n, format!("auto: {} host CPUs, at most 4", facts.cpus))
    } else {
        (cpus, "set by the profile".to_string())
    };
    Ok(Sizing {
        memory_mib,
        memory_reason,
        cpus,
        cpus_reason,
    })
}

/// The disk bus: `auto` matches the host disk, so the installed system finds its disk under
/// the kind of name (and with the serial) it will have on the real machine.
fn choose_bus(requested: DiskBus, target: &Target) -> (DiskBus, String) {
    if requested != DiskBus::Auto {
        return (requested, "set by the profile".to_string());
    }
    let Some(info) = &target.info else {
        return (
            DiskBus::Virtio,
            "auto: a disk image file → virtio-blk".to_string(),
        );
    };
    match info.bus {
        Bus::Nvme => (
            DiskBus::Nvme,
            format!(
                "auto: {} is NVMe → emulated NVMe with its serial",
                info.name
            ),
        ),
        Bus::Sata => (
            DiskBus::Sata,
            format!(
                "auto: {} is SATA → AHCI (/dev/sdX) with its model and serial",
                info.name
            ),
        ),
        Bus::Scsi | Bus::Usb => (
            DiskBus::Scsi,
            format!(
                "auto: {} is SCSI → virtio-scsi (/dev/sdX) with its model and serial",
                info.name
            ),
        ),
        Bus::Virtio => (
            DiskBus::Virtio,
            format!("auto: {} is virtio → virtio-blk", info.name),
        ),
        Bus::Virtual | Bus::Other => (
            DiskBus::Virtio,
            format!(
                "auto: {} has no hardware bus ({:?}) → virtio-blk",
                info.name, info.bus
            )
            .to_lowercase(),
        ),
    }
}

/// `--efi-boot-entry` needs a UEFI install on a UEFI host, a block device and efibootmgr:
/// checked before anything is written.
fn check_efi_boot_entry(firmware: Firmware, facts: &Facts, target: &Target) -> Result<(), Error> {
    let refuse = |why: &str| Err(Error::Usage(format!("--efi-boot-entry: {why}")));
    if facts.firmware != "uefi" {
        return refuse("this host did not boot through UEFI (no /sys/firmware/efi)");
    }
    if firmware != Firmware::Uefi {
        return refuse("the install is not a UEFI install");
    }
    if target.kind != crate::host::disk::TargetKind::BlockDevice {
        return refuse("the target is a disk image file, not a disk of this machine");
    }
    if crate::install::esp::efibootmgr().is_none() {
        return refuse("efibootmgr not found on PATH (Debian: apt-get install efibootmgr)");
    }
    Ok(())
}

/// `disk.*` template variables; absent facts are absent keys.
fn disk_context(disk: &DiskPlan) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("path".into(), json!(disk.target.path));
    map.insert("guest_path".into(), json!(disk.guest_path));
    // Partition N is {partition_prefix}N: /dev/vda1, /dev/nvme0n1p1.
    map.insert(
        "partition_prefix".into(),
        json!(partition_prefix(&disk.guest_path)),
    );
    map.insert("bus".into(), json!(disk.bus));
    map.insert("size_bytes".into(), json!(disk.target.size_bytes));
    if let Some(info) = &disk.target.info {
        if let Some(serial) = &info.serial {
            map.insert("serial".into(), json!(serial));
        }
        if let Some(model) = &info.model {
            map.insert("model".into(), json!(model));
        }
    }
    serde_json::Value::Object(map)
}

/// `host.*` template variables; absent facts are absent keys (templates use `is defined` or
/// `| default(...)`).
pub fn host_context(facts: &Facts) -> serde_json::Value {
    let net = &facts.network;
    let mut host = serde_json::Map::new();
    host.insert("hostname".into(), json!(facts.hostname));
    host.insert("firmware".into(), json!(facts.firmware));
    if let Some(nic) = net.primary_nic() {
        let mut n = serde_json::Map::new();
        n.insert("name".into(), json!(nic.name));
        for (key, value) in [
            ("predicted_name", &nic.predicted_name),
            ("mac", &nic.mac),
            ("driver", &nic.driver),
        ] {
            if let Some(v) = value {
                n.insert(key.into(), json!(v));
            }
        }
        host.insert("nic".into(), serde_json::Value::Object(n));
    } else {
        host.insert("nic".into(), json!({}));
    }
    for family in ["ipv4", "ipv6"] {
        let mut m = serde_json::Map::new();
        if let Some(a) = net.primary_address(family) {
            m.insert("address".into(), json!(a.address));
            m.insert("prefix".into(), json!(a.prefix));
        }
        if let Some(route) = net.default_route(family)
            && let Some(gw) = &route.gateway
        {
            m.insert("gateway".into(), json!(gw));
            if family == "ipv4" {
                m.insert(
                    "gateway_onlink".into(),
                    json!(route.gateway_onlink.unwrap_or(false)),
                );
            }
        }
        // Always a map, so `host.ipv6.address is defined` and `| default(...)` work.
        host.insert(family.into(), serde_json::Value::Object(m));
    }
    host.insert("dns".into(), json!(net.dns));
    host.insert("dhcp".into(), json!(net.primary_dhcp()));
    serde_json::Value::Object(host)
}

/// The entry's own arguments, the profile's extra ones, and the serial console. Extra
/// arguments go before a `---` separator (arguments after it are copied into the installed
/// system by installers such as Debian's); the console goes last, so it becomes /dev/console
/// and the installed system inherits it.
pub fn compose_cmdline(entry: &str, extra: &str) -> String {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let (before, after) = match words.iter().position(|w| *w == "---") {
        Some(i) => (&words[..i], Some(&words[i..])),
        None => (&words[..], None),
    };
    let mut out: Vec<&str> = before.to_vec();
    out.extend(extra.split_whitespace());
    if let Some(after) = after {
        out.extend(after);
    }
    if out.last() != Some(&SERIAL_CONSOLE) {
        out.push(SERIAL_CONSOLE);
    }
    out.join(" ")
}

/// An enum's name as the profile and plan.json spell it.
fn name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The plan as the operator reads it: every choice with its reason.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line(
        "profile",
        format!("{} {}", plan.profile.display(), plan.description),
    );
    if let Some(fetch) = &plan.fetch {
        let state = match fetch.cached {
            true => "cached; verified again before use",
            false => "not cached: downloaded before QEMU starts",
        };
        line("fetch", format!("{} ({state})", fetch.request.url()));
        line("checksum", fetch.request.checksum.describe());
    }
    match &plan.boot {
        Some(boot) => {
            if let Some(iso) = &boot.iso {
                line("image", iso.display().to_string());
            }
            line("boot", format!("{} (kernel {})", boot.title(), boot.kernel));
            line("cmdline", boot.cmdline.clone());
        }
        None => {
            let fetch = plan
                .fetch
                .as_ref()
                .expect("boot is planned unless an image is fetched");
            line("image", fetch.request.dest.display().to_string());
            let boot = match &fetch.netboot {
                Some(unpack) => format!(
                    "the package's kernel and initrd, unpacked into {} once downloaded",
                    unpack.dir.display()
                ),
                None => "from the image's boot menu, once downloaded".into(),
            };
            line("boot", boot);
        }
    }
    let qemu = match &plan.qemu {
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
    };
    line("qemu", qemu);
    line(
        "accel",
        format!("{:?} ({})", plan.accel.first, plan.accel.reason).to_lowercase(),
    );
    line(
        "memory",
        format!("{} MiB ({})", plan.memory_mib, plan.memory_reason),
    );
    line("cpus", format!("{} ({})", plan.cpus, plan.cpus_reason));
    line(
        "nic mac",
        format!(
            "{} ({})",
            plan.mac.as_deref().unwrap_or("QEMU's default"),
            plan.mac_reason
        ),
    );
    line(
        "firmware",
        format!("{:?} ({})", plan.firmware, plan.firmware_reason).to_lowercase(),
    );
    line(
        "disk",
        format!(
            "{} on {} as {} (cache {})",
            plan.disk.target.describe(),
            name(&plan.disk.bus),
            plan.disk.guest_path,
            name(&plan.disk.cache)
        ),
    );
    line("disk bus", plan.disk.bus_reason.clone());
    if let Some(serial) = &plan.disk.serial {
        line(
            "disk id",
            format!(
                "serial {serial}, model {}",
                plan.disk.model.as_deref().unwrap_or("-")
            ),
        );
    }
    for file in &plan.files {
        line("serves", format!("{} ({} bytes)", file.url, file.bytes));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let expect: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
        let send = step
            .send
            .as_deref()
            .map(|s| format!(" then send {s:?}"))
            .unwrap_or_default();
        line(
            &format!("step {}", i + 1),
            format!(
                "{}: wait {}s for {}{send}",
                step.name,
                step.timeout.as_secs(),
                expect.join(" or ")
            ),
        );
    }
    line(
        "finish",
        format!(
            "wait up to {}s for power-off",
            plan.finish.poweroff_timeout.as_secs()
        ),
    );
    if plan.firmware == Firmware::Uefi {
        line(
            "esp",
            "ensure EFI/BOOT/BOOTX64.EFI on the ESP (copy the installed loader if missing)".into(),
        );
    }
    if plan.efi_boot_entry {
        line(
            "efi entry",
            "add \\EFI\\BOOT\\BOOTX64.EFI to this machine's firmware with efibootmgr".into(),
        );
    }
    match &plan.finish.verify {
        Some(v) => {
            let expect: Vec<String> = v.expect.iter().map(ToString::to_string).collect();
            line(
                "verify",
                format!(
                    "boot the disk alone, wait {}s for {}",
                    v.timeout.as_secs(),
                    expect.join(" or ")
                ),
            );
        }
        None => line("verify", "skipped".into()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_goes_last_and_extra_before_separator() {
        assert_eq!(
            compose_cmdline("quiet", "url=x"),
            "quiet url=x console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline("vga=788 --- quiet", "auto=true url=x"),
            "vga=788 auto=true url=x --- quiet console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline("a console=ttyS0,115200n8", ""),
            "a console=ttyS0,115200n8"
        );
        assert_eq!(compose_cmdline("", ""), "console=ttyS0,115200n8");
    }

    fn facts(available: u64, kvm: bool) -> Facts {
        Facts {
            hostname: "rescue".into(),
            firmware: "bios",
            cpus: 8,
            memory_total_mib: available * 2,
            memory_available_mib: available,
            kvm_openable: kvm,
            ..Facts::default()
        }
    }

    fn sized(memory: Memory, cpus: u32, available: u64) -> (u64, u32) {
        let s = size_vm(memory, cpus, &facts(available, false)).unwrap();
        (s.memory_mib, s.cpus)
    }

    #[test]
    fn vm_sizing() {
        assert_eq!(sized(Memory::Auto, 0, 16000), (4096, 4));
        assert_eq!(sized(Memory::Auto, 2, 1400), (1016, 2));
        assert_eq!(sized(Memory::Mib(700), 1, 100), (700, 1));
        let s = size_vm(Memory::Auto, 0, &facts(1400, false)).unwrap();
        assert_eq!(
            s.memory_reason,
            "auto: 1400 MiB available − 384 MiB kept for the host = 1016 MiB"
        );
        let e = size_vm(Memory::Auto, 0, &facts(600, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("not enough memory for the VM: 600 MiB available − 384 MiB kept for the host = 216 MiB, at least 512 MiB needed"),
            "{e}"
        );
    }

    #[test]
    fn accelerator_choice() {
        let p = accel_plan(Accel::Auto, true);
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Kvm, true));
        let p = accel_plan(Accel::Auto, false);
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Tcg, false));
        assert_eq!(accel_plan(Accel::Kvm, false).first, AccelKind::Kvm);
    }
}
