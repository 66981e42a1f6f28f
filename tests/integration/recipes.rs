//! The built-in recipes: listing and showing them, planning with them, the real Debian
//! installer failing fast here, and the NixOS recipe against the NixOS look-alike fixture ISO.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;

fn test_key(dir: &Path) -> PathBuf {
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
    assert!(stdout.contains("\nnixos        NixOS"), "{stdout}");

    for (recipe, file, shipped) in [
        ("debian-12", None, "scripts/recipes/debian-12/profile.toml"),
        (
            "debian-12",
            Some("preseed.cfg.j2"),
            "scripts/recipes/debian-12/preseed.cfg.j2",
        ),
        (
            "nixos",
            Some("configuration.nix.j2"),
            "scripts/recipes/nixos/configuration.nix.j2",
        ),
    ] {
        let mut cmd = ferry();
        cmd.args(["recipe", "show", recipe]);
        if let Some(file) = file {
            cmd.args(["--file", file]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            text(&out).0,
            std::fs::read_to_string(repo().join(shipped)).unwrap()
        );
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
        cmdline.starts_with("auto=true priority=critical url=http://10.0.2.2:PORT/TOKEN/preseed.cfg hostname=debian domain=localdomain")
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
        .args(["plan", "debian-13", "--disk"])
        .arg(scratch.disk())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains(
            "debian-13 is neither a profile file nor a built-in recipe (recipes: debian-12, nixos)"
        ),
        "{}",
        text(&out).1
    );
}

/// `ferry install debian-12` as an operator types it: the real Debian installer (Debian's
/// netboot package, fetched from deb.debian.org and verified through the signed InRelease and
/// the Packages index), the preseed served by ferry, the real archive through QEMU's user
/// networking. The archive copy reachable here lacks most
/// of the installer's own components, so d-i stops at "Download installer components":
/// ferry must fail on that screen within seconds, with the installer's message.
#[test]
fn debian_installer_error_screen_fails_the_install_fast() {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let started = Instant::now();
    let out = ferry()
        .args(["install", "debian-12", "--disk"])
        .arg(scratch.disk())
        .arg("--cache-dir")
        .arg(scratch.dir.path().join("cache"))
        .args(["--size", "4G", "--yes", "--accel", "tcg", "--ssh-key"])
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
        stderr.contains("debian-installer-12-netboot-amd64_") && stderr.contains(" verified ("),
        "the netboot package was not fetched and verified:\n{stderr}"
    );
    assert!(
        stderr.contains("unpacking the kernel and initrd"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Download installer components"),
        "the installer's own message is missing:\n{stderr}"
    );
    assert!(stderr.contains("failure pattern"), "{stderr}");
    // About 3 minutes under TCG on 2 idle cores, more when other VMs share them; the
    // recipe's step timeouts are 10 minutes and more, so a run that waited for one fails here.
    assert!(took < Duration::from_secs(570), "took {took:?}");

    // How long after the screen appeared did ferry give up? (The transcript's clock.)
    let run = scratch.run_dir();
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
            if seen.contains("Download installer components") {
                appeared = Some(start + event[0].as_f64().unwrap());
                break;
            }
        }
    }
    let appeared = appeared.expect("the screen is in the transcript");
    let ended = ended.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(
        ended - appeared < 15.0,
        "ferry ended {:.1}s after the error screen appeared",
        ended - appeared
    );
    let preseed_served = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(
        preseed_served.contains("preseed.cfg"),
        "the installer never fetched the preseed"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// `ferry install nixos` with the NixOS look-alike fixture ISO, then the command lines its fake
/// tools recorded onto the installed disk, and the installed configuration.nix.
fn install_nixos_fixture(firmware: &str, network: Option<&str>) -> (Scratch, Vec<String>, String) {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let network_args: Vec<String> = match network {
        Some(toml) => {
            let path = scratch.dir.path().join("network.toml");
            std::fs::write(&path, toml).unwrap();
            vec!["--network".into(), path.display().to_string()]
        }
        None => Vec::new(),
    };
    let iso = fixture("build/tiny-nixos.iso");
    let out = ferry()
        .args(["install", "nixos", "--image"])
        .arg(&iso)
        .arg("--disk")
        .arg(scratch.disk())
        .args([
            "--size",
            "2G",
            "--yes",
            "--accel",
            "tcg",
            "--firmware",
            firmware,
        ])
        .args(["--var", "hostname=ferrytest", "--ssh-key"])
        .arg(&key)
        .args(&network_args)
        .arg("--runs-dir")
        .arg(scratch.runs())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");

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
    let run = scratch.run_dir();
    let verify = std::fs::read_to_string(run.join("verify/serial.log")).unwrap();
    assert!(verify.contains("ferrytest login:"), "{verify}");
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    assert!(
        args.contains("boot.shell_on_fail console=ttyS0,115200n8"),
        "the serial entry was not booted: {args}"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
    (scratch, recorded, config)
}

/// (first sector, sectors) of each GPT partition.
fn gpt_partitions(disk: &Path) -> Vec<(u32, u32)> {
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
        curl.starts_with("curl -fsSL -o /mnt/etc/nixos/configuration.nix http://10.0.2.2:")
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
    let network = "name = \"eth0\"\npredicted_name = \"enp7s0\"\nmac = \"52:54:00:ab:cd:ef\"\n\
        addresses = [[\"203.0.113.10\", 32], [\"2001:db8:1::2\", 64]]\n\
        ipv4_gateway = { address = \"172.31.1.1\", onlink = true }\n\
        ipv6_gateway = { address = \"fe80::1\" }\ndns = [\"185.12.64.1\"]\n";
    let (_scratch, recorded, config) = install_nixos_fixture("uefi", Some(network));
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
