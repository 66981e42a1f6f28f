#!/usr/bin/env python3
"""A Debian 12 or 13 mirror for the installer, supplemented where deb.debian.org lacks udebs.

The copy of the Debian archive reachable from the project's machines serves every regular
.deb and every index, but most of bookworm's installer components (udebs) return 404, so a
netboot install stops at "Download installer components". This script prepares a
replacement for the installer's udeb index and serves it through an HTTP proxy that passes
everything else through to deb.debian.org:

  - every bookworm udeb that deb.debian.org serves: listed as it is;
  - a missing one that trixie has (and deb.debian.org serves) as an architecture-independent
    udeb, or as one without programs (shell scripts and data), or whose programs need no
    newer C library than bookworm's (2.36): trixie's, as it is;
  - a missing one listed in REPACKED below: repacked from the matching bookworm .debs (same
    source version), labelled as repacked in its Description and in the manifest;
  - a missing one listed in PLACEHOLDERS: an empty package of that name (labelled too), for
    dependencies nothing in an install on a blank disk uses;
  - anything else missing: left out of the index.
Udebs installed in the installer's initrd are listed as bookworm lists them (never fetched).

Every index it reads is checked against bookworm's (and trixie's) Release, whose signature is
checked with the host's Debian archive keyring; every .deb against the Packages index. The
rebuilt index goes into a copy of dists/bookworm/Release with corrected checksum lines,
signed (Release.gpg) with a throwaway key made in a temporary GNUPGHOME. The installer must
trust that key: the debian-12 recipe's `mirror_key_url` variable appends it to the
installer's keyring (the key is served at http://10.0.2.2:PORT/ferry-mirror-key.gpg, binary,
and .asc, armored). The
original InRelease passes through, so debootstrap and apt in the installed system check the
real archive's signature, and the installed system comes wholly from the real archive.

With --suite trixie (Debian 13) the index is trixie's, supplemented differently (see
prepare_trixie): here most trixie udebs are served, and the installer's index and
Contents-udeb are those of point release 13.7 — checked against dists/stable/InRelease of
13.7 (Codename trixie, signed), since they do not match dists/trixie/InRelease (13.8) — while
the netboot installer (13.8) runs kernel 6.12.117 and the index's module udebs are 6.12.107's
(and all of those 404). Since 13.8 reached dists/stable too, no Release served here lists
that index any more: the script then refuses it, unless --unsigned-udeb-index is given, which
uses it as served and records its sha256 as unmatched in manifest.json ("checked_against")
(the installer still checks every udeb it fetches against that index). So:

  - every trixie udeb that deb.debian.org serves: listed as it is (the index's other kernel
    ABIs too; anna skips module udebs of another kernel);
  - udebs installed in the netboot initrd: listed as the index lists them (never fetched;
    the self-check makes sure the index offers none newer than the initrd's);
  - the kernel module udebs (*-modules-ABI-di, kernel-image-ABI-di): REPACKED for the
    initrd's kernel ABI from the signed linux-image-ABI .deb of the same version (its
    modules are the ones the udebs ship), each with the file list Contents-udeb gives for
    the index's udeb of the newest ABI it lists (paths renamed to the initrd's ABI) and that
    udeb's control fields with the ABI renamed (Package, Depends, Provides, Kernel-Version)
    and the .deb's Version; labelled in Description and manifest (kept in
    cache/built-modules/ for the next start while their inputs stay the same);
  - a missing one listed in TRIXIE_REPACKED (e2fsprogs-udeb, eject-udeb, fdisk-udeb,
    libfdisk1-udeb, libmount1-udeb, libsmartcols1-udeb, xfsprogs-udeb, ntfs-3g-udeb):
    REPACKED from the trixie .debs, with exactly the files Contents-udeb lists for it and its
    own control fields; the udebs shipping the libraries its programs load are added to its
    Depends where the official udeb needs none (fdisk-udeb); labelled likewise;
  - anything else missing (the graphical installer's libraries, debian-edu): left out, and
    so is every udeb whose Depends then cannot resolve (the graphical installer; Debian's own
    kexec-tools-udeb and multipath-udeb, which depend on non-udeb packages).
libc6-udeb, busybox-udeb, util-linux-udeb, libblkid1/libuuid1 and the other missing library
udebs not named above are in the netboot initrd. A self-check then requires every udeb a
standard install loads (priority standard and above, plus TRIXIE_INSTALL_NEEDS: the
partitioner with ext4, the base system, apt, pkgsel, GRUB, finish-install, ...) to be in the
index or the initrd with all its Depends resolvable (versions compared as dpkg does); then
unpacks the initrd and every udeb that install would fetch into one tree and checks there
that each program or library this script built finds its libraries (the initrd's ld.so
--list) and that the initrd's depmod indexes every fetched module. Its findings go into
manifest.json ("self_check").

Usage (the guest reaches the host's 127.0.0.1 as 10.0.2.2):

  scripts/debian-supplement-mirror.py [--suite bookworm|trixie] [--dir DIR] [--port PORT]
                                      [--prepare-only]

It prints `ferry-mirror: listening on 127.0.0.1:PORT` once it serves, and logs every request
to DIR/proxy.log with the kind of each udeb served. Python 3 standard library plus gpg,
gpgv, dpkg-deb and (for trixie) readelf and GNU tar. Use one DIR per suite.
"""

import argparse
import concurrent.futures
import functools
import gzip
import hashlib
import http.client
import http.server
import json
import lzma
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

UPSTREAM_HOST = "deb.debian.org"
UPSTREAM = f"http://{UPSTREAM_HOST}/debian"
SUITE = "bookworm"
FALLBACK_SUITE = "trixie"
UDEB_INDEX = "main/debian-installer/binary-amd64/Packages"
DEB_INDEX = "main/binary-amd64/Packages"
HOST_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# bookworm's C library: trixie programs needing no newer symbol versions run in its installer.
GLIBC_MINOR = 36
# Where repacked and placeholder udebs live in the served tree (under /debian/).
OWN_POOL = "pool/ferry-supplement"
KEY_PATH = "/ferry-mirror-key.gpg"

# udeb -> the bookworm .debs of the same source version whose files make it up. The udebs
# are built as stripped-down variants of these; the full files are a superset.
REPACKED = {
    # e2fsprogs-udeb links its libraries statically; the .deb's programs need them beside.
    "e2fsprogs-udeb": ["e2fsprogs", "libext2fs2", "libcom-err2", "libss2"],
    "dosfstools-udeb": ["dosfstools"],
    "libparted2-udeb": ["libparted2"],
    "libparted-fs-resize0-udeb": ["libparted-fs-resize0"],
    "libdevmapper1.02.1-udeb": ["libdevmapper1.02.1"],
    "libbsd0-udeb": ["libbsd0"],
    "libmd0-udeb": ["libmd0"],
    "libpcre3-udeb": ["libpcre3"],
    # libparted2-udeb depends on it.
    "dmidecode-udeb": ["dmidecode"],
}

# udebs that only other udebs' dependencies pull in, and that nothing in an install on a
# blank disk runs: os-prober-udeb (a dependency of grub-installer) depends on grub-mount-udeb,
# which needs libfuse2-udeb; partman-basicfilesystems' ntfs support wants ntfs-3g-udeb.
PLACEHOLDERS = ["grub-mount-udeb", "libfuse2-udeb", "ntfs-3g-udeb"]

# The installer whose needs this mirror serves, and its initrd in that package.
NETBOOT = "debian-installer-12-netboot-amd64"
NETBOOT_INITRD = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/initrd.gz"

# Files of a .deb a udeb leaves out.
DROPPED_DIRS = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian",
                "usr/share/locale", "usr/share/bug"]


def log(msg):
    print(f"ferry-mirror: {msg}", file=sys.stderr, flush=True)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def http_get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def parse_stanzas(text):
    """Debian control stanzas as lists of (field, value) pairs, keeping field order."""
    stanzas = []
    for block in text.strip().split("\n\n"):
        fields = []
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and fields:
                name, value = fields[-1]
                fields[-1] = (name, value + "\n" + line)
            elif ":" in line:
                name, value = line.split(":", 1)
                fields.append((name, value.strip()))
        stanzas.append(fields)
    return stanzas


def field(stanza, name):
    return next((v for k, v in stanza if k == name), None)


def with_fields(stanza, **changes):
    """A copy of a stanza with fields replaced (or appended); names use _ for -."""
    changes = {k.replace("_", "-"): v for k, v in changes.items()}
    out = [(k, changes.pop(k, v)) for k, v in stanza]
    return out + list(changes.items())


def format_stanza(stanza):
    return "".join(f"{k}: {v}\n" for k, v in stanza)


def release_checksums(release_text):
    """{path: (sha256, size)} from a Release file's SHA256 section."""
    sums, in_section = {}, False
    for line in release_text.splitlines():
        if not line.startswith(" "):
            in_section = line == "SHA256:"
            continue
        if in_section:
            digest, size, path = line.split()
            sums[path] = (digest, int(size))
    return sums


class Archive:
    """Verified downloads from deb.debian.org, cached under cache/."""

    def __init__(self, cache):
        self.cache = cache
        self.releases = {}
        self.matched = {}

    def release(self, suite):
        """The Release text of SUITE, from its InRelease (checked with the host's Debian
        keyring; the separate Release.gpg here can be older than the Release it signs)."""
        if suite not in self.releases:
            d = self.cache / "dists" / suite
            d.mkdir(parents=True, exist_ok=True)
            (d / "InRelease").write_bytes(http_get(f"{UPSTREAM}/dists/{suite}/InRelease"))
            if not Path(HOST_KEYRING).exists():
                sys.exit(f"{HOST_KEYRING} is missing: install debian-archive-keyring")
            (d / "Release").unlink(missing_ok=True)
            subprocess.run(["gpgv", "--quiet", "--keyring", HOST_KEYRING,
                            "--output", d / "Release", d / "InRelease"],
                           check=True, capture_output=True)
            log(f"dists/{suite}/InRelease: signature verified")
            self.releases[suite] = (d / "Release").read_text()
        return self.releases[suite]

    def packages(self, suite, index, must_match=True, alternates=()):
        """The stanzas of dists/SUITE/INDEX(.xz), checked as index_file() does. With
        must_match=False a mismatch is only reported (the installer checks each file of the
        index against it anyway)."""
        data = self.index_file(suite, f"{index}.xz", must_match, alternates)
        return parse_stanzas(lzma.decompress(data).decode())

    def index_file(self, suite, path, must_match=True, alternates=()):
        """dists/SUITE/PATH, checked against SUITE's signed Release or, failing that, against
        the signed Release of one of the ALTERNATES (other dists/ names, such as "stable",
        that must carry the same Codename): this archive copy serves some of trixie's files
        from an earlier point release than its dists/trixie/InRelease. Which Release matched
        is kept in self.matched[PATH]."""
        url = f"{UPSTREAM}/dists/{suite}/{path}"
        local = self.cache / "dists" / suite / path
        data = local.read_bytes() if local.exists() else http_get(url)
        for attempt in range(2):
            for dist in (suite, *alternates):
                release = self.release(dist)
                codename = re.search(r"^Codename: (\S+)", release, re.M)
                if dist != suite and (codename is None or codename[1] != suite):
                    continue
                digest, size = release_checksums(release).get(path, (None, None))
                if sha256(data) == digest and len(data) == size:
                    version = re.search(r"^Version: (\S+)", release, re.M)
                    date = re.search(r"^Date: (.+)$", release, re.M)
                    self.matched[path] = (f"dists/{dist}/InRelease (Codename {suite}, "
                                          f"Version {version[1] if version else '?'}, "
                                          f"{date[1] if date else '?'})")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_bytes(data)
                    if dist != suite:
                        log(f"dists/{suite}/{path}: matches {self.matched[path]}, "
                            f"not dists/{suite}/InRelease")
                    return data
            if attempt == 0:  # a stale cached copy: ask the archive again
                data = http_get(url)
        if must_match:
            sys.exit(f"dists/{suite}/{path}: checksum matches no signed Release of {suite}"
                     + (" (--unsigned-udeb-index uses it anyway, labelled)"
                        if suite == "trixie" and path in (f"{UDEB_INDEX}.xz", CONTENTS_UDEB)
                        else ""))
        log(f"WARNING: dists/{suite}/{path} does not match {suite}'s signed Release; "
            f"its entries are used as listed (the installer checks each file against them)")
        self.matched[path] = f"unmatched: no signed Release lists sha256 {sha256(data)}"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return data

    def pool_file(self, stanza):
        """A package's file, checked against its index's SHA256."""
        filename, digest = field(stanza, "Filename"), field(stanza, "SHA256")
        local = self.cache / filename
        if not (local.exists() and sha256(local.read_bytes()) == digest):
            local.parent.mkdir(parents=True, exist_ok=True)
            data = http_get(f"{UPSTREAM}/{filename}")
            if sha256(data) != digest:
                sys.exit(f"{filename}: checksum does not match the Packages index")
            local.write_bytes(data)
        return local

    def served(self, filenames, memo_key):
        """{filename: bool}: which pool files deb.debian.org serves (HEAD), remembered per
        Release so a changed archive is asked again."""
        memo_path = self.cache / "served.json"
        memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
        if memo.get("release") != memo_key:
            memo = {"release": memo_key, "files": {}}
        todo = [f for f in filenames if f not in memo["files"]]

        def head(filename):
            req = urllib.request.Request(f"{UPSTREAM}/{filename}", method="HEAD")
            try:
                with urllib.request.urlopen(req, timeout=60):
                    return filename, True
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return filename, False
                raise

        if todo:
            log(f"asking deb.debian.org which of {len(todo)} udebs it serves")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                memo["files"].update(pool.map(head, todo))
            memo_path.write_text(json.dumps(memo, indent=1, sort_keys=True))
        return {f: memo["files"][f] for f in filenames}


def initrd_packages(archive, netboot, initrd=NETBOOT_INITRD):
    """The udebs installed in the netboot installer's initrd (its dpkg status file), as
    {name: status stanza}: they are never downloaded, so they stay listed as the suite's
    index lists them."""
    for name, _, data in cpio_entries(initrd_cpio(archive, netboot, initrd)):
        if name == "var/lib/dpkg/status":
            return {field(s, "Package"): s for s in parse_stanzas(data.decode())}
    sys.exit(f"{initrd}: no var/lib/dpkg/status in it")


def initrd_cpio(archive, netboot, initrd):
    """The uncompressed initrd INITRD of the netboot package NETBOOT (index stanza)."""
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", archive.pool_file(netboot)],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return gzip.decompress(t.extractfile(f"./{initrd}").read())


def cpio_entries(cpio):
    """(name, mode, data) of each entry of a "newc" cpio archive (an initramfs): a 110-byte
    ASCII header, the name, the data, each padded to 4 bytes."""
    pos = 0
    while cpio[pos:pos + 6] == b"070701":
        mode = int(cpio[pos + 14:pos + 22], 16)
        size, name_size = int(cpio[pos + 54:pos + 62], 16), int(cpio[pos + 94:pos + 102], 16)
        name = cpio[pos + 110:pos + 110 + name_size - 1].decode()
        start = (pos + 110 + name_size + 3) & ~3
        if name == "TRAILER!!!":
            return
        yield name, mode, cpio[start:start + size]
        pos = (start + size + 3) & ~3


def trixie_fits(archive, stanza):
    """Why trixie's udeb STANZA can stand in for bookworm's in bookworm's installer, or None:
    architecture-independent, no programs in it, or programs that need no newer GNU C
    library symbols than bookworm's."""
    if field(stanza, "Architecture") == "all":
        return "architecture all"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", archive.pool_file(stanza), tmp], check=True)
        needs = []
        for path in Path(tmp).rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if data.startswith(b"\x7fELF"):
                    needs += [int(m) for m in re.findall(rb"GLIBC_2\.(\d+)", data)]
                    needs.append(0)
    if not needs:
        return "no programs"
    if max(needs) <= GLIBC_MINOR:
        return f"programs need glibc <= 2.{max(needs)}"
    return None


def build_udeb(root, control, out):
    """dpkg-deb --build of ROOT with the control stanza CONTROL into OUT; returns its bytes."""
    (root / "DEBIAN").mkdir(exist_ok=True)
    (root / "DEBIAN" / "control").write_text(format_stanza(control))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out],
                   check=True, capture_output=True)
    return out.read_bytes()


def installed_size(root):
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return str((total + 1023) // 1024)


def own_stanza(udeb, control, data, filename):
    """The index stanza of a udeb this script built."""
    return control + [
        ("Section", field(udeb, "Section") or "debian-installer"),
        ("Priority", field(udeb, "Priority") or "optional"),
        ("Filename", filename),
        ("Size", str(len(data))),
        ("MD5sum", hashlib.md5(data).hexdigest()),
        ("SHA256", sha256(data)),
    ]


def repack(archive, udeb, debs, debs_by_name, www):
    """A udeb made of the files of the bookworm .debs DEBS, with the udeb's own control."""
    name, version = field(udeb, "Package"), field(udeb, "Version")
    sources = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for deb_name in debs:
            deb = debs_by_name[deb_name]
            subprocess.run(["dpkg-deb", "-x", archive.pool_file(deb), root], check=True)
            sources.append(f"{deb_name}_{field(deb, 'Version')}")
        for d in DROPPED_DIRS:
            shutil.rmtree(root / d, ignore_errors=True)
        label = (f"REPACKED by ferry's test mirror from bookworm's {', '.join(sources)} "
                 f"(.deb); not an official udeb.")
        description = field(udeb, "Description").split("\n")[0]
        control = [
            ("Package", name),
            ("Source", field(udeb, "Source") or name),
            ("Version", version),
            ("Architecture", field(udeb, "Architecture")),
            ("Maintainer", "ferry test mirror <ferry-test@invalid>"),
            ("Installed-Size", installed_size(root)),
            ("Depends", field(udeb, "Depends") or ""),
            ("Description", f"{description} [repacked]\n {label}"),
        ]
        control = [(k, v) for k, v in control if v]
        filename = f"{OWN_POOL}/{name}_{version.split(':')[-1]}_amd64.udeb"
        out = www / "debian" / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        data = build_udeb(root, control, out)
    return own_stanza(udeb, control, data, filename), "; ".join(sources)


def placeholder(udeb, www):
    """An empty udeb named like bookworm's, without dependencies."""
    name, version = field(udeb, "Package"), field(udeb, "Version")
    label = "EMPTY PLACEHOLDER made by ferry's test mirror: bookworm's udeb is not served."
    control = [
        ("Package", name),
        ("Version", version),
        ("Architecture", field(udeb, "Architecture")),
        ("Maintainer", "ferry test mirror <ferry-test@invalid>"),
        ("Installed-Size", "0"),
        ("Description", f"placeholder for {name} [empty]\n {label}"),
    ]
    filename = f"{OWN_POOL}/{name}_{version.split(':')[-1]}_amd64.udeb"
    out = www / "debian" / filename
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = build_udeb(Path(tmp), control, out)
    return own_stanza(udeb, control, data, filename)


def write_index(stanzas, release_text, www, suite=SUITE):
    """The udeb Packages index (plain, .gz, .xz) and a Release whose lines for it match."""
    dists = www / "debian" / "dists" / suite
    index = dists / UDEB_INDEX
    index.parent.mkdir(parents=True, exist_ok=True)
    plain = "\n".join(format_stanza(s) for s in stanzas).encode()
    files = {UDEB_INDEX: plain,
             f"{UDEB_INDEX}.gz": gzip.compress(plain, mtime=0),
             f"{UDEB_INDEX}.xz": lzma.compress(plain)}
    for path, data in files.items():
        (dists / path).write_bytes(data)

    section, lines = None, []
    for line in release_text.splitlines():
        if not line.startswith(" "):
            section = line.rstrip(":")
        else:
            path = line.split()[-1]
            if path in files:
                data = files[path]
                digest = {"MD5Sum": hashlib.md5, "SHA256": hashlib.sha256}.get(section)
                if digest is None:  # a checksum kind this script does not rewrite: drop it
                    continue
                line = f" {digest(data).hexdigest()} {len(data):>16} {path}"
        lines.append(line)
    (dists / "Release").write_text("\n".join(lines) + "\n")


def sign(www, suite=SUITE):
    """Signs the Release with a new throwaway key; publishes the key (binary OpenPGP, which
    the installer's gpgv keyring takes as is, and armored)."""
    dists = www / "debian" / "dists" / suite
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", home]
        subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key",
                              "ferry test mirror (throwaway key) <ferry-test@invalid>",
                              "ed25519", "sign", "1d"], check=True, capture_output=True)
        (dists / "Release.gpg").unlink(missing_ok=True)
        subprocess.run(gpg + ["--digest-algo", "SHA256", "--armor", "--detach-sign",
                              "--output", dists / "Release.gpg", dists / "Release"],
                       check=True, capture_output=True)
        key = subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout
        armored = subprocess.run(gpg + ["--armor", "--export"], check=True,
                                 capture_output=True).stdout
    (www / KEY_PATH.lstrip("/")).write_bytes(key)
    (www / KEY_PATH.lstrip("/")).with_suffix(".asc").write_bytes(armored)
    # The installer checks exactly this way: gpgv with the Debian keyring plus this key.
    with tempfile.NamedTemporaryFile(suffix=".gpg") as ring:
        ring.write(Path(HOST_KEYRING).read_bytes() + key)
        ring.flush()
        subprocess.run(["gpgv", "--quiet", "--keyring", ring.name, dists / "Release.gpg",
                        dists / "Release"], check=True, capture_output=True)


def prepare(directory, suite=SUITE, unsigned_index=False):
    """Builds DIR/www (the served files) and DIR/manifest.json; returns the manifest."""
    if suite == "trixie":
        return prepare_trixie(directory, unsigned_index)
    archive = Archive(directory / "cache")
    release = archive.release(SUITE)
    udebs = archive.packages(SUITE, UDEB_INDEX)
    newer = {field(s, "Package"): s for s in archive.packages(
        FALLBACK_SUITE, UDEB_INDEX, must_match=False, alternates=["stable"])}
    debs = {field(s, "Package"): s for s in archive.packages(SUITE, DEB_INDEX)}

    release_key = sha256(release.encode())
    served = archive.served([field(s, "Filename") for s in udebs], release_key)
    in_initrd = initrd_packages(archive, debs[NETBOOT])
    missing = [field(s, "Package") for s in udebs
               if not served[field(s, "Filename")] and field(s, "Package") not in in_initrd]
    # trixie's of the same name, except kernel modules (built for trixie's kernel)
    candidates = [newer[n] for n in missing if n in newer and n not in REPACKED
                  and not field(newer[n], "Kernel-Version")]
    served.update(archive.served([field(s, "Filename") for s in candidates], release_key))
    fits = {field(s, "Package"): trixie_fits(archive, s) for s in candidates
            if served[field(s, "Filename")]}

    www = directory / "www"
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir(parents=True)
    stanzas, manifest = [], []
    for udeb in udebs:
        name, filename = field(udeb, "Package"), field(udeb, "Filename")
        entry = {"package": name, "bookworm_version": field(udeb, "Version")}
        if served[filename]:
            stanza, entry["kind"] = udeb, "bookworm"
        elif name in in_initrd:
            stanza, entry["kind"] = udeb, "in-initrd"
        elif name in REPACKED:
            stanza, entry["from"] = repack(archive, udeb, REPACKED[name], debs, www)
            entry["kind"] = "repacked"
        elif fits.get(name):
            stanza, entry["kind"], entry["why"] = newer[name], "trixie", fits[name]
        elif name in PLACEHOLDERS:
            stanza, entry["kind"] = placeholder(udeb, www), "placeholder"
        else:
            stanza, entry["kind"] = None, "left-out"
        if stanza:
            stanzas.append(stanza)
            entry["version"] = field(stanza, "Version")
            entry["filename"] = field(stanza, "Filename")
        manifest.append(entry)

    return publish(directory, SUITE, stanzas, manifest, release, www)


def publish(directory, suite, stanzas, manifest, release, www, **extra):
    """Writes and signs the index, and DIR/manifest.json (with EXTRA's keys); returns the
    manifest."""
    write_index(stanzas, release, www, suite)
    sign(www, suite)
    counts = {}
    for entry in manifest:
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
    (directory / "manifest.json").write_text(json.dumps(
        {"suite": suite, "counts": counts, **extra, "packages": manifest}, indent=1))
    log("index: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return manifest


# ---------------------------------------------------------------------------------------
# trixie (Debian 13)
#
# Here most udebs are served; missing are the kernel's module udebs, some library udebs
# and a few programs. Nothing newer fits trixie's installer (no fallback suite): a missing
# udeb is rebuilt from the trixie .debs its files come from, with the file list that
# Contents-udeb gives for it.

TRIXIE_NETBOOT = "debian-installer-13-netboot-amd64"
TRIXIE_INITRD = "usr/lib/debian-installer/images/13/amd64/text/debian-installer/amd64/initrd.gz"
# Other dists/ names whose signed Release may cover trixie's installer files: the archive copy
# here serves the udeb index and Contents-udeb of an earlier point release (13.7, signed in
# dists/stable/InRelease while stable was still trixie) than dists/trixie/InRelease (13.8).
TRIXIE_ALTERNATES = ["stable"]
CONTENTS_UDEB = "main/Contents-udeb-amd64.gz"

# Missing trixie udeb -> the trixie .debs holding its files (Contents-udeb names the files).
TRIXIE_REPACKED = {
    "e2fsprogs-udeb": ["e2fsprogs", "libext2fs2t64", "libcom-err2", "libss2"],
    "eject-udeb": ["eject"],
    "fdisk-udeb": ["fdisk"],
    "libfdisk1-udeb": ["libfdisk1"],
    "libmount1-udeb": ["libmount1"],
    "libsmartcols1-udeb": ["libsmartcols1"],
    "xfsprogs-udeb": ["xfsprogs"],
    "ntfs-3g-udeb": ["ntfs-3g", "libntfs-3g89t64"],
}

# What a standard install with the recipe's preseed loads besides the udebs of priority
# standard and above (which anna loads by itself): the partitioner with ext4 and the
# "atomic" recipe on msdos or gpt (UEFI: partman-efi), the base system, apt, tasksel/pkgsel,
# GRUB, and the end of the install.
TRIXIE_INSTALL_NEEDS = [
    "partman-auto", "partman-base", "partman-basicfilesystems", "partman-ext3",
    "partman-partitioning", "partman-target", "partman-efi", "partman-utils",
    "base-installer", "bootstrap-base", "debootstrap-udeb", "apt-setup-udeb",
    "apt-mirror-setup", "pkgsel", "grub-installer", "finish-install", "user-setup-udeb",
    "clock-setup", "tzsetup-udeb", "choose-mirror", "network-preseed", "di-utils-mapdevfs",
    "disk-detect", "e2fsprogs-udeb", "ext4-modules", "fat-modules", "scsi-modules",
    "sata-modules", "ata-modules",
]


def compare_versions(a, b):
    """Debian version comparison as dpkg does it: <0, 0 or >0."""
    def split(version):
        epoch, _, rest = version.rpartition(":")
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision

    def order(c):  # ~ before the end, the end before letters, letters before the rest
        return -1 if c == "~" else 0 if c == "" else ord(c) if c.isalpha() else ord(c) + 256

    def part(x, y):
        while x or y:
            dx = re.match(r"\D*", x)[0]
            dy = re.match(r"\D*", y)[0]
            for i in range(max(len(dx), len(dy))):
                cx, cy = order(dx[i:i + 1]), order(dy[i:i + 1])
                if cx != cy:
                    return cx - cy
            x, y = x[len(dx):], y[len(dy):]
            nx, ny = re.match(r"\d*", x)[0], re.match(r"\d*", y)[0]
            if int(nx or 0) != int(ny or 0):
                return int(nx or 0) - int(ny or 0)
            x, y = x[len(nx):], y[len(ny):]
        return 0

    (ea, ua, ra), (eb, ub, rb) = split(a), split(b)
    return (ea - eb) or part(ua, ub) or part(ra, rb)


def version_ok(have, op, want):
    """Whether version HAVE satisfies the relation OP WANT (<<, <=, =, >=, >>)."""
    c = compare_versions(have, want)
    return {"<<": c < 0, "<=": c <= 0, "=": c == 0, ">=": c >= 0, ">>": c > 0}[op]


def parse_depends(text):
    """A Depends value as a list of alternatives, each a list of (name, op, version)."""
    out = []
    for group in (text or "").split(","):
        alts = []
        for alt in group.split("|"):
            m = re.match(r"\s*([^\s(]+)\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", alt)
            if m:
                alts.append((m[1], m[2], m[3]))
        if alts:
            out.append(alts)
    return out


def parse_contents(data):
    """{udeb: [paths]} from a Contents-udeb file (gzip)."""
    files = {}
    for line in gzip.decompress(data).decode().splitlines():
        path, _, where = line.rpartition(" ")
        path = path.strip()
        for loc in where.split(","):
            name = loc.rsplit("/", 1)[-1]
            files.setdefault(name, [])
            if path != "EMPTY_PACKAGE":
                files[name].append(path)
    return files


def copy_listed(src, dst, paths, rename=lambda p: p):
    """Copies the files PATHS (each RENAME'd first) from the unpacked tree SRC into DST at
    the same place, looking for each also with and without a leading usr/ (trixie's .debs
    ship under /usr what some udebs list under /); symlinks stay symlinks. Returns the
    paths not found (documentation and lintian files are left out without counting)."""
    missing = []
    for listed in paths:
        path = rename(listed)
        if path.startswith(tuple(DROPPED_DIRS)):
            continue
        for candidate in (path, f"usr/{path}", path.removeprefix("usr/")):
            source = src / candidate
            if source.is_symlink() or source.exists():
                break
        else:
            missing.append(path)
            continue
        target = dst / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    return missing


# Fields of an index stanza that describe the file, not the package.
INDEX_ONLY = {"Filename", "Size", "MD5sum", "SHA1", "SHA256", "Section", "Priority",
              "Description-md5", "Tag", "Installed-Size", "Maintainer", "Description"}


def rebuilt_udeb(udeb, root, www, label, **changes):
    """Builds ROOT into a udeb with UDEB's control fields (CHANGES replaced, names use _ for
    -), the ferry mirror as Maintainer and LABEL in the Description; returns its stanza."""
    control = with_fields([(k, v) for k, v in udeb if k not in INDEX_ONLY], **changes)
    name, version = field(control, "Package"), field(control, "Version")
    description = field(udeb, "Description").split("\n")[0]
    control += [("Maintainer", "ferry test mirror <ferry-test@invalid>"),
                ("Installed-Size", installed_size(root)),
                ("Description", f"{description} [repacked]\n {label}")]
    control = [(k, v) for k, v in control if v]
    filename = f"{OWN_POOL}/{name}_{version.split(':')[-1]}_amd64.udeb"
    out = www / "debian" / filename
    out.parent.mkdir(parents=True, exist_ok=True)
    data = build_udeb(root, control, out)
    return own_stanza(udeb, control, data, filename)


def unpack(archive, debs, into):
    """Unpacks the .debs (index stanzas) into INTO; returns "name_version" of each."""
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", archive.pool_file(deb), into], check=True)
    return [f"{field(d, 'Package')}_{field(d, 'Version')}" for d in debs]


def library_owners(contents, names):
    """{shared library file name: the udebs among NAMES that ship it}, from Contents-udeb."""
    owners = {}
    for udeb in sorted(names):
        for path in contents.get(udeb, []):
            if ".so" in path.rsplit("/", 1)[-1]:
                owners.setdefault(path.rsplit("/", 1)[-1], []).append(udeb)
    return owners


def needed_udebs(root, owners):
    """The udebs whose libraries the ELF files under ROOT load (DT_NEEDED) and ROOT itself
    does not ship; exits naming a library no udeb ships."""
    shipped = {p.name for p in root.rglob("*")}
    needed = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            out = subprocess.run(["readelf", "-d", path], check=True, capture_output=True,
                                 text=True).stdout
            needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out))
    udebs = set()
    for library in sorted(needed - shipped):
        if library not in owners:
            sys.exit(f"{root}: no udeb in the index or the initrd ships {library}")
        udebs.add(owners[library][0])
    return udebs


def repack_listed(archive, udeb, debs, paths, owners, www):
    """A udeb made of the files PATHS (Contents-udeb's list for it) taken from the trixie
    .debs DEBS; its version is the .debs' (the first's) when it differs from the index's.
    The official udeb may be linked statically where the .deb's programs are not (fdisk-udeb
    has no Depends): the udebs shipping the libraries its programs load (OWNERS) are added
    to its Depends. Returns (stanza, manifest notes)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, root = Path(tmp) / "src", Path(tmp) / "root"
        root.mkdir()
        sources = unpack(archive, debs, src)
        missing = copy_listed(src, root, paths)
        if missing:
            sys.exit(f"{field(udeb, 'Package')}: not in {', '.join(sources)}: {missing}")
        version = field(debs[0], "Version")
        label = (f"REPACKED by ferry's test mirror from trixie's {', '.join(sources)} (.deb), "
                 f"files as Contents-udeb lists them; not an official udeb.")
        depends = parse_depends(field(udeb, "Depends"))
        listed = {n for alts in depends for n, _, _ in alts}
        added = sorted(needed_udebs(root, owners) - listed - {field(udeb, "Package")})
        changes = {"Version": version}
        if added:
            label += f" Depends extended with {', '.join(added)} (the .deb's libraries)."
            changes["Depends"] = ", ".join(filter(None, [field(udeb, "Depends"), *added]))
        stanza = rebuilt_udeb(udeb, root, www, label, **changes)
    notes = {"from": "; ".join(sources), "files": len(paths)}
    if added:
        notes["depends_added"] = added
    if version != field(udeb, "Version"):
        notes["index_version"] = field(udeb, "Version")
    return stanza, notes


def repack_modules(archive, module_udebs, contents, abi_from, abi, kernel_deb, www):
    """The kernel module udebs MODULE_UDEBS (index stanzas for kernel ABI ABI_FROM) rebuilt
    for the initrd's kernel ABI from the linux-image .deb KERNEL_DEB: names, Depends,
    Provides and Kernel-Version with ABI for ABI_FROM, the .deb's version, and each udeb's
    Contents-udeb file list (module paths with ABI). Returns [(index stanza, new stanza,
    manifest notes)]."""
    out = []
    version = field(kernel_deb, "Version")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        source = unpack(archive, [kernel_deb], src)[0]
        for udeb in module_udebs:
            name = field(udeb, "Package")
            root = Path(tmp) / name
            root.mkdir()
            paths = contents.get(name, [])
            missing = copy_listed(src, root, paths, lambda p: p.replace(abi_from, abi))
            label = (f"REPACKED by ferry's test mirror from trixie's {source} (.deb), files "
                     f"as Contents-udeb lists them for {name}, built for kernel {abi}; "
                     f"not an official udeb.")
            if missing:
                label += f" {len(missing)} listed file(s) absent from the .deb."
            changes = {k: field(udeb, k).replace(abi_from, abi)
                       for k in ("Package", "Depends", "Provides", "Kernel-Version")
                       if field(udeb, k)}
            stanza = rebuilt_udeb(udeb, root, www, label, Version=version,
                                  Source=field(kernel_deb, "Source") or "linux", **changes)
            shutil.rmtree(root)
            notes = {"from": source, "files": len(paths) - len(missing),
                     "index_package": name, "index_version": field(udeb, "Version")}
            if missing:
                notes["absent_files"] = missing
            out.append((udeb, stanza, notes))
    return out


def cached_modules(archive, module_udebs, contents, abi_from, abi, kernel_deb, www):
    """repack_modules(), its udebs kept in the cache between starts (rebuilding them takes
    minutes under load): reused while this script, the kernel .deb, and the index stanzas
    and Contents-udeb lists they come from are all the same."""
    inputs = [Path(__file__).read_text(), field(kernel_deb, "SHA256"), abi_from, abi,
              [(format_stanza(s), contents.get(field(s, "Package"), [])) for s in module_udebs]]
    key = sha256(json.dumps(inputs).encode())[:16]
    built = archive.cache / "built-modules"
    saved = built / key / "built.json"
    pool = www / "debian" / OWN_POOL
    pool.mkdir(parents=True, exist_ok=True)
    if saved.exists():
        out = json.loads(saved.read_text())
        for _, stanza, _ in out:
            shutil.copy(built / key / Path(field(stanza, "Filename")).name, pool)
        log(f"{len(out)} kernel udebs as built before (cache/built-modules/{key})")
        return out
    out = repack_modules(archive, module_udebs, contents, abi_from, abi, kernel_deb, www)
    shutil.rmtree(built, ignore_errors=True)  # only the latest build is kept
    (built / key).mkdir(parents=True)
    for _, stanza, _ in out:
        shutil.copy(www / "debian" / field(stanza, "Filename"), built / key)
    saved.write_text(json.dumps(out))
    return out


def initrd_abi(initrd):
    """The kernel ABI of the netboot initrd (from its kernel-image-ABI-di udeb) and that
    udeb's version."""
    for name, stanza in initrd.items():
        m = re.fullmatch(r"kernel-image-(.+)-di", name)
        if m:
            return field(stanza, "Kernel-Version") or m[1], field(stanza, "Version")
    sys.exit(f"{TRIXIE_INITRD}: no kernel-image-*-di udeb in its status")


def self_check(stanzas, initrd, abi, needs=TRIXIE_INSTALL_NEEDS):
    """What anna in the netboot initrd (kernel ABI) would fetch for a standard install with
    the recipe's preseed: the index's udebs of priority standard and above that install on
    that kernel, and NEEDS (NAME-modules: that module udeb for ABI); each must be in the
    index or the initrd, and the Depends of each, recursively, must resolve there (versions
    compared as dpkg does).
    Also drops from STANZAS, in place, every udeb whose Depends cannot resolve. Returns the
    check's report (dict); exits when a needed udeb is absent or cannot be installed."""
    def usable(s):  # anna never installs module udebs of another kernel
        return field(s, "Kernel-Version") in (None, abi)

    def candidates(available):
        real, virtual = {}, {}
        for s in [*available, *initrd.values()]:
            real[field(s, "Package")] = s
            for p in parse_depends(field(s, "Provides")):
                virtual.setdefault(p[0][0], []).append(s)
        return real, virtual

    def unresolved(s, real, virtual):
        bad = []
        for alts in parse_depends(field(s, "Depends")):
            if not any((n in real and (op is None or version_ok(field(real[n], "Version"),
                                                                op, v)))
                       or (op is None and n in virtual) for n, op, v in alts):
                bad.append(" | ".join(f"{n} ({op} {v})" if op else n for n, op, v in alts))
        return bad

    # Drop what cannot install, until nothing more drops (a dependency may go with it).
    dropped = {}
    while True:
        real, virtual = candidates([s for s in stanzas if usable(s)])
        bad = {field(s, "Package"): unresolved(s, real, virtual)
               for s in stanzas if usable(s) and field(s, "Package") not in initrd}
        bad = {k: v for k, v in bad.items() if v}
        if not bad:
            break
        dropped.update(bad)
        stanzas[:] = [s for s in stanzas if field(s, "Package") not in bad]

    real, virtual = candidates([s for s in stanzas if usable(s)])
    wanted = {field(s, "Package") for s in stanzas if usable(s)
              and field(s, "Priority") in ("required", "important", "standard")}
    wanted |= {n.replace("-modules", f"-modules-{abi}-di") if n.endswith("-modules") else n
               for n in needs}
    absent = sorted(n for n in wanted if n not in real and n not in virtual)
    closure, queue = set(), sorted(wanted - set(absent))
    while queue:
        name = queue.pop()
        if name in closure:
            continue
        closure.add(name)
        s = real.get(name) or virtual[name][0]
        for alts in parse_depends(field(s, "Depends")):
            for n, op, v in alts:
                if n in real or n in virtual:
                    queue.append(n)
                    break
    fetched = sorted(n for n in closure if n not in initrd and n in real)
    # anna leaves installed udebs alone unless the index offers a newer version, which for
    # a udeb listed only because the initrd has it would be a 404.
    newer = sorted(field(s, "Package") for s in stanzas if field(s, "Package") in initrd
                   and compare_versions(field(s, "Version"),
                                        field(initrd[field(s, "Package")], "Version")) > 0)
    if newer:
        log(f"WARNING: the index lists newer versions than the initrd's of {newer}")
    report = {"kernel_abi": abi, "wanted": len(wanted), "absent": absent,
              "closure": len(closure), "fetched_from_index": fetched,
              "index_newer_than_initrd": newer, "dropped_unresolvable": dropped}
    log(f"self-check: {len(wanted)} udebs a standard install needs, {len(closure)} with "
        f"their dependencies ({len(fetched)} fetched, the rest in the initrd); "
        f"{len(dropped)} udebs dropped as uninstallable")
    if absent:
        sys.exit(f"self-check: needed udebs absent from the index and the initrd: {absent}")
    return report


def initrd_trial(archive, netboot, fetched, abi, www):
    """Unpacks the netboot initrd and the udebs anna would fetch (FETCHED, index stanzas)
    into a temporary tree, as udpkg would on top of the running initrd, then checks that
    every program and library of a udeb this script built finds all its libraries there (the
    initrd's own ld.so --list: nothing runs), and that the initrd's depmod indexes every
    fetched module for kernel ABI. Returns the trial's report; exits on a failure."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, mode, data in cpio_entries(initrd_cpio(archive, netboot, TRIXIE_INITRD)):
            path, kind = root / name, mode & 0o170000
            if kind == 0o040000:
                path.mkdir(parents=True, exist_ok=True)
            elif kind == 0o120000:
                path.symlink_to(data.decode())
            elif kind == 0o100000:
                path.write_bytes(data)
                path.chmod(mode & 0o7777)
        built, modules = [], []
        for stanza in fetched:
            filename = field(stanza, "Filename")
            own = filename.startswith(f"{OWN_POOL}/")
            udeb = www / "debian" / filename if own else archive.pool_file(stanza)
            tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", udeb], check=True,
                                 capture_output=True).stdout
            subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", root],
                           input=tar, check=True)
            with tarfile.open(fileobj=io.BytesIO(tar)) as t:
                files = [m.name.removeprefix("./") for m in t.getmembers() if m.isfile()]
            modules += [f for f in files if f.endswith((".ko", ".ko.xz"))]
            if own:
                built += [f for f in files if not f.endswith((".ko", ".ko.xz"))]

        loader = root / "lib64/ld-linux-x86-64.so.2"
        # The loader's default directories, inside the tree; a library it finds only on
        # this host (its defaults come last) counts as missing.
        libraries = ":".join(f"{root}/{d}" for d in ("lib/x86_64-linux-gnu",
                                                     "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"))
        unloadable = {}
        programs = [f for f in built if (root / f).read_bytes()[:4] == b"\x7fELF"]
        for path in programs:
            out = subprocess.run([loader, "--library-path", libraries, "--list", root / path],
                                 capture_output=True, text=True)
            missing = [name for name, found in re.findall(r"(\S+) => (\S+)", out.stdout)
                       if not found.startswith(str(root))]
            if out.returncode != 0 or missing:
                unloadable[path] = missing or out.stderr.strip()
        if unloadable:
            sys.exit(f"initrd trial: built programs missing libraries: {unloadable}")

        depmod = subprocess.run([loader, "--library-path", libraries, "--argv0", "depmod",
                                 root / "usr/bin/kmod", "-b", root, abi],
                                capture_output=True, text=True)
        if depmod.returncode != 0:
            sys.exit(f"initrd trial: the initrd's depmod failed: {depmod.stderr}")
        dep = (root / "lib/modules" / abi / "modules.dep").read_text()
        indexed = {line.split(":")[0] for line in dep.splitlines()}
        prefix = f"lib/modules/{abi}/"
        unindexed = [m for m in modules if m.removeprefix(prefix) not in indexed]
        if unindexed:
            sys.exit(f"initrd trial: modules depmod did not index: {unindexed}")
    report = {"programs_loaded": len(programs), "modules_indexed": len(modules)}
    log(f"initrd trial: {len(fetched)} udebs unpacked into the initrd; {len(programs)} "
        f"programs and libraries built here load with its libraries; its depmod indexed "
        f"{len(modules)} fetched modules")
    return report


def prepare_trixie(directory, unsigned_index=False):
    """prepare() for trixie: the index's served udebs as they are, the initrd's as listed,
    the module udebs rebuilt for the initrd's kernel, TRIXIE_REPACKED repacked, the rest left
    out; then the self-check. With UNSIGNED_INDEX, a udeb index and Contents-udeb that no
    signed Release lists are used anyway (see --unsigned-udeb-index)."""
    suite = "trixie"
    archive = Archive(directory / "cache")
    release = archive.release(suite)
    signed = not unsigned_index
    udebs = archive.packages(suite, UDEB_INDEX, must_match=signed,
                             alternates=TRIXIE_ALTERNATES)
    contents = parse_contents(archive.index_file(suite, CONTENTS_UDEB, must_match=signed,
                                                 alternates=TRIXIE_ALTERNATES))
    debs = {field(s, "Package"): s for s in archive.packages(suite, DEB_INDEX)}
    # The installer also fetches the other components' udeb indexes (passed through) and
    # checks each against the Release served, whose lines for them are trixie's own.
    others = [f"{component}/debian-installer/binary-amd64/Packages.xz" for component in
              re.search(r"^Components: (.+)$", release, re.M)[1].split() if component != "main"]
    for path in others:
        archive.index_file(suite, path)

    served = archive.served([field(s, "Filename") for s in udebs], sha256(release.encode()))
    initrd = initrd_packages(archive, debs[TRIXIE_NETBOOT], TRIXIE_INITRD)
    abi, abi_version = initrd_abi(initrd)
    kernel_deb = debs.get(f"linux-image-{abi}")
    if kernel_deb is None or field(kernel_deb, "Version") != abi_version:
        sys.exit(f"no linux-image-{abi} {abi_version} .deb for the initrd's kernel")
    # The index's module udebs to rebuild: the initrd's ABI if the index lists it, else
    # the newest ABI it lists (same kernel series; its file lists are renamed).
    abis = {field(s, "Kernel-Version") for s in udebs if field(s, "Kernel-Version")}
    abi_from = abi if abi in abis else max(abis, key=functools.cmp_to_key(compare_versions))
    log(f"initrd kernel {abi} ({abi_version}); module udebs from the index's {abi_from}")

    www = directory / "www"
    shutil.rmtree(www, ignore_errors=True)
    www.mkdir(parents=True)
    to_rebuild = [s for s in udebs if field(s, "Kernel-Version") == abi_from
                  and (abi_from != abi or not served[field(s, "Filename")])]
    rebuilt = {field(old, "Package"): (new, notes) for old, new, notes in
               cached_modules(archive, to_rebuild, contents, abi_from, abi, kernel_deb, www)}

    # Libraries a repacked udeb may load: those of the udebs listed, or in the initrd.
    owners = library_owners(contents, {field(s, "Package") for s in udebs
                                       if served[field(s, "Filename")]
                                       or field(s, "Package") in initrd
                                       or field(s, "Package") in TRIXIE_REPACKED})
    stanzas, manifest = [], []
    for udeb in udebs:
        name, filename = field(udeb, "Package"), field(udeb, "Filename")
        entry = {"package": name, "index_version": field(udeb, "Version")}
        if name in rebuilt:
            (stanza, notes), entry["kind"] = rebuilt[name], "repacked-kernel-modules"
            entry.update(notes, package=field(stanza, "Package"),
                         in_initrd=field(stanza, "Package") in initrd)
        elif served[filename]:
            stanza, entry["kind"] = udeb, "trixie"
        elif name in initrd:
            stanza, entry["kind"] = udeb, "in-initrd"
        elif name in TRIXIE_REPACKED:
            stanza, notes = repack_listed(archive, udeb, [debs[d] for d in TRIXIE_REPACKED[name]],
                                          contents.get(name, []), owners, www)
            entry.update(notes, kind="repacked")
        else:
            stanza, entry["kind"] = None, "left-out"
        if stanza:
            stanzas.append(stanza)
            entry["version"] = field(stanza, "Version")
            entry["filename"] = field(stanza, "Filename")
        manifest.append(entry)

    check = self_check(stanzas, initrd, abi)
    by_name = {field(s, "Package"): s for s in stanzas}
    check["initrd_trial"] = initrd_trial(
        archive, debs[TRIXIE_NETBOOT], [by_name[n] for n in check["fetched_from_index"]],
        abi, www)
    for entry in manifest:
        if entry["package"] in check["dropped_unresolvable"]:
            entry["kind"] = "left-out"
            entry["unresolvable"] = check["dropped_unresolvable"][entry["package"]]
            entry.pop("filename", None)
    checked = {path: archive.matched[path]
               for path in (f"{UDEB_INDEX}.xz", CONTENTS_UDEB, *others)}
    return publish(directory, suite, stanzas, manifest, release, www, self_check=check,
                   checked_against=checked)


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, www, manifest, log_file, suite=SUITE):
        super().__init__(address, ProxyHandler)
        self.www = www
        self.suite = suite
        self.kinds = {e["filename"]: e["kind"] for e in manifest if "filename" in e}
        self.log_file = log_file
        self.log_lock = threading.Lock()

    def local_file(self, host, path):
        """The file this proxy serves itself for a request, if any."""
        if path in (KEY_PATH, KEY_PATH.replace(".gpg", ".asc")) and host is None:
            return self.www / path.lstrip("/")
        if host not in (None, UPSTREAM_HOST):
            return None
        dists = f"/debian/dists/{self.suite}/"
        ours = [dists + "Release", dists + "Release.gpg", dists + UDEB_INDEX,
                dists + UDEB_INDEX + ".gz", dists + UDEB_INDEX + ".xz"]
        if path in ours or path.startswith(f"/debian/{OWN_POOL}/"):
            candidate = self.www / path.lstrip("/")
            return candidate if candidate.is_file() else None
        return None


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD, as a forward proxy (absolute URLs) and as a plain server for the key."""

    server_version = "ferry-test-mirror"
    passed_headers = ["Range", "If-Range", "If-Modified-Since", "If-None-Match",
                      "User-Agent", "Accept", "Cache-Control"]

    def do_GET(self):
        self.handle_request(body=True)

    def do_HEAD(self):
        self.handle_request(body=False)

    def log_message(self, format, *args):
        pass

    def note(self, how, status):
        parts = urlsplit(self.path)
        kind = self.server.kinds.get(parts.path.removeprefix("/debian/"), "")
        line = f"{self.command} {self.path} {how} {status} {kind}".rstrip()
        with self.server.log_lock:
            self.server.log_file.write(line + "\n")
            self.server.log_file.flush()

    def handle_request(self, body):
        parts = urlsplit(self.path)
        host = parts.hostname if parts.scheme else None
        local = self.server.local_file(host, parts.path)
        if local is not None:
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                self.wfile.write(data)
            self.note("local", 200)
        elif host and parts.scheme == "http":
            self.pass_through(host, parts.port or 80, body)
        else:
            self.send_error(404)
            self.note("refused", 404)

    def pass_through(self, host, port, body):
        parts = urlsplit(self.path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {h: self.headers[h] for h in self.passed_headers if self.headers[h]}
        try:
            conn = http.client.HTTPConnection(host, port, timeout=120)
            conn.request(self.command, target, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            self.send_error(502, str(e))
            self.note("upstream-error", 502)
            return
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                    "proxy-connection"):
                self.send_header(name, value)
        self.end_headers()
        if body:
            while chunk := resp.read(65536):
                self.wfile.write(chunk)
        conn.close()
        self.note("passed", resp.status)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    build = Path(__file__).resolve().parent.parent / "tests/fixtures/build"
    # One directory per suite: each holds its own index, manifest and served files.
    default_dirs = {"bookworm": build / "debian-mirror", "trixie": build / "debian-13-mirror"}
    parser.add_argument("--dir", type=Path,
                        help=f"cache and served files (default {default_dirs['bookworm']}, "
                             f"for trixie {default_dirs['trixie']})")
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--suite", choices=["bookworm", "trixie"], default=SUITE,
                        help=f"the installer's suite (default {SUITE})")
    parser.add_argument("--unsigned-udeb-index", action="store_true",
                        help="trixie: use the served udeb index and Contents-udeb even when "
                             "no signed Release lists them (this archive copy serves an "
                             "earlier point release's); manifest.json says which was used")
    args = parser.parse_args()
    args.dir = args.dir or default_dirs[args.suite]

    args.dir.mkdir(parents=True, exist_ok=True)
    manifest = prepare(args.dir, args.suite, args.unsigned_udeb_index)
    if args.prepare_only:
        return
    with open(args.dir / "proxy.log", "w") as log_file:
        server = Proxy(("127.0.0.1", args.port), args.dir / "www", manifest, log_file,
                       args.suite)
        print(f"ferry-mirror: listening on 127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
