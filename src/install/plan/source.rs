//! What runs: the image (a local ISO, a download, or netboot files), the boot-menu entry and
//! kernel command line, and the QEMU binary.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::{
    BootPlan, Delivery, DownloadWhy, FetchPlan, IsoSource, Netboot, NetbootUnpack, Options,
    PlanError, QemuPlan, StreamWhy, TreeBoot, vm,
};
use crate::Error;
use crate::arch::Arch;
use crate::fetch::stream::StreamedImage;
use crate::fetch::{self, Request, Sha256Digest};
use crate::image::Iso;
use crate::profile::{BootMode, Memory, Profile};
use crate::qemu::{QemuBinary, archive};

/// The serial console argument ferry adds for `arch`'s guest; the last `console=` becomes
/// /dev/console.
pub fn serial_console(arch: Arch) -> String {
    format!("console={},115200n8", arch.serial_console())
}

/// `--qemu`, else a usable `qemu-system-ARCH` on PATH, else the catalog's portable bundle,
/// else QEMU assembled from the Debian archive the catalog names for this machine's
/// architecture: unpacked in the cache already (no request), or to be fetched by the fetch
/// stage. `ferry plan`, `ferry doctor` and the install all decide it here.
pub fn locate_qemu(
    arch: Arch,
    explicit: Option<&Path>,
    catalog: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<QemuPlan, Error> {
    let missing = match QemuBinary::find_for(arch, explicit) {
        Ok(qemu) => return Ok(QemuPlan::Ready(qemu)),
        // The catalog's QEMUs run on this machine and emulate its architecture only.
        Err(e) if explicit.is_some() || arch != Arch::host() => return Err(e.into()),
        Err(e) => e,
    };
    let catalog = fetch::catalog::Catalog::load(catalog)?;
    let why = match &missing {
        crate::qemu::QemuError::Unusable { path, reason } => {
            format!("{}: {reason}", path.display())
        }
        _ => format!("no {} on PATH", arch.qemu_system()),
    };
    let cache_dir = fetch::cache::cache_dir(cache_dir);
    let Some(entry) = catalog.qemu_bundle() else {
        let Some((source, archive)) = catalog
            .qemu_archive(Arch::host())
            .and_then(archive::Source::from_catalog)
        else {
            return Err(missing.into());
        };
        if let Some(done) = archive::cached(&source, &cache_dir) {
            let mut qemu = done?.qemu;
            qemu.source = format!("{} ({why})", qemu.source);
            return Ok(QemuPlan::Ready(qemu));
        }
        return Ok(QemuPlan::Archive {
            origin: archive::Origin::of(&source, &cache_dir),
            source,
            archive,
            cache_dir,
            why,
        });
    };
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
            delivery: Delivery::Download {
                why: DownloadWhy::NotAnIso,
            },
            netboot: None,
        },
        cache_dir,
        why,
    })
}

/// A file named on the command line; an error naming the option if it is missing.
fn existing_arg(option: &str, path: &Path) -> Result<PathBuf, Error> {
    let full = std::path::absolute(path)?;
    if !full.is_file() {
        return Err(PlanError::option(option, path, "no such file").into());
    }
    Ok(full)
}

/// How a `url` or catalog `name` image is downloaded: into the cache, nothing fetched here.
pub(super) fn image_download(
    profile: &Profile,
    opts: &Options,
) -> Result<Option<FetchPlan>, Error> {
    let image = &profile.spec.image;
    let cache_dir = fetch::cache::cache_dir(opts.cache_dir.as_deref());
    let sha256 = image.sha256.as_ref().map(|hex| {
        Sha256Digest::parse(hex.get_ref()).expect("checked when the profile was parsed")
    });
    if opts.image.is_some() || opts.kernel.is_some() {
        if opts.stream {
            return Err(PlanError::Options(
                "--stream streams a downloaded image (the profile's url or catalog name), not --image or --kernel",
            )
            .into());
        }
        return Ok(None); // --image or --kernel replaces the profile's image
    }
    let request = match (&image.url, &image.name) {
        (Some(url), _) => fetch::url_request(url.get_ref(), sha256, false, &cache_dir)
            .map_err(|e| PlanError::field(profile, url, e))?,
        (None, Some(name)) => {
            let catalog = fetch::catalog::Catalog::load(opts.catalog.as_deref())?;
            let entry = catalog
                .get_for(name.get_ref(), opts.arch())
                .map_err(|e| PlanError::field(profile, name, e))?;
            if entry.kind == fetch::catalog::Kind::Qemu {
                return Err(PlanError::field(
                    profile,
                    name,
                    format!(
                        "{} is ferry's portable QEMU, not an installer image",
                        entry.name
                    ),
                )
                .into());
            }
            // An x86 installer on QEMU's aarch64 virt board (or the reverse) would only hang
            // at the firmware: the catalog says which machine each image is for.
            if entry.arch != opts.arch() {
                return Err(PlanError::field(
                    profile,
                    name,
                    format!(
                        "{} is an {} image and this guest is {} (--arch): use an {} image",
                        entry.name,
                        entry.arch,
                        opts.arch(),
                        opts.arch()
                    ),
                )
                .into());
            }
            if entry.kind != fetch::catalog::Kind::Iso {
                if opts.stream {
                    let fix = match catalog.iso_of(entry) {
                        Some(iso) => format!(
                            "drop --stream, or install {} (the ISO, which can be)",
                            iso.name
                        ),
                        None => "drop --stream".into(),
                    };
                    return Err(PlanError::field(
                        profile,
                        name,
                        format!(
                            "netboot files are booted directly, so they cannot be streamed: {fix}"
                        ),
                    )
                    .into());
                }
                return netboot_download(profile, name, entry, &cache_dir).map(Some);
            }
            let mut request = entry.request(&cache_dir)?;
            if let Some(digest) = sha256 {
                request.checksum = fetch::ChecksumSource::Sha256(digest);
            }
            request
        }
        (None, None) if opts.stream => {
            return Err(PlanError::Options(
                "--stream streams a downloaded image: this profile's [image] has no url or name",
            )
            .into());
        }
        (None, None) => return Ok(None),
    };
    let cached = request.dest.is_file();
    Ok(Some(FetchPlan {
        delivery: delivery(&request, cached, opts, profile.spec.vm.memory),
        request,
        cached,
        netboot: None,
    }))
}

/// A catalog netboot image: a Debian netboot package to unpack, or an installer tree's kernel
/// and initrd.
fn netboot_download(
    profile: &Profile,
    name: &serde_spanned::Spanned<String>,
    entry: &fetch::catalog::Entry,
    cache_dir: &Path,
) -> Result<FetchPlan, Error> {
    let mut files = entry.requests(cache_dir)?.into_iter();
    let request = files.next().expect("an entry has a file");
    let (netboot, why) = match (&entry.tree, &entry.debian, files.next()) {
        (Some(tree), _, Some(initrd)) => {
            // Every mirror, in order: Anaconda's dracut tries each inst.stage2 until one works.
            let mut args = Vec::with_capacity(entry.urls.len());
            for url in &entry.urls {
                let url = as_the_vm_sees(fetch::parse_url(url)?);
                args.push(format!("{}={url}", tree.installer_arg));
            }
            let boot = TreeBoot {
                initrd,
                installer_arg: args.join(" "),
            };
            (Netboot::Tree(Box::new(boot)), DownloadWhy::Tree)
        }
        (None, Some(package), _) => {
            let unpack = NetbootUnpack {
                major: entry.version.clone(),
                arch: package.arch.clone(),
                dir: PathBuf::from(format!("{}.files", request.dest.display())),
            };
            (Netboot::Package(unpack), DownloadWhy::NotAnIso)
        }
        _ => {
            return Err(PlanError::field(
                profile,
                name,
                format!(
                    "{} holds netboot files ferry cannot unpack; download them and use `kernel` and `initrd`",
                    entry.name
                ),
            )
            .into());
        }
    };
    Ok(FetchPlan {
        cached: request.dest.is_file(),
        request,
        delivery: Delivery::Download { why },
        netboot: Some(netboot),
    })
}

/// `url` as the VM reaches it: QEMU's user networking shows this machine's loopback at its
/// host address, other hosts as they are.
fn as_the_vm_sees(mut url: url::Url) -> url::Url {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        url.set_host(Some(crate::qemu::USER_NET_HOST))
            .expect("an IPv4 address is a valid host");
    }
    url
}

/// Download or stream: `--stream`; else a cached image is used; else the image is streamed
/// when it is larger than the free space of the cache's file system, or, when that file
/// system is in memory (a rescue system's tmpfs), when storing it would leave too little
/// memory for the VM (`vm_memory`) and the host. Asks the server the image's size.
fn delivery(request: &Request, cached: bool, opts: &Options, vm_memory: Memory) -> Delivery {
    let cache_limit = opts
        .stream_cache
        .unwrap_or(fetch::stream::DEFAULT_CACHE_LIMIT);
    if opts.stream {
        return Delivery::Stream {
            cache_limit,
            why: StreamWhy::Asked,
        };
    }
    if cached {
        return Delivery::Download {
            why: DownloadWhy::Cached,
        };
    }
    let size = fetch::FetchOptions::from_env()
        .and_then(fetch::Fetcher::new)
        .and_then(|fetcher| fetcher.remote_size(&request.urls));
    let size = match size {
        Ok(size) => size,
        Err(e) => {
            return Delivery::Download {
                why: DownloadWhy::SizeUnknown {
                    error: e.to_string(),
                },
            };
        }
    };
    let memory = in_memory(&request.dest).then(|| {
        let root = opts
            .host_root
            .as_deref()
            .map_or_else(crate::host::Root::system, crate::host::Root::at);
        MemoryBudget {
            available: crate::host::MemoryFacts::read(&root).available_bytes,
            needed: vm::host_memory_needed(vm_memory),
        }
    });
    decide(size, free_space(&request.dest), memory, cache_limit)
}

/// What an image stored in a memory-backed cache competes with.
#[derive(Debug, Clone, Copy)]
struct MemoryBudget {
    available: u64,
    /// The VM's memory and the host's margin.
    needed: u64,
}

/// The choice for an image of `size` bytes, with `free` bytes on the cache's file system and,
/// when that file system is in memory, the memory it competes with.
fn decide(size: u64, free: u64, memory: Option<MemoryBudget>, cache_limit: u64) -> Delivery {
    if size > free {
        return Delivery::Stream {
            cache_limit,
            why: StreamWhy::TooLarge { size, free },
        };
    }
    if let Some(MemoryBudget { available, needed }) = memory
        && available.saturating_sub(size) < needed
    {
        return Delivery::Stream {
            cache_limit,
            why: StreamWhy::LeavesTooLittleMemory {
                size,
                available,
                needed,
            },
        };
    }
    Delivery::Download {
        why: DownloadWhy::Fits { size, free },
    }
}

/// Whether the file system that will hold `path` keeps its files in memory (tmpfs, ramfs).
fn in_memory(path: &Path) -> bool {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    // linux/magic.h; nix names tmpfs's only.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    statfs(nearest_existing(path)).is_ok_and(|fs| {
        let kind = fs.filesystem_type();
        kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
    })
}

fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
}

/// The bytes an unprivileged write may still use on the file system that will hold `path`
/// (its nearest existing ancestor's); unknown counts as plenty, so the download is tried.
fn free_space(path: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(nearest_existing(path)) {
        Ok(fs) => fs.blocks_available().saturating_mul(fs.fragment_size()),
        Err(_) => u64::MAX,
    }
}

/// The kernel, initrd and base command line: from the ISO's boot menu, or netboot files;
/// `--image` or `--kernel`/`--initrd` replace the profile's `[image]`. `None` for a downloaded
/// ISO that is not in the cache yet (its menu is read after the fetch).
pub(super) fn boot_source(
    profile: &Profile,
    opts: &Options,
    download: Option<&FetchPlan>,
    streamed: Option<&Arc<StreamedImage>>,
) -> Result<Option<BootPlan>, Error> {
    let image = &profile.spec.image;
    if opts.image.is_some() && opts.kernel.is_some() {
        return Err(PlanError::Options(
            "--image (an ISO) and --kernel (netboot) exclude each other",
        )
        .into());
    }
    if opts.initrd.is_some() && opts.kernel.is_none() {
        return Err(PlanError::Options("--initrd goes with --kernel").into());
    }
    let loader = *profile.spec.boot.mode.get_ref() == BootMode::Loader;
    if loader && opts.kernel.is_some() {
        return Err(PlanError::Options(
            "--kernel boots a kernel directly; this profile boots its ISO through the ISO's own loader ([boot] mode = \"loader\")",
        )
        .into());
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
        && let Some(files) = &download.netboot
        && opts.image.is_none()
    {
        if loader {
            return Err(PlanError::Options(
                "the image is netboot files, which have no boot loader of their own to boot: use mode = \"kernel\" in [boot]",
            )
            .into());
        }
        // Known once fetched (and a package unpacked).
        return Ok(match files {
            Netboot::Package(unpack) => {
                (download.cached && unpack.is_unpacked_from(&download.request.dest)).then(|| {
                    netboot(
                        unpack.kernel(),
                        Some(unpack.initrd()),
                        image.cmdline.clone(),
                    )
                })
            }
            Netboot::Tree(tree) => (download.cached && tree.initrd.dest.is_file()).then(|| {
                netboot(
                    download.request.dest.clone(),
                    Some(tree.initrd.dest.clone()),
                    format!("{} {}", tree.installer_arg, image.cmdline),
                )
            }),
        });
    }
    if let Some(download) = download
        && download.delivery.streams()
    {
        // The menu is read through the verified stream, once the fetch stage opened it.
        let Some(streamed) = streamed else {
            return Ok(None);
        };
        let source = IsoSource::Stream {
            url: download.request.url().to_string(),
        };
        if loader {
            return Ok(Some(loader_boot(source)));
        }
        let iso = Iso::from_source(Box::new(streamed.clone()), &download.request.dest)?;
        return iso_boot(profile, &iso, source).map(Some);
    }
    let iso_path = match (&opts.image, &image.path, download) {
        (Some(path), _, _) => Some(existing_arg("--image", path)?),
        (None, Some(path), _) => Some(existing_file(profile, path)?),
        (None, None, Some(download)) if download.cached => Some(download.request.dest.clone()),
        (None, None, Some(_)) => return Ok(None),
        (None, None, None) => None,
    };
    if let Some(path) = iso_path {
        let source = IsoSource::File(path.clone());
        if loader {
            return Ok(Some(loader_boot(source)));
        }
        return iso_boot(profile, &Iso::open(&path)?, source).map(Some);
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
        mode: BootMode::Kernel,
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

/// The ISO booted by its own loader: its menus are not read (FreeBSD's and OpenBSD's are not
/// ones ferry parses), the steps drive them.
fn loader_boot(iso: IsoSource) -> BootPlan {
    BootPlan {
        mode: BootMode::Loader,
        iso: Some(iso),
        entry: None,
        kernel: String::new(),
        initrd: Vec::new(),
        cmdline: String::new(),
    }
}

/// The boot-menu entry the profile chose from `iso` (read from `source`).
fn iso_boot(profile: &Profile, iso: &Iso, source: IsoSource) -> Result<BootPlan, Error> {
    let entries = crate::image::boot_entries(iso)?;
    let entry = crate::image::select(&entries, profile.spec.boot.entry.get_ref())?.clone();
    Ok(BootPlan {
        mode: BootMode::Kernel,
        iso: Some(source),
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
        return Err(PlanError::field(
            profile,
            path,
            format!("{} does not exist{}", full.display(), fixture_hint(&full)),
        )
        .into());
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

/// The entry's own arguments, the profile's extra ones, and the serial console. Extra
/// arguments go before a `---` separator (arguments after it are copied into the installed
/// system by installers such as Debian's); the console goes last, so it becomes /dev/console
/// and the installed system inherits it.
///
/// An x86 installer also gets `no_timer_check` (as Fedora's cloud images boot): a VM's vCPU
/// can be descheduled while the kernel checks that the IO-APIC timer ticks, and on a busy host
/// (TCG above all) the check fails with "Kernel panic - not syncing: IO-APIC + timer doesn't
/// work!". It only skips that check and stays out of the installed system.
pub fn compose_cmdline(arch: Arch, entry: &str, extra: &str) -> String {
    const NO_TIMER_CHECK: &str = "no_timer_check";
    let console = serial_console(arch);
    let words: Vec<&str> = entry.split_whitespace().collect();
    let (before, after) = match words.iter().position(|w| *w == "---") {
        Some(i) => (&words[..i], Some(&words[i..])),
        None => (&words[..], None),
    };
    let mut out: Vec<&str> = before.to_vec();
    out.extend(extra.split_whitespace());
    if arch == Arch::X86_64 && !words.contains(&NO_TIMER_CHECK) && !out.contains(&NO_TIMER_CHECK) {
        out.insert(0, NO_TIMER_CHECK);
    }
    if let Some(after) = after {
        out.extend(after);
    }
    if out.last() != Some(&console.as_str()) {
        out.push(&console);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_when_asked_and_uses_a_cached_image_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let request = Request {
            // Never asked: both decisions are made without the server.
            urls: vec![fetch::parse_url("http://192.0.2.1/x.iso").unwrap()],
            checksum: fetch::ChecksumSource::Sha256(Sha256Digest([7; 32])),
            dest: dir.path().join("cache/x.iso"),
        };
        let asked = Options {
            stream: true,
            stream_cache: Some(64 << 20),
            ..Options::default()
        };
        let streamed = delivery(&request, true, &asked, Memory::Auto);
        assert_eq!(
            streamed,
            Delivery::Stream {
                cache_limit: 64 << 20,
                why: StreamWhy::Asked
            }
        );
        assert_eq!(
            streamed.describe(),
            "verified streaming, at most 64 MiB of chunks in memory (--stream)"
        );
        assert_eq!(
            delivery(&request, true, &Options::default(), Memory::Auto),
            Delivery::Download {
                why: DownloadWhy::Cached
            }
        );
        // The cache directory does not exist yet: its nearest existing ancestor counts.
        assert!(free_space(&request.dest) > 0);
    }

    #[test]
    fn an_image_in_a_memory_cache_must_leave_the_vm_its_memory() {
        const MIB: u64 = 1 << 20;
        let limit = 256 * MIB;
        let budget = |available_mib| {
            Some(MemoryBudget {
                available: available_mib * MIB,
                needed: vm::host_memory_needed(Memory::Auto),
            })
        };
        // 3000 MiB on a 4 GiB rescue system's tmpfs: 900 MiB would be left, 896 needed.
        assert_eq!(
            decide(3000 * MIB, 3800 * MIB, budget(3900), limit),
            Delivery::Download {
                why: DownloadWhy::Fits {
                    size: 3000 * MIB,
                    free: 3800 * MIB
                }
            }
        );
        let tight = decide(3000 * MIB, 3800 * MIB, budget(3800), limit);
        assert_eq!(
            tight.describe(),
            "verified streaming, at most 256 MiB of chunks in memory (the cache is in memory: \
             3000 MiB stored there would leave 800 MiB of the 3800 MiB available, and the VM \
             and the host need 896 MiB)"
        );
        // On a disk, memory is not the cache's concern.
        assert!(!decide(3000 * MIB, 3800 * MIB, None, limit).streams());
        // Larger than the file system: streamed whatever the memory.
        assert!(decide(5000 * MIB, 3800 * MIB, None, limit).streams());
        // The profile's own memory counts, with the host's margin.
        assert_eq!(
            vm::host_memory_needed(Memory::Mib(2048)),
            (2048 + 384) * MIB
        );
    }

    #[test]
    fn the_vm_reaches_this_machines_loopback_at_qemus_host_address() {
        let seen = |url: &str| as_the_vm_sees(fetch::parse_url(url).unwrap()).to_string();
        assert_eq!(
            seen("http://127.0.0.1:8080/os/"),
            "http://10.0.2.2:8080/os/"
        );
        assert_eq!(seen("http://localhost/os/"), "http://10.0.2.2/os/");
        assert_eq!(seen("http://[::1]:81/os/"), "http://10.0.2.2:81/os/");
        assert_eq!(
            seen("https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/"),
            "https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/"
        );
    }

    #[test]
    fn tmpfs_is_memory_and_the_build_directory_is_not() {
        assert!(in_memory(Path::new("/dev/shm/ferry-cache/x.iso")));
        assert!(!in_memory(Path::new(env!("CARGO_MANIFEST_DIR"))));
    }

    #[test]
    fn console_goes_last_and_extra_before_separator() {
        assert_eq!(
            compose_cmdline(Arch::X86_64, "quiet", "url=x"),
            "no_timer_check quiet url=x console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline(Arch::X86_64, "vga=788 --- quiet", "auto=true url=x"),
            "no_timer_check vga=788 auto=true url=x --- quiet console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline(Arch::X86_64, "a console=ttyS0,115200n8", ""),
            "no_timer_check a console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline(Arch::X86_64, "--- no_timer_check", ""),
            "--- no_timer_check console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline(Arch::X86_64, "", ""),
            "no_timer_check console=ttyS0,115200n8"
        );
        assert_eq!(
            compose_cmdline(Arch::Aarch64, "quiet", ""),
            "quiet console=ttyAMA0,115200n8"
        );
    }
}
