//! isolinux/syslinux menu configs (`isolinux.cfg`, `syslinux.cfg` and what they include).
//!
//! Understood: `DEFAULT`, `ONTIMEOUT`, `LABEL`, `MENU LABEL`, `MENU DEFAULT`, `KERNEL`/`LINUX`,
//! `INITRD`, `APPEND` (with `initrd=`; `APPEND -` means none; a global `APPEND` applies to
//! labels without one), `INCLUDE`, `MENU INCLUDE file [title]`, `MENU BEGIN`/`MENU TITLE`/
//! `MENU END`, `TEXT HELP`…`ENDTEXT`. Relative paths resolve against the directory of the
//! top-level config (syslinux's working directory). Entries whose kernel is a COM32 module,
//! a boot sector or `LOCALBOOT` are not Linux entries and are left out.
//!
//! A label that loads another config (`CONFIG file`, as archiso's `syslinux.cfg` does for its
//! BIOS and PXE menus) becomes a submenu holding that config's entries, and a `DEFAULT` label
//! that runs `whichsys.c32` boots its `-iso-` choice: what syslinux boots from the CD.

use super::{
    BootEntry, MAX_MENU_DEPTH, MAX_MENU_ITEMS, MenuError, MenuKind, ReadBudget, normalize_path,
    parent_dir, split_initrd_args,
};

/// Nesting limit for `INCLUDE`.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Parse the syslinux config at `config_path`; `read` returns a file's text (the config
/// itself and anything it includes), or `None` when it does not exist. A config past the
/// bounds of [`super`] (nesting, size, entries) is an error.
pub fn parse(
    config_path: &str,
    read: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Vec<BootEntry>, MenuError> {
    let config_path = normalize_path("/", config_path);
    let mut p = Parser {
        base: parent_dir(&config_path),
        read,
        budget: ReadBudget::default(),
        submenus: Vec::new(),
        stack: Vec::new(),
        labels: Vec::new(),
        current: None,
        global_append: None,
        default: None,
        ontimeout: None,
        depth: 0,
        chained_defaults: Vec::new(),
    };
    p.file(&config_path)?;
    p.finish_label();
    p.follow_configs()?;
    Ok(p.into_entries())
}

struct Submenu {
    tag: String,
    title: Option<String>,
    label: Option<String>,
}

impl Submenu {
    fn name(&self) -> String {
        self.label
            .clone()
            .or_else(|| self.title.clone())
            .unwrap_or_else(|| self.tag.clone())
    }
}

#[derive(Default)]
struct Label {
    config: String,
    /// Indices into `Parser::submenus`, outermost first.
    submenus: Vec<usize>,
    label: String,
    menu_label: Option<String>,
    kernel: Option<String>,
    /// Arguments written after the kernel on the `KERNEL` line.
    kernel_args: Vec<String>,
    not_linux: bool,
    initrd: Option<Vec<String>>,
    append: Option<String>,
    menu_default: bool,
    /// The COM32 module the label runs (`whichsys.c32`).
    module: Option<String>,
    /// The config file a `CONFIG` label loads.
    chain: Option<String>,
}

struct Parser<'r> {
    base: String,
    read: &'r mut dyn FnMut(&str) -> Option<String>,
    budget: ReadBudget,
    submenus: Vec<Submenu>,
    stack: Vec<usize>,
    labels: Vec<Label>,
    current: Option<Label>,
    global_append: Option<String>,
    default: Option<String>,
    ontimeout: Option<String>,
    depth: usize,
    /// (label, the default label of the config it loads) for each `CONFIG` label.
    chained_defaults: Vec<(String, String)>,
}

impl Parser<'_> {
    fn file(&mut self, path: &str) -> Result<(), MenuError> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Ok(());
        }
        let Some(text) = self.budget.read(self.read, path)? else {
            return Ok(());
        };
        self.depth += 1;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            let keyword = keyword.to_ascii_lowercase();
            match keyword.as_str() {
                "menu" => self.menu(rest, path)?,
                "text" => {
                    // TEXT HELP … ENDTEXT: free text, not commands.
                    for l in lines.by_ref() {
                        if split_word(l.trim()).0.eq_ignore_ascii_case("endtext") {
                            break;
                        }
                    }
                }
                "include" => {
                    let (file, _) = split_word(rest);
                    if !file.is_empty() {
                        let file = self.resolve(file);
                        self.file(&file)?;
                    }
                }
                "label" => {
                    self.finish_label();
                    self.count_item(path)?;
                    self.current = Some(Label {
                        config: path.to_string(),
                        submenus: self.stack.clone(),
                        label: rest.to_string(),
                        ..Label::default()
                    });
                }
                "default" => {
                    let (name, _) = split_word(rest);
                    // `DEFAULT vesamenu.c32` (old style) names the UI module, not a label.
                    if !name.is_empty() && !is_module(name) {
                        self.default = Some(name.to_string());
                    }
                }
                "ontimeout" => {
                    let (name, _) = split_word(rest);
                    if !name.is_empty() {
                        self.ontimeout = Some(name.to_string());
                    }
                }
                "kernel" | "linux" => {
                    if let Some(l) = self.current.as_mut() {
                        let mut words = rest.split_whitespace();
                        let k = words.next().unwrap_or("");
                        l.kernel = Some(k.to_string());
                        l.kernel_args = words.map(str::to_string).collect();
                        l.not_linux = k.is_empty() || is_module(k);
                        if is_module(k) {
                            l.module = Some(k.to_string());
                        }
                    }
                }
                "com32" => {
                    if let Some(l) = self.current.as_mut() {
                        l.module = Some(split_word(rest).0.to_string());
                        l.not_linux = true;
                    }
                }
                "config" => {
                    let file = self.resolve(split_word(rest).0);
                    if let Some(l) = self.current.as_mut() {
                        l.chain = Some(file);
                        l.not_linux = true;
                    }
                }
                "boot" | "bss" | "pxe" | "fdimage" | "comboot" | "localboot" => {
                    if let Some(l) = self.current.as_mut() {
                        l.not_linux = true;
                    }
                }
                "initrd" => {
                    if let Some(l) = self.current.as_mut() {
                        l.initrd = Some(
                            rest.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect(),
                        );
                    }
                }
                "append" => match self.current.as_mut() {
                    Some(l) => l.append = Some(rest.to_string()),
                    None => self.global_append = Some(rest.to_string()),
                },
                _ => {}
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn menu(&mut self, rest: &str, config: &str) -> Result<(), MenuError> {
        let (sub, arg) = split_word(rest);
        match sub.to_ascii_lowercase().as_str() {
            "label" => {
                let text = arg.replace('^', "");
                match self.current.as_mut() {
                    Some(l) => l.menu_label = Some(text),
                    None => {
                        if let Some(&i) = self.stack.last() {
                            self.submenus[i].label = Some(text);
                        }
                    }
                }
            }
            "default" => {
                if let Some(l) = self.current.as_mut() {
                    l.menu_default = true;
                }
            }
            "title" => {
                if self.current.is_none()
                    && let Some(&i) = self.stack.last()
                {
                    self.submenus[i].title = Some(arg.to_string());
                }
            }
            "begin" => {
                self.finish_label();
                self.push_submenu(arg.to_string(), config)?;
            }
            "end" => {
                self.finish_label();
                self.stack.pop();
            }
            "include" => {
                let (file, title) = split_word(arg);
                if file.is_empty() {
                    return Ok(());
                }
                let file = self.resolve(file);
                if title.is_empty() {
                    self.file(&file)?;
                } else {
                    self.finish_label();
                    self.push_submenu(String::new(), config)?;
                    let i = *self.stack.last().expect("just pushed");
                    self.submenus[i].title = Some(title.to_string());
                    self.file(&file)?;
                    self.finish_label();
                    self.stack.pop();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts a label or submenu against [`MAX_MENU_ITEMS`].
    fn count_item(&self, config: &str) -> Result<(), MenuError> {
        if self.labels.len() + self.submenus.len() >= MAX_MENU_ITEMS {
            return Err(MenuError::TooManyItems {
                config: config.to_string(),
            });
        }
        Ok(())
    }

    /// Opens a submenu; every later label records the open ones, so their nesting is bounded.
    fn push_submenu(&mut self, tag: String, config: &str) -> Result<(), MenuError> {
        self.count_item(config)?;
        if self.stack.len() >= MAX_MENU_DEPTH {
            return Err(MenuError::TooDeep {
                config: config.to_string(),
            });
        }
        self.submenus.push(Submenu {
            tag,
            title: None,
            label: None,
        });
        self.stack.push(self.submenus.len() - 1);
        Ok(())
    }

    fn finish_label(&mut self) {
        if let Some(l) = self.current.take() {
            self.labels.push(l);
        }
    }

    fn resolve(&self, path: &str) -> String {
        normalize_path(&self.base, path)
    }

    /// Reads the config each top-level `CONFIG` label loads, as a submenu named by the label
    /// (one level: a `CONFIG` inside such a file is not followed). The file's `DEFAULT` (or
    /// `ONTIMEOUT`) is what choosing the label boots; it does not replace the top's. Paths in
    /// it resolve against the same directory (the optional directory argument is not read).
    fn follow_configs(&mut self) -> Result<(), MenuError> {
        let chains: Vec<(String, Option<String>, String)> = self
            .labels
            .iter()
            .filter_map(|l| Some((l.label.clone(), l.menu_label.clone(), l.chain.clone()?)))
            .collect();
        for (label, title, file) in chains {
            let outer = (self.default.take(), self.ontimeout.take());
            self.push_submenu(label.clone(), &file)?;
            let i = *self.stack.last().expect("just pushed");
            // Named by the label (the file's MENU TITLE may be shared, as archiso's is).
            self.submenus[i].label = Some(title.unwrap_or_else(|| label.clone()));
            self.file(&file)?;
            self.finish_label();
            self.stack.pop();
            if let Some(inner) = self.ontimeout.take().or(self.default.take()) {
                self.chained_defaults.push((label, inner));
            }
            (self.default, self.ontimeout) = outer;
        }
        Ok(())
    }

    /// The label that choosing `name` ends up booting from a CD: `whichsys.c32`'s `-iso-`
    /// choice, and a `CONFIG` label's config's default (a few hops at most).
    fn boots(&self, name: &str) -> String {
        let mut name = name.to_string();
        for _ in 0..4 {
            let Some(l) = self
                .labels
                .iter()
                .find(|l| l.label == name && l.submenus.is_empty())
            else {
                break;
            };
            let whichsys = l
                .module
                .as_deref()
                .is_some_and(|m| m.rsplit('/').next() == Some("whichsys.c32"));
            let iso_choice = l.append.as_deref().and_then(|a| {
                let mut words = a.split_whitespace();
                words.by_ref().find(|w| *w == "-iso-")?;
                words.next()
            });
            if let (true, Some(choice)) = (whichsys, iso_choice) {
                name = choice.to_string();
            } else if let Some((_, inner)) = self.chained_defaults.iter().find(|(l, _)| *l == name)
            {
                name = inner.clone();
            } else {
                break;
            }
        }
        name
    }

    fn into_entries(self) -> Vec<BootEntry> {
        let labels: Vec<&Label> = self
            .labels
            .iter()
            .filter(|l| l.kernel.is_some() && !l.not_linux)
            .collect();
        // What boots unattended: ONTIMEOUT, else MENU DEFAULT of the top menu, else the
        // DEFAULT label, else the first MENU DEFAULT inside a submenu.
        let by_label = |name: &Option<String>| {
            let name = self.boots(name.as_deref()?);
            labels.iter().position(|l| l.label == name)
        };
        let default = by_label(&self.ontimeout)
            .or_else(|| {
                labels
                    .iter()
                    .position(|l| l.menu_default && l.submenus.is_empty())
            })
            .or_else(|| by_label(&self.default))
            .or_else(|| labels.iter().position(|l| l.menu_default));

        labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let kernel =
                    normalize_path(&self.base, tftp_root(l.kernel.as_deref().unwrap_or("")));
                let append = l
                    .append
                    .as_deref()
                    .or(self.global_append.as_deref())
                    .unwrap_or("");
                let append = if append.trim() == "-" { "" } else { append };
                let words = l
                    .kernel_args
                    .iter()
                    .map(String::as_str)
                    .chain(append.split_whitespace());
                let (append_initrd, args) = split_initrd_args(words);
                // An INITRD line is appended after APPEND by syslinux, so it wins.
                let initrd = l.initrd.clone().unwrap_or(append_initrd);
                BootEntry {
                    menu: MenuKind::Syslinux,
                    config: l.config.clone(),
                    path: l
                        .submenus
                        .iter()
                        .map(|&s| self.submenus[s].name())
                        .collect(),
                    label: Some(l.label.clone()),
                    title: l
                        .menu_label
                        .clone()
                        .filter(|t| !t.trim().is_empty())
                        .unwrap_or_else(|| l.label.clone()),
                    kernel,
                    initrd: initrd
                        .iter()
                        .map(|f| normalize_path(&self.base, tftp_root(f)))
                        .collect(),
                    cmdline: args.join(" "),
                    is_default: Some(i) == default,
                }
            })
            .collect()
    }
}

/// PXELINUX's `::/path` (the TFTP server's root) is the medium's root.
fn tftp_root(path: &str) -> &str {
    path.strip_prefix("::").unwrap_or(path)
}

/// First whitespace-separated word and the trimmed rest.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// COM32 modules, COMBOOT images and boot sectors are not Linux kernels.
fn is_module(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    [".c32", ".com", ".cbt", ".bin", ".bs", ".bss", ".0"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_files(main: &str, files: &[(&str, &str)]) -> Vec<BootEntry> {
        crate::image::parse_in_memory(parse, main, files).unwrap()
    }

    const NIXOS: &str = "\
SERIAL 0 115200
TIMEOUT 100
UI vesamenu.c32
MENU BACKGROUND /isolinux/background.png

DEFAULT boot

LABEL boot
MENU LABEL NixOS 24.11 Installer
LINUX /boot//nix/store/abc-linux-6.6/bzImage
APPEND init=/nix/store/def-nixos-system/init root=LABEL=nixos-minimal-24.11-x86_64 boot.shell_on_fail
INITRD /boot//nix/store/ghi-initrd-linux-6.6/initrd

MENU BEGIN Options

MENU BEGIN Serial console
MENU TITLE Serial console=ttyS0,115200n8
LABEL boot-serial
  MENU LABEL NixOS 24.11 Installer (serial console=ttyS0,115200n8)
  LINUX /boot//nix/store/abc-linux-6.6/bzImage
  APPEND init=/nix/store/def-nixos-system/init root=LABEL=nixos-minimal-24.11-x86_64 boot.shell_on_fail console=ttyS0,115200n8
  INITRD /boot//nix/store/ghi-initrd-linux-6.6/initrd
MENU END

MENU BEGIN Copy to RAM
LABEL boot-copytoram
  MENU LABEL NixOS 24.11 Installer (copytoram)
  LINUX /boot//nix/store/abc-linux-6.6/bzImage
  APPEND init=/nix/store/def-nixos-system/init copytoram
  INITRD /boot//nix/store/ghi-initrd-linux-6.6/initrd
MENU END

MENU END

LABEL hdt
MENU LABEL Hardware Detection Tool
COM32 hdt.c32

LABEL reboot
MENU LABEL Reboot
COM32 reboot.c32

LABEL poweroff
MENU LABEL Power Off
COM32 poweroff.c32
";

    #[test]
    fn nixos_nested_menus() {
        let e = parse_files(
            "/isolinux/isolinux.cfg",
            &[("/isolinux/isolinux.cfg", NIXOS)],
        );
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(e[0].label.as_deref(), Some("boot"));
        assert_eq!(e[0].title, "NixOS 24.11 Installer");
        assert!(e[0].is_default);
        assert!(e[0].path.is_empty());
        assert_eq!(e[0].kernel, "/boot/nix/store/abc-linux-6.6/bzImage");
        assert_eq!(e[0].initrd, ["/boot/nix/store/ghi-initrd-linux-6.6/initrd"]);
        assert_eq!(e[0].config, "/isolinux/isolinux.cfg");
        assert_eq!(e[0].menu, MenuKind::Syslinux);

        let serial = &e[1];
        assert_eq!(serial.label.as_deref(), Some("boot-serial"));
        assert_eq!(serial.path, ["Options", "Serial console=ttyS0,115200n8"]);
        assert!(
            serial
                .cmdline
                .ends_with("boot.shell_on_fail console=ttyS0,115200n8")
        );
        assert!(!serial.is_default);
        assert_eq!(serial.kernel, "/boot/nix/store/abc-linux-6.6/bzImage");

        // A MENU BEGIN without MENU TITLE is named by its tag.
        assert_eq!(e[2].path, ["Options", "Copy to RAM"]);
    }

    #[test]
    fn debian_mini_iso_includes() {
        let isolinux = "\
# D-I config version 2.0
# search path for the c32 support libraries (libcom32, libutil etc.)
path 
include menu.cfg
default vesamenu.c32
prompt 0
timeout 0
";
        let menu = "\
menu hshift 4
menu width 70

menu title Debian GNU/Linux installer menu (BIOS mode)
include stdmenu.cfg
include txt.cfg
menu begin advanced
    menu label ^Advanced options
	menu title Advanced options
	include stdmenu.cfg
	label mainmenu
		menu label ^Back..
		menu exit
	include adtxt.cfg
menu end
label help
	menu label ^Help
	text help
   Display help screens; type 'menu' at boot prompt to return to this menu
	endtext
	config prompt.cfg
";
        let txt = "\
default install
label install
	menu label ^Install
	menu default
	kernel linux
	append vga=788 initrd=initrd.gz --- quiet 
";
        let adtxt = "\
label expert
	menu label E^xpert install
	kernel linux
	append priority=low vga=788 initrd=initrd.gz --- 
label rescue
	menu label ^Rescue mode
	kernel linux
	append vga=788 initrd=initrd.gz rescue/enable=true --- quiet 
label auto
	menu label ^Automated install
	kernel linux
	append auto=true priority=critical vga=788 initrd=initrd.gz --- quiet 
";
        let stdmenu = "menu background splash.png\nmenu color title * #FFFFFFFF *\n";
        let e = parse_files(
            "/isolinux.cfg",
            &[
                ("/isolinux.cfg", isolinux),
                ("/menu.cfg", menu),
                ("/txt.cfg", txt),
                ("/adtxt.cfg", adtxt),
                ("/stdmenu.cfg", stdmenu),
            ],
        );
        let labels: Vec<_> = e.iter().map(|e| e.label.clone().unwrap()).collect();
        assert_eq!(labels, ["install", "expert", "rescue", "auto"]);
        let install = &e[0];
        assert_eq!(install.title, "Install");
        assert_eq!(install.kernel, "/linux");
        assert_eq!(install.initrd, ["/initrd.gz"]);
        assert_eq!(install.cmdline, "vga=788 --- quiet");
        assert_eq!(install.config, "/txt.cfg");
        assert!(install.is_default);
        assert!(install.path.is_empty());
        let expert = &e[1];
        assert_eq!(expert.path, ["Advanced options"]);
        assert_eq!(expert.title, "Expert install");
        assert_eq!(expert.cmdline, "priority=low vga=788 ---");
        assert!(!expert.is_default);
        assert_eq!(e.iter().filter(|e| e.is_default).count(), 1);
    }

    #[test]
    fn debian_default_without_menu_default() {
        let cfg = "default install\nlabel other\n kernel linux\nlabel install\n kernel linux\n";
        let e = parse_files("/isolinux/isolinux.cfg", &[("/isolinux/isolinux.cfg", cfg)]);
        assert!(!e[0].is_default);
        assert!(e[1].is_default);
        // Relative to the config's directory.
        assert_eq!(e[1].kernel, "/isolinux/linux");
    }

    /// archiso's releng menus as mkarchiso writes them onto the ISO: `DEFAULT select` runs
    /// whichsys.c32, whose `-iso-` choice `sys` loads archiso_sys.cfg (`DEFAULT arch`).
    #[test]
    fn archiso_whichsys_and_config_labels() {
        let guest = |name: &str| {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/guest")
                    .join(name),
            )
            .unwrap();
            text.replace("%ARCH%", "x86_64")
                .replace("%INSTALL_DIR%", "arch")
                .replace("%ARCHISO_UUID%", "2026-12-01-07-54-12-00")
        };
        let names = [
            "archiso_head.cfg",
            "archiso_sys.cfg",
            "archiso_sys-linux.cfg",
            "archiso_pxe.cfg",
            "archiso_pxe-linux.cfg",
            "archiso_tail.cfg",
        ];
        let mut files = vec![(
            "/boot/syslinux/syslinux.cfg".to_string(),
            guest("archiso-syslinux.cfg"),
        )];
        files.extend(
            names
                .iter()
                .map(|n| (format!("/boot/syslinux/{n}"), guest(n))),
        );
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let e = parse_files("/boot/syslinux/syslinux.cfg", &files);
        let labels: Vec<&str> = e.iter().filter_map(|e| e.label.as_deref()).collect();
        // memtest86+ boots by the Linux protocol: an entry in both menus.
        assert_eq!(
            labels,
            [
                "arch_nbd",
                "arch_nfs",
                "arch_http",
                "memtest",
                "arch",
                "archspeech",
                "memtest"
            ]
        );
        let default: Vec<&BootEntry> = e.iter().filter(|e| e.is_default).collect();
        assert_eq!(default.len(), 1);
        let arch = default[0];
        assert_eq!(arch.label.as_deref(), Some("arch"));
        assert_eq!(arch.path, ["sys"]);
        assert_eq!(arch.title, "Arch Linux install medium (x86_64, BIOS)");
        assert_eq!(arch.kernel, "/arch/boot/x86_64/vmlinuz-linux");
        assert_eq!(arch.initrd, ["/arch/boot/x86_64/initramfs-linux.img"]);
        assert_eq!(
            arch.cmdline,
            "archisobasedir=arch archisosearchuuid=2026-12-01-07-54-12-00"
        );
        // PXELINUX's ::/ is the root.
        assert_eq!(e[0].kernel, "/arch/boot/x86_64/vmlinuz-linux");
        assert_eq!(e[0].path, ["pxe"]);
    }

    #[test]
    fn alpine() {
        let cfg = "\
SERIAL 0 115200
TIMEOUT 10
PROMPT 1
DEFAULT virt

LABEL virt
MENU LABEL Linux virt
KERNEL /boot/vmlinuz-virt
INITRD /boot/initramfs-virt
FDTDIR /boot/dtbs-virt
APPEND modules=loop,squashfs,sd-mod,usb-storage quiet
";
        let e = parse_files(
            "/boot/syslinux/syslinux.cfg",
            &[("/boot/syslinux/syslinux.cfg", cfg)],
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kernel, "/boot/vmlinuz-virt");
        assert_eq!(e[0].initrd, ["/boot/initramfs-virt"]);
        assert_eq!(
            e[0].cmdline,
            "modules=loop,squashfs,sd-mod,usb-storage quiet"
        );
        assert_eq!(e[0].title, "Linux virt");
        assert!(e[0].is_default);
    }

    #[test]
    fn relative_paths_initrd_lists_and_keywords() {
        let cfg = "\
# comment
UI menu.c32
menu title Main
include sub/extra.cfg
Label one
  Kernel ../kernels/vmlinuz extra=1
  InitRD ../a.img, b.img
  Append -
LABEL two
  LINUX ./vmlinuz
  APPEND initrd=x.img,/abs/y.img  quiet  initrd=z.img splash
LABEL three
  LINUX vmlinuz
LABEL mem
  KERNEL memdisk.bin
LABEL hd
  LOCALBOOT 0
LABEL chain
  COM32 chain.c32
  APPEND hd0
LABEL nothing
  MENU LABEL Nothing to boot
";
        let extra = "LABEL inc\n  KERNEL vmlinuz\n  APPEND from=include\n";
        let e = parse_files(
            "/boot/isolinux/isolinux.cfg",
            &[
                ("/boot/isolinux/isolinux.cfg", cfg),
                // INCLUDEd files resolve against the top config's directory too.
                ("/boot/isolinux/sub/extra.cfg", extra),
            ],
        );
        let labels: Vec<_> = e.iter().map(|e| e.label.clone().unwrap()).collect();
        assert_eq!(labels, ["inc", "one", "two", "three"]);
        assert_eq!(e[0].kernel, "/boot/isolinux/vmlinuz");
        assert_eq!(e[0].config, "/boot/isolinux/sub/extra.cfg");
        assert_eq!(e[1].kernel, "/boot/kernels/vmlinuz");
        assert_eq!(e[1].initrd, ["/boot/a.img", "/boot/isolinux/b.img"]);
        assert_eq!(e[1].cmdline, "extra=1");
        assert_eq!(e[1].title, "one");
        // The last initrd= wins, like syslinux's linux.c32.
        assert_eq!(e[2].initrd, ["/boot/isolinux/z.img"]);
        assert_eq!(e[2].cmdline, "quiet splash");
        assert_eq!(e[2].kernel, "/boot/isolinux/vmlinuz");
        assert!(e[3].initrd.is_empty());
        assert_eq!(e[3].cmdline, "");
        // No DEFAULT: nothing is marked.
        assert!(e.iter().all(|e| !e.is_default));
    }

    #[test]
    fn global_append_ontimeout_and_menu_include() {
        let cfg = "\
DEFAULT first
ONTIMEOUT second
APPEND global=1
LABEL first
  KERNEL /vmlinuz
LABEL second
  KERNEL /vmlinuz
  APPEND own=1
MENU INCLUDE /extra.cfg Extra things
LABEL after
  KERNEL /vmlinuz
";
        let extra = "LABEL x\n MENU LABEL ^X marks\n KERNEL /x\n";
        let e = parse_files(
            "/syslinux.cfg",
            &[("/syslinux.cfg", cfg), ("/extra.cfg", extra)],
        );
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].cmdline, "global=1");
        assert!(!e[0].is_default);
        assert_eq!(e[1].cmdline, "own=1");
        assert!(e[1].is_default);
        assert_eq!(e[2].path, ["Extra things"]);
        assert_eq!(e[2].title, "X marks");
        assert!(e[3].path.is_empty());
    }

    #[test]
    fn include_loops_and_missing_files_are_harmless() {
        let cfg = "INCLUDE /syslinux.cfg\nINCLUDE missing.cfg\nLABEL a\n KERNEL /k\n";
        let e = parse_files("/syslinux.cfg", &[("/syslinux.cfg", cfg)]);
        // The self-include is cut off at the nesting limit; each level defines `a` once.
        assert!(!e.is_empty());
        assert!(e.iter().all(|e| e.kernel == "/k"));
        assert!(parse_files("/nope.cfg", &[]).is_empty());
    }

    fn limited(cfg: &str) -> MenuError {
        let files = [("/isolinux/isolinux.cfg", cfg)];
        crate::image::parse_in_memory(parse, "/isolinux/isolinux.cfg", &files).unwrap_err()
    }

    #[test]
    fn deeply_nested_menus_are_an_error() {
        // Every label records the menus around it: unbounded, 50,000 levels and labels
        // would take gigabytes.
        let cfg = "menu begin m\nlabel l\nkernel /k\n".repeat(50_000);
        let e = limited(&cfg);
        assert_eq!(
            e.to_string(),
            "/isolinux/isolinux.cfg: menus, blocks and includes nest deeper than 64 levels"
        );
    }

    #[test]
    fn too_many_labels_and_self_includes_are_bounded() {
        let cfg = "label l\nkernel /k\n".repeat(10_001);
        assert!(matches!(limited(&cfg), MenuError::TooManyItems { .. }));
        let cfg = "include isolinux.cfg\ninclude isolinux.cfg\n";
        assert!(matches!(limited(cfg), MenuError::TooLarge { .. }));
    }
}
