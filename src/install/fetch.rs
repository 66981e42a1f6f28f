//! The fetch stage, before the plan and before QEMU starts: QEMU when the machine has no
//! usable one (the catalog's portable bundle, or Debian's packages through the archive's signed
//! chain), and the profile's image — downloaded and verified (or the cached copies verified
//! again) and unpacked. The plan is made after it, from what is in the cache then.

use std::time::{Duration, Instant};

use super::plan::{Delivery, Downloads, FetchedImage, Netboot, QemuPlan};
use crate::Error;
use crate::fetch::debian::{Archive, Keyring};
use crate::fetch::{FetchOptions, Fetched, Fetcher, Progress, Request};
use crate::run::{Record, Stage};

/// What the fetch stage did: its duration (`None` when nothing was fetched), and the image as
/// the plan made after it reads it.
pub struct Done {
    pub seconds: Option<f64>,
    pub image: Option<FetchedImage>,
}

/// Fetches QEMU when needed, and the image: downloaded, or (the plan's [`Delivery::Stream`])
/// verified by a first pass and opened for streaming.
pub fn fetch(downloads: &Downloads, record: &Record) -> Result<Done, Error> {
    if downloads.image.is_none() && matches!(downloads.qemu, QemuPlan::Ready(_)) {
        return Ok(Done {
            seconds: None,
            image: None,
        });
    }
    let timer = Instant::now();
    let fetcher = Fetcher::new(FetchOptions::from_env()?)?;
    match &downloads.qemu {
        QemuPlan::Ready(_) => {}
        QemuPlan::Bundle {
            fetch,
            cache_dir,
            why,
        } => {
            record.progress(Stage::Fetch, &format!("{why}: ferry's portable QEMU it is"));
            let tarball = fetch_file(&fetcher, &fetch.request, fetch.cached, record)?;
            record.progress(
                Stage::Fetch,
                &format!("unpacking the QEMU bundle into {}", cache_dir.display()),
            );
            crate::qemu::bundle::Bundle::unpack(&tarball.path, &tarball.sha256.to_hex(), cache_dir)
                .map_err(crate::qemu::QemuError::from)?;
        }
        QemuPlan::Archive {
            source,
            archive,
            cache_dir,
            origin,
            why,
        } => {
            record.progress(Stage::Fetch, &format!("{why}: {}", origin.describe()));
            let archive = Archive::new(archive, Keyring::debian(), &fetcher);
            let assembled = crate::qemu::archive::ensure(
                &archive,
                source,
                cache_dir,
                &mut |s| record.progress(Stage::Fetch, s),
                &mut Recorded::new(record),
            )?;
            record.progress(
                Stage::Fetch,
                &format!(
                    "QEMU {} ready: {}",
                    assembled.qemu.version, assembled.qemu.source
                ),
            );
        }
    }
    let mut fetched_image = None;
    if let Some(fetch) = &downloads.image
        && let Delivery::Stream { cache_limit, .. } = fetch.delivery
    {
        record.progress(
            Stage::Fetch,
            &format!(
                "streaming {} ({})",
                fetch.request.url(),
                fetch.delivery.describe()
            ),
        );
        let image = crate::fetch::stream::open(
            &fetcher,
            &fetch.request,
            cache_limit,
            &mut Recorded::new(record),
        )?;
        record.progress(
            Stage::Fetch,
            &format!(
                "{} verified for streaming ({} bytes, sha256 {}; {} chunk digests)",
                fetch.request.url(),
                image.len(),
                image.record().sha256,
                image.record().chunks()
            ),
        );
        fetched_image = Some(FetchedImage {
            plan: fetch.clone(),
            streamed: Some(image),
        });
    } else if let Some(fetch) = &downloads.image {
        let image = fetch_file(&fetcher, &fetch.request, fetch.cached, record)?.path;
        match &fetch.netboot {
            Some(Netboot::Package(unpack)) if !unpack.is_unpacked_from(&image) => {
                record.progress(
                    Stage::Fetch,
                    &format!(
                        "unpacking the kernel and initrd into {}",
                        unpack.dir.display()
                    ),
                );
                crate::fetch::debian::extract_netboot(
                    &image,
                    &unpack.major,
                    &unpack.arch,
                    &unpack.dir,
                )
                .map_err(crate::fetch::FetchError::from)?;
            }
            Some(Netboot::Tree(tree)) => {
                fetch_file(&fetcher, &tree.initrd, tree.initrd.dest.is_file(), record)?;
            }
            _ => {}
        }
        fetched_image = Some(FetchedImage {
            plan: fetch.clone(),
            streamed: None,
        });
    }
    Ok(Done {
        seconds: Some(timer.elapsed().as_secs_f64()),
        image: fetched_image,
    })
}

/// Downloads one file of the fetch stage into the cache (or verifies the cached copy),
/// reporting progress.
fn fetch_file(
    fetcher: &Fetcher,
    request: &Request,
    cached: bool,
    record: &Record,
) -> Result<Fetched, Error> {
    let doing = match cached {
        true => "verifying the cached copy of",
        false => "downloading",
    };
    let (url, checksum) = (request.url(), request.checksum.describe());
    record.progress(Stage::Fetch, &format!("{doing} {url} ({checksum})"));
    let fetched = fetcher.fetch(request, &mut Recorded::new(record))?;
    let (path, bytes, sha256) = (fetched.path.display(), fetched.bytes, fetched.sha256);
    record.progress(
        Stage::Fetch,
        &format!("{path} verified ({bytes} bytes, sha256 {sha256})"),
    );
    Ok(fetched)
}

/// A download's progress into the run's record, for the foreground to show (the supervisor's
/// own stderr is a file nobody watches): `download` events when a transfer starts, then once
/// a second while bytes flow, and for every 1 % of the file besides (so a fast burst that then
/// stalls shows where it stalled); the downloader's messages (a retry, the next mirror) as
/// progress lines.
struct Recorded<'a> {
    record: &'a Record,
    url: String,
    total: Option<u64>,
    /// Where this transfer started, in bytes and time: its average rate is measured from there.
    first: (u64, Instant),
    /// The last report: its bytes and time.
    last: (u64, Instant),
    /// The bytes received so far.
    done: u64,
    /// How often bytes that flow are reported (a second; tests take longer).
    every: Duration,
}

impl<'a> Recorded<'a> {
    fn new(record: &'a Record) -> Recorded<'a> {
        let now = Instant::now();
        Recorded {
            record,
            url: String::new(),
            total: None,
            first: (0, now),
            last: (0, now),
            done: 0,
            every: Duration::from_secs(1),
        }
    }

    fn report(&mut self, done: u64) {
        let (first, since) = self.first;
        let elapsed = since.elapsed().as_secs_f64();
        let rate = match elapsed > 0.0 {
            true => (done.saturating_sub(first) as f64 / elapsed) as u64,
            false => 0,
        };
        self.record.download(&self.url, done, self.total, rate);
        self.last = (done, Instant::now());
    }
}

impl Progress for Recorded<'_> {
    fn start(&mut self, url: &str, done: u64, total: Option<u64>) {
        self.url = url.to_string();
        self.total = total;
        self.first = (done, Instant::now());
        self.done = done;
        self.report(done);
    }

    fn advance(&mut self, done: u64) {
        self.done = done;
        let (reported, at) = self.last;
        let hundredth = self
            .total
            .is_some_and(|total| done.saturating_sub(reported).saturating_mul(100) >= total);
        if hundredth || at.elapsed() >= self.every {
            self.report(done);
        }
    }

    fn next_file(&mut self, url: &str) {
        self.url = url.to_string();
    }

    fn message(&mut self, text: &str) {
        self.record.progress(Stage::Fetch, text);
    }

    /// The end is recorded however soon it came after the last report.
    fn finish(&mut self) {
        if self.done != self.last.0 {
            self.report(self.done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::events::{self, Events};
    use crate::run::{Event, RunDir};

    /// A burst reports every 1 % of the file without waiting for the second; less than that
    /// waits; a retry's message is a progress line; the next file of a set is named from its
    /// next report on; the end is reported even when it came sooner.
    #[test]
    fn downloads_are_recorded_when_they_start_and_every_hundredth() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = RunDir::at(dir.path());
        let record = Record {
            dir: run_dir.clone(),
            events: Events::start(&run_dir, "p.toml".as_ref(), "d.img".as_ref()).unwrap(),
            secrets: Default::default(),
            stop: Default::default(),
            losses: Default::default(),
        };
        let mut progress = Recorded::new(&record);
        // Only the hundredths report here, however slowly this machine runs the test.
        progress.every = Duration::from_secs(3600);
        progress.start("http://h/x.iso", 0, Some(1000));
        progress.advance(5);
        progress.advance(10);
        progress.advance(15);
        progress.message("retrying in 1s");
        progress.next_file("http://h/y.deb");
        progress.advance(22);
        progress.advance(24);
        progress.finish();
        let (lines, _) = events::read_from(&run_dir, 0).unwrap();
        let said: Vec<String> = lines
            .iter()
            .filter_map(|line| match &line.event {
                Event::Download {
                    url,
                    done_bytes,
                    total_bytes,
                    ..
                } => Some(format!("{url} {done_bytes}/{total_bytes:?}")),
                Event::Progress { stage, message } => Some(format!("{stage}: {message}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            said,
            [
                "http://h/x.iso 0/Some(1000)",
                "http://h/x.iso 10/Some(1000)",
                "fetch: retrying in 1s",
                "http://h/y.deb 22/Some(1000)",
                "http://h/y.deb 24/Some(1000)",
            ]
        );
    }
}
