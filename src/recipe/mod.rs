//! Built-in recipes: install profiles and their answer-file templates, embedded in the binary
//! from `scripts/recipes/<name>/`. `ferry recipe show NAME` prints them so they can be copied
//! out and adapted; `ferry install NAME` uses them where a profile path is expected.

pub mod network;

/// One embedded recipe: its profile and the templates the profile names.
#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    pub profile: &'static str,
    /// (file name, contents) of each template, as named in the profile's `[[files]]`.
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! recipe {
    ($name:literal, [$($file:literal),* $(,)?]) => {
        Recipe {
            name: $name,
            profile: include_str!(concat!("../../scripts/recipes/", $name, "/profile.toml")),
            files: &[$(($file, include_str!(concat!("../../scripts/recipes/", $name, "/", $file)))),*],
        }
    };
    // One of a family of recipes that differ only in their image and variables: its own
    // profile head, then the family's shared `common.toml`; templates from the family.
    ($name:literal, family $family:literal, [$($file:literal),* $(,)?]) => {
        Recipe {
            name: $name,
            profile: concat!(
                include_str!(concat!("../../scripts/recipes/", $name, "/profile.toml")),
                include_str!(concat!("../../scripts/recipes/", $family, "/common.toml")),
            ),
            files: &[$(($file, include_str!(concat!("../../scripts/recipes/", $family, "/", $file)))),*],
        }
    };
}

/// Every built-in recipe.
pub static RECIPES: &[Recipe] = &[
    recipe!("debian-12", family "debian", ["preseed.cfg.j2"]),
    recipe!("debian-13", family "debian", ["preseed.cfg.j2"]),
    recipe!("nixos", ["configuration.nix.j2"]),
    recipe!("ubuntu-24.04", ["user-data.j2"]),
    recipe!("rocky-9", family "el", ["kickstart.cfg.j2"]),
    recipe!("rocky-10", family "el", ["kickstart.cfg.j2"]),
    recipe!("alma-9", family "el", ["kickstart.cfg.j2"]),
    recipe!("alma-10", family "el", ["kickstart.cfg.j2"]),
    recipe!("arch", ["user_configuration.json.j2"]),
    recipe!("freebsd", ["installerconfig.j2"]),
    recipe!("openbsd", ["install.conf.j2"]),
    recipe!("alpine", ["answers.j2", "finish.sh.j2"]),
];

/// The built-in recipe called `name` (`Catalog::recipe` also takes its images' names).
pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

/// `ferry recipe list`: the built-in recipes, one a line.
pub fn print_list() {
    for recipe in RECIPES {
        println!("{:<12} {}", recipe.name, recipe.description());
    }
}

/// `ferry recipe show NAME [--file FILE]`: prints the recipe's profile, or one of its
/// templates.
pub fn show(recipe: &Recipe, file: Option<&str>) -> Result<(), crate::Error> {
    match file {
        None => print!("{}", recipe.profile),
        Some(file) => {
            let text = recipe.file(file).ok_or_else(|| {
                let names: Vec<&str> = recipe.files.iter().map(|(n, _)| *n).collect();
                crate::Error::Usage(format!(
                    "recipe {} has no file {file} (its files: {})",
                    recipe.name,
                    names.join(", ")
                ))
            })?;
            print!("{text}");
        }
    }
    Ok(())
}

impl Recipe {
    /// The profile's own description line, for `ferry recipe list`.
    pub fn description(&self) -> String {
        toml::from_str::<toml::Table>(self.profile)
            .ok()
            .and_then(|t| t.get("description")?.as_str().map(String::from))
            .unwrap_or_default()
    }

    /// The catalog image the profile installs (`[image] name`), if it names one.
    pub fn image(&self) -> Option<String> {
        let profile = toml::from_str::<toml::Table>(self.profile).ok()?;
        Some(profile.get("image")?.get("name")?.as_str()?.to_string())
    }

    /// One of the recipe's templates.
    pub fn file(&self, name: &str) -> Option<&'static str> {
        self.files.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn every_recipe_parses_and_names_only_embedded_templates() {
        for recipe in RECIPES {
            let profile = Profile::from_recipe(recipe).unwrap_or_else(|e| panic!("{e}"));
            assert!(!recipe.description().is_empty(), "{}", recipe.name);
            for file in &profile.spec.files {
                if let Some(t) = &file.template {
                    assert!(
                        recipe.file(t.get_ref()).is_some(),
                        "{}: template {} is not embedded",
                        recipe.name,
                        t.get_ref()
                    );
                }
            }
        }
    }

    /// A plan's template context, as `install::plan` builds it.
    fn context(firmware: &str, network: bool) -> serde_json::Value {
        let mut c = serde_json::json!({
            "vars": {
                "hostname": "web1", "domain": "example.org", "mirror": "deb.debian.org", "suite": "bookworm",
                "mirror_dir": "/debian", "proxy": "", "mirror_key_url": "", "state_version": "24.11",
                "ssh_key": "ssh-ed25519 AAAAkey1 a@b\nssh-ed25519 AAAAkey2 c@d",
            },
            "disk": { "guest_path": "/dev/nvme0n1", "partition_prefix": "/dev/nvme0n1p" },
            "vm": { "firmware": firmware },
            "serve": { "url": "http://10.0.2.2:1234/T" },
        });
        if network {
            let n: network::Network = toml::from_str(
                "name = \"eth0\"\npredicted_name = \"enp1s0\"\nmac = \"52:54:00:12:34:56\"\n\
                 addresses = [[\"203.0.113.10\", 32]]\n\
                 ipv4_gateway = { address = \"172.31.1.1\", onlink = true }\ndns = [\"185.12.64.1\"]\n",
            )
            .unwrap();
            c["network"] = serde_json::json!(n.render().unwrap());
            c["vars"]["mirror_key_url"] = "http://10.0.2.2:8080/key.asc".into();
        }
        c
    }

    fn render(recipe: &str, file: &str, context: &serde_json::Value) -> String {
        let recipe = find(recipe).unwrap();
        crate::profile::Renderer::new(context)
            .render(file, recipe.file(file).unwrap())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn debian_preseed_renders_for_bios_and_uefi() {
        let bios = render("debian-12", "preseed.cfg.j2", &context("bios", false));
        for line in [
            "d-i partman-auto/disk string /dev/nvme0n1\n",
            "d-i grub-installer/bootdev string /dev/nvme0n1\n",
            "d-i partman-partitioning/choose_label select msdos\n",
            "d-i passwd/root-password-crypted password *\n",
            "d-i mirror/http/hostname string deb.debian.org\n",
            "d-i mirror/suite string bookworm\n",
            "d-i pkgsel/include string openssh-server\n",
            "d-i pkgsel/run_tasksel boolean false\n",
            "d-i debian-installer/exit/poweroff boolean true\n",
            // Before finish-install's 08hw-detect adds qemu-guest-agent for the VM.
            "d-i preseed/late_command string \\\n  rm -f /usr/lib/finish-install.d/08hw-detect; \\\n",
            "  wget -q -O /target/root/.ssh/authorized_keys http://10.0.2.2:1234/T/authorized_keys; \\\n",
        ] {
            assert!(bios.contains(line), "missing {line:?} in:\n{bios}");
        }
        assert!(!bios.contains("force-efi-extra-removable"));
        assert!(!bios.contains("/etc/network/interfaces"));
        assert!(!bios.contains("early_command"), "no mirror_key_url: {bios}");
        // late_command is one logical line: every continuation ends in a backslash.
        let late = bios.split("preseed/late_command string").nth(1).unwrap();
        let late: Vec<&str> = late.lines().take_while(|l| !l.trim().is_empty()).collect();
        assert_eq!(late.last().unwrap().trim(), "true", "{late:?}");
        assert!(
            late[..late.len() - 1].iter().all(|l| l.ends_with('\\')),
            "{late:?}"
        );

        let uefi = render("debian-12", "preseed.cfg.j2", &context("uefi", true));
        assert!(uefi.contains("d-i grub-installer/force-efi-extra-removable boolean true\n"));
        assert!(uefi.contains("d-i partman-partitioning/choose_label select gpt\n"));
        assert!(
            uefi.contains(
                "d-i preseed/early_command string \\\n  wget -q -O /tmp/mirror-key http://10.0.2.2:8080/key.asc && \\\n"
            ) && uefi.contains("fi >> /usr/share/keyrings/debian-archive-keyring.gpg\n"),
            "{uefi}"
        );
        assert!(uefi.contains(
            "  wget -q -O /target/etc/systemd/network/10-ferry-enp1s0.link http://10.0.2.2:1234/T/network.link; \\\n"
        ), "{uefi}");
        assert!(uefi.contains(
            "  wget -q -O /target/etc/resolv.conf http://10.0.2.2:1234/T/resolv.conf; \\\n"
        ));
    }

    /// debconf's own parser accepts every rendering (continuation lines, owners, types).
    #[test]
    fn debian_preseed_passes_debconf_set_selections_check() {
        // A database of its own: the system's is locked by any other debconf user (a second
        // test run, apt), and debconf-set-selections then exits 1 without a word.
        let db = tempfile::tempdir().unwrap();
        let conf = db.path().join("debconf.conf");
        std::fs::write(
            &conf,
            format!(
                "Config: configdb\nTemplates: templatedb\n\n\
                 Name: configdb\nDriver: File\nFilename: {0}/config.dat\n\n\
                 Name: templatedb\nDriver: File\nFilename: {0}/templates.dat\n",
                db.path().display()
            ),
        )
        .unwrap();
        for (firmware, network) in [("bios", false), ("uefi", true)] {
            let text = render("debian-12", "preseed.cfg.j2", &context(firmware, network));
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
            let out = std::process::Command::new("debconf-set-selections")
                .env("DEBCONF_SYSTEMRC", &conf)
                .arg("--checkonly")
                .arg(file.path())
                .output()
                .expect("debconf-set-selections (Debian's debconf package) runs");
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{firmware}: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// debian-13 is debian-12's recipe with its own image and suite, the preseed shared.
    #[test]
    fn debian_13_differs_from_debian_12_in_image_and_suite_only() {
        let profile = |name| Profile::from_recipe(find(name).unwrap()).unwrap().spec;
        let (twelve, thirteen) = (profile("debian-12"), profile("debian-13"));
        assert_eq!(
            thirteen.image.name.unwrap().get_ref(),
            "debian-13-netboot-package"
        );
        assert_eq!(thirteen.vars["suite"].as_str(), Some("trixie"));
        assert_eq!(twelve.vars["suite"].as_str(), Some("bookworm"));
        let mut rest = thirteen.vars.clone();
        rest.insert("suite".into(), "bookworm".into());
        assert_eq!(rest, twelve.vars);
        assert_eq!(
            thirteen.boot.append.unwrap().get_ref(),
            twelve.boot.append.unwrap().get_ref()
        );
        assert_eq!(thirteen.steps.len(), twelve.steps.len());
        let mut c = context("uefi", true);
        c["vars"]["suite"] = "trixie".into();
        let text = render("debian-13", "preseed.cfg.j2", &c);
        assert!(text.contains("d-i mirror/suite string trixie\n"), "{text}");
        assert_eq!(
            text.replace("string trixie", "string bookworm"),
            render("debian-12", "preseed.cfg.j2", &context("uefi", true))
        );
    }

    #[test]
    fn nixos_configuration_renders() {
        let bios = render("nixos", "configuration.nix.j2", &context("bios", false));
        assert!(bios.contains("    device = \"/dev/nvme0n1\";\n"), "{bios}");
        assert!(bios.contains("networking.useDHCP = lib.mkDefault true;"));
        assert!(bios.contains(
            "  users.users.root.openssh.authorizedKeys.keys = [\n    \"ssh-ed25519 AAAAkey1 a@b\"\n    \"ssh-ed25519 AAAAkey2 c@d\"\n  ];\n"
        ), "{bios}");
        assert!(bios.contains("networking.hostName = \"web1\";"));

        let uefi = render("nixos", "configuration.nix.j2", &context("uefi", true));
        assert!(
            uefi.contains("    efiInstallAsRemovable = true;\n"),
            "{uefi}"
        );
        assert!(uefi.contains("  systemd.network.links.\"10-enp1s0\" = {\n    matchConfig.MACAddress = \"52:54:00:12:34:56\";\n"), "{uefi}");
        assert!(uefi.contains("  networking.defaultGateway = { address = \"172.31.1.1\"; interface = \"enp1s0\"; };\n"), "{uefi}");
        assert!(!uefi.contains("useDHCP = lib.mkDefault"));
    }

    #[test]
    fn a_login_is_required() {
        let mut c = context("bios", false);
        c["vars"].as_object_mut().unwrap().remove("ssh_key");
        let r = crate::profile::Renderer::new(&c);
        let e = r
            .render(
                "configuration.nix.j2",
                find("nixos").unwrap().file("configuration.nix.j2").unwrap(),
            )
            .unwrap_err();
        assert!(e.message.contains("`vars.ssh_key`"), "{}", e.message);
        c["vars"]["root_password"] = "secret".into();
        let r = crate::profile::Renderer::new(&c);
        let text = r
            .render(
                "configuration.nix.j2",
                find("nixos").unwrap().file("configuration.nix.j2").unwrap(),
            )
            .unwrap();
        assert!(text.contains("initialPassword = \"secret\";"));
    }

    #[test]
    fn freebsd_installerconfig_renders() {
        let mut c = context("bios", true);
        c["vars"]["disk"] = "vtbd0".into();
        c["vars"]["zfs"] = false.into();
        c["network"]["freebsd_rc_conf"] = "ifconfig_em0=\"inet 203.0.113.10/32\"\n".into();
        let text = render("freebsd", "installerconfig.j2", &c);
        for part in [
            "PARTITIONS=vtbd0\n",
            "\n#!/bin/sh\nsysrc hostname=web1\n",
            "console=\"comconsole\"\n",
            "cat >> /etc/rc.conf <<'FERRY_EOF'\nifconfig_em0=\"inet 203.0.113.10/32\"\nFERRY_EOF\n",
            "nameserver 185.12.64.1\n",
            "ssh-ed25519 AAAAkey1 a@b\nssh-ed25519 AAAAkey2 c@d\nFERRY_EOF\n",
        ] {
            assert!(text.contains(part), "missing {part:?} in:\n{text}");
        }
        assert!(!text.contains("ZFSBOOT"));
        // The preamble ends where the script starts: bsdinstall splits at the #! line.
        assert_eq!(text.matches("#!/bin/sh").count(), 1);

        c["vars"]["zfs"] = true.into();
        c["network"]["freebsd_rc_conf"] = serde_json::Value::Null;
        let e = crate::profile::Renderer::new(&c)
            .render(
                "installerconfig.j2",
                find("freebsd").unwrap().file("installerconfig.j2").unwrap(),
            )
            .unwrap_err();
        assert!(e.message.contains("`vars.nic`"), "{}", e.message);
        c["vars"]["nic"] = "igb0".into();
        let text = render("freebsd", "installerconfig.j2", &c);
        assert!(text.contains("export ZFSBOOT_DISKS=vtbd0\n"), "{text}");
        assert!(text.contains("sysrc ifconfig_igb0=SYNCDHCP\n"), "{text}");
        c.as_object_mut().unwrap().remove("network");
        let text = render("freebsd", "installerconfig.j2", &c);
        assert!(text.contains("sysrc ifconfig_DEFAULT=SYNCDHCP\n"), "{text}");
    }

    /// What FreeBSD's scripted installer (`bsdinstall script FILE`) does with a rendered
    /// installerconfig: its own `script` runs under sh (FreeBSD's is an ash, as Debian's dash),
    /// the commands it calls (bsdinstall's other scripts, tar, chroot, zpool) recorded instead
    /// of run. Returns the calls with their environment, and the script given to chroot.
    fn bsdinstall_script(script: &str, installerconfig: &str) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for d in ["bin", "stubs", "share", "chroot/etc", "chroot/tmp"] {
            std::fs::create_dir_all(path(d)).unwrap();
        }
        // Its includes (bsdconfig's dialog and debug functions) from a directory of stubs.
        let included = script.replace(
            "BSDCFG_SHARE=\"/usr/share/bsdconfig\"",
            &format!("BSDCFG_SHARE=\"{}\"", path("share").display()),
        );
        assert_ne!(included, script, "script includes /usr/share/bsdconfig");
        std::fs::write(path("bin/script"), included).unwrap();
        std::fs::write(
            path("share/common.subr"),
            "SUCCESS=0\nf_dprintf() { :; }\nf_include() { :; }\nf_getvar() { :; }\n\
             f_quietly() { \"$@\" >/dev/null 2>&1; }\nf_debug_init() { :; }\n\
             f_dialog_title() { :; }\nf_dialog_textbox() { :; }\n",
        )
        .unwrap();
        let record = "echo \"$(basename \"$0\") $* | nonInteractive=$nonInteractive \
                      ZFSBOOT_DISKS=$ZFSBOOT_DISKS ZFSBOOT_VDEV_TYPE=$ZFSBOOT_VDEV_TYPE \
                      DISTRIBUTIONS=$DISTRIBUTIONS\" >>\"$CALLS\"\n";
        let stubs = [
            (
                "bin/fetchmissingdists",
                "echo /usr/freebsd-dist >&2\n".to_string(),
            ),
            ("stubs/bsdinstall", record.to_string()),
            ("stubs/tar", record.to_string()),
            ("stubs/zpool", record.to_string()),
            ("stubs/chroot", format!("{record}cp \"$1$2\" \"$SETUP\"\n")),
        ];
        for (name, body) in stubs {
            std::fs::write(path(name), format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(path(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(path("installerconfig"), installerconfig).unwrap();
        let log = path("bsdinstall.log");
        let out = std::process::Command::new("sh")
            .arg(path("bin/script"))
            .arg(path("installerconfig"))
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", path("stubs").display()))
            .env("TMPDIR", dir.path())
            .env("BSDINSTALL_TMPETC", path("tmpetc"))
            .env("PATH_FSTAB", path("fstab"))
            .env("BSDINSTALL_CHROOT", path("chroot"))
            .env("BSDINSTALL_LOG", &log)
            .env("debugFile", &log)
            .env("CALLS", path("calls"))
            .env("SETUP", path("setup"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bsdinstall's script failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let chroot = path("chroot").display().to_string();
        let calls = std::fs::read_to_string(path("calls"))
            .unwrap()
            .replace(&chroot, "CHROOT");
        (calls, std::fs::read_to_string(path("setup")).unwrap())
    }

    /// The rendered installerconfig through FreeBSD's own `bsdinstall script`
    /// (usr.sbin/bsdinstall/scripts/script): UFS on the disk, or ZFS; the part after the #!
    /// line, whole, runs in the installed system.
    #[test]
    #[ignore = "needs FreeBSD's usr.sbin/bsdinstall/scripts/script: FERRY_BSDINSTALL_SCRIPT=PATH cargo test -- --ignored bsdinstall"]
    fn freebsd_installerconfig_runs_through_bsdinstall_script() {
        let path = std::env::var("FERRY_BSDINSTALL_SCRIPT")
            .expect("FERRY_BSDINSTALL_SCRIPT names bsdinstall's script");
        let script = std::fs::read_to_string(path).unwrap();
        let mut c = context("bios", true);
        c["vars"]["disk"] = "vtbd0".into();
        for zfs in [false, true] {
            c["vars"]["zfs"] = zfs.into();
            c["network"]["freebsd_rc_conf"] = "ifconfig_vtnet0=\"DHCP\"\n".into();
            let conf = render("freebsd", "installerconfig.j2", &c);
            let (calls, setup) = bsdinstall_script(&script, &conf);
            let env = if zfs {
                "nonInteractive=YES ZFSBOOT_DISKS=vtbd0 ZFSBOOT_VDEV_TYPE=stripe"
            } else {
                "nonInteractive=YES ZFSBOOT_DISKS= ZFSBOOT_VDEV_TYPE="
            };
            let sets = "DISTRIBUTIONS=kernel.txz base.txz";
            let partition = if zfs {
                "bsdinstall zfsboot"
            } else {
                "bsdinstall scriptedpart vtbd0"
            };
            let mut expected: Vec<String> = [
                partition,
                "bsdinstall mount",
                "bsdinstall checksum",
                "tar -xf /usr/freebsd-dist/kernel.txz -C CHROOT --exclude boot/efi",
                "tar -xf /usr/freebsd-dist/base.txz -C CHROOT --exclude boot/efi",
                "bsdinstall bootconfig",
                "bsdinstall config",
                "chroot CHROOT /tmp/installscript",
                "bsdinstall entropy",
                "bsdinstall umount",
            ]
            .iter()
            .map(|call| format!("{call} | {env} {sets}"))
            .collect();
            if zfs {
                expected.push(format!("zpool export zroot | {env} {sets}"));
            }
            assert_eq!(calls.lines().collect::<Vec<_>>(), expected, "{conf}");
            let start = conf.find("\n#!/bin/sh\n").unwrap() + 1;
            assert_eq!(setup, conf[start..], "zfs: {zfs}");
            let syntax = std::process::Command::new("sh")
                .args(["-n", "-c", &setup])
                .status()
                .unwrap();
            assert!(syntax.success(), "{setup}");
        }
    }

    /// The OpenBSD questions ferry's VM gets (serial console, one virtio NIC, sets on the
    /// install ISO), as OpenBSD 7.7's installer words them, with the installer's default and
    /// the answer install.conf must give. A question asked twice is listed twice.
    const OPENBSD_STATIC: &[(&str, &str, &str)] = &[
        ("Terminal type?", "vt220", "vt220"),
        ("System hostname? (short form, e.g. 'foo')", "", "web1"),
        (
            "Network interface to configure? (name, lladdr, '?', or 'done')",
            "vio0",
            "52:54:00:12:34:56",
        ),
        (
            "IPv4 address for vio0? (or 'autoconf' or 'none')",
            "autoconf",
            "203.0.113.10/32",
        ),
        (
            "IPv6 address for vio0? (or 'autoconf' or 'none')",
            "none",
            "none",
        ),
        (
            "Network interface to configure? (name, lladdr, '?', or 'done')",
            "done",
            "done",
        ),
        (
            "Default IPv4 route? (IPv4 address or 'none')",
            "",
            "172.31.1.1",
        ),
        (
            "DNS domain name? (e.g. 'example.com')",
            "my.domain",
            "example.org",
        ),
        (
            "DNS nameservers? (IP address list or 'none')",
            "none",
            "185.12.64.1",
        ),
    ];

    /// The questions after the network's, the same with or without a host network.
    const OPENBSD_REST: &[(&str, &str, &str)] = &[
        ("Password for root account?", "", "*************"),
        (
            "Public ssh key for root account?",
            "none",
            "ssh-ed25519 AAAAkey1 a@b",
        ),
        ("Start sshd(8) by default?", "yes", "yes"),
        ("Do you expect to run the X Window System?", "yes", "no"),
        (
            "Do you want the X Window System to be started by xenodm(1)?",
            "no",
            "no",
        ),
        ("Change the default console to com0?", "yes", "yes"),
        (
            "Which speed should com0 use? (or 'done')",
            "115200",
            "115200",
        ),
        (
            "Setup a user? (enter a lower-case loginname, or 'no')",
            "no",
            "no",
        ),
        (
            "Allow root ssh login? (yes, no, prohibit-password)",
            "no",
            "prohibit-password",
        ),
        ("What timezone are you in? ('?' for list)", "", "UTC"),
        (
            "Which disk is the root disk? ('?' for details)",
            "sd0",
            "sd0",
        ),
        (
            "Encrypt the root disk with a (p)assphrase or (k)eyfile?",
            "no",
            "no",
        ),
        (
            "Use (W)hole disk MBR, whole disk (G)PT, (O)penBSD area or (E)dit?",
            "whole",
            "whole",
        ),
        (
            "URL to autopartitioning template for disklabel?",
            "none",
            "none",
        ),
        (
            "Use (A)uto layout, (E)dit auto layout, or create (C)ustom layout?",
            "a",
            "a",
        ),
        (
            "Location of sets? (cd0 disk http nfs or 'done')",
            "cd0",
            "cd0",
        ),
        (
            "Pathname to the sets? (or 'done')",
            "7.7/amd64",
            "7.7/amd64",
        ),
        ("Set name(s)? (or 'abort' or 'done')", "done", "-game* -x*"),
        ("Set name(s)? (or 'abort' or 'done')", "done", "done"),
        (
            "Location of sets? (cd0 disk http nfs or 'done')",
            "done",
            "done",
        ),
    ];

    /// Without a host network: DHCP in the VM answers the domain-less DNS questions but one.
    const OPENBSD_DHCP: &[(&str, &str, &str)] = &[
        ("Terminal type?", "vt220", "vt220"),
        ("System hostname? (short form, e.g. 'foo')", "", "web1"),
        (
            "Network interface to configure? (name, lladdr, '?', or 'done')",
            "vio0",
            "vio0",
        ),
        (
            "IPv4 address for vio0? (or 'autoconf' or 'none')",
            "autoconf",
            "autoconf",
        ),
        (
            "IPv6 address for vio0? (or 'autoconf' or 'none')",
            "none",
            "none",
        ),
        (
            "Network interface to configure? (name, lladdr, '?', or 'done')",
            "done",
            "done",
        ),
        (
            "DNS domain name? (e.g. 'example.com')",
            "my.domain",
            "example.org",
        ),
    ];

    fn openbsd_conf(network: bool) -> String {
        render("openbsd", "install.conf.j2", &{
            let mut c = context("bios", network);
            c["vars"]["timezone"] = "UTC".into();
            c["vars"]["root_disk"] = "sd0".into();
            c["vars"]["sets"] = "-game* -x*".into();
            c
        })
    }

    #[test]
    fn openbsd_install_conf_renders() {
        let conf = openbsd_conf(true);
        for line in [
            "Network interface to configure = 52:54:00:12:34:56\n",
            "IPv4 address for = 203.0.113.10/32\n",
            "IPv6 address for = none\n",
            "Default IPv4 route = 172.31.1.1\n",
            "DNS nameservers = 185.12.64.1\n",
            "Public ssh key for root account = ssh-ed25519 AAAAkey1 a@b\n",
            "Use (W)hole disk = whole\n",
        ] {
            assert!(conf.contains(line), "missing {line:?} in:\n{conf}");
        }
        let dhcp = openbsd_conf(false);
        assert!(dhcp.contains("IPv4 address for = autoconf\n"), "{dhcp}");
        assert!(!dhcp.contains("Network interface"), "{dhcp}");
    }

    /// Runs OpenBSD's own answer matching, `_autorespond` from `distrib/miniroot/install.sub`
    /// (openbsd/src; not vendored here: its path comes from `FERRY_INSTALL_SUB`), under Debian's
    /// mksh over the rendered install.conf, one question after the other as the installer
    /// asks them; returns the answers and the lines no question took.
    fn autorespond(
        install_sub: &str,
        conf: &str,
        questions: &[(&str, &str, &str)],
    ) -> (Vec<String>, Vec<String>) {
        let start = install_sub
            .find("\n_autorespond() {\n")
            .expect("install.sub defines _autorespond()");
        let len = install_sub[start + 1..]
            .find("\n}\n")
            .expect("_autorespond() ends")
            + 3;
        let dir = tempfile::tempdir().unwrap();
        let ai = dir.path().join("ai");
        std::fs::create_dir(&ai).unwrap();
        // The function keeps its state in /tmp/ai/: a directory of this test's own instead.
        let function = install_sub[start + 1..start + 1 + len]
            .replace("/tmp/ai/", &format!("{}/", ai.display()));
        let conf_path = dir.path().join("install.conf");
        std::fs::write(&conf_path, conf).unwrap();
        std::fs::copy(&conf_path, ai.join("ai.conf")).unwrap();
        let mut asked = String::new();
        for (q, def, _) in questions {
            asked.push_str(&format!("{q}|{def}\n"));
        }
        std::fs::write(dir.path().join("questions"), asked).unwrap();
        let script = format!(
            "err_exit() {{ print -u2 -- \"$*\"; exit 1; }}\n{function}\nAI_RESPFILE={conf}\n\
             while IFS='|' read -r q def; do resp=; _autorespond \"$q\" \"$def\" || exit 3; print -r -- \"$resp\"; done <{questions}\n",
            conf = conf_path.display(),
            questions = dir.path().join("questions").display(),
        );
        let out = std::process::Command::new("mksh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("mksh (Debian's mksh package, scripts/install-deps.sh) runs");
        assert!(
            out.status.success(),
            "install.sub's matching failed ({}): {}\n{conf}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let answers = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let left = std::fs::read_to_string(ai.join("ai.conf"))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| l.contains('=') && !l.starts_with('#'))
            .map(String::from)
            .collect();
        (answers, left)
    }

    /// Every question the installer asks finds install.conf's answer through install.sub's own
    /// matching, and every answer is taken by a question (a key that matches nothing is a typo).
    #[test]
    #[ignore = "needs OpenBSD's distrib/miniroot/install.sub: FERRY_INSTALL_SUB=PATH cargo test -- --ignored openbsd"]
    fn openbsd_install_conf_answers_every_question_in_install_sub() {
        let path = std::env::var("FERRY_INSTALL_SUB").expect("FERRY_INSTALL_SUB names install.sub");
        let install_sub = std::fs::read_to_string(&path).unwrap();
        for (network, first) in [(true, OPENBSD_STATIC), (false, OPENBSD_DHCP)] {
            let questions: Vec<_> = first.iter().chain(OPENBSD_REST).copied().collect();
            let conf = openbsd_conf(network);
            let (answers, left) = autorespond(&install_sub, &conf, &questions);
            let expected: Vec<&str> = questions.iter().map(|(_, _, a)| *a).collect();
            assert_eq!(answers, expected, "network: {network}\n{conf}");
            assert!(
                left.is_empty(),
                "answers no question took: {left:?}\n{conf}"
            );
        }
        // A question install.conf does not answer and that has no default stops the install
        // with install.sub's own message.
        let conf = openbsd_conf(true).replace("System hostname", "Hostname of the system");
        let result = std::panic::catch_unwind(|| {
            autorespond(
                &install_sub,
                &conf,
                &[("System hostname? (short form, e.g. 'foo')", "", "")],
            )
        });
        let message = result.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("Question has no answer in response file: \"system hostname? (short form, e.g. 'foo')\""),
            "{message}"
        );
    }

    #[test]
    fn unknown_recipe() {
        assert!(find("debian-12").is_some());
        assert!(find("windows").is_none());
    }

    /// A catalog image that names a recipe plans with it, and that recipe installs that image.
    #[test]
    fn catalog_images_name_existing_recipes_that_use_them() {
        let catalog = crate::fetch::catalog::Catalog::load(None).unwrap();
        let mut named = 0;
        for entry in &catalog.entries {
            let Some(recipe) = &entry.recipe else {
                continue;
            };
            let found = find(recipe)
                .unwrap_or_else(|| panic!("{}: recipe {recipe} does not exist", entry.name));
            let profile = Profile::from_recipe(found).unwrap();
            let image = profile.spec.image.name.as_ref().unwrap().get_ref();
            // The recipe names one image; the other architectures' builds are found from it.
            // An image of the same release that the recipe does not name is its alternative
            // (the EL boot ISOs beside the trees' kernels).
            let installs = catalog.get_for(image, entry.arch).unwrap();
            assert!(
                installs.name == entry.name
                    || (&installs.os, &installs.version, installs.arch)
                        == (&entry.os, &entry.version, entry.arch),
                "recipe {recipe} installs another release than {}",
                entry.name
            );
            named += 1;
        }
        assert!(named >= 7, "{named}");
        // Every recipe that takes a catalog image is named back by it.
        for recipe in RECIPES {
            let profile = Profile::from_recipe(recipe).unwrap();
            if let Some(image) = &profile.spec.image.name {
                let entry = catalog.get(image.get_ref()).unwrap();
                assert_eq!(entry.recipe.as_deref(), Some(recipe.name));
            }
        }
    }

    /// Runs a validator on `text` written to a temporary file; panics with its output.
    fn validate(text: &str, program: &str, args: &[&str]) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let out = std::process::Command::new(program)
            .args(args)
            .arg(file.path())
            .output()
            .unwrap_or_else(|e| panic!("{program} (scripts/install-deps.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn ubuntu_autoinstall_renders_and_passes_subiquity_schema_and_cloud_init() {
        let validator = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/validators/autoinstall.py"
        );
        for (firmware, network) in [("bios", false), ("uefi", true)] {
            let mut c = context(firmware, network);
            if network {
                c["vars"]["root_password"] = "it's \"a\" pass".into();
            }
            let text = render("ubuntu-24.04", "user-data.j2", &c);
            validate(&text, "python3", &[validator]);
            for line in [
                "      match:\n        path: /dev/nvme0n1\n",
                "    - curl -fsS -o /target/root/.ssh/authorized_keys http://10.0.2.2:1234/T/authorized_keys\n",
                "  shutdown: poweroff\n",
            ] {
                assert!(text.contains(line), "{line:?} not in\n{text}");
            }
            assert_eq!(text.contains("netplan.yaml"), network, "{text}");
            assert_eq!(text.contains("--removable --no-nvram"), firmware == "uefi");
            assert_eq!(
                text.contains("password: 'it''s \"a\" pass'\n"),
                network,
                "{text}"
            );
        }
    }

    #[test]
    fn ubuntu_boots_the_casper_kernel_with_a_nocloud_seed() {
        let profile = Profile::from_recipe(find("ubuntu-24.04").unwrap()).unwrap();
        let append = profile.spec.boot.append.unwrap();
        let text = crate::profile::Renderer::new(&context("bios", false))
            .render("append", append.get_ref())
            .unwrap();
        assert_eq!(text, "autoinstall ds=nocloud;s=http://10.0.2.2:1234/T/");
        let names: Vec<&str> = profile
            .spec
            .files
            .iter()
            .map(|f| f.name.get_ref().as_str())
            .collect();
        assert_eq!(
            names,
            ["user-data", "meta-data", "authorized_keys", "netplan.yaml"]
        );
    }

    #[test]
    fn rhel_family_kickstart_passes_ksvalidator() {
        for (recipe, version) in [
            ("rocky-9", "RHEL9"),
            ("alma-9", "RHEL9"),
            ("rocky-10", "RHEL10"),
            ("alma-10", "RHEL10"),
        ] {
            let profile = Profile::from_recipe(find(recipe).unwrap()).unwrap();
            let mirror = profile.spec.vars["mirror"].as_str().unwrap().to_string();
            for (firmware, network) in [("bios", false), ("uefi", true)] {
                let mut c = context(firmware, network);
                c["vars"]["mirror"] = mirror.clone().into();
                let text = render(recipe, "kickstart.cfg.j2", &c);
                validate(&text, "ksvalidator", &["-e", "-v", version]);
                for line in [
                    format!("url --url={mirror}/BaseOS/x86_64/os/\n"),
                    "ignoredisk --only-use=nvme0n1\n".into(),
                    "cat > /root/.ssh/authorized_keys <<'FERRY_EOF'\nssh-ed25519 AAAAkey1 a@b\nssh-ed25519 AAAAkey2 c@d\nFERRY_EOF\n".into(),
                    "rootpw --lock\n".into(),
                    "\npoweroff\n".into(),
                ] {
                    assert!(text.contains(&line), "{recipe}: {line:?} not in\n{text}");
                }
                assert_eq!(
                    text.contains("cat > /etc/NetworkManager/system-connections/ferry-enp1s0.nmconnection <<'FERRY_EOF'\n# Written by ferry for the NIC with MAC 52:54:00:12:34:56.\n"),
                    network,
                    "{text}"
                );
                assert_eq!(
                    text.matches("\nFERRY_EOF\n").count(),
                    1 + usize::from(network)
                );
            }
        }
    }

    #[test]
    fn rhel_family_boots_the_install_entry_with_the_served_kickstart() {
        for recipe in ["rocky-9", "rocky-10", "alma-9", "alma-10"] {
            let profile = Profile::from_recipe(find(recipe).unwrap()).unwrap();
            assert_eq!(
                profile.spec.boot.entry.get_ref(),
                "grub:/^Install .* [0-9][0-9.]*$/"
            );
            let append = profile.spec.boot.append.unwrap();
            let text = crate::profile::Renderer::new(&context("bios", false))
                .render("append", append.get_ref())
                .unwrap();
            assert_eq!(text, "inst.ks=http://10.0.2.2:1234/T/ks.cfg inst.text");
            // The smaller download: the tree's kernel and initrd; the boot ISO names the
            // recipe too (`ferry install rocky-9-boot`).
            let catalog = crate::fetch::catalog::Catalog::load(None).unwrap();
            let image = profile.spec.image.name.unwrap();
            assert_eq!(image.get_ref(), &format!("{recipe}-netboot"));
            let tree = catalog.get(image.get_ref()).unwrap().tree.as_ref().unwrap();
            assert_eq!(
                (
                    tree.kernel.as_str(),
                    tree.initrd.as_str(),
                    tree.installer_arg.as_str()
                ),
                (
                    "images/pxeboot/vmlinuz",
                    "images/pxeboot/initrd.img",
                    "inst.stage2"
                )
            );
            let iso = catalog.get(&format!("{recipe}-boot")).unwrap();
            assert_eq!(iso.recipe.as_deref(), Some(recipe));
        }
    }
}
