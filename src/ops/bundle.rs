//! `ferry bundle`: one `.tar.gz` of a run for support, with secrets removed.
//!
//! Holds the run directory's records (plan, host facts, QEMU arguments and stderr, serial log,
//! transcript, ferry log, events, status, summary, screenshots, the boot check's records) and
//! `versions.txt` (ferry's and QEMU's versions). Text files pass through
//! [`secrets::scrub`] (the profile's secret values) and
//! [`secrets::scrub_lines`] (password- and key-looking lines); screenshots are copied
//! as they are. Sockets, disk-sized scratch files and `secrets.json` stay out.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::OpsError;
use crate::Error;
use crate::run::RunDir;
use crate::run::secrets::{self, Fingerprints};

/// Writes the bundle of `run_dir` to `out` (default `RUN.tar.gz` in the current directory);
/// returns its path.
pub fn write(run_dir: &RunDir, out: Option<&Path>) -> Result<PathBuf, Error> {
    let run = run_dir.name();
    let out = out.map_or_else(
        || PathBuf::from(format!("ferry-{run}.tar.gz")),
        Path::to_path_buf,
    );
    let fp = secrets::read_fingerprints(run_dir);
    let file = std::fs::File::create(&out)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let mut added = 0;
    for (sub, dir) in [("", run_dir.clone()), ("verify", run_dir.verify())] {
        for path in dir.text_records() {
            if let Ok(bytes) = std::fs::read(&path) {
                let name = Path::new(&run)
                    .join(sub)
                    .join(path.file_name().unwrap_or_default());
                append(&mut tar, &name, &clean(&bytes, &fp))?;
                added += 1;
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
            let bytes = std::fs::read(&png)?;
            let name = Path::new(&run)
                .join(sub)
                .join(png.file_name().unwrap_or_default());
            append(&mut tar, &name, &bytes)?;
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
    let gz = tar.into_inner()?;
    gz.finish()?.sync_all()?;
    Ok(out)
}

fn clean(bytes: &[u8], fp: &Fingerprints) -> Vec<u8> {
    let scrubbed = secrets::scrub(bytes, fp);
    match std::str::from_utf8(&scrubbed) {
        Ok(text) => secrets::scrub_lines(text).into_bytes(),
        Err(_) => secrets::scrub_lines(&String::from_utf8_lossy(&scrubbed)).into_bytes(),
    }
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
