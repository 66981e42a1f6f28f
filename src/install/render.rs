//! `ferry plan --render DIR`: what an install would serve and run, written out to be read
//! before it runs. The same functions build it as the install's: the answer files as served,
//! the kernel command line, and QEMU's command line from [`boot::machine`] with DIR in the
//! run directory's place.

use std::path::{Path, PathBuf};

use super::Plan;
use super::boot;
use super::plan::PlanError;
use crate::Error;
use crate::run::{RunDir, Secrets, create_private_dir, write_private};

/// Writes `DIR/files/NAME` for each answer file, `DIR/cmdline` (when ferry boots the kernel
/// itself) and `DIR/qemu.args`, each with `secrets` redacted. DIR is created 0700 and must be
/// empty unless `force`; the files are 0600. Everything is computed before DIR is touched.
/// Returns the files written, relative to DIR.
pub fn write(
    plan: &Plan,
    secrets: &Secrets,
    dir: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, Error> {
    let machine = boot::machine(plan, &RunDir::at(dir), plan.accel.first).map_err(|e| match e {
        Error::Plan(PlanError::NotFetched(why)) => PlanError::Input {
            at: format!("--render {}", dir.display()),
            message: format!("{why}: download it with `ferry fetch` first, then render"),
        }
        .into(),
        e => e,
    })?;
    let mut outputs: Vec<(PathBuf, Vec<u8>)> = plan
        .files
        .iter()
        .map(|f| {
            let path = Path::new("files").join(&f.name);
            (path, secrets.redact_bytes(&f.content))
        })
        .collect();
    if let Some(kernel) = &machine.kernel {
        let cmdline = secrets.redact(&kernel.append) + "\n";
        outputs.push(("cmdline".into(), cmdline.into_bytes()));
    }
    let args = secrets.redact(&boot::command_line(plan, &machine)?) + "\n";
    outputs.push(("qemu.args".into(), args.into_bytes()));

    let not_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if not_empty && !force {
        return Err(PlanError::Input {
            at: format!("--render {}", dir.display()),
            message: "the directory is not empty: name a new or empty one, or overwrite the \
                      files it writes with --force"
                .into(),
        }
        .into());
    }
    create_private_dir(&dir.join("files"))?;
    for (name, bytes) in &outputs {
        write_private(&dir.join(name), bytes)?;
    }
    Ok(outputs.into_iter().map(|(name, _)| name).collect())
}
