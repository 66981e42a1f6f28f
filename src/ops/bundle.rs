//! `ferry bundle`: one `.tar.gz` of a run for support, with secrets removed.
//!
//! Holds the run directory's records (plan, host facts, QEMU arguments and stderr, serial log,
//! transcript, the answer files served, ferry log, events, status, summary, screenshots, the
//! boot check's records) and `versions.txt` (ferry's and QEMU's versions). The secret values
//! were redacted when the records were written; text files pass through
//! [`secrets::scrub_lines`] too (password- and key-looking lines), screenshots are copied as they are. Only regular files are read, never
//! through a link: a record that is a link (`serial.log -> /etc/shadow`) or not a regular
//! file is left out and named in `skipped.txt`. Sockets and disk-sized scratch files stay out.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::OpsError;
use crate::Error;
use crate::run::RunDir;
use crate::run::secrets;

/// Writes the bundle of `run_dir` to `out` (default `RUN.tar.gz` in the current directory);
/// returns its path.
pub fn write(run_dir: &RunDir, out: Option<&Path>, force: bool) -> Result<PathBuf, Error> {
    let run = run_dir.name();
    let out = out.map_or_else(
        || PathBuf::from(format!("ferry-{run}.tar.gz")),
        Path::to_path_buf,
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        // Created only if absent: an earlier bundle (or anything else) is never overwritten.
        options.create_new(true);
    }
    let file = options.open(&out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => OpsError::Bundle(format!(
            "{} already exists; choose another file with -o, or overwrite it with --force",
            out.display()
        ))
        .into(),
        _ => Error::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", out.display()),
        )),
    })?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let mut added = 0;
    let mut skipped = String::new();
    for (sub, dir) in [("", run_dir.clone()), ("verify", run_dir.verify())] {
        for path in dir.text_records() {
            let inside = path.strip_prefix(dir.path()).unwrap_or(&path);
            let name = Path::new(&run).join(sub).join(inside);
            match read_regular(&path) {
                Ok(Some(bytes)) => {
                    append(&mut tar, &name, &clean(&bytes))?;
                    added += 1;
                }
                Ok(None) => {}
                Err(why) => skipped.push_str(&format!("{}: {why}\n", name.display())),
            }
        }
        let mut pngs: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        pngs.sort();
        for png in pngs {
            let name = Path::new(&run)
                .join(sub)
                .join(png.file_name().unwrap_or_default());
            match read_regular(&png) {
                Ok(Some(bytes)) => append(&mut tar, &name, &bytes)?,
                Ok(None) => {}
                Err(why) => skipped.push_str(&format!("{}: {why}\n", name.display())),
            }
        }
    }
    if added == 0 {
        return Err(
            OpsError::Bundle(format!("{} holds no run records", run_dir.path().display())).into(),
        );
    }
    append(
        &mut tar,
        &Path::new(&run).join("versions.txt"),
        versions(run_dir).as_bytes(),
    )?;
    if !skipped.is_empty() {
        append(
            &mut tar,
            &Path::new(&run).join("skipped.txt"),
            skipped.as_bytes(),
        )?;
    }
    let gz = tar.into_inner()?;
    gz.finish()?.sync_all()?;
    Ok(out)
}

/// The contents of `path` if it is a regular file (opened without following a link);
/// `None` if it does not exist; else why it was left out.
fn read_regular(path: &Path) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            let target = std::fs::read_link(path).unwrap_or_default();
            return Err(format!("a link to {}, not followed", target.display()));
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

fn clean(bytes: &[u8]) -> Vec<u8> {
    secrets::scrub_lines(&String::from_utf8_lossy(bytes)).into_bytes()
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(crate::run::events::Timestamp::now().epoch_seconds());
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}

/// ferry's version, and QEMU's as the plan recorded the binary.
fn versions(run_dir: &RunDir) -> String {
    let mut text = format!("ferry {}\n", env!("CARGO_PKG_VERSION"));
    let plan: Option<serde_json::Value> = std::fs::read_to_string(run_dir.plan())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(qemu) = plan.as_ref().map(|p| &p["qemu"]) {
        text.push_str(&format!("qemu (from plan.json): {qemu}\n"));
        if let Some(program) = qemu["program"].as_str()
            && let Ok(out) = std::process::Command::new(program)
                .arg("--version")
                .output()
        {
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            text.push_str(&format!("{program} --version now: {first}\n"));
        }
    }
    text
}
