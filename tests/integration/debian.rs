//! Debian's real archive through ferry's chain of trust. Tests named `network_` need
//! http://deb.debian.org/debian (the only outside host ferry's build machines reach); they
//! download about 135 MB each.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use ferry::fetch::debian::release::parse_date;
use ferry::fetch::debian::{Archive, DebianError, Expected, Keyring, Transport, TransportError};

/// Plain HTTP/1.1 GET, enough for deb.debian.org (the real client lives in `ferry::fetch`).
struct Http;

impl Http {
    fn open(url: &str) -> Result<Box<dyn Read>, TransportError> {
        let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
        let (host, path) = rest.split_once('/').ok_or("URL without a path")?;
        let address = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut stream = BufReader::new(stream);
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ferry-tests\r\nConnection: close\r\n\r\n"
        );
        stream.get_mut().write_all(request.as_bytes())?;
        let mut status = String::new();
        stream.read_line(&mut status)?;
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(format!("{} for {url}", status.trim()).into());
        }
        let (mut chunked, mut length) = (false, None);
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                "content-length" => length = value.trim().parse::<u64>().ok(),
                _ => {}
            }
        }
        Ok(match (chunked, length) {
            (true, _) => Box::new(Chunked {
                inner: stream,
                left: 0,
                done: false,
            }),
            (false, Some(n)) => Box::new(stream.take(n)),
            (false, None) => Box::new(stream),
        })
    }
}

/// `Transfer-Encoding: chunked`.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.inner.read_line(&mut line)?; // the CRLF after the previous chunk
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("chunk size {line:?}"),
                )
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl Transport for Http {
    fn get(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        let mut body = Vec::new();
        Http::open(url)?.read_to_end(&mut body)?;
        Ok(body)
    }
    fn download(
        &self,
        url: &str,
        dest: &Path,
        _expected: &Expected<'_>,
    ) -> Result<(), TransportError> {
        let mut body = Http::open(url)?;
        std::io::copy(&mut body, &mut std::fs::File::create(dest)?)?;
        Ok(())
    }
}

/// The real archive, except that `InRelease` comes from `in_release`.
struct Replaced(Vec<u8>);

impl Transport for Replaced {
    fn get(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        if url.ends_with("/InRelease") {
            Ok(self.0.clone())
        } else {
            Http.get(url)
        }
    }
    fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: &Expected<'_>,
    ) -> Result<(), TransportError> {
        Http.download(url, dest, expected)
    }
}

fn netboot(suite: &str, major: u32) {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::debian(Http);
    let netboot = archive
        .netboot(suite, "amd64", dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(netboot.suite.release.codename, suite);
    assert!(
        netboot
            .suite
            .signers
            .iter()
            .any(|s| s.uid.contains(&format!("({major}/{suite})"))),
        "{:?}",
        netboot.suite.signers
    );
    assert_eq!(
        netboot.package.name,
        format!("debian-installer-{major}-netboot-amd64")
    );
    let kernel = std::fs::read(&netboot.kernel).unwrap();
    assert_eq!(&kernel[0x202..0x206], b"HdrS", "bzImage header magic");
    assert!(kernel.len() > 4 << 20, "kernel of {} bytes", kernel.len());
    let initrd = std::fs::read(&netboot.initrd).unwrap();
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(initrd.len() > 10 << 20, "initrd of {} bytes", initrd.len());
    eprintln!(
        "{suite}: {} {} → {} ({} bytes), {} ({} bytes); signed by {:?}",
        netboot.package.name,
        netboot.package.version,
        netboot.kernel.display(),
        kernel.len(),
        netboot.initrd.display(),
        initrd.len(),
        netboot
            .suite
            .signers
            .iter()
            .map(|s| &s.uid)
            .collect::<Vec<_>>()
    );
}

#[test]
fn network_debian_12_netboot_kernel_and_initrd_through_the_signed_chain() {
    netboot("bookworm", 12);
    // The installer images' SHA256SUMS, pinned by InRelease, lists the netboot mini.iso. (Not
    // checked for trixie: this archive copy serves a stale trixie SHA256SUMS, which the chain
    // rightly refuses: "sha256 does not match the one dists/trixie/InRelease lists".)
    let archive = Archive::debian(Http);
    let suite = archive.suite("bookworm").unwrap();
    let sums = archive
        .installer_sums(&suite, "amd64")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sums.contains_key("netboot/mini.iso"),
        "{:?}",
        sums.keys().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn network_debian_13_netboot_kernel_and_initrd_through_the_signed_chain() {
    netboot("trixie", 13);
}

#[test]
fn network_debian_in_release_tampered_or_judged_after_key_expiry_is_refused() {
    let real = Http
        .get("http://deb.debian.org/debian/dists/bookworm/InRelease")
        .unwrap();
    // One changed byte in the signed text.
    let text = String::from_utf8(real.clone()).unwrap();
    let tampered = text
        .replacen("Codename: bookworm", "Codename: bookwork", 1)
        .into_bytes();
    assert_ne!(tampered, real);
    let e = Archive::debian(Replaced(tampered))
        .suite("bookworm")
        .unwrap_err();
    assert!(matches!(e, DebianError::Signature { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("dists/bookworm/InRelease: bad signature by key 0x"),
        "{e}"
    );

    // Debian's keys, but judged in the future: bookworm's and trixie's automatic signing subkeys
    // differ in expiry (2031 and 2035); the stable release key expires in 2031. So in 2032 the
    // trixie key still vouches for bookworm's InRelease; in 2036 nothing does.
    let at = |year: u64| parse_date(&format!("1 Jun {year} 00:00:00 UTC")).unwrap();
    Archive::debian(Replaced(real.clone()))
        .at_time(at(2032))
        .suite("bookworm")
        .unwrap();
    let e = Archive::debian(Replaced(real.clone()))
        .at_time(at(2036))
        .suite("bookworm")
        .unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with("dists/bookworm/InRelease: no usable signature: signature by key 0x"),
        "{e}"
    );
    assert!(e.contains("which expired on 2031-01-19"), "{e}");

    // A keyring without the signers' keys: the signature is by an unknown key.
    let stable_only = Keyring::from_bytes(
        "bullseye",
        include_bytes!("../../keys/debian-archive-bullseye-automatic.gpg"),
    )
    .unwrap();
    let archive = Archive::new("http://deb.debian.org/debian", stable_only, Replaced(real));
    let e = archive.suite("bookworm").unwrap_err().to_string();
    assert!(
        e.starts_with("dists/bookworm/InRelease: signature by unknown key 0x"),
        "{e}"
    );
    assert!(
        e.contains("0x4CB50190207B4758A3F73A796ED0E7B82643E131"),
        "{e}"
    );
}
