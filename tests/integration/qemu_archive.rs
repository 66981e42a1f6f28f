//! QEMU assembled from Debian's archive, served by a loopback mirror that holds a real subset
//! of deb.debian.org: each file is fetched from the real archive once (kept under
//! `target/debian-mirror/`, so later runs need no network) and then served, with every request
//! counted. When neither the copy nor the archive is there, the tests say so and skip.

use std::path::{Path, PathBuf};
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
    std::fs::create_dir_all(local.parent()?).ok()?;
    let partial = local.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, &body).ok()?;
    std::fs::rename(&partial, &local).ok()?;
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
    archive::ensure(&archive, source, cache, &mut |s| said.push(s.to_string()))
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
