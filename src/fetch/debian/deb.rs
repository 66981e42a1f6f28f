//! Taking files out of a `.deb`: an `ar` archive holding `debian-binary`, `control.tar.*` and
//! `data.tar.*` (xz in Debian 12 and 13; gzip and uncompressed are read too).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{}: not a Debian package: {reason}", deb.display())]
    NotDeb { deb: PathBuf, reason: String },
    #[error("{}: {member} is compressed in a way ferry does not read", deb.display())]
    Unsupported { deb: PathBuf, member: String },
    #[error("{}: {path} is not in the package", deb.display())]
    Missing { deb: PathBuf, path: String },
    #[error("{}: {path} is not a regular file in the package", deb.display())]
    NotRegular { deb: PathBuf, path: String },
    #[error("{}: {source}", deb.display())]
    Io { deb: PathBuf, source: io::Error },
}

/// Copies files out of the package's data archive: `wanted` pairs a path inside the package
/// (`usr/lib/...`, with or without a leading `./`) with a destination. Each destination is
/// written to `DEST.partial` and renamed into place once complete.
pub fn extract(deb: &Path, wanted: &[(&str, &Path)]) -> Result<(), DebError> {
    with_data_tar(deb, |tar| extract_from_tar(deb, tar, wanted))
}

/// A symbolic link found by [`unpack_mapped`]: made once everything it may point to is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Where `map` put it.
    pub dest: PathBuf,
    /// What it points to, as an absolute path inside the package (`usr/share/seabios/bios.bin`).
    pub target: String,
}

/// Unpacks every regular file of the data archive for which `map` (given the path inside the
/// package, without `./`) names a destination, with the archive's permission bits; returns the
/// symbolic links `map` placed, unmade (their targets may come from another package).
pub fn unpack_mapped(
    deb: &Path,
    map: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<Link>, DebError> {
    with_data_tar(deb, |tar| {
        let io_err = |source: io::Error| DebError::Io {
            deb: deb.to_path_buf(),
            source,
        };
        let mut links = Vec::new();
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            let path = normalize(&entry.path().map_err(io_err)?.to_string_lossy());
            let Some(dest) = map(&path) else { continue };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir).map_err(io_err)?;
                }
                entry.set_preserve_permissions(true);
                entry.unpack(&dest).map_err(io_err)?;
            } else if kind.is_symlink() {
                let target = entry.link_name().map_err(io_err)?.unwrap_or_default();
                let target = target.to_string_lossy();
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                links.push(Link {
                    dest,
                    target: resolve_link(dir, &target),
                });
            }
        }
        Ok(links)
    })
}

/// `target` of a link in directory `dir`, as a normalized absolute path without the leading `/`.
fn resolve_link(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = match target.starts_with('/') {
        true => Vec::new(),
        false => dir.split('/').filter(|p| !p.is_empty()).collect(),
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Runs `f` on the decompressed data archive of `deb`.
fn with_data_tar<R>(
    deb: &Path,
    f: impl FnOnce(Box<dyn Read + '_>) -> Result<R, DebError>,
) -> Result<R, DebError> {
    let io_err = |source: io::Error| DebError::Io {
        deb: deb.to_path_buf(),
        source,
    };
    let not_deb = |reason: &str| DebError::NotDeb {
        deb: deb.to_path_buf(),
        reason: reason.to_string(),
    };
    let mut file = BufReader::new(File::open(deb).map_err(io_err)?);
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .map_err(|_| not_deb("too short"))?;
    if &magic != b"!<arch>\n" {
        return Err(not_deb("no ar archive header"));
    }
    let mut first = true;
    loop {
        let Some((name, size)) = read_member_header(&mut file).map_err(|e| not_deb(&e))? else {
            return Err(not_deb("no data.tar member"));
        };
        if first {
            first = false;
            if name != "debian-binary" {
                return Err(not_deb("first member is not debian-binary"));
            }
            let mut version = vec![0u8; size.min(64) as usize];
            file.read_exact(&mut version).map_err(io_err)?;
            if !version.starts_with(b"2.") {
                return Err(not_deb("format is not 2.x"));
            }
            skip(&mut file, size - version.len() as u64 + size % 2).map_err(io_err)?;
            continue;
        }
        if !name.starts_with("data.tar") {
            skip(&mut file, size + size % 2).map_err(io_err)?;
            continue;
        }
        let member = (&mut file).take(size);
        let decompressed: Box<dyn Read + '_> = match name.as_str() {
            "data.tar" => Box::new(member),
            "data.tar.xz" => Box::new(lzma_rust2::XzReader::new(member, true)),
            "data.tar.gz" => Box::new(flate2::read::MultiGzDecoder::new(member)),
            _ => {
                return Err(DebError::Unsupported {
                    deb: deb.to_path_buf(),
                    member: name,
                });
            }
        };
        return f(decompressed);
    }
}

fn extract_from_tar(deb: &Path, tar: impl Read, wanted: &[(&str, &Path)]) -> Result<(), DebError> {
    let io_err = |source: io::Error| DebError::Io {
        deb: deb.to_path_buf(),
        source,
    };
    let mut pending: Vec<(String, &Path)> =
        wanted.iter().map(|(p, d)| (normalize(p), *d)).collect();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let path = normalize(&entry.path().map_err(io_err)?.to_string_lossy());
        let Some(index) = pending.iter().position(|(p, _)| *p == path) else {
            continue;
        };
        let (path, dest) = pending.swap_remove(index);
        if !entry.header().entry_type().is_file() {
            return Err(DebError::NotRegular {
                deb: deb.to_path_buf(),
                path,
            });
        }
        let partial = partial_path(dest);
        let mut write = || -> io::Result<()> {
            let mut out = File::create(&partial)?;
            io::copy(&mut entry, &mut out)?;
            out.sync_all()?;
            std::fs::rename(&partial, dest)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&partial);
            return Err(io_err(e));
        }
        if pending.is_empty() {
            return Ok(());
        }
    }
    match pending.into_iter().next() {
        Some((path, _)) => Err(DebError::Missing {
            deb: deb.to_path_buf(),
            path,
        }),
        None => Ok(()),
    }
}

/// An ar member header: name (16, `/`-terminated in GNU ar), mtime, uid, gid, mode, size, "`\n".
fn read_member_header(r: &mut impl Read) -> Result<Option<(String, u64)>, String> {
    let mut header = [0u8; 60];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("truncated ar member header".to_string()),
            Ok(n) => got += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    if &header[58..60] != b"`\n" {
        return Err("corrupt ar member header".to_string());
    }
    let name = String::from_utf8_lossy(&header[..16])
        .trim_end()
        .trim_end_matches('/')
        .to_string();
    let size = std::str::from_utf8(&header[48..58])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("bad size in the ar header of {name}"))?;
    Ok(Some((name, size)))
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated ar member",
        ));
    }
    Ok(())
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A .deb with the given data member name and bytes.
    pub fn build_deb(data_name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        let mut member = |name: &str, bytes: &[u8]| {
            out.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    bytes.len()
                )
                .as_bytes(),
            );
            out.extend(bytes);
            if bytes.len() % 2 == 1 {
                out.push(b'\n');
            }
        };
        member("debian-binary", b"2.0\n");
        member("control.tar.gz", b"x"); // odd length: exercises the padding
        member(data_name, data);
        out
    }

    /// An uncompressed tar with `files` (path, contents) and one symlink `link`.
    pub fn build_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *contents).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "./link", "target")
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut enc, data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn extracts_from_plain_and_gzip_data() {
        let tar = build_tar(&[("./usr/share/a", b"alpha"), ("./usr/share/b", b"beta!")]);
        for (name, data) in [("data.tar", tar.clone()), ("data.tar.gz", gzip(&tar))] {
            let dir = tempfile::tempdir().unwrap();
            let deb = dir.path().join("x.deb");
            std::fs::write(&deb, build_deb(name, &data)).unwrap();
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            extract(&deb, &[("usr/share/b", &b), ("./usr/share/a", &a)]).unwrap();
            assert_eq!(std::fs::read(&a).unwrap(), b"alpha");
            assert_eq!(std::fs::read(&b).unwrap(), b"beta!");
            assert!(!dir.path().join("a.partial").exists());
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("x.deb");
        let out = dir.path().join("out");
        let tar = build_tar(&[("./usr/share/a", b"alpha")]);

        std::fs::write(&deb, build_deb("data.tar", &tar)).unwrap();
        let e = extract(&deb, &[("usr/share/zzz", &out)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: usr/share/zzz is not in the package", deb.display())
        );
        let e = extract(&deb, &[("link", &out)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: link is not a regular file in the package",
                deb.display()
            )
        );

        std::fs::write(&deb, build_deb("data.tar.zst", &tar)).unwrap();
        let e = extract(&deb, &[("usr/share/a", &out)]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("data.tar.zst is compressed in a way ferry does not read"),
            "{e}"
        );

        std::fs::write(&deb, b"<html>404</html>").unwrap();
        let e = extract(&deb, &[("usr/share/a", &out)]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("not a Debian package: no ar archive header"),
            "{e}"
        );

        let mut truncated = build_deb("data.tar", &tar);
        truncated.truncate(200);
        std::fs::write(&deb, truncated).unwrap();
        assert!(extract(&deb, &[("usr/share/a", &out)]).is_err());
        assert!(!out.exists());
    }
}
