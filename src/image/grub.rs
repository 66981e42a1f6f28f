//! GRUB configs (`grub.cfg` and what it `source`s or `configfile`s).
//!
//! This is not a GRUB script interpreter; it reads menus the way distributions write them:
//! `menuentry`/`submenu` blocks (nested), `linux`/`linuxefi`/`linux16`,
//! `initrd`/`initrdefi`/`initrd16`, `set var=value` with `$var`/`${var}` expansion (unknown
//! variables are empty, device prefixes like `($root)/` or `(cd0)/` are dropped), quoting and
//! escapes, line continuations, `set default=N|title|id|"1>2"`, `configfile`/`source`.
//! Conditions of `if`/`while` are not evaluated: every branch is read, in order. A
//! `menuentry` whose body `configfile`s another config becomes a submenu of that config's
//! entries.

use std::collections::HashMap;

use super::{
    BootEntry, MAX_EXPANDED_BYTES, MAX_MENU_DEPTH, MAX_MENU_ITEMS, MAX_VARIABLE_BYTES, MenuError,
    MenuKind, ReadBudget, VARIABLE_OVERHEAD, normalize_path, parent_dir, split_initrd_args,
};

mod lex;

use lex::{Cmd, Piece, Word, lex, parse_cmds};

/// Nesting limit for `source`/`configfile`.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Parse the GRUB config at `config_path`; `read` returns a file's text (the config itself
/// and anything it sources), or `None` when it does not exist. A config past the bounds of
/// [`super`] (nesting, size, entries, variables) is an error.
pub fn parse(
    config_path: &str,
    read: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Vec<BootEntry>, MenuError> {
    let config_path = normalize_path("/", config_path);
    let mut p = Parser {
        read,
        budget: ReadBudget::default(),
        entries: Vec::new(),
        depth: 0,
        nesting: 0,
        items: 0,
        expand_left: MAX_EXPANDED_BYTES,
    };
    let mut vars = Vars::default();
    let dir = parent_dir(&config_path);
    vars.set("prefix", dir.clone(), &config_path)?;
    vars.set("config_directory", dir, &config_path)?;
    let mut items = Vec::new();
    let mut target = Target::Menu {
        items: &mut items,
        path: Vec::new(),
    };
    p.file(&config_path, &mut vars, &mut target)?;

    // GRUB boots `default` (an index, title or id, `>`-separated through submenus), else
    // the first item.
    let spec = vars.get("default").trim();
    let chosen = resolve_default(&items, spec).or_else(|| resolve_default(&items, "0"));
    if let Some(i) = chosen {
        p.entries[i].is_default = true;
    }
    Ok(p.entries)
}

/// The variables of a scope, with their size against [`MAX_VARIABLE_BYTES`].
#[derive(Debug, Clone, Default)]
struct Vars {
    map: HashMap<String, String>,
    bytes: usize,
}

impl Vars {
    /// A variable's value; unknown variables are empty.
    fn get(&self, name: &str) -> &str {
        self.map.get(name).map_or("", String::as_str)
    }

    fn set(&mut self, name: &str, value: String, config: &str) -> Result<(), MenuError> {
        let old = self.map.get(name).map_or(0, |v| cost(name, v));
        let bytes = self.bytes - old + cost(name, &value);
        if bytes > MAX_VARIABLE_BYTES {
            return Err(MenuError::VariablesTooLarge {
                config: config.to_string(),
                name: name.chars().take(64).collect(),
            });
        }
        self.bytes = bytes;
        self.map.insert(name.to_string(), value);
        Ok(())
    }

    fn remove(&mut self, name: &str) {
        if let Some(value) = self.map.remove(name) {
            self.bytes -= cost(name, &value);
        }
    }
}

fn cost(name: &str, value: &str) -> usize {
    name.len() + value.len() + VARIABLE_OVERHEAD
}

/// Takes `n` bytes from what expansion may still produce; `None` once that is spent.
fn spend(left: &mut usize, n: usize) -> Option<()> {
    *left = left.checked_sub(n)?;
    Some(())
}

/// Expand a word into fields: unquoted variables split on whitespace, like GRUB does.
/// `None` when the text would exceed what is `left` of the expansion budget.
fn expand(word: &Word, vars: &Vars, left: &mut usize) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut valid = false;
    for p in word {
        match p {
            Piece::Lit(l) => {
                spend(left, l.len())?;
                cur.push_str(l);
                valid = true;
            }
            Piece::Var { name, quoted: true } => {
                let value = vars.get(name);
                spend(left, value.len())?;
                cur.push_str(value);
                valid = true;
            }
            Piece::Var {
                name,
                quoted: false,
            } => {
                let value = vars.get(name);
                spend(left, value.len())?;
                if value.starts_with(char::is_whitespace) && valid {
                    fields.push(std::mem::take(&mut cur));
                    valid = false;
                }
                for (n, part) in value.split_whitespace().enumerate() {
                    if n > 0 {
                        fields.push(std::mem::take(&mut cur));
                    }
                    cur.push_str(part);
                    valid = true;
                }
                if value.ends_with(char::is_whitespace) && valid {
                    fields.push(std::mem::take(&mut cur));
                    valid = false;
                }
            }
        }
    }
    if valid {
        fields.push(cur);
    }
    Some(fields)
}

/// Expand a word without splitting (for `set`).
fn expand_joined(word: &Word, vars: &Vars, left: &mut usize) -> Option<String> {
    let mut out = String::new();
    for p in word {
        let text = match p {
            Piece::Lit(l) => l.as_str(),
            Piece::Var { name, .. } => vars.get(name),
        };
        spend(left, text.len())?;
        out.push_str(text);
    }
    Some(out)
}

/// A path on the ISO: `($root)/x`, `(cd0)/x`, `(hd0,msdos1)/x` → `/x`, normalized.
fn iso_path(s: &str) -> String {
    let mut rest = s;
    if rest.starts_with('(') {
        let mut depth = 0usize;
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        rest = &rest[i + 1..];
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    normalize_path("/", rest)
}

/// `menuentry`/`submenu` arguments → (title, id). Options may come before or after the title.
fn title_and_id(args: &[String]) -> (String, Option<String>) {
    let mut title = None;
    let mut id = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(opt) = a.strip_prefix("--") {
            match opt.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(_) => {}
                None if matches!(opt, "class" | "users" | "hotkey" | "id") => {
                    if opt == "id" {
                        id = args.get(i + 1).cloned();
                    }
                    i += 1;
                }
                None => {}
            }
        } else if title.is_none() {
            title = Some(a.clone());
        }
        i += 1;
    }
    (title.unwrap_or_default(), id)
}

/// A kernel argument as it goes on the command line (quoted if it holds whitespace).
fn cmdline_arg(a: &str) -> String {
    if a.contains(char::is_whitespace) && !a.contains('"') {
        match a.split_once('=') {
            Some((k, v)) if !k.contains(char::is_whitespace) => format!("{k}=\"{v}\""),
            _ => format!("\"{a}\""),
        }
    } else {
        a.to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Executing

/// A menu item, bootable or not, as GRUB counts them for `default`.
enum Item {
    Entry {
        title: String,
        id: Option<String>,
        /// Index into the parsed entries, for Linux entries.
        entry: Option<usize>,
    },
    Submenu {
        title: String,
        id: Option<String>,
        items: Vec<Item>,
    },
}

impl Item {
    fn matches(&self, key: &str) -> bool {
        let (Item::Entry { title, id, .. } | Item::Submenu { title, id, .. }) = self;
        title == key || id.as_deref() == Some(key)
    }
}

fn resolve_default(items: &[Item], spec: &str) -> Option<usize> {
    let mut level = items;
    let mut parts = spec.split('>').peekable();
    while let Some(part) = parts.next() {
        let part = part.trim();
        let item = match part.parse::<usize>() {
            Ok(n) => level.get(n),
            Err(_) => level.iter().find(|it| it.matches(part)),
        }?;
        match item {
            Item::Entry { entry, .. } => return if parts.peek().is_none() { *entry } else { None },
            Item::Submenu { items, .. } => level = items,
        }
    }
    None
}

#[derive(Default)]
struct Body {
    kernel: Option<String>,
    args: Vec<String>,
    initrd: Option<Vec<String>>,
    configfile: Option<String>,
}

enum Target<'a> {
    Menu {
        items: &'a mut Vec<Item>,
        path: Vec<String>,
    },
    Entry(&'a mut Body),
}

struct Parser<'r> {
    read: &'r mut dyn FnMut(&str) -> Option<String>,
    budget: ReadBudget,
    entries: Vec<BootEntry>,
    /// `source`/`configfile` nesting, against [`MAX_INCLUDE_DEPTH`].
    depth: usize,
    /// Blocks and includes being executed, against [`MAX_MENU_DEPTH`].
    nesting: usize,
    /// Menu items so far, against [`MAX_MENU_ITEMS`].
    items: usize,
    /// What variable expansion may still produce ([`MAX_EXPANDED_BYTES`]).
    expand_left: usize,
}

impl Parser<'_> {
    fn file(&mut self, path: &str, vars: &mut Vars, target: &mut Target) -> Result<(), MenuError> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Ok(());
        }
        let Some(text) = self.budget.read(self.read, path)? else {
            return Ok(());
        };
        let cmds = parse_cmds(&lex(&text)).ok_or_else(|| too_deep(path))?;
        self.depth += 1;
        let done = self.exec(&cmds, path, vars, target);
        self.depth -= 1;
        done
    }

    /// Runs a file's commands or a block's, one nesting level deeper.
    fn exec(
        &mut self,
        cmds: &[Cmd],
        config: &str,
        vars: &mut Vars,
        target: &mut Target,
    ) -> Result<(), MenuError> {
        if self.nesting >= MAX_MENU_DEPTH {
            return Err(too_deep(config));
        }
        self.nesting += 1;
        let done = cmds.iter().try_for_each(|cmd| {
            self.exec_one(&cmd.words, cmd.block.as_deref(), config, vars, target)
        });
        self.nesting -= 1;
        done
    }

    /// Expands words into arguments, within the expansion budget.
    fn args(
        &mut self,
        words: &[Word],
        vars: &Vars,
        config: &str,
    ) -> Result<Vec<String>, MenuError> {
        let mut out = Vec::new();
        for w in words {
            out.extend(expand(w, vars, &mut self.expand_left).ok_or_else(|| too_much(config))?);
        }
        Ok(out)
    }

    fn joined(&mut self, word: &Word, vars: &Vars, config: &str) -> Result<String, MenuError> {
        expand_joined(word, vars, &mut self.expand_left).ok_or_else(|| too_much(config))
    }

    fn exec_one(
        &mut self,
        words: &[Word],
        block: Option<&[Cmd]>,
        config: &str,
        vars: &mut Vars,
        target: &mut Target,
    ) -> Result<(), MenuError> {
        // Conditions are not evaluated; what follows `then`/`else`/`do` is a command.
        let mut words = words;
        let name = loop {
            let Some(first) = words.first() else {
                return match block {
                    Some(b) => self.exec(b, config, vars, target),
                    None => Ok(()),
                };
            };
            let name = self.joined(first, vars, config)?;
            if !matches!(name.as_str(), "then" | "else" | "do") {
                break name;
            }
            words = &words[1..];
        };
        match name.as_str() {
            "if" | "elif" | "while" | "until" | "for" | "fi" | "done" | "function"
            | "hiddenentry" => {}
            "set" => {
                for w in &words[1..] {
                    let s = self.joined(w, vars, config)?;
                    if let Some((k, v)) = s.split_once('=') {
                        vars.set(k, v.to_string(), config)?;
                    }
                }
            }
            "unset" => {
                for a in self.args(&words[1..], vars, config)? {
                    vars.remove(&a);
                }
            }
            "source" | "." | "configfile" => {
                let args = self.args(&words[1..], vars, config)?;
                let Some(file) = args.first().map(|f| iso_path(f)) else {
                    return Ok(());
                };
                match target {
                    Target::Entry(body) if name == "configfile" => body.configfile = Some(file),
                    _ => self.file(&file, vars, target)?,
                }
            }
            "menuentry" | "submenu" => {
                let Target::Menu { items, path } = target else {
                    return Ok(());
                };
                self.items += 1;
                if self.items > MAX_MENU_ITEMS {
                    return Err(MenuError::TooManyItems {
                        config: config.to_string(),
                    });
                }
                let (title, id) = title_and_id(&self.args(&words[1..], vars, config)?);
                let block = block.unwrap_or(&[]);
                let mut inner = vars.clone();
                let mut sub_path = path.clone();
                sub_path.push(title.clone());
                if name == "submenu" {
                    let mut sub = Vec::new();
                    let mut t = Target::Menu {
                        items: &mut sub,
                        path: sub_path,
                    };
                    self.exec(block, config, &mut inner, &mut t)?;
                    items.push(Item::Submenu {
                        title,
                        id,
                        items: sub,
                    });
                    return Ok(());
                }
                let mut body = Body::default();
                self.exec(block, config, &mut inner, &mut Target::Entry(&mut body))?;
                if let Some(file) = body.configfile.filter(|_| body.kernel.is_none()) {
                    // An entry that loads another config is a submenu of that config.
                    let mut sub = Vec::new();
                    let mut t = Target::Menu {
                        items: &mut sub,
                        path: sub_path,
                    };
                    self.file(&file, &mut inner, &mut t)?;
                    items.push(Item::Submenu {
                        title,
                        id,
                        items: sub,
                    });
                    return Ok(());
                }
                let entry = body.kernel.map(|kernel| {
                    let arg_refs = body.args.iter().map(String::as_str);
                    let (arg_initrd, rest) = split_initrd_args(arg_refs);
                    self.entries.push(BootEntry {
                        menu: MenuKind::Grub,
                        config: config.to_string(),
                        path: path.clone(),
                        label: None,
                        title: title.clone(),
                        kernel: iso_path(&kernel),
                        initrd: body
                            .initrd
                            .unwrap_or(arg_initrd)
                            .iter()
                            .map(|f| iso_path(f))
                            .collect(),
                        cmdline: rest
                            .iter()
                            .filter(|a| !a.is_empty())
                            .map(|a| cmdline_arg(a))
                            .collect::<Vec<_>>()
                            .join(" "),
                        is_default: false,
                    });
                    self.entries.len() - 1
                });
                items.push(Item::Entry { title, id, entry });
            }
            "linux" | "linuxefi" | "linux16" => {
                if let Target::Entry(body) = target {
                    let mut a = self.args(&words[1..], vars, config)?.into_iter();
                    body.kernel = a.next();
                    body.args = a.collect();
                }
            }
            "initrd" | "initrdefi" | "initrd16" => {
                if let Target::Entry(body) = target {
                    body.initrd = Some(
                        self.args(&words[1..], vars, config)?
                            .into_iter()
                            .filter(|a| !a.starts_with("--"))
                            .collect(),
                    );
                }
            }
            _ => {
                // `name=value` without `set`.
                if words.len() == 1
                    && let Some((k, v)) = name.split_once('=')
                    && !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    vars.set(k, v.to_string(), config)?;
                }
            }
        }
        Ok(())
    }
}

fn too_deep(config: &str) -> MenuError {
    MenuError::TooDeep {
        config: config.to_string(),
    }
}

fn too_much(config: &str) -> MenuError {
    MenuError::ExpansionTooLarge {
        config: config.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::lex::Tok;
    use super::*;

    fn parse_files(main: &str, files: &[(&str, &str)]) -> Vec<BootEntry> {
        crate::image::parse_in_memory(parse, main, files).unwrap()
    }

    fn one(cfg: &str) -> Vec<BootEntry> {
        parse_files("/boot/grub/grub.cfg", &[("/boot/grub/grub.cfg", cfg)])
    }

    const NIXOS: &str = r#"
set textmode=false
search --set=root --file /EFI/nixos-iso.uuid

insmod gfxterm
insmod png
set gfxpayload=keep
set gfxmode=auto

# Fallback to UEFI console for boot, efifb sometimes has difficulties.
if [ "$textmode" == "false" ]; then
  terminal_output gfxterm
  loadfont (\$root)/EFI/BOOT/unicode.pf2
fi

hiddenentry 'Text mode' --hotkey 't' {
  loadfont (\$root)/EFI/BOOT/unicode.pf2
  set textmode=true
  terminal_output console
}

set timeout=10
clear
# This message will only be viewable on the default (UEFI) console.
echo ""
echo "Loading graphical boot menu..."

menuentry 'NixOS 24.11 Installer ' --class installer {
  # Fallback to UEFI console for boot, efifb sometimes has difficulties.
  terminal_output console

  linux /boot/nix/store/abc-linux-6.6/bzImage ${isoboot} init=/nix/store/def-nixos-system/init root=LABEL=nixos-minimal-24.11-x86_64 boot.shell_on_fail
  initrd /boot/nix/store/ghi-initrd-linux-6.6/initrd
}

submenu "HiDPI, Quirks and Accessibility" --class hidpi --class submenu {
  menuentry 'NixOS 24.11 Installer (nomodeset)' --class nomodeset {
    linux /boot/nix/store/abc-linux-6.6/bzImage init=/nix/store/def-nixos-system/init nomodeset
    initrd /boot/nix/store/ghi-initrd-linux-6.6/initrd
  }
}

submenu "Options" --class submenu {
  submenu "Serial console=ttyS0,115200n8" --class serial {
    menuentry 'NixOS 24.11 Installer (serial console=ttyS0,115200n8)' --class serial {
      linux /boot/nix/store/abc-linux-6.6/bzImage init=/nix/store/def-nixos-system/init console=ttyS0,115200n8
      initrd /boot/nix/store/ghi-initrd-linux-6.6/initrd
    }
  }
}

menuentry 'Firmware Setup' --class settings {
  fwsetup
  clear
  echo ""
  echo "If you see this message, your EFI system doesn't support this feature."
  echo ""
}
menuentry 'Shutdown' --class shutdown {
  halt
}
"#;

    #[test]
    fn nixos_efi_nested_submenus() {
        let e = parse_files("/EFI/BOOT/grub.cfg", &[("/EFI/BOOT/grub.cfg", NIXOS)]);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(e[0].title, "NixOS 24.11 Installer ");
        assert!(e[0].is_default);
        assert_eq!(e[0].kernel, "/boot/nix/store/abc-linux-6.6/bzImage");
        assert_eq!(
            e[0].cmdline,
            "init=/nix/store/def-nixos-system/init root=LABEL=nixos-minimal-24.11-x86_64 boot.shell_on_fail"
        );
        assert_eq!(e[0].label, None);
        assert_eq!(e[0].menu, MenuKind::Grub);
        assert_eq!(e[0].config, "/EFI/BOOT/grub.cfg");
        assert_eq!(e[1].path, ["HiDPI, Quirks and Accessibility"]);
        let serial = &e[2];
        assert_eq!(serial.path, ["Options", "Serial console=ttyS0,115200n8"]);
        assert_eq!(
            serial.initrd,
            ["/boot/nix/store/ghi-initrd-linux-6.6/initrd"]
        );
        assert!(serial.cmdline.ends_with("console=ttyS0,115200n8"));
        assert!(!serial.is_default);
    }

    #[test]
    fn ubuntu_style() {
        let cfg = r#"
set timeout=30

loadfont unicode

set menu_color_normal=white/black
set menu_color_highlight=black/light-gray

menuentry "Try or Install Ubuntu Server" {
	set gfxpayload=keep
	linux	/casper/vmlinuz  ---
	initrd	/casper/initrd
}
menuentry "Ubuntu Server with the HWE kernel" {
	set gfxpayload=keep
	linux	/casper/hwe-vmlinuz  ---
	initrd	/casper/hwe-initrd
}
grub_platform
if [ "$grub_platform" = "efi" ]; then
menuentry 'Boot from next volume' {
	exit 1
}
menuentry 'UEFI Firmware Settings' {
	fwsetup
}
else
menuentry 'Test memory' {
	linux16 /boot/memtest86+x64.bin
}
fi
"#;
        let e = one(cfg);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].title, "Try or Install Ubuntu Server");
        assert_eq!(e[0].kernel, "/casper/vmlinuz");
        assert_eq!(e[0].initrd, ["/casper/initrd"]);
        assert_eq!(e[0].cmdline, "---");
        assert!(e[0].is_default);
        assert_eq!(e[1].kernel, "/casper/hwe-vmlinuz");
        // Entries inside `if` blocks are read too.
        assert_eq!(e[2].title, "Test memory");
        assert_eq!(e[2].kernel, "/boot/memtest86+x64.bin");
    }

    #[test]
    fn arch_style_variables() {
        let cfg = r#"
insmod part_gpt
if loadfont "${prefix}/fonts/unicode.pf2" ; then
    insmod all_video
    set gfxmode="auto"
    terminal_output gfxterm
fi

if [ -z "${ARCHISO_UUID}" ]; then
    search --no-floppy --set=root --file '/boot/2024-05-01-11-11-11-00.uuid'
    set archiso_search='archisosearchuuid=2024-05-01-11-11-11-00'
fi

set default="arch"
set timeout=15
set timeout_style="menu"

menuentry "Arch Linux install medium (x86_64, UEFI)" --class arch --class gnu-linux --class gnu --class os --id 'archlinux' {
    set gfxpayload=keep
    linux /arch/boot/x86_64/vmlinuz-linux archisobasedir=arch ${archiso_search}
    initrd /arch/boot/x86_64/initramfs-linux.img
}

menuentry "Arch Linux install medium with speakup screen reader (x86_64, UEFI)" --hotkey s --class arch --class gnu-linux --class gnu --class os --id 'archlinux-accessibility' {
    set gfxpayload=keep
    linux ($root)/arch/boot/x86_64/vmlinuz-linux archisobasedir=arch $archiso_search accessibility=on
    initrd /arch/boot/x86_64/intel-ucode.img /arch/boot/x86_64/amd-ucode.img (cd0)/arch/boot/x86_64/initramfs-linux.img
}
set default=archlinux-accessibility
"#;
        let e = one(cfg);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].cmdline,
            "archisobasedir=arch archisosearchuuid=2024-05-01-11-11-11-00"
        );
        assert_eq!(e[1].kernel, "/arch/boot/x86_64/vmlinuz-linux");
        assert_eq!(
            e[1].initrd,
            [
                "/arch/boot/x86_64/intel-ucode.img",
                "/arch/boot/x86_64/amd-ucode.img",
                "/arch/boot/x86_64/initramfs-linux.img"
            ]
        );
        assert_eq!(
            e[1].cmdline,
            "archisobasedir=arch archisosearchuuid=2024-05-01-11-11-11-00 accessibility=on"
        );
        // The last `set default` wins, by --id.
        assert!(!e[0].is_default);
        assert!(e[1].is_default);
    }

    #[test]
    fn quoting_escapes_and_continuations() {
        let cfg = r#"set base=/boot
set params="quiet splash"
menuentry "Say \"hi\" \$HOME" 'it''s' {
  linux ${base}/vmlinuz\ x $params "$params" 'lit $params' a\ b \
     continued=1 ; initrd $base/initrd.img
}
menuentry Bare\ word --class x {
  linux /k
}
menuentry Empty { linux /k "" x$undefined y }
"#;
        let e = one(cfg);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(e[0].title, "Say \"hi\" $HOME");
        assert_eq!(e[0].kernel, "/boot/vmlinuz x");
        assert_eq!(
            e[0].cmdline,
            r#"quiet splash "quiet splash" "lit $params" "a b" continued=1"#
        );
        assert_eq!(e[0].initrd, ["/boot/initrd.img"]);
        assert_eq!(e[1].title, "Bare word");
        // Empty arguments vanish; unknown variables are empty.
        assert_eq!(e[2].cmdline, "x y");
    }

    #[test]
    fn default_by_index_title_and_submenu_path() {
        let cfg = |d: &str| {
            format!(
                r#"set default={d}
menuentry "zero" {{ linux /0 }}
submenu "sub" --id subid {{
  menuentry "s0" {{ linux /s0 }}
  menuentry "s1" --id s1id {{ linux /s1 }}
}}
menuentry "two" {{ linux /2 }}
"#
            )
        };
        let default_of = |d: &str| {
            let e = one(&cfg(d));
            let d: Vec<_> = e
                .iter()
                .filter(|e| e.is_default)
                .map(|e| e.kernel.clone())
                .collect();
            d
        };
        assert_eq!(default_of("0"), ["/0"]);
        assert_eq!(default_of("2"), ["/2"]);
        assert_eq!(default_of("\"two\""), ["/2"]);
        assert_eq!(default_of("\"1>1\""), ["/s1"]);
        assert_eq!(default_of("'sub>s0'"), ["/s0"]);
        assert_eq!(default_of("subid>s1id"), ["/s1"]);
        // Unknown → GRUB falls back to the first item.
        assert_eq!(default_of("nonsense"), ["/0"]);
        assert_eq!(default_of("${saved_entry}"), ["/0"]);
    }

    #[test]
    fn configfile_and_source() {
        let main = r#"
set theme=x
source /boot/grub/vars.cfg
menuentry "main" { linux $kdir/vmlinuz }
configfile ($root)/boot/grub/more.cfg
menuentry "Advanced" { configfile /boot/grub/adv.cfg }
"#;
        let vars = "set kdir=/install.amd\n";
        let more = "menuentry 'more' { linux /more }\n";
        let adv = "menuentry 'expert' { linux $kdir/vmlinuz priority=low }\n";
        let e = parse_files(
            "/boot/grub/grub.cfg",
            &[
                ("/boot/grub/grub.cfg", main),
                ("/boot/grub/vars.cfg", vars),
                ("/boot/grub/more.cfg", more),
                ("/boot/grub/adv.cfg", adv),
            ],
        );
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(e[0].kernel, "/install.amd/vmlinuz");
        assert_eq!(e[1].title, "more");
        assert_eq!(e[1].config, "/boot/grub/more.cfg");
        assert_eq!(e[2].path, ["Advanced"]);
        assert_eq!(e[2].title, "expert");
        assert_eq!(e[2].kernel, "/install.amd/vmlinuz");
        assert_eq!(e[2].cmdline, "priority=low");
    }

    #[test]
    fn efi_stub_config_follows_prefix() {
        // The EFI stub many ISOs carry: find the ISO, then load the real config.
        let stub = "search --set=root --file /.disk/info\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n";
        let real = "menuentry 'Install' {\n linuxefi /install.amd/vmlinuz --- quiet\n initrdefi /install.amd/initrd.gz\n}\n";
        let e = parse_files(
            "/EFI/boot/grub.cfg",
            &[("/EFI/boot/grub.cfg", stub), ("/boot/grub/grub.cfg", real)],
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kernel, "/install.amd/vmlinuz");
        assert_eq!(e[0].initrd, ["/install.amd/initrd.gz"]);
        assert_eq!(e[0].cmdline, "--- quiet");
        assert_eq!(e[0].config, "/boot/grub/grub.cfg");
        assert!(e[0].is_default);
    }

    #[test]
    fn lexer_basics() {
        let toks = lex("a 'b c' \"d $e\" ${f}g # comment\n{ }");
        assert_eq!(
            toks,
            vec![
                Tok::Word(vec![Piece::Lit("a".into())]),
                Tok::Word(vec![Piece::Lit("b c".into())]),
                Tok::Word(vec![
                    Piece::Lit("d ".into()),
                    Piece::Var {
                        name: "e".into(),
                        quoted: true
                    }
                ]),
                Tok::Word(vec![
                    Piece::Var {
                        name: "f".into(),
                        quoted: false
                    },
                    Piece::Lit("g".into())
                ]),
                Tok::Sep,
                Tok::Open,
                Tok::Close,
            ]
        );
    }

    fn limited(main: &str, files: &[(&str, &str)]) -> MenuError {
        crate::image::parse_in_memory(parse, main, files).unwrap_err()
    }

    fn config_error(cfg: &str) -> MenuError {
        limited("/boot/grub/grub.cfg", &[("/boot/grub/grub.cfg", cfg)])
    }

    const CFG: &str = "/boot/grub/grub.cfg";

    #[test]
    fn deeply_nested_submenus_are_an_error_not_a_stack_overflow() {
        let cfg = "submenu x {\n".repeat(50_000) + &"}\n".repeat(50_000);
        assert_eq!(
            config_error(&cfg),
            MenuError::TooDeep { config: CFG.into() }
        );
        assert_eq!(
            config_error(&cfg).to_string(),
            "/boot/grub/grub.cfg: menus, blocks and includes nest deeper than 64 levels"
        );
        // 60 levels of real menus still parse.
        let cfg = "submenu x {\n".repeat(60) + "menuentry e { linux /k }\n" + &"}\n".repeat(60);
        assert_eq!(one(&cfg).len(), 1);
    }

    #[test]
    fn a_long_chain_of_then_words_is_no_recursion() {
        let cfg = "then ".repeat(200_000) + "set a=1\nmenuentry e { linux /k a=$a }\n";
        assert_eq!(one(&cfg)[0].cmdline, "a=1");
    }

    #[test]
    fn doubling_variables_stop_at_the_variable_limit() {
        let mut cfg = "set a0=xxxxxxxxxxxxxxxx\n".to_string();
        for i in 1..64 {
            cfg += &format!("set a{i}=\"${{a{p}}}${{a{p}}}\"\n", p = i - 1);
        }
        let e = config_error(&cfg);
        assert!(
            matches!(&e, MenuError::VariablesTooLarge { name, .. } if name == "a11"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "/boot/grub/grub.cfg: GRUB variables grow past 64 KiB (at `a11`)"
        );
    }

    #[test]
    fn expansion_in_arguments_is_bounded_over_the_whole_menu() {
        let big = "y".repeat(60_000);
        let line = format!("set{}\n", " $b".repeat(1000));
        let cfg = format!("set b={big}\n{}", line.repeat(10));
        assert_eq!(
            config_error(&cfg),
            MenuError::ExpansionTooLarge { config: CFG.into() }
        );
    }

    #[test]
    fn sourcing_a_file_twice_per_level_is_bounded() {
        let cfg = "source /boot/grub/grub.cfg\nsource /boot/grub/grub.cfg\n";
        assert_eq!(
            config_error(cfg),
            MenuError::TooLarge { config: CFG.into() }
        );
    }

    #[test]
    fn too_many_entries_are_an_error() {
        let cfg = "menuentry e { linux /k }\n".repeat(10_001);
        assert_eq!(
            config_error(&cfg),
            MenuError::TooManyItems { config: CFG.into() }
        );
    }
}
