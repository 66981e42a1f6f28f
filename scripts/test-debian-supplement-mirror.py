#!/usr/bin/env python3
"""Tests of scripts/debian-supplement-mirror.py's trixie parts that need no network:

  python3 -B scripts/test-debian-supplement-mirror.py

Version comparison is checked against dpkg itself; the udebs built are read back with
dpkg-deb. The whole preparation (network) is `--prepare-only --suite trixie`."""

import gzip
import hashlib
import importlib.util
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "mirror", Path(__file__).resolve().parent / "debian-supplement-mirror.py")
mirror = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mirror)


def stanza(text):
    return mirror.parse_stanzas(text)[0]


class Versions(unittest.TestCase):
    PAIRS = [
        ("1.0", "1.0~rc1"), ("1.0", "1.0.1"), ("2.41-12+deb13u5", "2.41"),
        ("2.41-12+deb13u4", "2.41-12+deb13u5"), ("1:1.0", "2.0"), ("1.0a", "1.0+"),
        ("1.0-1", "1.0-1~bpo1"), ("10.46-1~deb13u2", "10.46-1"), ("1.2.3", "1.2.3"),
        ("1.0", "1.0-0"), ("6.12.117-1", "6.12.94-1"), ("1:2022.10.3-5+deb13u3", "1:2022.10.3-5"),
        ("0.9~~a", "0.9~"), ("3.5.9-1~deb13u1", "3.5.7-1~deb13u2"), ("1.0+b1", "1.0"),
    ]

    def test_compare_versions_agrees_with_dpkg(self):
        for a, b in self.PAIRS:
            for x, y in ((a, b), (b, a)):
                for op, dpkg_op in (("<<", "lt"), ("=", "eq"), (">>", "gt"), (">=", "ge")):
                    want = subprocess.run(["dpkg", "--compare-versions", x, dpkg_op, y]
                                          ).returncode == 0
                    self.assertEqual(mirror.version_ok(x, op, y), want, (x, op, y))

    def test_parse_depends(self):
        self.assertEqual(
            mirror.parse_depends("libc6-udeb (>= 2.41), a | b (<< 2), c"),
            [[("libc6-udeb", ">=", "2.41")], [("a", None, None), ("b", "<<", "2")],
             [("c", None, None)]])
        self.assertEqual(mirror.parse_depends(None), [])


class Contents(unittest.TestCase):
    def test_parse_contents(self):
        text = ("EMPTY_PACKAGE                      debian-installer/empty-udeb\n"
                "usr/sbin/mke2fs                    debian-installer/e2fsprogs-udeb\n"
                "lib/modules/6.12.107+deb13-amd64/kernel/fs/ext4/ext4.ko.xz "
                "debian-installer/ext4-modules-6.12.107+deb13-amd64-di,"
                "debian-installer/other-di\n")
        files = mirror.parse_contents(gzip.compress(text.encode()))
        self.assertEqual(files["empty-udeb"], [])
        self.assertEqual(files["e2fsprogs-udeb"], ["usr/sbin/mke2fs"])
        self.assertEqual(files["other-di"],
                         ["lib/modules/6.12.107+deb13-amd64/kernel/fs/ext4/ext4.ko.xz"])

    def test_copy_listed_finds_files_under_usr_and_keeps_symlinks(self):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "src", Path(tmp) / "dst"
            (src / "usr/sbin").mkdir(parents=True)
            (src / "usr/sbin/mke2fs").write_text("program")
            (src / "usr/sbin/mkfs.ext4").symlink_to("mke2fs")
            (src / "lib/modules/B/kernel").mkdir(parents=True)
            (src / "lib/modules/B/kernel/x.ko.xz").write_text("module")
            missing = mirror.copy_listed(
                src, dst, ["sbin/mke2fs", "sbin/mkfs.ext4", "lib/modules/A/kernel/x.ko.xz",
                           "usr/sbin/absent", "usr/share/lintian/overrides/e2fsprogs-udeb"],
                rename=lambda p: p.replace("/A/", "/B/"))
            self.assertEqual(missing, ["usr/sbin/absent"])
            self.assertEqual((dst / "sbin/mke2fs").read_text(), "program")
            self.assertEqual(str((dst / "sbin/mkfs.ext4").readlink()), "mke2fs")
            self.assertEqual((dst / "lib/modules/B/kernel/x.ko.xz").read_text(), "module")
            self.assertFalse((dst / "usr/share/lintian").exists())

    def test_needed_udebs_reads_the_programs_libraries(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "bin").mkdir()
            shutil.copy("/bin/true", root / "bin/true")
            self.assertEqual(mirror.needed_udebs(root, {"libc.so.6": ["libc6-udeb"]}),
                             {"libc6-udeb"})
            with self.assertRaises(SystemExit):
                mirror.needed_udebs(root, {})


class Cpio(unittest.TestCase):
    def test_cpio_entries_reads_a_newc_archive(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            (root / "etc").mkdir(parents=True)
            (root / "etc/hostname").write_text("debian\n")
            (root / "lib").symlink_to("usr/lib")
            listing = "\n".join([".", "etc", "etc/hostname", "lib"]) + "\n"
            cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=root,
                                  input=listing.encode(), capture_output=True, check=True).stdout
        entries = {name: (mode & 0o170000, data)
                   for name, mode, data in mirror.cpio_entries(cpio)}
        self.assertEqual(entries["etc"][0], 0o040000)
        self.assertEqual(entries["etc/hostname"], (0o100000, b"debian\n"))
        self.assertEqual(entries["lib"], (0o120000, b"usr/lib"))
        self.assertNotIn("TRAILER!!!", entries)


class Built(unittest.TestCase):
    def test_rebuilt_udeb_keeps_the_control_fields_and_is_labelled(self):
        udeb = stanza(
            "Package: ext4-modules-A-di\nSource: linux-signed-amd64 (1)\nVersion: 1-1\n"
            "Installed-Size: 9\nMaintainer: Debian Kernel Team <x@invalid>\n"
            "Architecture: amd64\nProvides: ext4-modules\nDepends: kernel-image-A-di\n"
            "Description: ext4 support\nInstaller-Menu-Item: 42\nKernel-Version: A\n"
            "Section: debian-installer\nPriority: standard\nFilename: pool/x.udeb\n"
            "Size: 1\nSHA256: 00\n")
        with tempfile.TemporaryDirectory() as tmp:
            root, www = Path(tmp) / "root", Path(tmp) / "www"
            (root / "lib").mkdir(parents=True)
            (root / "lib/x.ko.xz").write_text("module")
            new = mirror.rebuilt_udeb(udeb, root, www, "REPACKED for a test.",
                                      Package="ext4-modules-B-di", Version="2-1",
                                      Kernel_Version="B", Depends="kernel-image-B-di")
            path = www / "debian" / mirror.field(new, "Filename")
            data = path.read_bytes()
            self.assertEqual(mirror.field(new, "SHA256"), hashlib.sha256(data).hexdigest())
            self.assertEqual(mirror.field(new, "Size"), str(len(data)))
            self.assertEqual(mirror.field(new, "Priority"), "standard")
            control = stanza(subprocess.run(["dpkg-deb", "-f", path], check=True,
                                            capture_output=True, text=True).stdout)
            for name, value in [("Package", "ext4-modules-B-di"), ("Version", "2-1"),
                                ("Kernel-Version", "B"), ("Depends", "kernel-image-B-di"),
                                ("Provides", "ext4-modules"), ("Installer-Menu-Item", "42"),
                                ("Architecture", "amd64")]:
                self.assertEqual(mirror.field(control, name), value, name)
            self.assertIn("REPACKED for a test.", mirror.field(control, "Description"))
            self.assertIn("ferry test mirror", mirror.field(control, "Maintainer"))
            listing = subprocess.run(["dpkg-deb", "-c", path], check=True,
                                     capture_output=True, text=True).stdout
            self.assertIn("./lib/x.ko.xz", listing)


class SelfCheck(unittest.TestCase):
    INITRD = {"libc6-udeb": stanza("Package: libc6-udeb\nVersion: 2.41-12+deb13u5\n"),
              "kernel-image-B-di": stanza("Package: kernel-image-B-di\nVersion: 2-1\n"
                                          "Provides: kernel-image\n")}

    def index(self):
        return [stanza(t) for t in [
            "Package: partman-base\nVersion: 1\nPriority: standard\n"
            "Depends: libc6-udeb (>= 2.41), partman-utils\n",
            "Package: partman-utils\nVersion: 1\nPriority: optional\n",
            "Package: ext4-modules-B-di\nVersion: 2-1\nPriority: standard\n"
            "Kernel-Version: B\nDepends: kernel-image-B-di\n",
            # another kernel's: never installable, never checked
            "Package: ext4-modules-A-di\nVersion: 1-1\nPriority: standard\n"
            "Kernel-Version: A\nDepends: kernel-image-A-di\n",
            # needs more than the initrd's C library: dropped, and what needs it too
            "Package: too-new\nVersion: 1\nDepends: libc6-udeb (>= 2.42)\n",
            "Package: needs-too-new\nVersion: 1\nDepends: other | too-new\n",
            "Package: virtual-user\nVersion: 1\nDepends: kernel-image\n",
        ]]

    def test_drops_the_unresolvable_and_follows_the_dependencies(self):
        stanzas = self.index()
        report = mirror.self_check(stanzas, self.INITRD, "B",
                                   needs=["partman-base", "ext4-modules"])
        self.assertEqual(sorted(report["dropped_unresolvable"]), ["needs-too-new", "too-new"])
        self.assertEqual(report["dropped_unresolvable"]["too-new"], ["libc6-udeb (>= 2.42)"])
        names = [mirror.field(s, "Package") for s in stanzas]
        self.assertNotIn("too-new", names)
        self.assertIn("virtual-user", names)
        self.assertIn("ext4-modules-A-di", names)
        self.assertEqual(report["absent"], [])
        self.assertEqual(report["fetched_from_index"],
                         ["ext4-modules-B-di", "partman-base", "partman-utils"])

    def test_fails_when_a_needed_udeb_is_absent(self):
        with self.assertRaises(SystemExit) as e:
            mirror.self_check(self.index(), self.INITRD, "B", needs=["grub-installer"])
        self.assertIn("grub-installer", str(e.exception))

    def test_a_module_udeb_of_another_kernel_does_not_count(self):
        with self.assertRaises(SystemExit) as e:
            mirror.self_check(self.index(), self.INITRD, "C", needs=["ext4-modules"])
        self.assertIn("ext4-modules-C-di", str(e.exception))


class IndexFile(unittest.TestCase):
    """Archive.index_file against a signed Release (given here, as if verified)."""

    PATH = f"{mirror.UDEB_INDEX}.xz"

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir)
        self.archive = mirror.Archive(self.dir)
        listed = b"the index the Release lists"
        self.archive.releases["trixie"] = (
            "Codename: trixie\nVersion: 13.8\nDate: Sat, 21 Nov 2026 09:15:44 UTC\nSHA256:\n"
            f" {hashlib.sha256(listed).hexdigest()} {len(listed)} {self.PATH}\n")
        self.archive.releases["stable"] = self.archive.releases["trixie"]
        self.listed = listed

    def served(self, data):
        original = mirror.http_get
        mirror.http_get = lambda url: data
        self.addCleanup(setattr, mirror, "http_get", original)

    def test_a_listed_index_is_used_and_says_which_release_listed_it(self):
        self.served(self.listed)
        self.assertEqual(self.archive.index_file("trixie", self.PATH), self.listed)
        self.assertEqual(self.archive.matched[self.PATH],
                         "dists/trixie/InRelease (Codename trixie, Version 13.8, "
                         "Sat, 21 Nov 2026 09:15:44 UTC)")

    def test_an_unlisted_index_is_refused_unless_allowed_and_then_labelled(self):
        other = b"an earlier point release's index"
        self.served(other)
        with self.assertRaises(SystemExit) as refused:
            self.archive.index_file("trixie", self.PATH, alternates=["stable"])
        self.assertEqual(str(refused.exception),
                         f"dists/trixie/{self.PATH}: checksum matches no signed Release of "
                         "trixie (--unsigned-udeb-index uses it anyway, labelled)")
        self.assertEqual(self.archive.index_file("trixie", self.PATH, must_match=False),
                         other)
        self.assertEqual(self.archive.matched[self.PATH],
                         "unmatched: no signed Release lists sha256 "
                         + hashlib.sha256(other).hexdigest())


if __name__ == "__main__":
    unittest.main()
