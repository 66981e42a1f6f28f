//! The install flow: plan → boot → drive → finish → verify → report.

pub mod esp;
pub mod plan;
pub mod progress;
pub mod run;
pub mod rundir;
pub mod serve;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::Error;
use crate::host::Facts;
use crate::host::disk::{DiskError, TargetKind};
use crate::profile::Profile;
pub use plan::{Options, Plan, QemuPlan};
use progress::Progress;
pub use run::{Outcome, Stage};

/// One `ferry install` or `ferry plan` invocation.
#[derive(Debug, Clone)]
pub struct Request {
    pub profile: PathBuf,
    pub options: Options,
    pub runs_dir: Option<PathBuf>,
    /// Skip the typed confirmation.
    pub yes: bool,
    pub quiet: bool,
}

/// Builds the plan without running anything (`ferry plan`). The answer-file URL shows the
/// port as `PORT`: the real one is chosen when an install starts.
pub fn plan(request: &Request) -> Result<Plan, Error> {
    let profile = load_profile(&request.profile)?;
    let facts = match &request.options.host_root {
        Some(dir) => Facts::read_at(&crate::host::Root::at(dir)),
        None => Facts::read(),
    };
    plan::make(
        &profile,
        &request.options,
        &facts,
        "http://10.0.2.2:PORT/TOKEN",
    )
}

/// A profile file, or a built-in recipe's name (a file that exists wins).
pub fn load_profile(name: &Path) -> Result<Profile, Error> {
    if name.exists() {
        return Ok(Profile::load(name)?);
    }
    if let Some(recipe) = name.to_str().and_then(crate::recipe::find) {
        return Ok(Profile::from_recipe(recipe)?);
    }
    let recipes: Vec<&str> = crate::recipe::RECIPES.iter().map(|r| r.name).collect();
    Err(Error::Usage(format!(
        "{} is neither a profile file nor a built-in recipe (recipes: {})",
        name.display(),
        recipes.join(", ")
    )))
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
    let profile = load_profile(&request.profile)?;
    let plan = plan(request)?;
    confirm(&plan, request.yes)?;
    Ok((plan, profile.name()))
}

/// Runs a whole install and its boot check, recording into `run_dir` (inside the
/// supervisor, see [`crate::ops::supervise`]).
pub fn install(request: &Request, run_dir: &Path) -> Result<Outcome, Error> {
    let started = Instant::now();
    let profile = load_profile(&request.profile)?;
    crate::ops::secrets::set(profile.spec.secrets.values().cloned());
    crate::ops::secrets::write_fingerprints(run_dir)?;
    let facts = Facts::read();
    let listener = serve::Listener::bind()?;
    let guest_url = listener.guest_url()?;
    let mut plan = plan::make(&profile, &request.options, &facts, &guest_url)?;
    let planned = started.elapsed().as_secs_f64();

    write_json(&run_dir.join("facts.json"), &facts)?;
    let progress = Progress {
        quiet: request.quiet,
    };
    progress.stage(
        Stage::Plan,
        &format!(
            "{} onto {}; run directory {}",
            request.profile.display(),
            plan.disk.target.describe(),
            run_dir.display()
        ),
    );

    // Fresh facts: a download into a tmpfs cache has taken memory since the first plan.
    let replan = || plan::make(&profile, &request.options, &Facts::read(), &guest_url);
    let fetched = fetch_stage(&mut plan, replan, &progress, request.quiet);
    write_json(&run_dir.join("plan.json"), &plan)?;
    let cmdline = plan.boot.as_ref().map(|b| b.cmdline.as_str());
    tracing::info!(accel = ?plan.accel, ?cmdline, "plan made");
    let result = fetched.and_then(|fetch_seconds| {
        let mut outcome = run::execute(&plan, listener, run_dir, &progress)?;
        if let Some(seconds) = fetch_seconds {
            outcome.stages.insert(0, (Stage::Fetch, seconds));
        }
        Ok(outcome)
    });
    let summary = Summary::new(&plan, planned, &result, run_dir);
    write_json(&run_dir.join("summary.json"), &summary)?;
    match &result {
        Ok(_) => tracing::info!("install finished and verified"),
        Err(e) => tracing::error!(
            "install failed: {}",
            crate::ops::secrets::redact(&e.to_string())
        ),
    }
    result
}

/// The fetch stage, before QEMU starts: downloads and verifies the portable QEMU bundle when
/// the machine has no usable QEMU and the plan's image (or verifies the cached copies), unpacks
/// them, then plans again (`replan`) with the image's boot menu and the unpacked QEMU.
/// Returns the stage's duration, or `None` when nothing is downloaded.
fn fetch_stage(
    plan: &mut Plan,
    replan: impl FnOnce() -> Result<Plan, Error>,
    progress: &Progress,
    quiet: bool,
) -> Result<Option<f64>, Error> {
    use crate::fetch::{FetchOptions, Fetcher};
    let qemu_bundle = match &plan.qemu {
        QemuPlan::Bundle {
            fetch,
            cache_dir,
            why,
        } => Some((fetch, cache_dir, why)),
        QemuPlan::Ready(_) => None,
    };
    if plan.fetch.is_none() && qemu_bundle.is_none() {
        return Ok(None);
    }
    let timer = Instant::now();
    let fetcher = Fetcher::new(FetchOptions::from_env()?)?;
    if let Some((fetch, cache_dir, why)) = qemu_bundle {
        progress.stage(Stage::Fetch, &format!("{why}: ferry's portable QEMU it is"));
        let tarball = download(&fetcher, fetch, progress, quiet)?;
        progress.stage(
            Stage::Fetch,
            &format!("unpacking the QEMU bundle into {}", cache_dir.display()),
        );
        crate::qemu::bundle::Bundle::unpack(&tarball.path, &tarball.sha256.to_hex(), cache_dir)
            .map_err(crate::qemu::QemuError::from)?;
    }
    if let Some(fetch) = &plan.fetch {
        let image = download(&fetcher, fetch, progress, quiet)?.path;
        if let Some(unpack) = &fetch.netboot
            && !unpack.is_unpacked_from(&image)
        {
            progress.stage(
                Stage::Fetch,
                &format!(
                    "unpacking the kernel and initrd into {}",
                    unpack.dir.display()
                ),
            );
            crate::fetch::debian::extract_netboot(&image, &unpack.major, &unpack.arch, &unpack.dir)
                .map_err(crate::fetch::FetchError::from)?;
        }
    }
    if plan.boot.is_none() || qemu_bundle.is_some() {
        *plan = replan()?;
    }
    Ok(Some(timer.elapsed().as_secs_f64()))
}

/// Downloads one file of the fetch stage into the cache (or verifies the cached copy),
/// reporting progress.
fn download(
    fetcher: &crate::fetch::Fetcher,
    fetch: &plan::FetchPlan,
    progress: &Progress,
    quiet: bool,
) -> Result<crate::fetch::Fetched, Error> {
    let doing = match fetch.cached {
        true => "verifying the cached copy of",
        false => "downloading",
    };
    let (url, checksum) = (fetch.request.url(), fetch.request.checksum.describe());
    progress.stage(Stage::Fetch, &format!("{doing} {url} ({checksum})"));
    let fetched = fetcher.fetch(
        &fetch.request,
        &mut *crate::fetch::progress::for_stderr(quiet),
    )?;
    let (path, bytes, sha256) = (fetched.path.display(), fetched.bytes, fetched.sha256);
    progress.stage(
        Stage::Fetch,
        &format!("{path} verified ({bytes} bytes, sha256 {sha256})"),
    );
    Ok(fetched)
}

/// `summary.json`: how the run ended and how long each stage took.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    profile: &'a Path,
    disk: &'a Path,
    ok: bool,
    /// `finished`, `failed` or `interrupted`.
    state: &'static str,
    error: Option<String>,
    plan_seconds: f64,
    outcome: Option<&'a Outcome>,
    run_dir: &'a Path,
}

impl<'a> Summary<'a> {
    fn new(
        plan: &'a Plan,
        planned: f64,
        result: &'a Result<Outcome, Error>,
        run_dir: &'a Path,
    ) -> Summary<'a> {
        Summary {
            profile: &plan.profile,
            disk: &plan.disk.target.path,
            ok: result.is_ok(),
            state: match result {
                Ok(_) => "finished",
                Err(Error::Interrupted) => "interrupted",
                Err(_) => "failed",
            },
            error: result
                .as_ref()
                .err()
                .map(|e| crate::ops::secrets::redact(&e.to_string())),
            plan_seconds: planned,
            outcome: result.as_ref().ok(),
            run_dir,
        }
    }
}

/// Writes `value` as JSON, with the profile's secret values redacted.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let text = crate::ops::secrets::redact(&text);
    std::fs::write(path, text + "\n")?;
    Ok(())
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
        return Err(refused());
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
