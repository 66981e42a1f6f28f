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

pub use iso9660::{DirEntry, Iso, IsoError};

/// Which boot loader's menu an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// One bootable Linux entry of an ISO's boot menu.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
        entries.extend(found);
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
        let matches: Vec<&BootEntry> = candidates.iter().copied().filter(|e| matcher(e)).collect();
        match matches.as_slice() {
            [] => continue,
            [first, rest @ ..] if rest.iter().all(|e| e.boots_like(first)) => return Ok(first),
            _ => {
                return Err(ImageError::AmbiguousEntry {
                    selector: selector.to_string(),
                    matches: list_entries(matches.iter().copied()),
                    available: list_entries(entries),
                });
            }
        }
    }
    Err(unknown())
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

/// A table for `ferry inspect`: default marker, entry, label, kernel, initrd, cmdline.
pub fn render_table(entries: &[BootEntry]) -> String {
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
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
