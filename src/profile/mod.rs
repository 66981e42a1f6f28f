//! Install profiles: the TOML schema, its validation, and template rendering.
//!
//! A profile says which image to boot, how to shape the VM, which boot-menu entry to take,
//! which answer files to serve, which steps drive the installer, and how to finish. Every
//! value is checked while the file is parsed, so an error points at `file:line:column`.

pub mod input;
mod template;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

pub use input::{InputError, MAX_INPUT_BYTES, read_text};
pub use template::{Renderer, TemplateError};
pub use values::{
    Accel, BootMode, ConsoleSource, DiskBus, DiskCache, Firmware, MAX_CPUS, Memory, Pattern,
    Seconds, checked_regex,
};

/// A parsed, validated profile, with the file it came from.
#[derive(Debug, Clone)]
pub struct Profile {
    pub path: PathBuf,
    pub source: String,
    pub spec: ProfileSpec,
    /// The built-in recipe this profile is, whose templates are embedded too.
    pub recipe: Option<&'static crate::recipe::Recipe>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// One line saying what this profile installs.
    #[serde(default)]
    pub description: String,
    pub image: ImageSpec,
    #[serde(default)]
    pub vm: VmSpec,
    #[serde(default)]
    pub boot: BootSpec,
    /// Free-form template variables (`{{ vars.NAME }}`); `--var NAME=VALUE` overrides them.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Secret template variables (`{{ secrets.NAME }}`): their values are redacted from
    /// progress lines, `plan.json`, logs and support bundles.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Answer files rendered from templates and served to the guest.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub defaults: StepDefaults,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub finish: FinishSpec,
}

/// Where the installer comes from: a local ISO, a URL with its checksum (or a `SHA256SUMS` next
/// to it), a catalog image by name, or a netboot kernel
/// and initrd (such as Debian's netboot `linux` and `initrd.gz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// A local ISO, relative to the profile's directory.
    pub path: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub sha256: Option<Spanned<String>>,
    /// An image from the catalog (`ferry images`), downloaded and verified like a `url`.
    pub name: Option<Spanned<String>>,
    /// A netboot kernel, relative to the profile's directory (instead of an ISO).
    pub kernel: Option<Spanned<String>>,
    pub initrd: Option<Spanned<String>>,
    /// The netboot kernel's own arguments (an ISO's come from its boot menu).
    #[serde(default)]
    pub cmdline: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    #[serde(default)]
    pub memory: Memory,
    /// Number of virtual CPUs; 0 means one per host core.
    #[serde(default, deserialize_with = "values::cpus")]
    pub cpus: u32,
    #[serde(default)]
    pub accel: Accel,
    #[serde(default)]
    pub firmware: Firmware,
    #[serde(default)]
    pub disk_bus: DiskBus,
    #[serde(default)]
    pub disk_cache: DiskCache,
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            memory: Memory::default(),
            cpus: 0,
            accel: Accel::Auto,
            firmware: Firmware::Auto,
            disk_bus: DiskBus::Auto,
            disk_cache: DiskCache::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Which boot-menu entry: `default`, a label, a title, or `Submenu > Title`.
    #[serde(default = "default_entry")]
    pub entry: Spanned<String>,
    /// Extra kernel arguments (a template), added before `console=ttyS0,115200n8`.
    #[serde(default)]
    pub append: Option<Spanned<String>>,
    /// `kernel` (ferry boots the entry's kernel) or `loader` (the ISO's own boot loader).
    #[serde(default = "default_mode")]
    pub mode: Spanned<BootMode>,
}

fn default_mode() -> Spanned<BootMode> {
    Spanned::new(0..0, BootMode::Kernel)
}

fn default_entry() -> Spanned<String> {
    Spanned::new(0..0, "default".to_string())
}

impl Default for BootSpec {
    fn default() -> Self {
        BootSpec {
            entry: default_entry(),
            append: None,
            mode: default_mode(),
        }
    }
}

/// A file served to the guest at `{{ serve.url }}/NAME`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: Spanned<String>,
    /// A template file, relative to the profile's directory.
    pub template: Option<Spanned<String>>,
    /// The template inline.
    pub content: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepDefaults {
    /// Timeout of a step that names none.
    pub timeout: Option<Seconds>,
    /// Fail patterns checked during every step (installer error screens, kernel panics).
    #[serde(default, deserialize_with = "values::one_or_many")]
    pub fail: Vec<Pattern>,
}

/// One step of the drive: wait for a pattern, then send text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    /// What to wait for: literal text, or `/a regex/`. Several: any of them.
    #[serde(default, deserialize_with = "values::one_or_many")]
    pub expect: Vec<Pattern>,
    /// Where `expect` waits: `serial` (the default) or `screen` (the VGA text screen).
    #[serde(default)]
    pub console: ConsoleSource,
    /// Text (a template) to send on the serial console once the pattern matched.
    pub send: Option<Spanned<String>>,
    /// Keys (a template, Packer's boot-command syntax: `set tty com0<enter>`) to type on the
    /// VM's keyboard once the pattern matched, after `send`.
    pub keys: Option<Spanned<String>>,
    pub timeout: Option<Seconds>,
    /// Patterns that fail this step, on top of `[defaults].fail`.
    #[serde(default, deserialize_with = "values::one_or_many")]
    pub fail: Vec<Pattern>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    /// How long to wait, after the last step, for the guest to power off.
    #[serde(default = "default_poweroff_timeout")]
    pub poweroff_timeout: Seconds,
    #[serde(default)]
    pub verify: VerifySpec,
}

fn default_poweroff_timeout() -> Seconds {
    Seconds::from_secs(600)
}

impl Default for FinishSpec {
    fn default() -> Self {
        FinishSpec {
            poweroff_timeout: default_poweroff_timeout(),
            verify: VerifySpec::default(),
        }
    }
}

/// The boot check: boot the installed disk alone and wait for this pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_login", deserialize_with = "values::one_or_many")]
    pub expect: Vec<Pattern>,
    #[serde(default = "default_verify_timeout")]
    pub timeout: Seconds,
    #[serde(default, deserialize_with = "values::one_or_many")]
    pub fail: Vec<Pattern>,
}

fn default_true() -> bool {
    true
}

/// A getty's prompt, last on its line — or followed at once by a console message
/// (`[   12.3] …`, `[  OK  ] …`), which a kernel may print before ferry has read the prompt.
pub const LOGIN_PROMPT: &str = r"login: ?($|\[)";

fn default_login() -> Vec<Pattern> {
    vec![Pattern::regex(LOGIN_PROMPT)]
}

fn default_verify_timeout() -> Seconds {
    Seconds::from_secs(300)
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec {
            enabled: true,
            expect: default_login(),
            timeout: default_verify_timeout(),
            fail: Vec::new(),
        }
    }
}

/// A profile that could not be read or is not valid. Displays as `file:line:column: what`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {}: {source}", path.display())]
    Read { path: PathBuf, source: InputError },
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let source = read_text(path, MAX_INPUT_BYTES).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::parse(path, source)
    }

    /// Parses profile text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, source: String) -> Result<Profile, ProfileError> {
        let spec: ProfileSpec = toml::from_str(&source).map_err(|e| ProfileError::Invalid {
            location: location(path, &source, e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        let profile = Profile {
            path: path.to_path_buf(),
            source,
            spec,
            recipe: None,
        };
        profile.check()?;
        Ok(profile)
    }

    /// A built-in recipe's profile; its `[[files]]` templates resolve from the embedded files.
    pub fn from_recipe(recipe: &'static crate::recipe::Recipe) -> Result<Profile, ProfileError> {
        let path = PathBuf::from(format!("recipe:{}/profile.toml", recipe.name));
        let mut profile = Profile::parse(&path, recipe.profile.to_string())?;
        profile.recipe = Some(recipe);
        Ok(profile)
    }

    /// A template the profile names: a file relative to the profile's directory, or one of a
    /// recipe's embedded files. Returns the name to show in errors and the text.
    pub fn read_template(&self, relative: &str) -> std::io::Result<(String, String)> {
        if let Some(recipe) = self.recipe {
            let shown = format!("recipe:{}/{relative}", recipe.name);
            return match recipe.file(relative) {
                Some(text) => Ok((shown, text.to_string())),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{shown} is not one of the recipe's files"),
                )),
            };
        }
        let full = self.resolve(relative);
        let text = read_text(&full, MAX_INPUT_BYTES).map_err(|e| {
            let e = e.into_io();
            std::io::Error::new(e.kind(), format!("{}: {e}", full.display()))
        })?;
        Ok((full.display().to_string(), text))
    }

    /// Checks that need more than one field at a time.
    fn check(&self) -> Result<(), ProfileError> {
        let image = &self.spec.image;
        let sources: Vec<_> = [&image.path, &image.url, &image.name, &image.kernel]
            .into_iter()
            .flatten()
            .collect();
        match sources.as_slice() {
            [] => {
                return Err(self.invalid(
                    0,
                    "[image] needs `path` (a local ISO), `url`, `name` (a catalog image), or `kernel` and `initrd` (netboot)",
                ));
            }
            [_] => {}
            [_, second, ..] => {
                return Err(self.invalid(
                    second.span().start,
                    "[image] names more than one of `path`, `url`, `name` and `kernel`: keep one",
                ));
            }
        }
        if let (Some(initrd), None) = (&image.initrd, &image.kernel) {
            return Err(self.invalid(initrd.span().start, "[image] `initrd` goes with `kernel`"));
        }
        if let Some(sum) = &image.sha256
            && (sum.get_ref().len() != 64 || !sum.get_ref().bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(self.invalid(sum.span().start, "`sha256` must be 64 hexadecimal digits"));
        }
        for file in &self.spec.files {
            let name = file.name.get_ref();
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(self.invalid(
                    file.name.span().start,
                    "a file `name` is a plain file name (no `/`, not starting with `.`)",
                ));
            }
            match (&file.template, &file.content) {
                (None, None) | (Some(_), Some(_)) => {
                    return Err(self.invalid(
                        file.name.span().start,
                        "a [[files]] entry needs exactly one of `template` (a file) or `content`",
                    ));
                }
                _ => {}
            }
        }
        self.check_boot_mode()?;
        for step in &self.spec.steps {
            if step.expect.is_empty() && step.send.is_none() && step.keys.is_none() {
                let at = self.source.find(&step.name).unwrap_or(0);
                return Err(self.invalid(at, "a step needs `expect`, `send` or `keys`"));
            }
            if let (ConsoleSource::Screen, Some(send)) = (step.console, &step.send) {
                return Err(self.invalid(
                    send.span().start,
                    "`send` writes to the serial console; on the screen, type with `keys` (`text<enter>`)",
                ));
            }
            // Checked as written: template expressions (`{{ serve.url }}`) are typable text,
            // so a bad key name is caught here, with its position.
            if let Some(keys) = &step.keys
                && let Err(e) = crate::console::keys::Keys::parse(keys.get_ref())
            {
                return Err(self.invalid(keys.span().start, &format!("`keys`: {e}")));
            }
        }
        Ok(())
    }

    /// The loader boots whatever its menu says: no entry or kernel arguments of ferry's, and
    /// an ISO to boot.
    fn check_boot_mode(&self) -> Result<(), ProfileError> {
        let boot = &self.spec.boot;
        if *boot.mode.get_ref() != BootMode::Loader {
            return Ok(());
        }
        let at = boot.mode.span().start;
        if self.spec.image.kernel.is_some() {
            return Err(self.invalid(
                at,
                "`mode = \"loader\"` boots an ISO's own boot loader; this image is a kernel (use `path`, `url` or `name` of an ISO, or mode = \"kernel\")",
            ));
        }
        if let Some(append) = &boot.append {
            return Err(self.invalid(
                append.span().start,
                "`append` is for mode = \"kernel\"; the ISO's own loader takes kernel arguments typed at its prompt (a step's `keys`)",
            ));
        }
        if boot.entry.get_ref() != "default" {
            return Err(self.invalid(
                boot.entry.span().start,
                "`entry` is for mode = \"kernel\"; under the ISO's own loader, pick the entry with a step's `keys` (`<down><enter>`)",
            ));
        }
        Ok(())
    }

    fn invalid(&self, offset: usize, message: &str) -> ProfileError {
        ProfileError::Invalid {
            location: location(&self.path, &self.source, offset),
            message: message.to_string(),
        }
    }

    /// `file:line:column` of a span in this profile.
    pub fn location_of<T>(&self, value: &Spanned<T>) -> String {
        location(&self.path, &self.source, value.span().start)
    }

    /// A path written in the profile, relative to the profile's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        dir.join(relative)
    }

    /// The profile's name: the recipe's, or its file name without `.toml`.
    pub fn name(&self) -> String {
        if let Some(recipe) = self.recipe {
            return recipe.name.to_string();
        }
        self.path
            .file_stem()
            .map_or_else(|| "profile".into(), |s| s.to_string_lossy().into_owned())
    }
}

/// `file:line:column` (1-based) of a byte offset in `source`.
pub fn location(path: &Path, source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{}:{line}:{column}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(Path::new("p.toml"), text.to_string())
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const MINIMAL: &str = "[image]\npath = \"x.iso\"\n";

    #[test]
    fn minimal_profile_gets_defaults() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.spec.boot.entry.get_ref(), "default");
        assert_eq!(p.spec.vm.accel, Accel::Auto);
        assert!(p.spec.finish.verify.enabled);
        assert_eq!(p.spec.finish.poweroff_timeout.as_duration().as_secs(), 600);
    }

    #[test]
    fn full_profile_parses() {
        let p = parse(
            r#"
description = "tiny"
[image]
path = "tiny.iso"
[vm]
memory = "512M"
cpus = 2
accel = "tcg"
firmware = "uefi"
disk_bus = "nvme"
[boot]
entry = "Options > debug"
append = "url={{ serve.url }}/answers"
[vars]
hostname = "box"
[[files]]
name = "answers"
content = "HOST={{ vars.hostname }}"
[defaults]
timeout = "1m"
fail = ["/Kernel panic/"]
[[steps]]
name = "confirm"
expect = ["[yes/no]: "]
send = "yes\n"
timeout = "90s"
[finish]
poweroff_timeout = "5m"
verify = { expect = ["login:"], timeout = "2m" }
"#,
        )
        .unwrap();
        let s = &p.spec;
        assert_eq!(s.vm.memory, Memory::Mib(512));
        assert_eq!(s.vm.firmware, Firmware::Uefi);
        assert_eq!(s.vm.disk_bus, DiskBus::Nvme);
        assert_eq!(s.steps[0].timeout.unwrap().as_duration().as_secs(), 90);
        assert_eq!(s.steps[0].expect[0], Pattern::literal("[yes/no]: "));
        assert!(matches!(s.defaults.fail[0], Pattern::Regex(_)));
        assert_eq!(s.finish.verify.timeout.as_duration().as_secs(), 120);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = error("[image]\npath = \"x.iso\"\n[vm]\nmemroy = \"1G\"\n");
        assert!(
            e.starts_with("p.toml:4:1: unknown field `memroy`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let e = error(&format!("{MINIMAL}[vm]\naccel = \"kvmm\"\n"));
        assert!(
            e.starts_with(
                "p.toml:4:9: unknown variant `kvmm`, expected one of `auto`, `kvm`, `tcg`"
            ),
            "{e}"
        );
        let e = error(&format!(
            "{MINIMAL}[[steps]]\nname = \"a\"\nexpect = [\"/(unclosed/\"]\n"
        ));
        assert_eq!(e, "p.toml:5:10: invalid regex /(unclosed/: unclosed group");
        let e = error(&format!(
            "{MINIMAL}[[steps]]\nname = \"a\"\nexpect = [\"x\"]\ntimeout = \"soon\"\n"
        ));
        assert!(e.starts_with("p.toml:6:11: invalid duration `soon`"), "{e}");
        let e = error(&format!("{MINIMAL}[vm]\ncpus = 4096\n"));
        assert_eq!(
            e,
            "p.toml:4:8: cpus = 4096 is too many: at most 255 (0 means one per host CPU)"
        );
        let e = error(&format!("{MINIMAL}[vm]\nmemory = \"17179869184G\"\n"));
        assert_eq!(
            e,
            "p.toml:4:10: memory `17179869184G` is too large: at most 1T (`1024G`)"
        );
        let e = error(&format!("{MINIMAL}[vm]\nmemory = \"lots\"\n"));
        assert!(
            e.starts_with("p.toml:4:10: invalid memory size `lots`"),
            "{e}"
        );
    }

    #[test]
    fn overlong_timeouts_name_the_field_and_the_limit() {
        let e = error(&format!(
            "{MINIMAL}[[steps]]\nname = \"a\"\nexpect = [\"x\"]\ntimeout = \"18446744073709551615s\"\n"
        ));
        assert_eq!(
            e,
            "p.toml:6:11: duration `18446744073709551615s` is too long: at most 7 days (`7d`)"
        );
        let e = error(&format!(
            "{MINIMAL}[finish]\npoweroff_timeout = \"300000000000y\"\n"
        ));
        assert!(
            e.starts_with("p.toml:4:20: duration `300000000000y` is too long"),
            "{e}"
        );
        let e = error(&format!(
            "{MINIMAL}[finish]\nverify = {{ timeout = \"8d\" }}\n"
        ));
        assert!(
            e.starts_with("p.toml:4:22: duration `8d` is too long"),
            "{e}"
        );
        let e = error(&format!("{MINIMAL}[defaults]\ntimeout = \"9999999h\"\n"));
        assert!(
            e.starts_with("p.toml:4:11: duration `9999999h` is too long"),
            "{e}"
        );
    }

    #[test]
    fn cross_field_errors_have_positions() {
        assert_eq!(
            error("[image]\n"),
            "p.toml:1:1: [image] needs `path` (a local ISO), `url`, `name` (a catalog image), or `kernel` and `initrd` (netboot)"
        );
        assert_eq!(
            error("[image]\npath = \"a\"\nurl = \"http://x/a.iso\"\n"),
            "p.toml:3:7: [image] names more than one of `path`, `url`, `name` and `kernel`: keep one"
        );
        assert_eq!(
            error("[image]\nurl = \"http://x\"\nsha256 = \"abc\"\n"),
            "p.toml:3:10: `sha256` must be 64 hexadecimal digits"
        );
        assert_eq!(
            error(&format!("{MINIMAL}[[files]]\nname = \"a\"\n")),
            "p.toml:4:8: a [[files]] entry needs exactly one of `template` (a file) or `content`"
        );
        assert_eq!(
            error(&format!(
                "{MINIMAL}[[files]]\nname = \"../etc\"\ncontent = \"\"\n"
            )),
            "p.toml:4:8: a file `name` is a plain file name (no `/`, not starting with `.`)"
        );
    }

    #[test]
    fn screen_steps_and_keys() {
        let p = parse(&format!(
            "{MINIMAL}[[steps]]\nname = \"loader\"\nconsole = \"screen\"\nexpect = \"/boot>$/\"\nkeys = \"set tty com0<enter>\"\n"
        ))
        .unwrap();
        let step = &p.spec.steps[0];
        assert_eq!(step.console, ConsoleSource::Screen);
        assert_eq!(step.keys.as_ref().unwrap().get_ref(), "set tty com0<enter>");
        assert_eq!(
            parse(&format!(
                "{MINIMAL}[[steps]]\nname = \"k\"\nkeys = \"<esc>\"\n"
            ))
            .unwrap()
            .spec
            .steps[0]
                .console,
            ConsoleSource::Serial
        );
        assert_eq!(
            error(&format!(
                "{MINIMAL}[[steps]]\nname = \"a\"\nkeys = \"boot<entr>\"\n"
            )),
            "p.toml:5:8: `keys`: unknown key <entr> at character 4; special keys are <enter>, <esc>, <tab>, <bs>, <del>, <spacebar>, <up>, <down>, <left>, <right>, <f1>…<f12>, <home>, <end>, <pageUp>, <pageDown>, <insert>, <leftCtrlOn>…, <wait>, <wait5>, <wait1m30s>"
        );
        assert_eq!(
            error(&format!(
                "{MINIMAL}[[steps]]\nname = \"a\"\nconsole = \"screen\"\nsend = \"x\"\n"
            )),
            "p.toml:6:8: `send` writes to the serial console; on the screen, type with `keys` (`text<enter>`)"
        );
        assert!(
            error(&format!(
                "{MINIMAL}[[steps]]\nname = \"a\"\nconsole = \"vga\"\nexpect = \"x\"\n"
            ))
            .starts_with("p.toml:5:11: unknown variant `vga`, expected `serial` or `screen`")
        );
    }

    #[test]
    fn loader_boot_takes_no_entry_append_or_kernel() {
        let p = parse(&format!("{MINIMAL}[boot]\nmode = \"loader\"\n")).unwrap();
        assert_eq!(*p.spec.boot.mode.get_ref(), BootMode::Loader);
        assert_eq!(
            *parse(MINIMAL).unwrap().spec.boot.mode.get_ref(),
            BootMode::Kernel
        );
        assert_eq!(
            error(&format!(
                "{MINIMAL}[boot]\nmode = \"loader\"\nappend = \"x\"\n"
            )),
            "p.toml:5:10: `append` is for mode = \"kernel\"; the ISO's own loader takes kernel arguments typed at its prompt (a step's `keys`)"
        );
        assert_eq!(
            error(&format!(
                "{MINIMAL}[boot]\nmode = \"loader\"\nentry = \"rescue\"\n"
            )),
            "p.toml:5:9: `entry` is for mode = \"kernel\"; under the ISO's own loader, pick the entry with a step's `keys` (`<down><enter>`)"
        );
        assert_eq!(
            error("[image]\nkernel = \"vmlinuz\"\n[boot]\nmode = \"loader\"\n"),
            "p.toml:4:8: `mode = \"loader\"` boots an ISO's own boot loader; this image is a kernel (use `path`, `url` or `name` of an ISO, or mode = \"kernel\")"
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = error("[image\npath = 1\n");
        assert!(e.starts_with("p.toml:1:"), "{e}");
    }

    #[test]
    fn location_counts_characters() {
        assert_eq!(location(Path::new("f"), "ab\ncé d", 7), "f:2:4");
        assert_eq!(location(Path::new("f"), "", 5), "f:1:1");
    }
}
