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
}

/// Every built-in recipe.
pub static RECIPES: &[Recipe] = &[
    recipe!("debian-12", ["preseed.cfg.j2"]),
    recipe!("nixos", ["configuration.nix.j2"]),
];

/// The built-in recipe called `name`.
pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

/// `ferry recipe list`: the built-in recipes, one a line.
pub fn print_list() {
    for recipe in RECIPES {
        println!("{:<12} {}", recipe.name, recipe.description());
    }
}

/// `ferry recipe show NAME [--file FILE]`: prints a recipe's profile, or one of its templates.
pub fn show(name: &str, file: Option<&str>) -> Result<(), crate::Error> {
    let usage = crate::Error::Usage;
    let recipe = find(name).ok_or_else(|| {
        usage(format!(
            "no built-in recipe {name} (see `ferry recipe list`)"
        ))
    })?;
    match file {
        None => print!("{}", recipe.profile),
        Some(file) => {
            let text = recipe.file(file).ok_or_else(|| {
                let names: Vec<&str> = recipe.files.iter().map(|(n, _)| *n).collect();
                usage(format!(
                    "recipe {name} has no file {file} (its files: {})",
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
                "hostname": "web1", "domain": "example.org", "mirror": "deb.debian.org",
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
            "d-i pkgsel/include string openssh-server\n",
            "d-i debian-installer/exit/poweroff boolean true\n",
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
        for (firmware, network) in [("bios", false), ("uefi", true)] {
            let text = render("debian-12", "preseed.cfg.j2", &context(firmware, network));
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
            let out = std::process::Command::new("debconf-set-selections")
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
    fn unknown_recipe() {
        assert!(find("debian-12").is_some());
        assert!(find("windows").is_none());
    }
}
