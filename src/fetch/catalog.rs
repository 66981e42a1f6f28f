//! The image catalog: what ferry knows how to fetch and verify, one TOML file per image in
//! `images/`, embedded in the binary and replaceable with `--catalog DIR` / `FERRY_CATALOG`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use super::cache;
use super::checksum::{ChecksumSource, DebianPackage, Sha256Digest};
use super::debian::Pin;
use super::download::{Request, parse_url};
use super::error::FetchError;
use crate::arch::Arch;

/// The catalog files compiled into ferry. A unit test checks this list against `images/`.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "alma-9-boot.toml",
        include_str!("../../images/alma-9-boot.toml"),
    ),
    (
        "alma-9-netboot.toml",
        include_str!("../../images/alma-9-netboot.toml"),
    ),
    (
        "alma-10-boot.toml",
        include_str!("../../images/alma-10-boot.toml"),
    ),
    (
        "alma-10-netboot.toml",
        include_str!("../../images/alma-10-netboot.toml"),
    ),
    (
        "alpine-virt.toml",
        include_str!("../../images/alpine-virt.toml"),
    ),
    (
        "archlinux.toml",
        include_str!("../../images/archlinux.toml"),
    ),
    (
        "debian-12-netboot.toml",
        include_str!("../../images/debian-12-netboot.toml"),
    ),
    (
        "debian-12-netboot-package.toml",
        include_str!("../../images/debian-12-netboot-package.toml"),
    ),
    (
        "debian-12-netboot-package-arm64.toml",
        include_str!("../../images/debian-12-netboot-package-arm64.toml"),
    ),
    (
        "debian-13-netboot-package.toml",
        include_str!("../../images/debian-13-netboot-package.toml"),
    ),
    (
        "debian-13-netboot-package-arm64.toml",
        include_str!("../../images/debian-13-netboot-package-arm64.toml"),
    ),
    (
        "freebsd-14.toml",
        include_str!("../../images/freebsd-14.toml"),
    ),
    (
        "nixos-minimal.toml",
        include_str!("../../images/nixos-minimal.toml"),
    ),
    ("openbsd.toml", include_str!("../../images/openbsd.toml")),
    (
        "rocky-9-boot.toml",
        include_str!("../../images/rocky-9-boot.toml"),
    ),
    (
        "rocky-9-netboot.toml",
        include_str!("../../images/rocky-9-netboot.toml"),
    ),
    (
        "rocky-10-boot.toml",
        include_str!("../../images/rocky-10-boot.toml"),
    ),
    (
        "rocky-10-netboot.toml",
        include_str!("../../images/rocky-10-netboot.toml"),
    ),
    (
        "qemu-debian-12.toml",
        include_str!("../../images/qemu-debian-12.toml"),
    ),
    (
        "qemu-debian-12-arm64.toml",
        include_str!("../../images/qemu-debian-12-arm64.toml"),
    ),
    (
        "ubuntu-24.04-server.toml",
        include_str!("../../images/ubuntu-24.04-server.toml"),
    ),
];

/// One image: what it is, where to get it, how to verify it, how to boot it.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The name `ferry fetch` and profiles use; the file name without `.toml`.
    pub name: String,
    pub description: String,
    pub os: String,
    pub version: String,
    pub arch: Arch,
    pub kind: Kind,
    /// Mirrors, tried in order.
    pub urls: Vec<String>,
    /// The expected digest, when the catalog pins one.
    pub sha256: Option<Sha256Digest>,
    /// A checksum file: a URL, or relative to each mirror URL (`"SHA256SUMS"`, `"../SHA256SUMS"`).
    pub sha256sums: Option<String>,
    /// Verified through the Debian archive's signed indexes instead. For a `qemu` entry: the
    /// QEMU package (`qemu-system-x86`, `qemu-system-arm`) assembled with its `Depends` closure
    /// and firmware from that archive.
    pub debian: Option<DebianPackage>,
    /// A `qemu` entry with `debian`: the exact package set, instead of resolving it from the
    /// archive's indexes (each `.deb` is checked against its `sha256` here).
    #[serde(default, rename = "pin", skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<Pin>,
    #[serde(default)]
    pub boot: BootHints,
    /// A `netboot` entry whose `urls` are installer trees: the files in them to boot.
    pub tree: Option<Tree>,
    /// The built-in install recipe (profile) for this image, if there is one.
    pub recipe: Option<String>,
}

/// The kernel and initrd of an installer tree (productmd's layout, as Fedora, RHEL and their
/// rebuilds publish `BaseOS/ARCH/os/`), and how its installer finds the rest of itself there.
/// Each file is checked against the entry's `sha256sums` (the tree's `.treeinfo`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Paths relative to the tree, e.g. `images/pxeboot/vmlinuz`.
    pub kernel: String,
    pub initrd: String,
    /// The kernel argument that points the installer at the tree (`inst.stage2`): ferry adds
    /// `ARG=URL` with the tree's URL as the VM reaches it. The installer fetches its own root
    /// image from there, into the VM's memory.
    pub installer_arg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A bootable ISO 9660 image.
    Iso,
    /// Netboot files (a kernel and an initrd, or an archive holding them).
    Netboot,
    /// ferry's portable QEMU, used when the machine has no usable `qemu-system-*`: a tarball
    /// built by `scripts/build-qemu-bundle.sh` (pinned by `sha256`), or assembled from Debian's
    /// archive (`debian`).
    Qemu,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Iso => "iso",
            Kind::Netboot => "netboot",
            Kind::Qemu => "qemu",
        }
    }
}

/// How to boot the image with a serial console.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootHints {
    /// The boot-menu entry to take (`default`, a label, a title, or `Submenu > Title`).
    pub entry: Option<String>,
    pub serial: Option<Serial>,
    /// Anything else an operator or a recipe author should know.
    pub notes: Option<String>,
}

/// How the installer gets a serial console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Serial {
    /// The installer already uses the serial port.
    Native,
    /// A Linux kernel: ferry boots the entry's kernel directly with `console=ttyS0` added.
    Kernel,
    /// Not a Linux kernel: keys typed at the boot loader switch it (e.g. `set tty com0`).
    Keys,
}

impl Entry {
    /// Where the checksum comes from. Parsing guarantees exactly one source.
    pub fn checksum(&self) -> ChecksumSource {
        match (&self.sha256, &self.sha256sums, &self.debian) {
            (Some(digest), _, _) => ChecksumSource::Sha256(*digest),
            (_, Some(sums), _) => ChecksumSource::SumsFile(sums.clone()),
            (_, _, Some(package)) => ChecksumSource::Debian(package.clone()),
            (None, None, None) => unreachable!("checked when the catalog was read"),
        }
    }

    /// The fetch request for this image, into `cache_dir`: for a tree, its kernel.
    pub fn request(&self, cache_dir: &Path) -> Result<Request, FetchError> {
        match &self.tree {
            Some(tree) => self.tree_file(&tree.kernel, cache_dir),
            None => file_request(&self.urls, self.checksum(), cache_dir),
        }
    }

    /// Every file of this image: the one [`Entry::request`], or a tree's kernel and initrd.
    pub fn requests(&self, cache_dir: &Path) -> Result<Vec<Request>, FetchError> {
        match &self.tree {
            Some(tree) => Ok(vec![
                self.tree_file(&tree.kernel, cache_dir)?,
                self.tree_file(&tree.initrd, cache_dir)?,
            ]),
            None => Ok(vec![self.request(cache_dir)?]),
        }
    }

    /// `path` in each mirror's tree; a checksum file named relative to the tree is named
    /// relative to the file instead (`../../.treeinfo` for `images/pxeboot/vmlinuz`), as
    /// [`ChecksumSource::SumsFile`] resolves it against each file's URL.
    fn tree_file(&self, path: &str, cache_dir: &Path) -> Result<Request, FetchError> {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|tree| format!("{}/{path}", tree.trim_end_matches('/')))
            .collect();
        let checksum = match self.checksum() {
            ChecksumSource::SumsFile(sums) if !sums.contains("://") => {
                ChecksumSource::SumsFile("../".repeat(path.matches('/').count()) + &sums)
            }
            other => other,
        };
        file_request(&urls, checksum, cache_dir)
    }
}

/// One file from `urls` (mirrors, in order), cached under the first one's name.
fn file_request(
    urls: &[String],
    checksum: ChecksumSource,
    cache_dir: &Path,
) -> Result<Request, FetchError> {
    let urls = urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let dest = cache::path_for(cache_dir, &urls[0]);
    Ok(Request {
        urls,
        checksum,
        dest,
    })
}

/// The entries, sorted by name.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Catalog {
    /// `embedded` or the directory the entries came from.
    pub source: String,
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// The catalog in `dir` (every `*.toml` in it), or the embedded one.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, FetchError> {
        let (source, files) = match dir {
            None => (
                "embedded".to_string(),
                EMBEDDED
                    .iter()
                    .map(|(n, t)| (PathBuf::from(n), t.to_string()))
                    .collect(),
            ),
            Some(dir) => (dir.display().to_string(), read_dir(dir)?),
        };
        let mut entries = files
            .iter()
            .map(|(path, text)| parse_entry(path, text))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Catalog { source, entries })
    }

    /// The portable QEMU bundle (a tarball), if the catalog names one.
    pub fn qemu_bundle(&self) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.kind == Kind::Qemu && e.sha256.is_some())
    }

    /// The QEMU for `arch` assembled from Debian's archive, if the catalog names one.
    pub fn qemu_archive(&self, arch: Arch) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.kind == Kind::Qemu && e.debian.is_some() && e.arch == arch)
    }

    pub fn get(&self, name: &str) -> Result<&Entry, FetchError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| FetchError::UnknownImage { name: name.into() })
    }

    /// The ISO of the same release, machine and recipe as `entry` (a netboot entry), for what
    /// only an ISO can do, such as being streamed.
    pub fn iso_of(&self, entry: &Entry) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.kind == Kind::Iso
                && e.recipe.is_some()
                && (&e.os, &e.version, e.arch, &e.recipe)
                    == (&entry.os, &entry.version, entry.arch, &entry.recipe)
        })
    }

    /// The entry `name` for an `arch` guest: `name` itself, or else the same image built for
    /// `arch` (same OS, version, kind and recipe), so that one recipe serves both
    /// architectures. When neither fits, `name` itself (the caller refuses the mismatch).
    pub fn get_for(&self, name: &str, arch: Arch) -> Result<&Entry, FetchError> {
        let named = self.get(name)?;
        if named.arch == arch {
            return Ok(named);
        }
        Ok(self
            .entries
            .iter()
            .find(|e| {
                e.arch == arch
                    && e.os == named.os
                    && e.version == named.version
                    && e.kind == named.kind
                    && e.recipe == named.recipe
            })
            .unwrap_or(named))
    }

    /// The catalog as a table; `cached` says whether an entry's file is in the cache; with
    /// `fit`, cut to that many columns (see [`crate::table::render`]).
    pub fn render_table(&self, cached: impl Fn(&Entry) -> bool, fit: Option<usize>) -> String {
        let mut rows =
            vec![["NAME", "OS", "VERSION", "KIND", "CACHED", "DESCRIPTION"].map(String::from)];
        for e in &self.entries {
            let kind = e.kind.name();
            let cached = if cached(e) { "yes" } else { "no" };
            rows.push(
                [&e.name, &e.os, &e.version, kind, cached, &e.description].map(|s| s.to_string()),
            );
        }
        crate::table::render(&rows, fit)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, FetchError> {
    let listing = std::fs::read_dir(dir).map_err(|e| FetchError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in listing {
        let path = entry.map_err(|e| FetchError::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = crate::profile::read_text(&path, crate::profile::MAX_INPUT_BYTES)
                .map_err(|e| FetchError::io(&path, e.into_io()))?;
            files.push((path, text));
        }
    }
    Ok(files)
}

fn parse_entry(path: &Path, text: &str) -> Result<Entry, FetchError> {
    let invalid = |offset: usize, message: String| FetchError::Catalog {
        location: crate::profile::location(path, text, offset),
        message,
    };
    let entry: Entry = toml::from_str(text).map_err(|e| {
        invalid(
            e.span().map_or(0, |s| s.start),
            e.message().trim_end().into(),
        )
    })?;
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    if entry.name != stem {
        return Err(invalid(
            text.find("name").unwrap_or(0),
            format!("`name` must be the file's name, {stem:?}"),
        ));
    }
    let sources = [
        entry.sha256.is_some(),
        entry.sha256sums.is_some(),
        entry.debian.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(
            0,
            "an entry needs exactly one of `sha256`, `sha256sums` or `debian`".into(),
        ));
    }
    if entry.kind == Kind::Qemu && entry.sha256sums.is_some() {
        return Err(invalid(
            text.find("kind").unwrap_or(0),
            "a `qemu` bundle is pinned by its `sha256` (scripts/build-qemu-bundle.sh prints it), or assembled from a `debian` archive"
                .into(),
        ));
    }
    if let Some(pin) = entry
        .pins
        .iter()
        .find(|p| Sha256Digest::parse(&p.sha256).is_none())
    {
        return Err(invalid(
            // The pin's own `sha256`: the first after its name.
            text.find(&format!("\"{}\"", pin.name))
                .and_then(|at| text[at..].find(&pin.sha256).map(|i| at + i))
                .unwrap_or(0),
            format!("`pin` {}: `sha256` must be 64 hexadecimal digits", pin.name),
        ));
    }
    let pinnable = entry.kind == Kind::Qemu && entry.debian.is_some();
    if !entry.pins.is_empty() && !pinnable {
        return Err(invalid(
            text.find("[[pin]]").unwrap_or(0),
            "`pin` pins the packages of a `qemu` entry with `debian`; remove it here".into(),
        ));
    }
    if entry.tree.is_some() && (entry.kind != Kind::Netboot || entry.debian.is_some()) {
        return Err(invalid(
            text.find("[tree]").unwrap_or(0),
            "`tree` is for a `netboot` entry whose `urls` are installer trees, not a package"
                .into(),
        ));
    }
    if entry.urls.is_empty() {
        return Err(invalid(
            text.find("urls").unwrap_or(0),
            "`urls` needs at least one URL".into(),
        ));
    }
    for url in &entry.urls {
        parse_url(url).map_err(|e| invalid(text.find(url.as_str()).unwrap_or(0), e.to_string()))?;
    }
    if let Some(sums) = &entry.sha256sums {
        let base: Url = parse_url(&entry.urls[0]).expect("checked above");
        base.join(sums).map_err(|e| {
            invalid(
                text.find("sha256sums").unwrap_or(0),
                format!("`sha256sums`: {e}"),
            )
        })?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_images_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "update EMBEDDED in src/fetch/catalog.rs");
    }

    #[test]
    fn embedded_catalog_parses() {
        let catalog = Catalog::load(None).unwrap();
        assert_eq!(catalog.entries.len(), EMBEDDED.len());
        let mini = catalog.get("debian-12-netboot").unwrap();
        assert_eq!(mini.kind, Kind::Iso);
        let request = mini.request(Path::new("/c")).unwrap();
        assert_eq!(
            request.checksum,
            ChecksumSource::SumsFile("../SHA256SUMS".into())
        );
        assert_eq!(
            request.urls[0].join("../SHA256SUMS").unwrap().as_str(),
            "https://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/SHA256SUMS"
        );
        assert!(
            request
                .dest
                .starts_with("/c/deb.debian.org/debian/dists/bookworm")
        );
        assert!(
            catalog.qemu_bundle().is_none(),
            "no release host for a tarball"
        );
        for arch in Arch::ALL {
            let qemu = catalog.qemu_archive(arch).unwrap();
            assert_eq!(qemu.arch, arch);
            assert_eq!(qemu.debian.as_ref().unwrap().arch, arch.debian());
        }
        let package = catalog.get("debian-12-netboot-package").unwrap();
        assert!(
            matches!(package.checksum(), ChecksumSource::Debian(ref p) if p.suite == "bookworm")
        );
        assert!(
            catalog
                .get("nope")
                .unwrap_err()
                .to_string()
                .contains("ferry images")
        );
        let table = catalog.render_table(|e| e.name == "archlinux", None);
        assert!(table.starts_with("NAME "), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("archlinux ") && l.contains(" yes ")),
            "{table}"
        );
    }

    /// An installer tree's entry is two files, each checked against the tree's own checksum
    /// file on the same mirror; `[tree]` belongs to netboot entries only.
    #[test]
    fn a_tree_is_its_kernel_and_initrd() {
        let catalog = Catalog::load(None).unwrap();
        let tree = catalog.get("alma-9-netboot").unwrap();
        let files = tree.requests(Path::new("/c")).unwrap();
        let urls: Vec<&str> = files.iter().map(|r| r.urls[0].as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/images/pxeboot/vmlinuz",
                "https://repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/images/pxeboot/initrd.img"
            ]
        );
        for file in &files {
            assert_eq!(
                file.checksum,
                ChecksumSource::SumsFile("../../.treeinfo".into())
            );
            assert_eq!(
                file.urls[0].join("../../.treeinfo").unwrap().as_str(),
                "https://repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/.treeinfo"
            );
        }
        assert_eq!(files[0].dest, tree.request(Path::new("/c")).unwrap().dest);
        assert!(files[1].dest.ends_with("os/images/pxeboot/initrd.img"));

        let dir = tempfile::tempdir().unwrap();
        let iso_with_tree = "name = \"t\"\ndescription = \"d\"\nos = \"o\"\nversion = \"1\"\n\
            arch = \"x86_64\"\nkind = \"iso\"\nurls = [\"http://h/os/\"]\nsha256sums = \".treeinfo\"\n\
            [tree]\nkernel = \"k\"\ninitrd = \"i\"\ninstaller_arg = \"inst.stage2\"\n";
        std::fs::write(dir.path().join("t.toml"), iso_with_tree).unwrap();
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("t.toml:9:1: `tree` is for a `netboot` entry"),
            "{e}"
        );
    }

    /// The Debian recipes name the amd64 package; an aarch64 guest gets the arm64 package of
    /// the same release, and an image with no arm64 build stays itself (refused by the plan).
    #[test]
    fn an_entry_is_taken_for_the_guests_architecture() {
        let catalog = Catalog::load(None).unwrap();
        for major in ["12", "13"] {
            let name = format!("debian-{major}-netboot-package");
            let arm64 = catalog.get_for(&name, Arch::Aarch64).unwrap();
            assert_eq!(arm64.name, format!("{name}-arm64"));
            let package = arm64.debian.as_ref().unwrap();
            assert_eq!(
                (package.arch.as_str(), package.package.as_str()),
                (
                    "arm64",
                    format!("debian-installer-{major}-netboot-arm64").as_str()
                )
            );
            assert_eq!(catalog.get_for(&name, Arch::X86_64).unwrap().name, name);
        }
        let nixos = catalog.get_for("nixos-minimal", Arch::Aarch64).unwrap();
        assert_eq!(nixos.arch, Arch::X86_64);
    }

    #[test]
    fn bad_entries_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let base =
            "description = \"d\"\nos = \"o\"\nversion = \"1\"\narch = \"x86_64\"\nkind = \"iso\"\n";
        write(
            "a.toml",
            &format!("name = \"a\"\n{base}urls = [\"http://h/a.iso\"]\n"),
        );
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("a.toml:1:1: an entry needs exactly one of"),
            "{e}"
        );
        write(
            "a.toml",
            &format!(
                "name = \"a\"\n{base}urls = [\"ftp://h/a.iso\"]\nsha256sums = \"SHA256SUMS\"\n"
            ),
        );
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("a.toml:7:") && e.contains("only http and https"),
            "{e}"
        );
        write(
            "a.toml",
            &format!("name = \"a\"\n{base}urls = [\"http://h/a.iso\"]\nsha256 = \"00\"\n"),
        );
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("a.toml:8:10: `sha256` must be 64 hexadecimal digits"),
            "{e}"
        );
        write(
            "a.toml",
            &format!(
                "name = \"a\"\n{base}urls = [\"http://h/a.iso\"]\nsha256sums = \"SHA256SUMS\"\n"
            ),
        );
        let catalog = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(catalog.source, dir.path().display().to_string());
        assert_eq!(
            catalog.get("a").unwrap().checksum(),
            ChecksumSource::SumsFile("SHA256SUMS".into())
        );
        assert!(catalog.qemu_bundle().is_none());

        // A QEMU bundle is pinned by its digest, not by a checksum file.
        let qemu = base.replace("kind = \"iso\"", "kind = \"qemu\"");
        write(
            "q.toml",
            &format!("name = \"q\"\n{qemu}urls = [\"http://h/q.tar.xz\"]\nsha256sums = \"S\"\n"),
        );
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("q.toml:6:1: a `qemu` bundle is pinned by its `sha256`")
                && e.contains("or assembled from a `debian` archive"),
            "{e}"
        );
        let digest = "ab".repeat(32);
        write(
            "q.toml",
            &format!("name = \"q\"\n{qemu}urls = [\"http://h/q.tar.xz\"]\nsha256 = \"{digest}\"\n"),
        );
        let catalog = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(catalog.qemu_bundle().unwrap().name, "q");
        assert!(
            catalog
                .render_table(|_| false, None)
                .contains("\nq     o   1        qemu")
        );
    }
}
