//! `ferry cache list|prune|clean`: what the download cache holds and taking it back. On a
//! rescue system the cache is usually RAM, so an operator needs to see and free it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::Error;
use crate::fetch::cache::{self, Cached, CachedKind};
use crate::run::events::Timestamp;

/// `ferry cache list --json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Listing {
    pub cache_dir: PathBuf,
    pub total_bytes: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: CachedKind,
    pub bytes: u64,
    pub last_used: Timestamp,
    /// A partial download another ferry is writing now: never removed.
    pub in_use: bool,
}

impl Entry {
    fn of(unit: &Cached) -> Entry {
        Entry {
            path: unit.path.clone(),
            kind: unit.kind,
            bytes: unit.bytes,
            last_used: Timestamp::from(unit.last_used),
            in_use: unit.in_use(),
        }
    }
}

pub fn list(dir: &Path) -> Result<Listing, Error> {
    let entries: Vec<Entry> = cache::units(dir)?.iter().map(Entry::of).collect();
    Ok(Listing {
        cache_dir: dir.to_path_buf(),
        total_bytes: entries.iter().map(|e| e.bytes).sum(),
        entries,
    })
}

pub fn print_listing(listing: &Listing) {
    let now = Timestamp::now();
    println!("{:>10}  {:<8} {:>12}  PATH", "SIZE", "KIND", "UNUSED FOR");
    for e in &listing.entries {
        let path = e.path.strip_prefix(&listing.cache_dir).unwrap_or(&e.path);
        let unused = age_text(now.since(e.last_used));
        let busy = if e.in_use { " (downloading)" } else { "" };
        println!(
            "{:>10}  {:<8} {:>12}  {}{busy}",
            HumanBytes(e.bytes).to_string(),
            e.kind.as_str(),
            unused,
            path.display()
        );
    }
    println!(
        "{} in {} entries under {}",
        HumanBytes(listing.total_bytes),
        listing.entries.len(),
        listing.cache_dir.display()
    );
}

/// An age in the unit `prune --older-than` takes it in: `40d`, `5h`, `12m`, `now`.
fn age_text(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        86_400.. => format!("{}d", secs / 86_400),
        3_600.. => format!("{}h", secs / 3_600),
        60.. => format!("{}m", secs / 60),
        _ => "now".to_string(),
    }
}

/// What `prune` / `clean` removed and kept.
#[derive(Debug, Default)]
pub struct Removed {
    pub paths: Vec<PathBuf>,
    pub bytes: u64,
    /// Partial downloads being written by another ferry.
    pub in_use: usize,
}

/// Removes every unit unused for at least `older_than` (`None`: every unit), except partial
/// downloads another ferry is writing.
pub fn remove(dir: &Path, older_than: Option<Duration>) -> Result<Removed, Error> {
    let now = Timestamp::now();
    let mut removed = Removed::default();
    for unit in cache::units(dir)? {
        let old = older_than.is_none_or(|age| now.since(Timestamp::from(unit.last_used)) >= age);
        if !old {
            continue;
        }
        if unit.in_use() {
            removed.in_use += 1;
            continue;
        }
        unit.remove()?;
        removed.bytes += unit.bytes;
        removed.paths.push(unit.path);
    }
    Ok(removed)
}

/// One line on stderr for what was freed, after one line per removed path on stdout.
pub fn print_removed(removed: &Removed, dir: &Path) {
    for path in &removed.paths {
        println!("removed {}", path.display());
    }
    let busy = match removed.in_use {
        0 => String::new(),
        n => format!("; kept {n} download(s) in progress"),
    };
    eprintln!(
        "ferry: freed {} ({} entries) in {}{busy}",
        HumanBytes(removed.bytes),
        removed.paths.len(),
        dir.display()
    );
}
