//! QEMU assembled from Debian's archive, served by a loopback mirror that holds a real subset
//! of deb.debian.org: each file is fetched from the real archive once (kept under
//! `target/debian-mirror/`, so later runs need no network) and then served, with every request
//! counted. When neither the copy nor the archive is there, the tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ferry::arch::Arch;
use ferry::fetch::debian::Archive;
use ferry::fetch::{FetchOptions, Fetcher, parse_url, progress};
use ferry::qemu::archive::{self, Origin, QemuInstall, Source};

use crate::bundle::boots_the_fixture_kernel_alone;
use crate::fetch::{Reply, Server};
use crate::support::*;

const UPSTREAM: &str = "http://deb.debian.org/debian";

type Tamper = dyn Fn(&str, &mut Vec<u8>) + Send + Sync;
/// What is tampered with, how, and the start of the refusal.
type Case = (&'static str, fn(&str, &mut Vec<u8>), &'static str);

/// A loopback mirror at `/debian/`; `tamper(path, body)` may change what it serves.
struct Mirror {
    server: Server,
}

impl Mirror {
    /// Serves the kept copy, filling it from the real archive on a miss (404 if unreachable).
    fn start(tamper: impl Fn(&str, &mut Vec<u8>) + Send + Sync + 'static) -> Mirror {
        let tamper: Arc<Tamper> = Arc::new(tamper);
        let server = Server::start(move |seen, _| {
            let Some(path) = seen.path.strip_prefix("/debian/") else {
                return Reply::Status(404);
            };
            match kept(path) {
                Some(mut body) => {
                    tamper(path, &mut body);
                    Reply::File(body)
                }
                None => Reply::Status(404),
            }
        });
        Mirror { server }
    }

    fn url(&self) -> String {
        self.server.url("/debian")
    }

    fn requests(&self) -> Vec<String> {
        self.server.seen().into_iter().map(|s| s.path).collect()
    }
}

fn mirror_dir() -> PathBuf {
    repo().join("target/debian-mirror")
}

/// The file at `path` of the archive, from the kept copy or else fetched from the real
/// archive into it (written whole, then renamed, so concurrent tests never see a part).
fn kept(path: &str) -> Option<Vec<u8>> {
    if path.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    let local = mirror_dir().join(path);
    if let Ok(body) = std::fs::read(&local) {
        return Some(body);
    }
    let fetcher = Fetcher::new(FetchOptions::default()).ok()?;
    let url = parse_url(&format!("{UPSTREAM}/{path}")).ok()?;
    let body = fetcher
        .get_bytes(&url, &mut progress::Quiet)
        .inspect_err(|e| eprintln!("mirror: {path}: {e}"))
        .ok()?;
    // Tests run as threads of one process and may miss on the same file at once: each writes
    // its own temporary file, and the last rename wins with identical bytes.
    let parent = local.parent()?;
    std::fs::create_dir_all(parent).ok()?;
    let mut partial = tempfile::NamedTempFile::new_in(parent).ok()?;
    std::io::Write::write_all(&mut partial, &body).ok()?;
    partial.persist(&local).ok()?;
    Some(body)
}

/// Whether the archive can be had (kept or reachable); says why not.
fn archive_available() -> bool {
    let ok = kept("dists/bookworm/InRelease").is_some();
    if !ok {
        eprintln!(
            "SKIPPED: {UPSTREAM} is unreachable and {} holds no copy of it",
            mirror_dir().display()
        );
    }
    ok
}

fn ensure(mirror: &Mirror, source: &Source, cache: &Path) -> Result<QemuInstall, String> {
    let fetcher = Fetcher::new(FetchOptions::default()).unwrap();
    let archive = Archive::new(
        &mirror.url(),
        ferry::fetch::debian::Keyring::debian(),
        &fetcher,
    );
    let mut said = Vec::new();
    let mut quiet = progress::Quiet;
    archive::ensure(
        &archive,
        source,
        cache,
        &mut |s| said.push(s.to_string()),
        &mut quiet,
    )
    .inspect(|_| eprintln!("{}", said.join("\n")))
    .map_err(|e| e.to_string())
}

#[test]
fn network_qemu_from_debian_archive_runs_alone_and_is_reused_without_a_request() {
    if !archive_available() {
        return;
    }
    let mirror = Mirror::start(|_, _| {});
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let source = Source::default_for(Arch::X86_64);
    assert!(matches!(
        Origin::of(&source, &cache),
        Origin::Resolve { .. }
    ));

    let started = std::time::Instant::now();
    let install = ensure(&mirror, &source, &cache).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = install.packages.iter().map(|p| p.name.as_str()).collect();
    let bytes: u64 = install.packages.iter().map(|p| p.size).sum();
    eprintln!(
        "assembled from {} packages ({bytes} bytes of .debs) in {:.1}s from the loopback mirror: {names:?}",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    for wanted in [
        "qemu-system-x86",
        "qemu-system-common",
        "qemu-system-data",
        "seabios",
        "ipxe-qemu",
        "ovmf",
        "libc6",
        "libglib2.0-0",
        "libslirp0",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(!names.contains(&"dpkg"), "essential packages are left out");
    assert!(install.downloaded);
    let requests = mirror.requests();
    assert!(requests.contains(&"/debian/dists/bookworm/InRelease".to_string()));
    assert!(
        requests
            .iter()
            .any(|r| r == "/debian/dists/bookworm/main/binary-amd64/Packages.xz")
    );
    assert_eq!(
        install.qemu.program,
        install.bundle.root.join("lib/ld-linux-x86-64.so.2")
    );
    assert!(
        install.qemu.version.starts_with("7.2."),
        "{}",
        install.qemu.version
    );
    // The .debs are gone once unpacked; the unit is the only other thing in the cache.
    let debs = cache.join("qemu-debian/debs");
    assert_eq!(std::fs::read_dir(&debs).unwrap().count(), 0);

    // `--version` through its own loader with nothing else: no PATH, no host libraries.
    let out = std::process::Command::new(&install.qemu.program)
        .args(&install.qemu.pre_args)
        .arg("--version")
        .env_clear()
        .env("PATH", "")
        .envs(install.qemu.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("QEMU emulator version 7.2"), "{stdout}");
    let (code, vars) = ferry::qemu::find_ovmf_in(install.qemu.firmware_dir.as_deref()).unwrap();
    assert!(code.starts_with(&install.bundle.root) && vars.starts_with(&install.bundle.root));
    boots_the_fixture_kernel_alone(&install.qemu, &install.bundle.root);

    // A second run: the recorded set, the unpacked unit, not one request.
    let before = mirror.requests().len();
    assert!(
        matches!(Origin::of(&source, &cache), Origin::Cached { ref root, .. } if *root == install.bundle.root)
    );
    let again = ensure(&mirror, &source, &cache).unwrap();
    assert!(!again.downloaded);
    assert_eq!(again.bundle.root, install.bundle.root);
    assert_eq!(
        mirror.requests().len(),
        before,
        "the second run made requests"
    );

    // The recorded set, pinned (as a catalog entry does), into an empty cache: no index is
    // read, only the pool.
    let pinned = Source {
        pinned: Some(install.packages.clone()),
        ..source.clone()
    };
    let cache2 = dir.path().join("cache2");
    let before = mirror.requests().len();
    let from_pins = ensure(&mirror, &pinned, &cache2).unwrap();
    assert_eq!(from_pins.packages, install.packages);
    let made = &mirror.requests()[before..];
    assert!(
        made.iter().all(|r| r.starts_with("/debian/pool/")),
        "{made:?}"
    );
    assert_eq!(made.len(), install.packages.len());
}

/// Each broken link is refused, named, and leaves nothing unpacked.
#[test]
fn network_qemu_from_debian_archive_refuses_a_tampered_link() {
    if !archive_available() {
        return;
    }
    let cases: [Case; 3] = [
        (
            "InRelease",
            |path, body| {
                if path.ends_with("/InRelease") {
                    let text = String::from_utf8(body.clone()).unwrap();
                    let tampered = text.replacen("Codename: bookworm", "Codename: bookwork", 1);
                    assert_ne!(tampered, text);
                    *body = tampered.into_bytes();
                }
            },
            "QEMU from Debian's archive: dists/bookworm/InRelease: bad signature by key 0x",
        ),
        (
            "Packages",
            |path, body| {
                if path.ends_with("/Packages.xz") {
                    let n = body.len() / 2;
                    body[n] ^= 1;
                }
            },
            "QEMU from Debian's archive: dists/bookworm/main/binary-amd64/Packages.xz: sha256 does not match the one dists/bookworm/InRelease lists",
        ),
        (
            ".deb",
            |path, body| {
                if path.contains("/qemu-system-x86_") {
                    let n = body.len() - 100;
                    body[n] ^= 1;
                }
            },
            "QEMU from Debian's archive: qemu-system-x86_",
        ),
    ];
    for (what, tamper, said) in cases {
        let mirror = Mirror::start(tamper);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let e = ensure(&mirror, &Source::default_for(Arch::X86_64), &cache).unwrap_err();
        eprintln!("tampered {what}: {e}");
        assert!(e.starts_with(said), "tampered {what}: {e}");
        if what == ".deb" {
            assert!(e.contains("checksum mismatch"), "{e}");
        }
        let left: Vec<String> = walk(&cache.join("qemu-debian"));
        assert!(
            left.iter()
                .all(|p| p.starts_with("debs/") && !p.contains("qemu-system-x86_")),
            "tampered {what}: left {left:?}"
        );
    }
}

/// Files under `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A catalog directory holding only the built-in x86-64 Debian QEMU entry, with its archive
/// moved to `mirror`.
fn archive_catalog(dir: &Path, mirror: &Mirror) -> PathBuf {
    let catalog = dir.join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    let entry = std::fs::read_to_string(repo().join("images/qemu-debian-12.toml")).unwrap();
    assert!(entry.contains(UPSTREAM_TLS));
    std::fs::write(
        catalog.join("qemu-debian-12.toml"),
        entry.replace(UPSTREAM_TLS, &mirror.url()),
    )
    .unwrap();
    catalog
}

/// The built-in catalog's archive URL.
const UPSTREAM_TLS: &str = "https://deb.debian.org/debian";

/// `ferry SUBCOMMAND` with no qemu-system-* on PATH (an empty directory), the catalog and
/// the cache.
fn without_qemu(mut cmd: Command, scratch: &Scratch, catalog: &Path, cache: &Path) -> Command {
    let no_qemu = scratch.dir.path().join("bin");
    std::fs::create_dir_all(&no_qemu).unwrap();
    cmd.arg("--catalog")
        .arg(catalog)
        .arg("--cache-dir")
        .arg(cache)
        .env("PATH", &no_qemu);
    cmd
}

/// The `qemu …` line of what `cmd` prints: where QEMU comes from.
fn qemu_line(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
        .lines()
        .find(|l| l.starts_with("qemu "))
        .unwrap_or_else(|| panic!("no qemu line in:\n{stdout}"))
        .to_string()
}

fn doctor(scratch: &Scratch, catalog: &Path, cache: &Path) -> String {
    let mut cmd = ferry();
    cmd.args(["doctor", "--no-probe"]);
    qemu_line(without_qemu(cmd, scratch, catalog, cache))
}

fn plan(scratch: &Scratch, catalog: &Path, cache: &Path) -> String {
    let mut cmd = ferry();
    cmd.arg("plan")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G"]);
    qemu_line(without_qemu(cmd, scratch, catalog, cache))
}

/// A rescue system without QEMU: `ferry plan` and `ferry doctor` say QEMU will come from the
/// Debian archive the catalog names (here a loopback copy of it, signed by Debian); the
/// install resolves, downloads, verifies and unpacks it in the fetch stage, runs the fixture
/// install through its bundled loader and passes the boot check; a second install uses the
/// cache without one request.
#[test]
fn network_install_without_qemu_assembles_debian_qemu_and_reuses_it_without_a_request() {
    if !archive_available() {
        return;
    }
    let mirror = Mirror::start(|_, _| {});
    let scratch = Scratch::new();
    let cache = scratch.dir.path().join("cache");
    let catalog = archive_catalog(scratch.dir.path(), &mirror);
    let to_download = format!(
        "Debian's QEMU: bookworm's x86_64 packages, resolved and verified through the archive's \
         signed InRelease from {}, before QEMU starts (no qemu-system-x86_64 on PATH)",
        mirror.url()
    );
    assert_eq!(
        plan(&scratch, &catalog, &cache),
        format!("qemu         {to_download}")
    );
    assert_eq!(
        doctor(&scratch, &catalog, &cache),
        format!("qemu       {to_download}")
    );
    assert_eq!(
        mirror.requests(),
        Vec::<String>::new(),
        "plan and doctor fetch nothing"
    );

    let started = std::time::Instant::now();
    let install = scratch.install(&fixture("tiny.toml"), &["--accel", "tcg"]);
    let out = without_qemu(install, &scratch, &catalog, &cache)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    eprintln!(
        "install with QEMU assembled from the loopback mirror: {:.1}s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(stdout.contains("  fetch "), "{stdout}");
    for said in [
        "ferry: fetch  no qemu-system-x86_64 on PATH: Debian's QEMU: bookworm's x86_64 packages",
        "ferry: fetch  resolving QEMU's packages in Debian bookworm (amd64)",
        "ferry: fetch  downloading ",
        "ferry: fetch  unpacking QEMU into ",
        "ferry: fetch  QEMU 7.2.",
    ] {
        assert!(stderr.contains(said), "missing {said:?} in:\n{stderr}");
    }
    let root = match Origin::of(&Source::default_for(Arch::X86_64), &cache) {
        Origin::Cached { root, .. } => root,
        other => panic!("not unpacked in the cache: {other:?}"),
    };
    let run = scratch.run_dir();
    packages_downloads_were_recorded(&run, &cache, &mirror);
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    assert!(
        args.starts_with(&format!("{}/lib/ld-linux-x86-64.so.2 ", root.display())),
        "{args}"
    );
    assert_eq!(mbr_partitions(&scratch.disk()).len(), 1);
    // The supervisor planned once, after the fetch (the foreground's is the other one).
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert_eq!(log.matches("plan made").count(), 1, "{log}");

    // Again, into a new disk: the cache's QEMU, not one request.
    let requests = mirror.requests().len();
    let cached = format!(
        "qemu         {}/lib/ld-linux-x86-64.so.2 7.2.",
        root.display()
    );
    let planned = plan(&scratch, &catalog, &cache);
    assert!(planned.starts_with(&cached), "{planned}");
    assert!(
        planned.ends_with(&format!(
            "(Debian's QEMU ({} packages) in {} (no qemu-system-x86_64 on PATH))",
            package_count(&cache),
            root.display()
        )),
        "{planned}"
    );
    let doctored = doctor(&scratch, &catalog, &cache);
    assert!(doctored.contains(&root.display().to_string()), "{doctored}");
    let again = Scratch::new();
    let install = again.install(&fixture("tiny.toml"), &["--accel", "tcg"]);
    let out = without_qemu(install, &again, &catalog, &cache)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        !stderr.contains("ferry: fetch"),
        "nothing to fetch:\n{stderr}"
    );
    assert_eq!(
        mirror.requests().len(),
        requests,
        "the second install made requests"
    );
}

/// The packages' bytes reached the run's record as one transfer, for the foreground's status
/// line: `download` events of the mirror's `.deb` files against the whole set's size, their
/// bytes only growing, the last at the whole set.
fn packages_downloads_were_recorded(run: &Path, cache: &Path, mirror: &Mirror) {
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cache.join("qemu-debian/bookworm-amd64.json")).unwrap(),
    )
    .unwrap();
    let packages = record["packages"].as_array().unwrap();
    let set: u64 = packages.iter().map(|p| p["size"].as_u64().unwrap()).sum();
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let downloads: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "download")
        .collect();
    let pool = format!("{}/pool/", mirror.url());
    let debs: Vec<&serde_json::Value> = downloads
        .iter()
        .filter(|e| e["url"].as_str().is_some_and(|u| u.starts_with(&pool)))
        .collect();
    assert!(
        debs.iter()
            .all(|e| e["url"].as_str().unwrap().ends_with(".deb") && e["total_bytes"] == set),
        "every package's event against the set's {set} bytes: {debs:#?}"
    );
    let done: Vec<u64> = debs
        .iter()
        .map(|e| e["done_bytes"].as_u64().unwrap())
        .collect();
    assert!(done.is_sorted(), "{done:?}");
    assert_eq!(done.last(), Some(&set), "{done:?}");
    // Many files, not only the first: the status line names the package under way.
    let named: std::collections::BTreeSet<&str> =
        debs.iter().map(|e| e["url"].as_str().unwrap()).collect();
    eprintln!(
        "download events of the packages: {} naming {} files",
        debs.len(),
        named.len()
    );
    assert!(named.len() > 10, "{named:#?}");
}

/// The number of packages the cache's record lists.
fn package_count(cache: &Path) -> usize {
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cache.join("qemu-debian/bookworm-amd64.json")).unwrap(),
    )
    .unwrap();
    record["packages"].as_array().unwrap().len()
}

/// A tampered index fails the install in the fetch stage with one line naming the broken
/// link and exit code 5; nothing is unpacked and the disk is not created.
#[test]
fn network_install_refuses_qemu_from_a_tampered_archive_index() {
    if !archive_available() {
        return;
    }
    let mirror = Mirror::start(|path, body| {
        if path.ends_with("/Packages.xz") {
            let n = body.len() / 2;
            body[n] ^= 1;
        }
    });
    let scratch = Scratch::new();
    let cache = scratch.dir.path().join("cache");
    let catalog = archive_catalog(scratch.dir.path(), &mirror);
    let install = scratch.install(&fixture("tiny.toml"), &["--accel", "tcg"]);
    let out = without_qemu(install, &scratch, &catalog, &cache)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ferry: error:"))
        .collect();
    assert_eq!(
        error,
        [
            "ferry: error: QEMU from Debian's archive: dists/bookworm/main/binary-amd64/Packages.xz: \
          sha256 does not match the one dists/bookworm/InRelease lists"
        ],
        "{stderr}"
    );
    assert!(
        walk(&cache.join("qemu-debian"))
            .iter()
            .all(|p| p.starts_with("debs/")),
        "{:?}",
        walk(&cache)
    );
    assert!(!scratch.disk().exists(), "the disk was touched");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.run_dir().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["state"], "failed", "{summary}");
}
