//! Installer images: ISO 9660 reading and boot-menu parsing.
//!
//! ferry boots an installer's kernel directly (`-kernel/-initrd/-append`) so that it can add
//! `console=ttyS0,115200n8`. The kernel, initrd and command line come from the ISO's own boot
//! menus: [`boot_entries`] reads the usual isolinux/syslinux and GRUB configs, and [`select`]
//! picks one entry by label, title or menu path.

pub mod grub;
pub mod iso9660;
pub mod syslinux;

use std::collections::HashSet;
use std::fmt::Write as _;

pub use iso9660::{DirEntry, Iso, IsoError, Source};

/// Which boot loader's menu an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MenuKind {
    Syslinux,
    Grub,
}

impl std::fmt::Display for MenuKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MenuKind::Syslinux => "syslinux",
            MenuKind::Grub => "grub",
        })
    }
}

/// What `ferry inspect --json` prints: the ISO and its boot-menu entries.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Inspection<'a> {
    pub iso: &'a std::path::Path,
    pub volume_id: &'a str,
    pub entries: &'a [BootEntry],
}

/// One bootable Linux entry of an ISO's boot menu.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BootEntry {
    pub menu: MenuKind,
    /// The config file that defines the entry, e.g. `/isolinux/txt.cfg`.
    pub config: String,
    /// Titles of the enclosing submenus, outermost first.
    pub path: Vec<String>,
    /// The syslinux `LABEL`; `None` for GRUB.
    pub label: Option<String>,
    /// `MENU LABEL` (without `^`) or the GRUB menuentry title; falls back to the label.
    pub title: String,
    /// Absolute, normalized path of the kernel on the ISO.
    pub kernel: String,
    /// Absolute, normalized initrd paths, in order.
    pub initrd: Vec<String>,
    /// Kernel arguments, without `initrd=` items.
    pub cmdline: String,
    pub is_default: bool,
}

impl BootEntry {
    /// `Options > Serial console > title`.
    pub fn display_name(&self) -> String {
        let mut s = String::new();
        for p in &self.path {
            s.push_str(p);
            s.push_str(" > ");
        }
        s.push_str(&self.title);
        s
    }

    /// Whether two entries boot the same thing.
    fn boots_like(&self, other: &BootEntry) -> bool {
        self.kernel == other.kernel && self.initrd == other.initrd && self.cmdline == other.cmdline
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error("boot menu of {image}: {source}")]
    Menu { image: String, source: MenuError },
    #[error("no bootable Linux entry found in the boot menus of {image} (looked at: {looked})")]
    NoEntries { image: String, looked: String },
    #[error("no boot entry matches {selector:?}; available entries:\n{available}")]
    UnknownEntry { selector: String, available: String },
    #[error(
        "boot entry selector {selector:?} is ambiguous, it matches:\n{matches}\nuse the full menu path or a label; available entries:\n{available}"
    )]
    AmbiguousEntry {
        selector: String,
        matches: String,
        available: String,
    },
    #[error("boot entry selector {selector:?} is not a valid regex: {reason}")]
    BadRegex { selector: String, reason: String },
}

// Bounds on reading one boot menu (a top-level config and all it includes). Real menus are a
// few kilobytes in a handful of files, with tens of entries, a few levels deep and short
// variables; these bounds are far above that, and keep a hostile image from exhausting the
// stack, memory or time.
/// Files read for one menu (a file read again counts again).
pub const MAX_MENU_FILES: usize = 256;
/// Bytes read for one menu, all its files together.
pub const MAX_MENU_BYTES: usize = 4 << 20;
/// Nesting of blocks, submenus and includes.
pub const MAX_MENU_DEPTH: usize = 64;
/// Menu items (entries and submenus) of one menu.
pub const MAX_MENU_ITEMS: usize = 10_000;
/// GRUB variables of one scope, names and values together (each variable also counts
/// [`VARIABLE_OVERHEAD`] bytes, which bounds their number).
pub const MAX_VARIABLE_BYTES: usize = 64 << 10;
pub const VARIABLE_OVERHEAD: usize = 64;
/// Text produced by expanding GRUB variables, over the whole menu.
pub const MAX_EXPANDED_BYTES: usize = 64 << 20;

/// A boot menu past one of the bounds above; `config` is the file being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MenuError {
    #[error("{config}: menus, blocks and includes nest deeper than {MAX_MENU_DEPTH} levels")]
    TooDeep { config: String },
    #[error(
        "{config}: the menu reads more than {MAX_MENU_FILES} files or {} MiB in all",
        MAX_MENU_BYTES >> 20
    )]
    TooLarge { config: String },
    #[error("{config}: more than {MAX_MENU_ITEMS} menu entries")]
    TooManyItems { config: String },
    #[error(
        "{config}: GRUB variables grow past {} KiB (at `{name}`)",
        MAX_VARIABLE_BYTES >> 10
    )]
    VariablesTooLarge { config: String, name: String },
    #[error(
        "{config}: expanding GRUB variables makes more than {} MiB of text",
        MAX_EXPANDED_BYTES >> 20
    )]
    ExpansionTooLarge { config: String },
}

/// What one menu has read so far, against [`MAX_MENU_FILES`] and [`MAX_MENU_BYTES`].
#[derive(Default)]
pub(crate) struct ReadBudget {
    files: usize,
    bytes: usize,
}

impl ReadBudget {
    /// Reads `path` through `read`, counting it.
    pub(crate) fn read(
        &mut self,
        read: &mut dyn FnMut(&str) -> Option<String>,
        path: &str,
    ) -> Result<Option<String>, MenuError> {
        let Some(text) = read(path) else {
            return Ok(None);
        };
        self.files += 1;
        self.bytes = self.bytes.saturating_add(text.len());
        if self.files > MAX_MENU_FILES || self.bytes > MAX_MENU_BYTES {
            return Err(MenuError::TooLarge {
                config: path.to_string(),
            });
        }
        Ok(Some(text))
    }
}

/// Syslinux configs, in the order they are tried.
const SYSLINUX_CONFIGS: &[&str] = &[
    "/isolinux/isolinux.cfg",
    "/boot/isolinux/isolinux.cfg",
    "/isolinux.cfg",
    "/syslinux.cfg",
    "/syslinux/syslinux.cfg",
    "/boot/syslinux/syslinux.cfg",
];

/// GRUB configs, in the order they are tried (`loopback.cfg` only without `grub.cfg`).
const GRUB_CONFIGS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/boot/grub/loopback.cfg",
    "/EFI/BOOT/grub.cfg",
    "/EFI/boot/grub.cfg",
    "/efi/boot/grub.cfg",
];

/// All bootable Linux entries of the ISO's boot menus: syslinux entries first, then GRUB.
///
/// A config that is the same file as one read before (case-insensitive lookups make
/// `/EFI/BOOT/grub.cfg` and `/efi/boot/grub.cfg` one file, and an EFI stub config often just
/// `configfile`s `/boot/grub/grub.cfg`) is not read twice.
pub fn boot_entries(iso: &Iso) -> Result<Vec<BootEntry>, ImageError> {
    let mut entries = Vec::new();
    let mut looked = Vec::new();
    // Start blocks of the top-level configs already parsed, and of every file read.
    let mut parsed: HashSet<u32> = HashSet::new();
    let mut seen: HashSet<u32> = HashSet::new();
    let has_grub_cfg = iso.exists("/boot/grub/grub.cfg");

    for (kind, config) in SYSLINUX_CONFIGS
        .iter()
        .map(|c| (MenuKind::Syslinux, *c))
        .chain(GRUB_CONFIGS.iter().map(|c| (MenuKind::Grub, *c)))
    {
        if config == "/boot/grub/loopback.cfg" && has_grub_cfg {
            continue;
        }
        looked.push(config);
        let Some(id) = iso.file_identity(config) else {
            continue;
        };
        if seen.contains(&id) {
            continue;
        }
        parsed.insert(id);
        seen.insert(id);
        // Read the top-level file here so an I/O error is reported, not swallowed.
        let text = String::from_utf8_lossy(&iso.read(config)?).into_owned();
        let mut first = Some(text);
        let mut io_error = None;
        let mut read = |path: &str| -> Option<String> {
            if let Some(t) = first.take() {
                return Some(t);
            }
            let id = iso.file_identity(path)?;
            if parsed.contains(&id) {
                return None;
            }
            seen.insert(id);
            match iso.read(path) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => {
                    io_error.get_or_insert(e);
                    None
                }
            }
        };
        let found = match kind {
            MenuKind::Syslinux => syslinux::parse(config, &mut read),
            MenuKind::Grub => grub::parse(config, &mut read),
        };
        if let Some(e) = io_error {
            return Err(e.into());
        }
        entries.extend(found.map_err(|source| ImageError::Menu {
            image: iso.image_path().display().to_string(),
            source,
        })?);
    }
    if entries.is_empty() {
        return Err(ImageError::NoEntries {
            image: iso.image_path().display().to_string(),
            looked: looked.join(", "),
        });
    }
    Ok(entries)
}

/// Pick an entry.
///
/// `selector` is `default` (the first entry marked default, else the first entry), or
/// matches a label, a title, or the menu path joined with ` > ` ending in the title or the
/// label (`Options > Serial console > boot-serial`) — exactly first, then ignoring case. A
/// `syslinux:` or `grub:` prefix restricts the search to that menu. Several matches that boot
/// the same kernel, initrd and command line (the same entry in the syslinux and the GRUB
/// menu) are not ambiguous: the first one is taken.
pub fn select<'a>(entries: &'a [BootEntry], selector: &str) -> Result<&'a BootEntry, ImageError> {
    let (kind, sel) = match selector.split_once(':') {
        Some(("syslinux", rest)) => (Some(MenuKind::Syslinux), rest),
        Some(("grub", rest)) => (Some(MenuKind::Grub), rest),
        _ => (None, selector),
    };
    let sel = sel.trim();
    let candidates: Vec<&BootEntry> = entries
        .iter()
        .filter(|e| kind.is_none_or(|k| e.menu == k))
        .collect();
    let unknown = || ImageError::UnknownEntry {
        selector: selector.to_string(),
        available: list_entries(entries),
    };

    // `/REGEX/` matches titles that carry a version, such as lorax's "Install Rocky Linux 9.6"
    // next to "Test this media & install Rocky Linux 9.6".
    if let Some(pattern) = sel.strip_prefix('/').and_then(|s| s.strip_suffix('/'))
        && !pattern.is_empty()
    {
        let re = regex::Regex::new(pattern).map_err(|e| ImageError::BadRegex {
            selector: selector.to_string(),
            reason: e.to_string().lines().last().unwrap_or_default().to_string(),
        })?;
        return the_one(&candidates, |e| re.is_match(&e.title), selector, entries)
            .unwrap_or_else(|| Err(unknown()));
    }

    if sel == "default" {
        return candidates
            .iter()
            .find(|e| e.is_default)
            .or(candidates.first())
            .copied()
            .ok_or_else(unknown);
    }

    let names = |e: &BootEntry| -> Vec<String> {
        let mut v = vec![e.title.clone(), e.display_name()];
        if let Some(l) = &e.label {
            v.push(l.clone());
            let mut p = e.path.join(" > ");
            if !p.is_empty() {
                p.push_str(" > ");
            }
            p.push_str(l);
            v.push(p);
        }
        v
    };
    let exact = |e: &BootEntry| names(e).iter().any(|n| n == sel);
    let folded = |e: &BootEntry| {
        names(e)
            .iter()
            .any(|n| n.to_lowercase() == sel.to_lowercase())
    };
    for matcher in [&exact as &dyn Fn(&BootEntry) -> bool, &folded] {
        if let Some(found) = the_one(&candidates, matcher, selector, entries) {
            return found;
        }
    }
    Err(unknown())
}

/// The candidate `matches` picks: `None` when it picks none, ambiguous when it picks several
/// that boot differently (the same entry in both menus is one).
fn the_one<'a>(
    candidates: &[&'a BootEntry],
    matches: impl Fn(&BootEntry) -> bool,
    selector: &str,
    entries: &[BootEntry],
) -> Option<Result<&'a BootEntry, ImageError>> {
    let found: Vec<&BootEntry> = candidates.iter().copied().filter(|e| matches(e)).collect();
    match found.as_slice() {
        [] => None,
        [first, rest @ ..] if rest.iter().all(|e| e.boots_like(first)) => Some(Ok(first)),
        _ => Some(Err(ImageError::AmbiguousEntry {
            selector: selector.to_string(),
            matches: list_entries(found),
            available: list_entries(entries),
        })),
    }
}

/// One line per entry: `  path > title [label]`, with the menu it came from.
fn list_entries<'a>(entries: impl IntoIterator<Item = &'a BootEntry>) -> String {
    let mut out = String::new();
    for e in entries {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "  {}", e.display_name());
        if let Some(l) = &e.label {
            let _ = write!(out, " [{l}]");
        }
        let _ = write!(out, "  ({} {})", e.menu, e.config);
    }
    out
}

/// A table for `ferry inspect`: default marker, entry, label, kernel, initrd, cmdline; with
/// `fit`, cut to that many columns (see [`crate::table::render`]).
pub fn render_table(entries: &[BootEntry], fit: Option<usize>) -> String {
    let header = ["", "ENTRY", "LABEL", "KERNEL", "INITRD", "CMDLINE"].map(String::from);
    let mut rows = vec![header];
    for e in entries {
        rows.push([
            if e.is_default { "*" } else { "" }.to_string(),
            format!("{}: {}", e.menu, e.display_name()),
            e.label.clone().unwrap_or_else(|| "-".into()),
            e.kernel.clone(),
            e.initrd.join(","),
            e.cmdline.clone(),
        ]);
    }
    crate::table::render(&rows, fit)
}

/// Resolve `path` against `base_dir` (when relative) and normalize it: one `/` between
/// components, no `.`, `..` applied; the result is absolute.
pub(crate) fn normalize_path(base_dir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base_dir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The directory of an absolute path (`/isolinux/isolinux.cfg` → `/isolinux`, `/x` → `/`).
pub(crate) fn parent_dir(path: &str) -> String {
    let norm = normalize_path("/", path);
    match norm.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => norm[..i].to_string(),
    }
}

/// Split `initrd=a,b` items out of kernel arguments: returns (initrds, remaining arguments).
pub(crate) fn split_initrd_args<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> (Vec<String>, Vec<&'a str>) {
    let mut initrd = Vec::new();
    let mut rest = Vec::new();
    for arg in args {
        match arg.strip_prefix("initrd=") {
            Some(list) => {
                // Like the loaders, the last `initrd=` wins.
                initrd = list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            None => rest.push(arg),
        }
    }
    (initrd, rest)
}

/// `syslinux::parse` or `grub::parse`: a config path and a reader for the files it names.
#[cfg(test)]
type MenuParser =
    fn(&str, &mut dyn FnMut(&str) -> Option<String>) -> Result<Vec<BootEntry>, MenuError>;

/// A menu parser over in-memory config files, for the parsers' tests.
#[cfg(test)]
pub(crate) fn parse_in_memory(
    parse: MenuParser,
    main: &str,
    files: &[(&str, &str)],
) -> Result<Vec<BootEntry>, MenuError> {
    let find = |path: &str| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, text)| text.to_string())
    };
    parse(main, &mut |p: &str| find(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::iso9660::tests::build_iso;

    fn entry(
        menu: MenuKind,
        path: &[&str],
        label: Option<&str>,
        title: &str,
        kernel: &str,
    ) -> BootEntry {
        BootEntry {
            menu,
            config: match menu {
                MenuKind::Syslinux => "/isolinux/isolinux.cfg".into(),
                MenuKind::Grub => "/EFI/BOOT/grub.cfg".into(),
            },
            path: path.iter().map(|s| s.to_string()).collect(),
            label: label.map(str::to_string),
            title: title.into(),
            kernel: kernel.into(),
            initrd: vec!["/initrd".into()],
            cmdline: String::new(),
            is_default: false,
        }
    }

    fn sample() -> Vec<BootEntry> {
        use MenuKind::*;
        let mut v = vec![
            entry(Syslinux, &[], Some("boot"), "NixOS Installer", "/k"),
            entry(
                Syslinux,
                &["Options", "Serial console"],
                Some("boot-serial"),
                "NixOS Installer (serial)",
                "/k",
            ),
            entry(
                Syslinux,
                &["Options", "Other"],
                Some("boot-other"),
                "Same title",
                "/k1",
            ),
            entry(
                Syslinux,
                &["Options", "Other2"],
                Some("boot-other2"),
                "Same title",
                "/k2",
            ),
            entry(Grub, &[], None, "NixOS Installer", "/k"),
            entry(Grub, &["Options"], None, "GRUB only", "/g"),
        ];
        v[1].cmdline = "console=ttyS0,115200n8".into();
        v[4].is_default = true;
        v
    }

    #[test]
    fn select_default() {
        let mut e = sample();
        // The GRUB entry is marked, the syslinux menu has no default.
        assert_eq!(select(&e, "default").unwrap().menu, MenuKind::Grub);
        e[2].is_default = true;
        assert_eq!(
            select(&e, "default").unwrap().label.as_deref(),
            Some("boot-other")
        );
        for x in &mut e {
            x.is_default = false;
        }
        // None marked: the first entry.
        assert_eq!(
            select(&e, "default").unwrap().label.as_deref(),
            Some("boot")
        );
        assert_eq!(select(&e, "grub:default").unwrap().title, "NixOS Installer");
        assert!(select(&[], "default").is_err());
    }

    #[test]
    fn select_by_label_title_and_path() {
        let e = sample();
        assert_eq!(
            select(&e, "boot-serial").unwrap().label.as_deref(),
            Some("boot-serial")
        );
        assert_eq!(
            select(&e, "NixOS Installer (serial)")
                .unwrap()
                .label
                .as_deref(),
            Some("boot-serial")
        );
        assert_eq!(
            select(&e, "Options > Serial console > boot-serial")
                .unwrap()
                .label
                .as_deref(),
            Some("boot-serial")
        );
        assert_eq!(
            select(&e, "Options > Serial console > NixOS Installer (serial)")
                .unwrap()
                .label
                .as_deref(),
            Some("boot-serial")
        );
        assert_eq!(select(&e, "Options > GRUB only").unwrap().kernel, "/g");
        // Case-insensitive as a second try.
        assert_eq!(
            select(&e, "options > serial CONSOLE > BOOT-SERIAL")
                .unwrap()
                .label
                .as_deref(),
            Some("boot-serial")
        );
        // Same title in both menus, booting the same thing: not ambiguous, the first wins.
        assert_eq!(
            select(&e, "NixOS Installer").unwrap().menu,
            MenuKind::Syslinux
        );
        assert_eq!(
            select(&e, "grub:NixOS Installer").unwrap().menu,
            MenuKind::Grub
        );
    }

    /// Lorax's menus: the version in every title, the media check the default.
    #[test]
    fn select_by_title_regex() {
        use MenuKind::*;
        let mut e = vec![
            entry(
                Syslinux,
                &[],
                Some("linux"),
                "Install Rocky Linux 9.6",
                "/v",
            ),
            entry(
                Syslinux,
                &[],
                Some("check"),
                "Test this media & install Rocky Linux 9.6",
                "/v",
            ),
            entry(
                Grub,
                &[],
                None,
                "Install Rocky Linux 9.6",
                "/images/pxeboot/vmlinuz",
            ),
        ];
        e[1].is_default = true;
        e[1].cmdline = "rd.live.check".into();
        assert_eq!(
            select(&e, "syslinux:/^Install /").unwrap().label.as_deref(),
            Some("linux")
        );
        assert_eq!(select(&e, "grub:/^Install /").unwrap().menu, Grub);
        // isolinux's kernel path differs from GRUB's: two different boots.
        assert!(matches!(
            select(&e, "/^Install /"),
            Err(ImageError::AmbiguousEntry { .. })
        ));
        assert!(matches!(
            select(&e, "/^Boot/"),
            Err(ImageError::UnknownEntry { .. })
        ));
        let bad = select(&e, "/(/").unwrap_err().to_string();
        assert!(
            bad.starts_with("boot entry selector \"/(/\" is not a valid regex: "),
            "{bad}"
        );
    }

    #[test]
    fn select_errors_list_entries() {
        let e = sample();
        let err = select(&e, "Same title").unwrap_err();
        assert!(matches!(err, ImageError::AmbiguousEntry { .. }));
        let msg = err.to_string();
        assert!(msg.contains("ambiguous"), "{msg}");
        assert!(
            msg.contains("  Options > Other > Same title [boot-other]"),
            "{msg}"
        );
        assert!(
            msg.contains("  Options > Other2 > Same title [boot-other2]"),
            "{msg}"
        );

        let err = select(&e, "nope").unwrap_err();
        assert!(matches!(err, ImageError::UnknownEntry { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("no boot entry matches \"nope\"; available entries:\n"),
            "{msg}"
        );
        let lines: Vec<&str> = msg.lines().skip(1).collect();
        assert_eq!(lines.len(), e.len(), "{msg}");
        assert!(
            lines[1]
                .starts_with("  Options > Serial console > NixOS Installer (serial) [boot-serial]"),
            "{msg}"
        );
        assert!(
            lines[5].starts_with("  Options > GRUB only  (grub"),
            "{msg}"
        );
    }

    #[test]
    fn table() {
        let t = render_table(&sample(), None);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 7, "{t}");
        assert!(
            lines[0].contains("ENTRY") && lines[0].contains("CMDLINE"),
            "{t}"
        );
        assert!(lines[5].starts_with("*  grub: NixOS Installer"), "{t}");
        assert!(lines[2].ends_with("/initrd  console=ttyS0,115200n8"), "{t}");
        // Columns line up.
        let col = lines[0].find("KERNEL").unwrap();
        assert!(
            lines.iter().skip(1).all(|l| l[col..].starts_with('/')),
            "{t}"
        );
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize_path("/isolinux", "../boot//x/./y"), "/boot/x/y");
        assert_eq!(normalize_path("/", "linux"), "/linux");
        assert_eq!(normalize_path("/a", "/b/../../c"), "/c");
        assert_eq!(parent_dir("/isolinux/isolinux.cfg"), "/isolinux");
        assert_eq!(parent_dir("/isolinux.cfg"), "/");
        let (i, rest) = split_initrd_args("a initrd=x,y b".split(' '));
        assert_eq!(i, ["x", "y"]);
        assert_eq!(rest, ["a", "b"]);
    }

    #[test]
    fn boot_entries_from_an_iso() {
        let dir = tempfile::tempdir().unwrap();
        let isolinux = "DEFAULT install\nINCLUDE txt.cfg\n";
        let txt = "LABEL install\n KERNEL /install.amd/vmlinuz\n APPEND vga=788 initrd=/install.amd/initrd.gz --- quiet\n";
        // Debian-style: the EFI config only points at the real one; both are found.
        let efi = "search --file --set=root /.disk/id/x\nset prefix=($root)/boot/grub\nsource $prefix/x86_64-efi/grub.cfg\n";
        let efi_real = "configfile $prefix/grub.cfg\n";
        let grub = "set default=0\nmenuentry 'Install' {\n linux /install.amd/vmlinuz vga=788 --- quiet\n initrd /install.amd/initrd.gz\n}\n";
        let iso = build_iso(
            dir.path(),
            &["-R"],
            &[
                ("/isolinux/isolinux.cfg", isolinux.as_bytes()),
                ("/isolinux/txt.cfg", txt.as_bytes()),
                ("/EFI/boot/grub.cfg", efi.as_bytes()),
                ("/boot/grub/x86_64-efi/grub.cfg", efi_real.as_bytes()),
                ("/boot/grub/grub.cfg", grub.as_bytes()),
                (
                    "/boot/grub/loopback.cfg",
                    b"menuentry 'loop' { linux /x }\n",
                ),
            ],
        );
        let iso = Iso::open(&iso).unwrap();
        let e = boot_entries(&iso).unwrap();
        // isolinux first; grub.cfg once (not again through the EFI stub, nor /efi/boot
        // spelled differently); loopback.cfg not read because grub.cfg exists.
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!(e[0].menu, MenuKind::Syslinux);
        assert_eq!(e[0].config, "/isolinux/txt.cfg");
        assert_eq!(e[0].initrd, ["/install.amd/initrd.gz"]);
        assert!(e[0].is_default);
        assert_eq!(e[1].menu, MenuKind::Grub);
        assert_eq!(e[1].config, "/boot/grub/grub.cfg");
        assert_eq!(e[1].cmdline, "vga=788 --- quiet");
        // Exact matches come before case-insensitive ones.
        assert_eq!(select(&e, "install").unwrap().menu, MenuKind::Syslinux);
        assert_eq!(select(&e, "Install").unwrap().menu, MenuKind::Grub);
        let json = serde_json::to_value(&e[1]).unwrap();
        assert_eq!(json["menu"], "grub");
        assert_eq!(json["label"], serde_json::Value::Null);
    }

    #[test]
    fn boot_entries_plain_names_and_no_menu() {
        let dir = tempfile::tempdir().unwrap();
        let grub = "menuentry 'EFI only' {\n linux /linux\n}\n";
        let iso = build_iso(
            dir.path(),
            &[],
            &[("/EFI/BOOT/grub.cfg", grub.as_bytes()), ("/linux", b"k")],
        );
        let iso = Iso::open(&iso).unwrap();
        let e = boot_entries(&iso).unwrap();
        // /EFI/BOOT, /EFI/boot and /efi/boot are one file here.
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].config, "/EFI/BOOT/grub.cfg");

        let dir = tempfile::tempdir().unwrap();
        let iso = build_iso(dir.path(), &["-R"], &[("/README", b"nothing to boot")]);
        let err = boot_entries(&Iso::open(&iso).unwrap()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no bootable Linux entry"), "{msg}");
        assert!(
            msg.contains("/isolinux/isolinux.cfg") && msg.contains("/efi/boot/grub.cfg"),
            "{msg}"
        );
    }
}
