//! The fetch stage, before QEMU starts: the portable QEMU bundle when the machine has no
//! usable QEMU, and the plan's image — downloaded and verified (or the cached copies verified
//! again) and unpacked; then the plan is made once more with what was fetched.

use std::time::Instant;

use super::plan::{FetchPlan, Plan, QemuPlan};
use crate::Error;
use crate::fetch::{FetchOptions, Fetched, Fetcher};
use crate::run::{Record, Stage};

/// Returns the stage's duration, or `None` when nothing is downloaded. `replan` is called
/// only when the fetch changed an input of the plan (the image's boot menu, the QEMU).
pub fn fetch(
    plan: &mut Plan,
    replan: impl FnOnce() -> Result<Plan, Error>,
    record: &Record,
    quiet: bool,
) -> Result<Option<f64>, Error> {
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
        record.progress(Stage::Fetch, &format!("{why}: ferry's portable QEMU it is"));
        let tarball = download(&fetcher, fetch, record, quiet)?;
        record.progress(
            Stage::Fetch,
            &format!("unpacking the QEMU bundle into {}", cache_dir.display()),
        );
        crate::qemu::bundle::Bundle::unpack(&tarball.path, &tarball.sha256.to_hex(), cache_dir)
            .map_err(crate::qemu::QemuError::from)?;
    }
    if let Some(fetch) = &plan.fetch {
        let image = download(&fetcher, fetch, record, quiet)?.path;
        if let Some(unpack) = &fetch.netboot
            && !unpack.is_unpacked_from(&image)
        {
            record.progress(
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
    fetcher: &Fetcher,
    fetch: &FetchPlan,
    record: &Record,
    quiet: bool,
) -> Result<Fetched, Error> {
    let doing = match fetch.cached {
        true => "verifying the cached copy of",
        false => "downloading",
    };
    let (url, checksum) = (fetch.request.url(), fetch.request.checksum.describe());
    record.progress(Stage::Fetch, &format!("{doing} {url} ({checksum})"));
    let fetched = fetcher.fetch(
        &fetch.request,
        &mut *crate::fetch::progress::for_stderr(quiet),
    )?;
    let (path, bytes, sha256) = (fetched.path.display(), fetched.bytes, fetched.sha256);
    record.progress(
        Stage::Fetch,
        &format!("{path} verified ({bytes} bytes, sha256 {sha256})"),
    );
    Ok(fetched)
}
