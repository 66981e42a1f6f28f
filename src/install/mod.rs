//! The install flow: plan → fetch → boot → drive → finish → verify → report, one file per
//! stage. [`install`] runs it inside the supervisor; what it needs from the live operations
//! (attached viewers, the pause after a failed step) it reaches through [`Live`], which `ops`
//! implements, and it records through [`crate::run::Record`].

pub mod boot;
pub mod drive;
pub mod esp;
pub mod fetch;
pub mod finish;
pub mod plan;
pub mod render;
pub mod report;
pub mod serve;
pub mod verify;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::console::{ExpectError, InputHandle, Sink};
use crate::host::Facts;
use crate::host::disk::{DiskError, TargetKind};
use crate::profile::Profile;
use crate::qemu::Qemu;
use crate::run::{Record, Stage};
pub use plan::{Options, Plan, QemuPlan};
pub use report::Outcome;

/// What the install flow takes from the live operations around it (the supervisor's
/// attached viewers and operator).
pub trait Live {
    /// A sink for each VM's serial console: what the guest prints reaches attached viewers.
    fn console_sink(&self) -> Box<dyn Sink>;
    /// The console of the VM that runs now (install, then boot check): viewers type into it.
    fn console_started(&self, input: Option<InputHandle>);
    /// A step failed (its screenshot is taken): pause for the operator, or not. `Abort` when
    /// the run does not pause on failures.
    fn after_failure(&self, stage: Stage, step: &str, error: &str) -> Decision;
    /// After a stop: how long the guest has to power off before QEMU is stopped.
    fn stop_grace(&self) -> std::time::Duration;
}

/// What the operator decided about a run paused after a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Resume,
    Abort,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Resume => "resume",
            Decision::Abort => "abort",
        }
    }
}

/// One `ferry install` or `ferry plan` invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub profile: ProfileSource,
    pub options: Options,
    pub runs_dir: Option<PathBuf>,
    /// Skip the typed confirmation.
    pub yes: bool,
    pub quiet: bool,
    /// Secret values from `--secret`, `--secret-file` and `FERRY_SECRET_NAME`, over the
    /// profile's `[secrets]`. Never serialized: the supervisor gets them on its stdin.
    #[serde(skip)]
    pub secrets: std::collections::BTreeMap<String, String>,
}

/// `FERRY_SECRET_NAME=VALUE` in the environment sets the secret `name`.
pub const SECRET_ENV_PREFIX: &str = "FERRY_SECRET_";
/// A secret file holds a password or a key: kilobytes.
const MAX_SECRET_FILE: u64 = 64 << 10;

/// The secret values given outside the profile: `--secret NAME=VALUE`, `--secret-file
/// NAME=PATH` (a regular file of at most 64 KiB, one trailing newline dropped) and the
/// environment's `FERRY_SECRET_NAME` (lower-cased name). Later sources win: environment, then
/// files, then values.
pub fn secret_inputs(
    values: &[String],
    files: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let mut secrets = std::collections::BTreeMap::new();
    for (name, value) in env {
        if let Some(name) = name.strip_prefix(SECRET_ENV_PREFIX) {
            secrets.insert(
                secret_name(&name.to_lowercase(), &format!("${name}"))?,
                value,
            );
        }
    }
    for arg in files {
        let (name, path) = arg
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--secret-file {arg}: expected NAME=PATH")))?;
        let name = secret_name(name, "--secret-file")?;
        let mut text = crate::profile::input::read_text(Path::new(path), MAX_SECRET_FILE)
            .map_err(|e| Error::Usage(format!("--secret-file {name}={path}: {e}")))?;
        if text.ends_with('\n') {
            text.pop();
        }
        secrets.insert(name, text);
    }
    for arg in values {
        let Some((name, value)) = arg.split_once('=') else {
            // The argument may be the value itself: not repeated in the error.
            return Err(Error::Usage("--secret: expected NAME=VALUE".into()));
        };
        secrets.insert(secret_name(name, "--secret")?, value.to_string());
    }
    Ok(secrets)
}

/// A secret's name as templates use it (`{{ secrets.NAME }}`).
fn secret_name(name: &str, source: &str) -> Result<String, Error> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(name.to_string())
    } else {
        Err(Error::Usage(format!(
            "{source}: secret name {name:?} must be letters, digits and _"
        )))
    }
}

/// A variable that holds a password (a recipe's `root_password`, `luks_passphrase`): its value
/// is secret wherever it comes from (the profile's `[vars]`, `--var`), and a secret of the same
/// name (`--secret-file root_password=PATH`) sets it.
pub fn is_secret_var(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password") || name.contains("passphrase")
}

impl Request {
    /// The profile, with the secret values given outside it.
    pub fn load_profile(&self) -> Result<Profile, Error> {
        let mut profile = self.profile.load(self.options.catalog.as_deref())?;
        for (name, value) in &self.secrets {
            if is_secret_var(name) {
                profile
                    .spec
                    .vars
                    .insert(name.clone(), toml::Value::String(value.clone()));
            }
        }
        profile.spec.secrets.extend(self.secrets.clone());
        Ok(profile)
    }

    /// The values to redact: the profile's secrets and its and `--var`'s password variables.
    pub fn secret_values(&self, profile: &Profile) -> crate::run::Secrets {
        let vars = profile.spec.vars.iter().filter_map(|(k, v)| match v {
            toml::Value::String(s) if is_secret_var(k) => Some(s.clone()),
            _ => None,
        });
        let options = self.options.vars.iter().filter(|(k, _)| is_secret_var(k));
        crate::run::Secrets::new(
            profile
                .spec
                .secrets
                .values()
                .cloned()
                .chain(vars)
                .chain(options.map(|(_, v)| v.clone())),
        )
    }
}

/// Builds the plan without running anything (`ferry plan`), with the values its output must
/// redact.
pub fn plan(request: &Request) -> Result<(Plan, crate::run::Secrets), Error> {
    let profile = request.load_profile()?;
    Ok((preview(&profile, request)?, request.secret_values(&profile)))
}

fn preview(profile: &Profile, request: &Request) -> Result<Plan, Error> {
    let facts = match &request.options.host_root {
        Some(dir) => Facts::read_at(&crate::host::Root::at(dir)),
        None => Facts::read(),
    };
    plan::make(profile, &request.options, &facts, &serve::guest_url(), None)
}

/// Where the profile comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProfileSource {
    /// A profile file, or a built-in recipe's name (a file that exists wins).
    Named(PathBuf),
    /// `ferry boot`: an installer's boot-menu entry, no steps, no boot check; the run ends
    /// when the guest powers off.
    Manual { image: PathBuf, entry: String },
}

impl ProfileSource {
    /// What names the profile in progress lines and `ferry runs`.
    pub fn path(&self) -> &Path {
        match self {
            ProfileSource::Named(path) => path,
            ProfileSource::Manual { image, .. } => image,
        }
    }

    /// The profile; `catalog` (`--catalog`) finds a recipe by its image's name.
    pub fn load(&self, catalog: Option<&Path>) -> Result<Profile, Error> {
        match self {
            ProfileSource::Named(name) => load_profile(name, catalog),
            ProfileSource::Manual { image, entry } => Ok(manual_profile(image, entry)),
        }
    }
}

/// A profile file, or a built-in recipe's name or its catalog image's (a file that exists
/// wins); `catalog` is `--catalog`'s directory.
fn load_profile(name: &Path, catalog: Option<&Path>) -> Result<Profile, Error> {
    if name.exists() {
        return Ok(Profile::load(name)?);
    }
    let catalog = crate::fetch::catalog::Catalog::load(catalog)?;
    let name = name.display().to_string();
    let recipe =
        find_recipe(&catalog, &name).ok_or_else(|| Error::Usage(not_a_profile(&name, &catalog)))?;
    let mut profile = Profile::from_recipe(recipe)?;
    // Named by a catalog image: the recipe installs that image.
    if let Some(image) = profile
        .spec
        .image
        .name
        .as_mut()
        .filter(|_| recipe.name != name)
    {
        *image = serde_spanned::Spanned::new(image.span(), name);
    }
    Ok(profile)
}

/// The built-in recipe called `name`, or the one that installs the catalog image called
/// `name`, for any architecture (`ubuntu-24.04-server` plans with ubuntu-24.04,
/// `debian-12-netboot-package-arm64` with debian-12). A test checks that the catalog's
/// `recipe` fields name recipes that install those images.
pub fn find_recipe(
    catalog: &crate::fetch::catalog::Catalog,
    name: &str,
) -> Option<&'static crate::recipe::Recipe> {
    crate::recipe::find(name).or_else(|| {
        let entry = catalog.entries.iter().find(|e| e.name == name)?;
        crate::recipe::find(entry.recipe.as_deref()?)
    })
}

/// The one-line refusal of a name that is no profile file, recipe or catalog image with a
/// recipe: what exists instead.
fn not_a_profile(name: &str, catalog: &crate::fetch::catalog::Catalog) -> String {
    let recipes: Vec<&str> = crate::recipe::RECIPES.iter().map(|r| r.name).collect();
    if catalog.entries.iter().any(|e| e.name == name) {
        return format!(
            "{name} is a catalog image without a built-in recipe: write a profile with [image] \
             name = \"{name}\" (docs/recipes.md), or use a recipe ({})",
            recipes.join(", ")
        );
    }
    let images: Vec<&str> = catalog
        .entries
        .iter()
        .filter(|e| e.recipe.is_some())
        .map(|e| e.name.as_str())
        .collect();
    format!(
        "{name} is neither a profile file, a built-in recipe nor a catalog image with one \
         (recipes: {}; images: {})",
        recipes.join(", "),
        images.join(", ")
    )
}

/// `ferry boot`'s profile: the ISO's `entry`, and ten years for the operator to power the
/// guest off.
fn manual_profile(image: &Path, entry: &str) -> Profile {
    use crate::profile::{BootSpec, FinishSpec, ImageSpec, ProfileSpec, Seconds, VerifySpec};
    use serde_spanned::Spanned;
    let spec = ProfileSpec {
        description: "manual boot (ferry boot)".into(),
        image: ImageSpec {
            path: Some(Spanned::new(0..0, image.display().to_string())),
            url: None,
            sha256: None,
            name: None,
            kernel: None,
            initrd: None,
            cmdline: String::new(),
        },
        vm: Default::default(),
        boot: BootSpec {
            entry: Spanned::new(0..0, entry.to_string()),
            ..BootSpec::default()
        },
        vars: Default::default(),
        secrets: Default::default(),
        files: Vec::new(),
        defaults: Default::default(),
        steps: Vec::new(),
        finish: FinishSpec {
            poweroff_timeout: Seconds::from_secs(3650 * 86400),
            verify: VerifySpec {
                enabled: false,
                ..VerifySpec::default()
            },
        },
    };
    Profile {
        path: image.to_path_buf(),
        source: String::new(),
        spec,
        recipe: None,
    }
}

/// What `ferry install` does before handing over to the supervisor: loads the profile, makes
/// the plan (as `ferry plan` does) and asks for the typed confirmation. Returns the plan and
/// the name for the run directory.
pub fn prepare(request: &Request) -> Result<(Plan, String), Error> {
    if request.options.host_root.is_some() {
        return Err(Error::Usage(
            "--host-root (recorded host facts) is for `ferry plan` only".into(),
        ));
    }
    let profile = request.load_profile()?;
    let plan = preview(&profile, request)?;
    confirm(&plan, request.yes)?;
    Ok((plan, profile.name()))
}

/// Runs a whole install and its boot check (inside the supervisor, see
/// [`crate::ops::supervise`]): plan → fetch → boot → drive → finish → verify → report. What
/// to download is known without a plan ([`plan::downloads`]), so the fetch comes first and
/// the plan is made once, from what is in the cache then.
pub fn install(
    request: &Request,
    profile: &Profile,
    record: &Record,
    live: &dyn Live,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let downloads = plan::downloads(profile, &request.options)?;
    let mut planned = started.elapsed().as_secs_f64();
    record.progress(
        Stage::Plan,
        &format!(
            "{} onto {}; run directory {}",
            request.profile.path().display(),
            request.options.disk.display(),
            record.dir.path().display()
        ),
    );
    let fetched = fetch::fetch(&downloads, record).and_then(|fetched| {
        let timer = Instant::now();
        // Facts read now: a download into a tmpfs cache has taken memory.
        let facts = Facts::read();
        let plan = plan::make(
            profile,
            &request.options,
            &facts,
            &serve::guest_url(),
            fetched.image.as_ref(),
        )?;
        planned += timer.elapsed().as_secs_f64();
        record.write_json(&record.dir.facts(), &facts)?;
        record.write_json(&record.dir.plan(), &plan)?;
        Ok((plan, fetched))
    });
    let (plan, result) = match fetched {
        Ok((plan, fetched)) => {
            let streamed = fetched.image.and_then(|i| i.streamed);
            let result = run(&plan, fetched.seconds, streamed.as_ref(), record, live);
            (Some(plan), result)
        }
        Err(e) => (None, Err(e)),
    };
    let (profile_path, disk) = match &plan {
        Some(plan) => (&plan.profile, &plan.disk.target.path),
        None => (&profile.path, &request.options.disk),
    };
    // A summary that cannot be written fails the run, but never hides why the run failed.
    match (
        report::summarize(profile_path, disk, planned, &result, record),
        result,
    ) {
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(failed)) => {
            tracing::error!("summary not written: {e}");
            Err(failed)
        }
        (Ok(()), result) => result,
    }
}

/// Keeps the answer files as the guest is served them, secrets redacted: `answers/NAME`.
fn keep_answers(plan: &Plan, record: &Record) -> Result<(), Error> {
    let dir = record.dir.answers();
    crate::run::create_private_dir(&dir)?;
    for file in &plan.files {
        crate::run::write_private(
            &dir.join(&file.name),
            &record.secrets.redact_bytes(&file.content),
        )?;
    }
    Ok(())
}

/// The stages after the plan: boot → drive → finish → verify, and the outcome. A chunk of a
/// streamed image that no longer matched its record fails the run, whatever the installer
/// made of the I/O error it got instead.
fn run(
    plan: &Plan,
    fetch_seconds: Option<f64>,
    streamed: Option<&std::sync::Arc<crate::fetch::stream::StreamedImage>>,
    record: &Record,
    live: &dyn Live,
) -> Result<Outcome, Error> {
    let result = run_stages(plan, fetch_seconds, streamed, record, live);
    match streamed.and_then(|image| image.failure()) {
        Some(changed) if !matches!(result, Err(Error::Interrupted)) => {
            Err(crate::fetch::stream::StreamError::ChunkChanged(changed).into())
        }
        _ => result,
    }
}

fn run_stages(
    plan: &Plan,
    fetch_seconds: Option<f64>,
    streamed: Option<&std::sync::Arc<crate::fetch::stream::StreamedImage>>,
    record: &Record,
    live: &dyn Live,
) -> Result<Outcome, Error> {
    let mut laps = report::Laps::start();
    plan.disk.target.create_if_needed()?;
    keep_answers(plan, record)?;
    let files = plan
        .files
        .iter()
        .map(|f| (f.name.clone(), f.content.clone()))
        .collect();
    let _server = serve::Server::start(&record.dir.answers_socket(), files, Default::default())?;

    let mut booted = boot::boot(plan, streamed, record, live)?;
    laps.lap(Stage::Boot);
    drive::drive(plan, &mut booted, record, live)?;
    laps.lap(Stage::Drive);
    let accel = booted.accel;
    finish::finish(plan, booted, record)?;
    laps.lap(Stage::Finish);
    let mut verified_after = None;
    if let Some(check) = &plan.finish.verify {
        verified_after = Some(verify::verify(plan, check, accel, record, live)?.as_secs_f64());
        laps.lap(Stage::Verify);
    }
    if let Some(seconds) = fetch_seconds {
        laps.prepend(Stage::Fetch, seconds);
    }
    Ok(laps.outcome(plan, accel, verified_after, record))
}

/// Saves the VGA screen as `screen-STAGE.png` (a curses or graphical installer's screen is
/// not in the serial log).
fn screenshot(vm: &mut Qemu, stage: Stage, record: &Record) {
    let path = record.dir.screenshot(stage);
    match vm.qmp.screendump(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "screenshot saved"),
        Err(e) => tracing::warn!("screenshot: {e}"),
    }
}

fn check_stop(record: &Record) -> Result<(), Error> {
    if record.stop.is_raised() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// An expect failure in a stage, or the interruption that caused it. A console that closed
/// says how QEMU ended (killed by a signal, crashed, the guest powered off).
fn stage_error(stage: Stage, mut error: ExpectError, vm: &mut Qemu, record: &Record) -> Error {
    if record.stop.is_raised() {
        return Error::Interrupted;
    }
    if let ExpectError::Closed { ended, .. } = &mut error {
        // The console closes when QEMU's process ends: it is reaped within moments.
        match vm.how_it_ended(Duration::from_secs(10)) {
            Ok(how) => *ended = Some(how),
            Err(e) => tracing::warn!("how QEMU ended: {e}"),
        }
    }
    Error::Step {
        stage,
        source: Box::new(error),
        run_dir: record.dir.path().to_path_buf(),
    }
}

/// Asks the operator to type the disk's name before anything is written to an existing disk.
fn confirm(plan: &Plan, yes: bool) -> Result<(), Error> {
    let target = &plan.disk.target;
    if yes || target.create {
        return Ok(());
    }
    let refused = || {
        Error::Disk(DiskError::NotConfirmed {
            path: target.path.clone(),
        })
    };
    if !std::io::stdin().is_terminal() {
        return Err(Error::Disk(DiskError::NoTerminal {
            path: target.path.clone(),
        }));
    }
    let name = target.path.file_name().map_or_else(
        || target.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let kind = if target.kind == TargetKind::BlockDevice {
        "disk"
    } else {
        "disk image"
    };
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "ferry will ERASE {} and install {} on it.\n{}Type the {kind}'s name ({name}) to go on: ",
        target.describe(),
        plan.profile.display(),
        target.details()
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == name {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipe by its name, or by any architecture's build of the image it installs.
    #[test]
    fn recipes_are_found_by_their_names_and_their_images_names() {
        let catalog = crate::fetch::catalog::Catalog::load(None).unwrap();
        let found = |name| find_recipe(&catalog, name).map(|r| r.name);
        assert_eq!(found("debian-12"), Some("debian-12"));
        assert_eq!(found("ubuntu-24.04-server"), Some("ubuntu-24.04"));
        assert_eq!(found("debian-13-netboot-package-arm64"), Some("debian-13"));
        // An image without a recipe, and nothing at all.
        assert_eq!(found("debian-12-netboot"), None);
        assert_eq!(found("windows"), None);
    }

    #[test]
    fn secrets_from_values_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let got = secret_inputs(
            &["a=from-arg".into()],
            &[format!("b={}", file.display())],
            [
                ("FERRY_SECRET_C".to_string(), "from-env".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(got["a"], "from-arg");
        assert_eq!(got["b"], "from-file");
        assert_eq!(got["c"], "from-env");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn bad_secret_inputs_are_refused_without_echoing_the_value() {
        let e = secret_inputs(&["no-equals-hunter2".into()], &[], []).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = secret_inputs(&[], &["x=/dev/zero".into()], []).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = secret_inputs(&["bad name=v".into()], &[], []).unwrap_err();
        assert!(e.to_string().contains("letters, digits and _"), "{e}");
    }

    #[test]
    fn password_variables_are_secret() {
        assert!(is_secret_var("root_password"));
        assert!(is_secret_var("luks_passphrase"));
        assert!(!is_secret_var("hostname"));
    }
}
