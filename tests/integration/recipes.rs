//! The built-in recipes: listing and showing them, planning with them, the real Debian
//! installer failing fast here, and the NixOS recipe against the NixOS look-alike fixture ISO.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

pub(crate) fn test_key(dir: &Path) -> PathBuf {
    let key = dir.join("id_test.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFerryTestKeyFerryTestKeyFerryTestKey0 test@ferry\n",
    )
    .unwrap();
    key
}

#[test]
fn recipes_are_listed_and_shown_as_shipped() {
    let out = ferry().args(["recipe", "list"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with("debian-12    Debian 12 (bookworm)"),
        "{stdout}"
    );
    for line in [
        "\ndebian-13    Debian 13 (trixie)",
        "\nnixos        NixOS",
        "\nubuntu-24.04 Ubuntu 24.04 LTS",
        "\nrocky-9      Rocky Linux 9,",
        "\nrocky-10     Rocky Linux 10,",
        "\nalma-9       AlmaLinux 9,",
        "\nalma-10      AlmaLinux 10,",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }

    // A family's profile is its own head followed by the family's common part.
    for (recipe, file, shipped) in [
        (
            "debian-12",
            None,
            &["debian-12/profile.toml", "debian/common.toml"][..],
        ),
        (
            "debian-12",
            Some("preseed.cfg.j2"),
            &["debian/preseed.cfg.j2"],
        ),
        (
            "debian-13",
            Some("preseed.cfg.j2"),
            &["debian/preseed.cfg.j2"],
        ),
        (
            "rocky-10",
            None,
            &["rocky-10/profile.toml", "el/common.toml"],
        ),
        ("alma-9", Some("kickstart.cfg.j2"), &["el/kickstart.cfg.j2"]),
        (
            "ubuntu-24.04",
            Some("user-data.j2"),
            &["ubuntu-24.04/user-data.j2"],
        ),
        (
            "nixos",
            Some("configuration.nix.j2"),
            &["nixos/configuration.nix.j2"],
        ),
    ] {
        let mut cmd = ferry();
        cmd.args(["recipe", "show", recipe]);
        if let Some(file) = file {
            cmd.args(["--file", file]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let expected: String = shipped
            .iter()
            .map(|f| std::fs::read_to_string(repo().join("scripts/recipes").join(f)).unwrap())
            .collect();
        assert_eq!(text(&out).0, expected, "{recipe} {file:?}");
    }
    // Copied out next to each other, the files plan exactly like the built-in recipe.
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let key = test_key(dir);
    for (args, name) in [
        (&["recipe", "show", "debian-12"][..], "my.toml"),
        (
            &["recipe", "show", "debian-12", "--file", "preseed.cfg.j2"][..],
            "preseed.cfg.j2",
        ),
    ] {
        let out = ferry().args(args).output().unwrap();
        std::fs::write(dir.join(name), out.stdout).unwrap();
    }
    let served = |profile: &Path| {
        let out = ferry()
            .arg("plan")
            .arg(profile)
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "4G", "--json", "--ssh-key"])
            .arg(&key)
            .arg("--kernel")
            .arg(fixture("build/vmlinuz"))
            .arg("--initrd")
            .arg(fixture("build/installer.gz"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (plan["files"].clone(), plan["boot"]["cmdline"].clone())
    };
    assert_eq!(served(&dir.join("my.toml")), served(Path::new("debian-12")));

    let out = ferry()
        .args(["recipe", "show", "debian-12", "--file", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("recipe debian-12 has no file nope (its files: preseed.cfg.j2)"),
        "{}",
        text(&out).1
    );
}

#[test]
fn plan_takes_a_recipe_name_and_image_overrides() {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let plan = |extra: &[&str]| {
        let out = ferry()
            .arg("plan")
            .arg("debian-12")
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "4G", "--json"])
            .args(extra)
            .current_dir(scratch.dir.path())
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let kernel = fixture("build/vmlinuz");
    let initrd = fixture("build/installer.gz");
    let (code, (stdout, stderr)) = plan(&[
        "--ssh-key",
        key.to_str().unwrap(),
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let planned: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(planned["boot"]["kernel"], kernel.to_str().unwrap());
    assert_eq!(planned["boot"]["initrd"][0], initrd.to_str().unwrap());
    let cmdline = planned["boot"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.starts_with("no_timer_check modprobe.blacklist=bochs,cirrus auto=true priority=critical url=http://10.0.2.100/preseed.cfg hostname=debian domain=localdomain")
            && cmdline.ends_with(" --- console=ttyS0,115200n8"),
        "{cmdline}"
    );
    let files: Vec<&str> = planned["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "preseed.cfg",
            "authorized_keys",
            "interfaces",
            "network.link",
            "resolv.conf"
        ]
    );

    // Without a key or a root password nobody could log in: refused before anything runs.
    let (code, (_, stderr)) = plan(&[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("undefined variable `vars.ssh_key`"),
        "{stderr}"
    );
    // A missing override names the option.
    let (code, (_, stderr)) = plan(&["--ssh-key", key.to_str().unwrap(), "--image", "no.iso"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--image no.iso: no such file"), "{stderr}");

    // A profile file of the same name wins over the recipe.
    std::fs::write(
        scratch.dir.path().join("debian-12"),
        format!(
            "description = \"local file\"\n[image]\nkernel = \"{}\"\n",
            kernel.display()
        ),
    )
    .unwrap();
    let (code, (stdout, stderr)) = plan(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let planned: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(planned["description"], "local file");

    let out = ferry()
        .args(["plan", "debian-11", "--disk"])
        .arg(scratch.disk())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains(
            "debian-11 is neither a profile file, a built-in recipe nor a catalog image with one (recipes: debian-12, debian-13, nixos, ubuntu-24.04, rocky-9, rocky-10, alma-9, alma-10, arch, freebsd, openbsd, alpine; images: "
        ),
        "{}",
        text(&out).1
    );
}

/// The operator's own catalog (`--catalog DIR`), here with a Debian 12 netboot image from a
/// local mirror: `ferry plan IMAGE` finds the image's recipe there and plans that image; the
/// built-in catalog does not know the name. `recipe show` takes any architecture's image.
#[test]
fn an_image_of_the_operators_catalog_plans_with_its_recipe() {
    let scratch = Scratch::new();
    let catalog = scratch.dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    for entry in std::fs::read_dir(repo().join("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, catalog.join(path.file_name().unwrap())).unwrap();
    }
    let shipped =
        std::fs::read_to_string(repo().join("images/debian-12-netboot-package.toml")).unwrap();
    let mirrored = shipped
        .replace(
            "name = \"debian-12-netboot-package\"",
            "name = \"debian-12-mirrored\"",
        )
        .replace(
            "archive = \"https://deb.debian.org/debian\"",
            "archive = \"http://mirror.internal/debian\"",
        );
    assert_ne!(mirrored, shipped);
    std::fs::write(catalog.join("debian-12-mirrored.toml"), mirrored).unwrap();
    let key = test_key(scratch.dir.path());
    let plan = |catalog: Option<&Path>| {
        let mut cmd = ferry();
        cmd.args([
            "plan",
            "debian-12-mirrored",
            "--json",
            "--size",
            "4G",
            "--disk",
        ])
        .arg(scratch.disk())
        .arg("--cache-dir")
        .arg(scratch.dir.path().join("cache"))
        .arg("--ssh-key")
        .arg(&key);
        if let Some(catalog) = catalog {
            cmd.arg("--catalog").arg(catalog);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), text(&out))
    };

    let (code, (stdout, stderr)) = plan(Some(&catalog));
    assert_eq!(code, Some(0), "{stderr}");
    let planned: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        planned["description"]
            .as_str()
            .unwrap()
            .starts_with("Debian 12 (bookworm)"),
        "{planned:#}"
    );
    assert_eq!(
        planned["fetch"]["request"]["checksum"]["debian"]["archive"],
        "http://mirror.internal/debian",
        "not the mirrored image: {:#}",
        planned["fetch"]
    );

    let (code, (_, stderr)) = plan(None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("debian-12-mirrored is neither a profile file, a built-in recipe nor a catalog image with one"),
        "{stderr}"
    );

    let show = |name: &str| {
        let out = ferry().args(["recipe", "show", name]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).0
    };
    assert_eq!(show("debian-12-netboot-package-arm64"), show("debian-12"));
}

/// `ferry install debian-12` as an operator types it: the real Debian installer (Debian's
/// netboot package, fetched from deb.debian.org and verified through the signed InRelease and
/// the Packages index), the preseed served by ferry, the real archive through QEMU's user
/// networking. The archive copy reachable here lacks most
/// of the installer's own components, so d-i stops at "Download installer components":
/// ferry must fail on that screen within seconds, with the installer's message.
#[test]
fn debian_installer_error_screen_fails_the_install_fast() {
    let stderr = debian_installer_fails_fast("12", "amd64");
    assert!(
        stderr.contains("Download installer components"),
        "the installer's own message is missing:\n{stderr}"
    );
}

/// debian-13 the same way: trixie's installer components are incomplete here too (libc6-udeb,
/// e2fsprogs-udeb and the kernel's modules are 404), so d-i stops on an error screen and
/// ferry fails on it.
#[test]
fn debian_13_installer_error_screen_fails_the_install_fast() {
    debian_installer_fails_fast("13", "amd64");
}

/// `ferry install debian-RELEASE` for a guest of Debian architecture `arch` (`amd64`, `arm64`)
/// against the real archive until the installer's first error screen; asserts ferry failed on
/// it, ended by the recipe's failure pattern. Returns ferry's stderr.
pub(crate) fn debian_installer_fails_fast(release: &str, arch: &str) -> String {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let started = Instant::now();
    let guest = if arch == "arm64" { "aarch64" } else { "x86_64" };
    let out = ferry()
        .args(["install", &format!("debian-{release}"), "--disk"])
        .arg(scratch.disk())
        .arg("--cache-dir")
        .arg(scratch.dir.path().join("cache"))
        .args(["--size", "4G", "--yes"])
        .args(TCG_ONE_VCPU)
        .args(["--arch", guest])
        .arg("--ssh-key")
        .arg(&key)
        .arg("--runs-dir")
        .arg(scratch.runs())
        .output()
        .unwrap();
    let ended = SystemTime::now();
    let took = started.elapsed();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!("debian-installer-{release}-netboot-{arch}_"))
            && stderr.contains(" verified ("),
        "the netboot package was not fetched and verified:\n{stderr}"
    );
    assert!(
        stderr.contains("unpacking the kernel and initrd"),
        "{stderr}"
    );
    // Ended by a failure pattern, not by a step's timeout (10 minutes and more): fast, however
    // loaded the host (about 3 minutes under TCG on 2 idle cores; printed, not asserted).
    assert!(stderr.contains("failure pattern"), "{stderr}");

    // The screen that ended it is what the recipe's fail patterns describe: a question's prompt
    // or an error note. How long after it ferry ended (the transcript's clock) is printed.
    let screen =
        regex::Regex::new(r"Prompt: '\?' for help|\[!+\] [A-Z][a-z]|\[Press enter to continue\]")
            .unwrap();
    let run = scratch.run_dir();
    // The installer's console is the machine's serial port: the 16550 (ttyS0) of `pc`, the
    // PL011 (ttyAMA0) of `virt`.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    let console = if arch == "arm64" { "ttyAMA0" } else { "ttyS0" };
    let cmdline = plan["boot"]["cmdline"].as_str().unwrap_or_default();
    assert!(
        plan["arch"] == guest && cmdline.contains(&format!("console={console},115200n8")),
        "{plan:#}"
    );
    let cast = std::fs::read_to_string(run.join("transcript.cast")).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let start = header["timestamp"].as_f64().unwrap();
    let mut seen = String::new();
    let mut appeared = None;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event[1] == "o" {
            seen.push_str(event[2].as_str().unwrap());
            if screen.is_match(&seen) {
                appeared = Some(start + event[0].as_f64().unwrap());
                break;
            }
        }
    }
    let appeared = appeared.expect("the screen is in the transcript");
    let ended = ended.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    eprintln!(
        "debian-{release} ({arch}): failed in {took:?}, {:.1}s after the error screen appeared",
        ended - appeared
    );
    let preseed_served = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(
        preseed_served.contains("preseed.cfg"),
        "the installer never fetched the preseed"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
    stderr
}

/// `ferry install nixos` with the NixOS look-alike fixture ISO, then the command lines its fake
/// tools recorded onto the installed disk, and the installed configuration.nix.
fn install_nixos_fixture(firmware: &str, network: Option<&str>) -> (Scratch, Vec<String>, String) {
    let (scratch, cmdline) = install_fixture("nixos", "tiny-nixos.iso", firmware, network);
    assert!(
        cmdline.contains("boot.shell_on_fail console=ttyS0,115200n8"),
        "the serial entry was not booted: {cmdline}"
    );

    // The root file system: partition 1 in both layouts.
    let (start, sectors) = if firmware == "uefi" {
        let parts = gpt_partitions(&scratch.disk());
        assert_eq!(parts.len(), 3, "{parts:?}");
        parts[0]
    } else {
        let parts = mbr_partitions(&scratch.disk());
        assert_eq!(parts.len(), 2, "{parts:?}");
        let (bootable, kind, start, sectors) = parts[0];
        assert!(bootable && kind == 0x83, "{parts:?}");
        (start, sectors)
    };
    let read = |path: &str| read_from_partition(&scratch.disk(), start, sectors, path);
    let recorded = read("/fixture-commands.log")
        .lines()
        .map(String::from)
        .collect();
    let config = read("/etc/nixos/configuration.nix");
    assert!(
        config.contains("networking.hostName = \"ferrytest\";")
            && config.contains("AAAAC3NzaC1lZDI1NTE5AAAAIFerryTestKeyFerryTestKeyFerryTestKey0")
            && config.contains("\"console=ttyS0,115200n8\""),
        "{config}"
    );
    (scratch, recorded, config)
}

/// `ferry install RECIPE --image build/ISO` under TCG as host `ferrytest`, with `--network`
/// when given. Asserts that the install and the boot check passed; returns the scratch
/// directory (its disk holds the result) and QEMU's arguments.
pub(crate) fn install_fixture(
    recipe: &str,
    iso: &str,
    firmware: &str,
    network: Option<&str>,
) -> (Scratch, String) {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let mut command = ferry();
    command
        .args(["install", recipe, "--image"])
        .arg(fixture(&format!("build/{iso}")))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--yes", "--firmware", firmware])
        .args(TCG_ONE_VCPU)
        .args(["--var", "hostname=ferrytest", "--ssh-key"])
        .arg(&key)
        .arg("--runs-dir")
        .arg(scratch.runs());
    if let Some(toml) = network {
        let path = scratch.dir.path().join("network.toml");
        std::fs::write(&path, toml).unwrap();
        command.arg("--network").arg(path);
    }
    let out = command.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    let run = scratch.run_dir();
    let verify = std::fs::read_to_string(run.join("verify/serial.log")).unwrap();
    assert!(verify.contains("ferrytest login:"), "{verify}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
    // The kernel command line is not in qemu.args (QEMU gets it over QMP): the plan's.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    let cmdline = plan["boot"]["cmdline"].as_str().unwrap().to_string();
    (scratch, cmdline)
}

/// (first sector, sectors) of each GPT partition.
pub(crate) fn gpt_partitions(disk: &Path) -> Vec<(u32, u32)> {
    let bytes = std::fs::read(disk).map(|b| b[..34 * 512].to_vec()).unwrap();
    assert_eq!(&bytes[512..520], b"EFI PART", "no GPT header");
    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    (0..128)
        .map(|i| &bytes[1024 + 128 * i..1024 + 128 * (i + 1)])
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .map(|e| {
            let (first, last) = (le(&e[32..40]), le(&e[40..48]));
            (first as u32, (last - first + 1) as u32)
        })
        .collect()
}

/// The `curl` line: its URL's port and token change per run.
fn curl_line(recorded: &[String]) -> String {
    let curl = recorded
        .iter()
        .find(|l| l.starts_with("curl "))
        .expect("curl was run")
        .clone();
    assert!(
        curl.starts_with("curl -fsSL -o /mnt/etc/nixos/configuration.nix http://10.0.2.100/")
            && curl.ends_with("/configuration.nix"),
        "{curl}"
    );
    curl
}

/// The NixOS recipe, typed into the NixOS look-alike's live shell (BIOS: MBR, GRUB in the MBR).
#[test]
fn nixos_recipe_drives_the_live_system_and_the_disk_boots() {
    let (_scratch, recorded, config) = install_nixos_fixture("bios", None);
    let curl = curl_line(&recorded);
    assert_eq!(
        recorded,
        [
            "sudo -i",
            "parted -s /dev/vda -- mklabel msdos mkpart primary 1MB -1GB set 1 boot on mkpart primary linux-swap -1GB 100%",
            "mkfs.ext4 -F -L nixos /dev/vda1",
            "mkswap -L swap /dev/vda2",
            "mount /dev/vda1 /mnt",
            "swapon /dev/vda2",
            "nixos-generate-config --root /mnt",
            &curl,
            "nixos-install --no-root-passwd",
            "poweroff",
        ]
    );
    assert!(config.contains("    device = \"/dev/vda\";"), "{config}");
    // Without --network, the installed network is this machine's own primary NIC, matched
    // by its MAC (as `ferry doctor` reports it).
    let doctor = crate::support::ferry()
        .args(["doctor", "--json", "--no-probe"])
        .output()
        .unwrap();
    let facts: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let primary = &facts["network"]["primary"];
    match facts["network"]["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| &n["name"] == primary)
    {
        Some(nic) => {
            let mac = nic["mac"].as_str().unwrap();
            assert!(
                config.contains(&format!("matchConfig.MACAddress = \"{mac}\";")),
                "{config}"
            );
        }
        None => assert!(
            config.contains("  networking.useDHCP = lib.mkDefault true;"),
            "{config}"
        ),
    }
}

/// UEFI: GPT with an ESP on /boot, GRUB as the removable-media loader (the verify boot has a
/// fresh variable store, so only \EFI\BOOT\BOOTX64.EFI can boot it); the host's static
/// network from --network lands in configuration.nix.
#[test]
fn nixos_recipe_uefi_installs_the_removable_loader() {
    let (_scratch, recorded, config) = install_nixos_fixture("uefi", Some(ROUTED_32));
    let curl = curl_line(&recorded);
    assert_eq!(
        recorded,
        [
            "sudo -i",
            "parted -s /dev/vda -- mklabel gpt mkpart root ext4 512MB -1GB mkpart swap linux-swap -1GB 100% mkpart ESP fat32 1MB 512MB set 3 esp on",
            "mkfs.ext4 -F -L nixos /dev/vda1",
            "mkswap -L swap /dev/vda2",
            "mkfs.fat -F 32 -n boot /dev/vda3",
            "mount /dev/vda1 /mnt",
            "swapon /dev/vda2",
            "mount -o umask=077 /dev/vda3 /mnt/boot",
            "nixos-generate-config --root /mnt",
            &curl,
            "nixos-install --no-root-passwd",
            "poweroff",
        ]
    );
    assert!(
        config.contains("    efiInstallAsRemovable = true;")
            && config.contains("device = \"nodev\";"),
        "{config}"
    );
}

/// A routed /32 with an off-link gateway and IPv6 through fe80::1, as `--network` takes it.
pub(crate) const ROUTED_32: &str = "name = \"eth0\"\npredicted_name = \"enp7s0\"\nmac = \"52:54:00:ab:cd:ef\"\n\
    addresses = [[\"203.0.113.10\", 32], [\"2001:db8:1::2\", 64]]\n\
    ipv4_gateway = { address = \"172.31.1.1\", onlink = true }\n\
    ipv6_gateway = { address = \"fe80::1\" }\ndns = [\"185.12.64.1\"]\n";

/// `ferry plan NAME --image LOOK-ALIKE --json`: the boot entry's title, kernel and command line.
pub(crate) fn plan_look_alike(recipe: &str, iso: &str) -> (String, String, String) {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .args(["plan", recipe, "--image"])
        .arg(fixture(&format!("build/{iso}")))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--json", "--ssh-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{recipe}: {}", text(&out).1);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let boot = &plan["boot"];
    let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (
        field(&boot["entry"]["title"]),
        field(&boot["kernel"]),
        field(&boot["cmdline"]),
    )
}

/// The look-alikes' menus as the distributions build them: Ubuntu's casper entry, and lorax's
/// "Install" entry rather than its default media check, for every RHEL-family recipe.
#[test]
fn distribution_recipes_plan_the_installer_entry_of_their_look_alikes() {
    let (title, kernel, cmdline) = plan_look_alike("ubuntu-24.04", "tiny-ubuntu.iso");
    assert_eq!(title, "Try or Install Ubuntu Server");
    assert_eq!(kernel, "/casper/vmlinuz");
    assert_eq!(
        cmdline,
        "no_timer_check autoinstall ds=nocloud;s=http://10.0.2.100/ --- console=ttyS0,115200n8"
    );
    for recipe in ["rocky-9", "rocky-10", "alma-9", "alma-10"] {
        let (title, kernel, cmdline) = plan_look_alike(recipe, "tiny-el.iso");
        assert_eq!(title, "Install Rocky Linux 9.6", "{recipe}");
        assert_eq!(kernel, "/images/pxeboot/vmlinuz", "{recipe}");
        assert_eq!(
            cmdline,
            "no_timer_check inst.stage2=hd:LABEL=Rocky-9-6-x86_64-dvd quiet inst.ks=http://10.0.2.100/ks.cfg inst.text console=ttyS0,115200n8",
            "{recipe}"
        );
    }
    // A catalog image's name plans with its recipe (and the catalog's download).
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    for (image, recipe) in [
        ("ubuntu-24.04-server", "ubuntu-24.04"),
        ("rocky-10-boot", "rocky-10"),
        ("alma-9-boot", "alma-9"),
        ("debian-12-netboot-package", "debian-12"),
    ] {
        let out = ferry()
            .args(["plan", image, "--disk"])
            .arg(scratch.disk())
            .args(["--size", "2G", "--json", "--ssh-key"])
            .arg(&key)
            .arg("--cache-dir")
            .arg(scratch.dir.path().join("cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{image}: {}", text(&out).1);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            plan["profile"].as_str().unwrap(),
            format!("recipe:{recipe}/profile.toml"),
            "{image}"
        );
    }
}

/// ubuntu-24.04 against the Ubuntu look-alike (BIOS): its installer takes the NoCloud seed
/// from the command line, fetches user-data and meta-data, installs to the disk the
/// autoinstall names and runs the late-commands' downloads (root's key, netplan).
#[test]
fn ubuntu_recipe_installs_from_the_look_alike() {
    let (scratch, cmdline) =
        install_fixture("ubuntu-24.04", "tiny-ubuntu.iso", "bios", Some(ROUTED_32));
    assert!(
        cmdline.contains("autoinstall ds=nocloud;s=http://10.0.2.100/"),
        "{cmdline}"
    );
    let parts = mbr_partitions(&scratch.disk());
    let (_, _, start, sectors) = parts[0];
    let read = |path: &str| read_from_partition(&scratch.disk(), start, sectors, path);
    let autoinstall = read("/var/log/installer/autoinstall-user-data");
    assert!(
        autoinstall.contains("        path: /dev/vda\n")
            && autoinstall.contains("  shutdown: poweroff\n"),
        "{autoinstall}"
    );
    let keys = read("/root/.ssh/authorized_keys");
    assert!(
        keys.contains("FerryTestKeyFerryTestKeyFerryTestKey0"),
        "{keys:?}"
    );
    let netplan = read("/etc/netplan/50-ferry.yaml");
    for line in [
        "macaddress: \"52:54:00:ab:cd:ef\"",
        "set-name: enp7s0",
        "- \"203.0.113.10/32\"",
        "via: \"172.31.1.1\"\n          on-link: true",
        "via: \"fe80::1\"",
    ] {
        assert!(netplan.contains(line), "{line:?} not in\n{netplan}");
    }
}

/// The mirror script's own tests (no network: version comparison against dpkg, the udebs it
/// builds read back with dpkg-deb, which signed Release an index matched).
#[test]
fn supplement_mirror_script_passes_its_offline_tests() {
    let out = std::process::Command::new("python3")
        .arg("-B")
        .arg(repo().join("scripts/test-debian-supplement-mirror.py"))
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("\nOK\n"), "{stderr}");
}

/// `scripts/debian-supplement-mirror.py` running as the guest's HTTP proxy; killed (by its
/// pid) when dropped, and by the kernel if the test process dies first.
struct SupplementedMirror {
    child: std::process::Child,
    port: u16,
}

impl SupplementedMirror {
    /// Starts the script (it prepares its files first, cached in `dir`) and waits for its
    /// `listening on 127.0.0.1:PORT` line.
    fn start(dir: &Path, suite: &str, options: &[&str]) -> SupplementedMirror {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("python3");
        command
            .arg(repo().join("scripts/debian-supplement-mirror.py"))
            .args(["--suite", suite, "--dir"])
            .arg(dir)
            .args(options)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let mut mirror = SupplementedMirror { child, port: 0 };
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(port) = line.strip_prefix("ferry-mirror: listening on 127.0.0.1:") {
                mirror.port = port.trim().parse().unwrap();
                return mirror;
            }
        }
        panic!("the mirror script ended before serving (its messages are above)");
    }
}

impl Drop for SupplementedMirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lists directory `dir` of the FAT file system (an ESP) that starts at `start_sector` of a
/// disk image, in place (mtools' `mdir -b`: one path per line), with mdir's errors after it.
pub(crate) fn fat_listing(disk: &Path, start_sector: u32, dir: &str) -> String {
    let out = std::process::Command::new("mdir")
        .args(["-b", "-i"])
        .arg(format!(
            "{}@@{}",
            disk.display(),
            u64::from(start_sector) * 512
        ))
        .arg(format!("::{dir}"))
        .output()
        .expect("mdir (mtools) runs");
    let (stdout, stderr) = text(&out);
    stdout + &stderr
}

/// Reads a file from the ext2/3/4 file system that starts at `start_sector` of a disk image,
/// in place (debugfs opens `IMAGE?offset=BYTES`). Empty when the file does not exist.
pub(crate) fn read_ext4(disk: &Path, start_sector: u32, path: &str) -> String {
    // -c: without the bitmaps, which reading files does not need (a disk powered off
    // mid-boot has them behind its journal).
    let out = std::process::Command::new("debugfs")
        .arg("-c")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(format!(
            "{}?offset={}",
            disk.display(),
            u64::from(start_sector) * 512
        ))
        .output()
        .expect("debugfs (e2fsprogs) runs");
    assert!(
        out.status.success(),
        "debugfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The whole real Debian 12 install, opt-in (about 55 minutes under TCG on 2 cores; needs
/// deb.debian.org): `ferry install debian-12` with the built-in recipe, the real netboot
/// installer and archive, and `scripts/debian-supplement-mirror.py` as the installer's
/// proxy, adding the installer components the archive copy here lacks (see README). Then the
/// installed disk is read: root's SSH key, the static network from --network, GRUB's serial
/// console, no proxy left in apt's configuration.
///
///   cargo test --release --test integration -- --ignored debian_12_full_install --nocapture
///
/// The mirror's files and ferry's downloads are cached in tests/fixtures/build/debian-mirror/,
/// which also keeps the run directory (runs/) and the proxy's request log (proxy.log).
#[test]
#[ignore = "a full Debian install: ~31 minutes under TCG, needs deb.debian.org"]
fn debian_12_full_install_with_supplemented_mirror() {
    full_debian_install("debian-12", "bookworm", "debian-mirror", &[]);
}

/// The same for Debian 13 (trixie) through its supplemented mirror, cached in
/// tests/fixtures/build/debian-13-mirror/. The archive copy here serves a udeb index that no
/// signed Release lists any more (an earlier point release's; README, "Debian 13"), so the
/// mirror is told to use it anyway; the test prints what each index was checked against.
///
///   cargo test --release --test integration -- --ignored debian_13_full_install --nocapture
#[test]
#[ignore = "a full Debian install: ~31 minutes under TCG, needs deb.debian.org"]
fn debian_13_full_install_with_supplemented_mirror() {
    full_debian_install(
        "debian-13",
        "trixie",
        "debian-13-mirror",
        &["--unsigned-udeb-index"],
    );
}

/// `ferry install RECIPE` through the supplemented mirror of `suite`, then the installed disk
/// checked; ferry's cache, the runs and the proxy's log live in tests/fixtures/build/`cache`.
fn full_debian_install(recipe: &str, suite: &str, cache: &str, mirror_options: &[&str]) {
    let cache = repo().join("tests/fixtures/build").join(cache);
    std::fs::create_dir_all(&cache).unwrap();
    let mirror = SupplementedMirror::start(&cache, suite, mirror_options);
    let manifest = std::fs::read_to_string(cache.join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    eprintln!(
        "the installer's indexes were checked against: {:#}",
        manifest["checked_against"]
    );
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let network = scratch.dir.path().join("network.toml");
    std::fs::write(&network, ROUTED_32).unwrap();
    let runs = cache.join("runs");
    let before: Vec<_> = std::fs::read_dir(&runs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let proxy = format!("proxy=http://10.0.2.2:{}/", mirror.port);
    let key_url = format!(
        "mirror_key_url=http://10.0.2.2:{}/ferry-mirror-key.asc",
        mirror.port
    );

    let started = Instant::now();
    let out = ferry()
        .args(["install", recipe, "--disk"])
        .arg(scratch.disk())
        .arg("--cache-dir")
        .arg(cache.join("ferry-cache"))
        .args(["--size", "8G", "--yes", "--accel", "tcg", "--ssh-key"])
        .arg(&key)
        .arg("--network")
        .arg(&network)
        .args(["--var", &proxy, "--var", &key_url])
        .arg("--runs-dir")
        .arg(&runs)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    drop(mirror);
    let (stdout, stderr) = text(&out);
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !before.contains(p))
        .expect("a new run directory");
    eprintln!(
        "took {:.1} min; run directory {}",
        took.as_secs_f64() / 60.0,
        run.display()
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    eprintln!("summary.json: {summary}");
    let verify = std::fs::read_to_string(run.join("verify/serial.log")).unwrap();
    let login = verify
        .lines()
        .find(|l| l.contains("login:"))
        .unwrap_or_else(|| panic!("no login prompt in the verify boot:\n{verify}"));
    eprintln!("verify boot: {}", login.trim());
    assert!(login.contains("debian login:"), "{login}");

    // The supplemented udebs the installer fetched, by kind (the proxy's log).
    let log = std::fs::read_to_string(cache.join("proxy.log")).unwrap();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for line in log.lines().filter(|l| l.contains(".udeb ")) {
        *kinds.entry(line.rsplit(' ').next().unwrap()).or_default() += 1;
    }
    eprintln!("udebs fetched through the proxy, by kind: {kinds:?}");
    assert!(kinds.contains_key("repacked"), "{kinds:?}");

    // msdos label (d-i's "atomic" recipe): the root file system first, swap in a logical one.
    let parts = mbr_partitions(&scratch.disk());
    let &(_, _, root, _) = parts
        .iter()
        .find(|&&(bootable, kind, _, _)| bootable && kind == 0x83)
        .unwrap_or_else(|| panic!("no bootable Linux partition: {parts:?}"));
    let read = |path: &str| read_ext4(&scratch.disk(), root, path);
    let keys = read("/root/.ssh/authorized_keys");
    assert!(
        keys.contains("AAAAC3NzaC1lZDI1NTE5AAAAIFerryTestKeyFerryTestKeyFerryTestKey0"),
        "{keys:?}"
    );
    let interfaces = read("/etc/network/interfaces");
    for line in [
        "auto enp7s0\n",
        "iface enp7s0 inet static\n    address 203.0.113.10/32\n",
        "iface enp7s0 inet6 static\n    address 2001:db8:1::2/64\n",
        "172.31.1.1",
        "fe80::1",
    ] {
        assert!(interfaces.contains(line), "{line:?} not in:\n{interfaces}");
    }
    let link = read("/etc/systemd/network/10-ferry-enp7s0.link");
    assert!(link.contains("52:54:00:ab:cd:ef"), "{link}");
    let grub = read("/boot/grub/grub.cfg");
    assert!(
        grub.contains("console=ttyS0"),
        "no serial console in grub.cfg"
    );
    let apt = read("/etc/apt/apt.conf");
    assert!(!apt.contains("Acquire::http::Proxy"), "{apt}");
    // Nothing for the VM the installer ran in: no guest agent, no QEMU display driver in the
    // initramfs (finish-install adds both when it finds them).
    let installed = read("/var/lib/dpkg/status");
    assert!(installed.contains("Package: openssh-server\n"));
    assert!(!installed.contains("Package: qemu-guest-agent\n"));
    let modules = read("/etc/initramfs-tools/modules");
    assert!(!modules.contains("bochs"), "{modules}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn bsd_recipes_plan_a_boot_through_the_isos_own_loader() {
    let scratch = Scratch::new();
    let key = scratch.dir.path().join("key.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFerryTestKey test\n",
    )
    .unwrap();
    for (recipe, first_step) in [
        (
            "freebsd",
            "loader menu: wait 300s on the screen for /Autoboot in \\d+ seconds/ then type \"3\"",
        ),
        (
            "openbsd",
            "boot loader: wait 300s on the screen for /boot> ?$/ then type \"set tty com0<enter>\"",
        ),
    ] {
        let out = ferry()
            .args(["plan", recipe, "--disk"])
            .arg(scratch.disk())
            .args(["--size", "8G", "--var", "nic=vtnet0", "--ssh-key"])
            .arg(&key)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{recipe}: {stderr}");
        assert!(
            stdout.contains("\nboot         through the ISO's own boot loader, once downloaded\n"),
            "{recipe}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("step 1       {first_step}\n")),
            "{recipe}: {stdout}"
        );
    }
}
