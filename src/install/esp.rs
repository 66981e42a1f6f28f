//! The finish step of UEFI installs: the EFI system partition must hold the removable-media
//! loader `EFI/BOOT/BOOTX64.EFI` (`BOOTAA64.EFI` on aarch64), because the boot entries the
//! installer wrote live in the VM's variable store, not in the server's firmware. Reads the
//! disk's GPT and the ESP's FAT file system directly; copies the installed loader there when
//! the installer left only a vendor path (`EFI/<vendor>/shimx64.efi` or `grubx64.efi`, `…aa64`
//! on aarch64). Optionally adds a boot entry to the real firmware with efibootmgr.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::arch::Arch;

/// The removable-media loader's file name in `EFI/BOOT`, which UEFI firmware boots without a
/// boot entry: `BOOTX64.EFI`, `BOOTAA64.EFI`.
fn removable_name(arch: Arch) -> String {
    format!("BOOT{}.EFI", arch.efi().to_uppercase())
}

/// The removable-media loader's path on the ESP.
pub fn removable_loader(arch: Arch) -> String {
    format!("EFI/BOOT/{}", removable_name(arch))
}

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B` as stored on disk (mixed-endian).
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: no GPT partition table: the installer did not set the disk up for UEFI", path.display())]
    NoGpt { path: PathBuf },
    #[error("{}: the GPT has no EFI system partition: the disk cannot boot under UEFI", path.display())]
    NoEsp { path: PathBuf },
    #[error("{}: EFI system partition {number}: not a readable FAT file system: {source}", path.display())]
    Fat {
        path: PathBuf,
        number: u32,
        source: io::Error,
    },
    #[error(
        "{}: the EFI system partition has no {loader} and no loader to copy there (looked for EFI/*/{looked}; found: {found})",
        path.display()
    )]
    NoLoader {
        path: PathBuf,
        loader: String,
        looked: String,
        found: String,
    },
    #[error("efibootmgr failed ({status}): {output}")]
    Efibootmgr { status: String, output: String },
}

impl EspError {
    /// The installed disk cannot boot under UEFI as it is (see README.md).
    pub fn exit_code(&self) -> i32 {
        28
    }
}

/// What the check found or did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EspReport {
    /// Partition number of the ESP (1-based, as efibootmgr's `-p`).
    pub partition: u32,
    /// The removable-media loader's path: EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI.
    pub loader: String,
    /// The vendor loader copied to the removable-media path, if one was.
    pub copied_from: Option<String>,
    /// Other files copied into EFI/BOOT alongside it (grubx64.efi next to shim, grub.cfg).
    pub copied_also: Vec<String>,
}

impl EspReport {
    pub fn describe(&self) -> String {
        match &self.copied_from {
            None => format!("ESP (partition {}) holds {}", self.partition, self.loader),
            Some(from) => {
                let also = if self.copied_also.is_empty() {
                    String::new()
                } else {
                    format!(" (with {})", self.copied_also.join(", "))
                };
                format!(
                    "ESP (partition {}) had no {}: copied {from} there{also}, so the disk boots without an NVRAM entry",
                    self.partition, self.loader
                )
            }
        }
    }
}

/// A partition of the disk as its own seekable file.
struct Slice {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Slice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.file.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// A GPT partition: number (1-based), byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptPartition {
    pub number: u32,
    pub start: u64,
    pub len: u64,
    pub is_esp: bool,
}

/// Reads the GPT (512- or 4096-byte sectors). `None` when there is none.
pub fn read_gpt(file: &mut File) -> io::Result<Option<Vec<GptPartition>>> {
    for sector in [512u64, 4096] {
        let mut header = [0u8; 92];
        file.seek(SeekFrom::Start(sector))?;
        if file.read_exact(&mut header).is_err() || &header[..8] != b"EFI PART" {
            continue;
        }
        let le64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        let entries_lba = le64(&header[72..]);
        let count = le32(&header[80..]).min(1024);
        let size = le32(&header[84..]).clamp(128, 4096) as usize;
        let mut table = vec![0u8; count as usize * size];
        file.seek(SeekFrom::Start(entries_lba * sector))?;
        file.read_exact(&mut table)?;
        let partitions = table
            .chunks(size)
            .enumerate()
            .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
            .map(|(i, e)| {
                let (first, last) = (le64(&e[32..]), le64(&e[40..]));
                GptPartition {
                    number: i as u32 + 1,
                    start: first * sector,
                    len: (last + 1).saturating_sub(first) * sector,
                    is_esp: e[..16] == ESP_TYPE,
                }
            })
            .collect();
        return Ok(Some(partitions));
    }
    Ok(None)
}

/// Makes sure the disk's ESP holds the removable-media loader of an `arch` machine
/// (EFI/BOOT/BOOTX64.EFI, BOOTAA64.EFI), copying the installed loader there if needed.
pub fn ensure_removable_loader(disk: &Path, arch: Arch) -> Result<EspReport, EspError> {
    let io_err = |source| EspError::Io {
        path: disk.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io_err)?;
    // The guest wrote with O_DIRECT (cache=none): drop whatever the host cached before.
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let partitions = read_gpt(&mut file)
        .map_err(io_err)?
        .ok_or_else(|| EspError::NoGpt {
            path: disk.to_path_buf(),
        })?;
    let esp = partitions
        .iter()
        .find(|p| p.is_esp)
        .ok_or_else(|| EspError::NoEsp {
            path: disk.to_path_buf(),
        })?;
    let fat_err = |source| EspError::Fat {
        path: disk.to_path_buf(),
        number: esp.number,
        source,
    };
    let slice = Slice {
        file: file.try_clone().map_err(io_err)?,
        start: esp.start,
        len: esp.len,
        pos: 0,
    };
    let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new()).map_err(fat_err)?;
    let mut report = EspReport {
        partition: esp.number,
        loader: removable_loader(arch),
        copied_from: None,
        copied_also: Vec::new(),
    };
    {
        let root = fs.root_dir();
        if root.open_file(&report.loader).is_err() {
            let (vendor, loader, companions, found) = find_loader(&root, arch).map_err(fat_err)?;
            let Some(loader) = loader else {
                return Err(EspError::NoLoader {
                    path: disk.to_path_buf(),
                    loader: report.loader,
                    looked: vendor_loaders(arch)
                        .iter()
                        .map(|(primary, _)| primary.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    found,
                });
            };
            let efi = root.open_dir("EFI").map_err(fat_err)?;
            let boot = match efi.open_dir("BOOT") {
                Ok(dir) => dir,
                Err(_) => efi.create_dir("BOOT").map_err(fat_err)?,
            };
            let from_dir = efi.open_dir(&vendor).map_err(fat_err)?;
            copy_file(&from_dir, &loader, &boot, &removable_name(arch)).map_err(fat_err)?;
            for name in &companions {
                copy_file(&from_dir, name, &boot, name).map_err(fat_err)?;
            }
            report.copied_from = Some(format!("EFI/{vendor}/{loader}"));
            report.copied_also = companions;
        }
    }
    fs.unmount().map_err(fat_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(report)
}

type Found = (String, Option<String>, Vec<String>, String);

/// The vendor loaders of an `arch` machine in the order they are preferred, each with the
/// files copied along: shim first (with grubx64.efi and mmx64.efi next to it, which shim
/// loads from its own directory), then GRUB (with its grub.cfg), then systemd-boot.
fn vendor_loaders(arch: Arch) -> [(String, Vec<String>); 3] {
    let e = arch.efi();
    [
        (
            format!("shim{e}.efi"),
            vec![
                format!("grub{e}.efi"),
                format!("mm{e}.efi"),
                "grub.cfg".into(),
            ],
        ),
        (format!("grub{e}.efi"), vec!["grub.cfg".into()]),
        (format!("systemd-boot{e}.efi"), vec![]),
    ]
}

/// The vendor directory and loader to copy ([`vendor_loaders`]). Also lists what was found,
/// for the error message.
fn find_loader<T: fatfs::ReadWriteSeek>(root: &fatfs::Dir<T>, arch: Arch) -> io::Result<Found> {
    let efi = root.open_dir("EFI")?;
    let mut dirs: Vec<(String, Vec<String>)> = Vec::new();
    for entry in efi.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if !entry.is_dir() || name == "." || name == ".." || name.eq_ignore_ascii_case("BOOT") {
            continue;
        }
        let files = entry
            .to_dir()
            .iter()
            .filter_map(|f| f.ok())
            .filter(|f| f.is_file())
            .map(|f| f.file_name())
            .collect();
        dirs.push((name, files));
    }
    dirs.sort();
    let found = dirs
        .iter()
        .flat_map(|(d, files)| files.iter().map(move |f| format!("EFI/{d}/{f}")))
        .collect::<Vec<_>>()
        .join(", ");
    let find = |files: &[String], wanted: &str| {
        files
            .iter()
            .find(|f| f.eq_ignore_ascii_case(wanted))
            .cloned()
    };
    for (primary, companions) in vendor_loaders(arch) {
        for (dir, files) in &dirs {
            if let Some(loader) = find(files, &primary) {
                let with: Vec<String> = companions.iter().filter_map(|c| find(files, c)).collect();
                return Ok((dir.clone(), Some(loader), with, found));
            }
        }
    }
    Ok((
        String::new(),
        None,
        Vec::new(),
        if found.is_empty() {
            "nothing".into()
        } else {
            found
        },
    ))
}

fn copy_file<T: fatfs::ReadWriteSeek>(
    from: &fatfs::Dir<T>,
    name: &str,
    to: &fatfs::Dir<T>,
    as_name: &str,
) -> io::Result<()> {
    let mut data = Vec::new();
    from.open_file(name)?.read_to_end(&mut data)?;
    let mut out = to.create_file(as_name)?;
    out.truncate()?;
    out.write_all(&data)?;
    out.flush()
}

/// efibootmgr on PATH.
pub fn efibootmgr() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("efibootmgr"))
        .find(|p| p.is_file())
}

/// Adds the removable-media loader (`\EFI\BOOT\BOOTX64.EFI`, `BOOTAA64.EFI`) on partition
/// `partition` of `disk` to this machine's firmware.
pub fn add_boot_entry(disk: &Path, partition: u32, arch: Arch) -> Result<String, EspError> {
    let program = efibootmgr().ok_or_else(|| EspError::Efibootmgr {
        status: "not run".into(),
        output: "efibootmgr not found on PATH".into(),
    })?;
    let output = Command::new(program)
        .arg("-c")
        .arg("-d")
        .arg(disk)
        .args([
            "-p",
            &partition.to_string(),
            "-L",
            "ferry",
            "-l",
            &format!(r"\EFI\BOOT\{}", removable_name(arch)),
        ])
        .output()
        .map_err(|e| EspError::Efibootmgr {
            status: "not started".into(),
            output: e.to_string(),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(EspError::Efibootmgr {
            status: output.status.to_string(),
            output: text.trim().to_string(),
        });
    }
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GPT disk image with one FAT ESP holding `files`, made with sfdisk and mkfs.vfat/mtools
    /// when available.
    fn esp_image(dir: &Path, files: &[&str]) -> Option<PathBuf> {
        let have = |p: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {p}"))
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !["sfdisk", "mkfs.vfat", "mmd", "mcopy"]
            .iter()
            .all(|p| have(p))
        {
            eprintln!("SKIPPED: sfdisk, mkfs.vfat and mtools are needed");
            return None;
        }
        let disk = dir.join("disk.img");
        let esp = dir.join("esp.img");
        File::create(&disk).unwrap().set_len(64 << 20).unwrap();
        let mut sfdisk = Command::new("sfdisk")
            .arg("-q")
            .arg(&disk)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\nstart=2048, size=40MiB, type=U\ntype=L\n")
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        File::create(&esp).unwrap().set_len(40 << 20).unwrap();
        assert!(
            Command::new("mkfs.vfat")
                .arg(&esp)
                .output()
                .unwrap()
                .status
                .success()
        );
        for f in files {
            let parent = Path::new(f).parent().unwrap();
            let mut acc = String::new();
            for part in parent.components() {
                acc = format!("{acc}/{}", part.as_os_str().to_string_lossy());
                let _ = Command::new("mmd")
                    .arg("-i")
                    .arg(&esp)
                    .arg(format!("::{acc}"))
                    .output();
            }
            let src = dir.join("payload");
            std::fs::write(&src, format!("loader {f}")).unwrap();
            assert!(
                Command::new("mcopy")
                    .arg("-i")
                    .arg(&esp)
                    .arg(&src)
                    .arg(format!("::/{f}"))
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let data = std::fs::read(&esp).unwrap();
        let mut out = OpenOptions::new().write(true).open(&disk).unwrap();
        out.seek(SeekFrom::Start(2048 * 512)).unwrap();
        out.write_all(&data).unwrap();
        Some(disk)
    }

    fn read_back(disk: &Path, path: &str) -> Option<String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk)
            .unwrap();
        let parts = read_gpt(&mut file).unwrap().unwrap();
        let esp = parts.iter().find(|p| p.is_esp).unwrap();
        let fs = fatfs::FileSystem::new(
            Slice {
                file,
                start: esp.start,
                len: esp.len,
                pos: 0,
            },
            fatfs::FsOptions::new(),
        )
        .unwrap();
        let mut text = String::new();
        fs.root_dir()
            .open_file(path)
            .ok()?
            .read_to_string(&mut text)
            .unwrap();
        Some(text)
    }

    #[test]
    fn present_loader_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let Some(disk) = esp_image(
            dir.path(),
            &["EFI/BOOT/BOOTX64.EFI", "EFI/debian/grubx64.efi"],
        ) else {
            return;
        };
        let report = ensure_removable_loader(&disk, Arch::X86_64).unwrap();
        assert_eq!(
            report,
            EspReport {
                partition: 1,
                loader: "EFI/BOOT/BOOTX64.EFI".into(),
                copied_from: None,
                copied_also: vec![]
            }
        );
        assert_eq!(
            read_back(&disk, "EFI/BOOT/BOOTX64.EFI").unwrap(),
            "loader EFI/BOOT/BOOTX64.EFI"
        );
    }

    #[test]
    fn shim_is_copied_with_grub() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "EFI/debian/shimx64.efi",
            "EFI/debian/grubx64.efi",
            "EFI/debian/grub.cfg",
        ];
        let Some(disk) = esp_image(dir.path(), &files) else {
            return;
        };
        let report = ensure_removable_loader(&disk, Arch::X86_64).unwrap();
        assert_eq!(
            report.copied_from.as_deref(),
            Some("EFI/debian/shimx64.efi")
        );
        assert_eq!(
            read_back(&disk, "EFI/BOOT/BOOTX64.EFI").unwrap(),
            "loader EFI/debian/shimx64.efi"
        );
        assert_eq!(
            read_back(&disk, "EFI/BOOT/grubx64.efi").unwrap(),
            "loader EFI/debian/grubx64.efi"
        );
        assert!(
            report
                .describe()
                .contains("copied EFI/debian/shimx64.efi there (with grubx64.efi, grub.cfg)")
        );
        // Idempotent: a second check finds the loader.
        assert_eq!(
            ensure_removable_loader(&disk, Arch::X86_64)
                .unwrap()
                .copied_from,
            None
        );
    }

    #[test]
    fn no_loader_and_no_gpt_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let Some(disk) = esp_image(dir.path(), &["EFI/other/readme.txt"]) else {
            return;
        };
        let e = ensure_removable_loader(&disk, Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no EFI/BOOT/BOOTX64.EFI and no loader to copy there")
                && e.contains("looked for EFI/*/shimx64.efi, grubx64.efi, systemd-bootx64.efi;")
                && e.contains("found: EFI/other/readme.txt"),
            "{e}"
        );
        let blank = dir.path().join("blank.img");
        File::create(&blank).unwrap().set_len(1 << 20).unwrap();
        assert!(matches!(
            ensure_removable_loader(&blank, Arch::X86_64),
            Err(EspError::NoGpt { .. })
        ));
    }

    /// An arm64 disk boots through BOOTAA64.EFI: its GRUB (grubaa64.efi) is copied there, and an
    /// x86 loader on it is no loader for that machine.
    #[test]
    fn aarch64_takes_its_own_loader_names() {
        let dir = tempfile::tempdir().unwrap();
        let Some(disk) = esp_image(
            dir.path(),
            &["EFI/debian/grubaa64.efi", "EFI/debian/grub.cfg"],
        ) else {
            return;
        };
        let report = ensure_removable_loader(&disk, Arch::Aarch64).unwrap();
        assert_eq!(report.loader, "EFI/BOOT/BOOTAA64.EFI");
        assert_eq!(
            report.copied_from.as_deref(),
            Some("EFI/debian/grubaa64.efi")
        );
        assert_eq!(
            read_back(&disk, "EFI/BOOT/BOOTAA64.EFI").unwrap(),
            "loader EFI/debian/grubaa64.efi"
        );
        assert!(
            report
                .describe()
                .starts_with("ESP (partition 1) had no EFI/BOOT/BOOTAA64.EFI")
        );

        let x86 = tempfile::tempdir().unwrap();
        let Some(disk) = esp_image(x86.path(), &["EFI/debian/grubx64.efi"]) else {
            return;
        };
        let e = ensure_removable_loader(&disk, Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no EFI/BOOT/BOOTAA64.EFI and no loader to copy there (looked for EFI/*/shimaa64.efi, grubaa64.efi, systemd-bootaa64.efi; found: EFI/debian/grubx64.efi)"),
            "{e}"
        );
    }
}
