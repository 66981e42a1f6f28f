//! The `arch` recipe: listed, shown and planned (by its name and by its catalog image's name),
//! its archinstall configuration loaded by archinstall itself, and installs through the Arch
//! look-alike (tiny-arch.iso: archiso's menus, its live system and a stand-in archinstall).

use std::path::Path;
use std::process::Command;

use crate::recipes::{ROUTED_32, gpt_partitions, install_fixture, plan_look_alike, test_key};
use crate::support::*;

/// The UUID make-fixtures.sh gives tiny-arch.iso (mkarchiso's form of its build date).
const ISO_UUID: &str = "2026-12-01-07-54-12-00";

#[test]
fn arch_recipe_is_listed_shown_and_planned() {
    let out = ferry().args(["recipe", "list"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("\narch         Arch Linux, monthly ISO with archinstall"),
        "{stdout}"
    );
    for (file, shipped) in [
        (None, "profile.toml"),
        (
            Some("user_configuration.json.j2"),
            "user_configuration.json.j2",
        ),
    ] {
        let mut cmd = ferry();
        cmd.args(["recipe", "show", "arch"]);
        if let Some(file) = file {
            cmd.args(["--file", file]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let expected =
            std::fs::read_to_string(repo().join("scripts/recipes/arch").join(shipped)).unwrap();
        assert_eq!(text(&out).0, expected, "{shipped}");
    }

    // The look-alike's menus as archiso builds them: whichsys.c32 → archiso_sys.cfg → arch.
    let (title, kernel, cmdline) = plan_look_alike("arch", "tiny-arch.iso");
    assert_eq!(title, "Arch Linux install medium (x86_64, BIOS)");
    assert_eq!(kernel, "/arch/boot/x86_64/vmlinuz-linux");
    assert_eq!(
        cmdline,
        format!(
            "no_timer_check archisobasedir=arch archisosearchuuid={ISO_UUID} console=ttyS0,115200n8"
        )
    );

    // As the issue asks: `ferry plan arch|archlinux --disk X --size 8G --ssh-key K` (the
    // catalog's ISO, not downloaded: the plan says it would be).
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    for name in ["arch", "archlinux"] {
        let out = ferry()
            .args(["plan", name, "--disk"])
            .arg(scratch.disk())
            .args(["--size", "8G", "--json", "--ssh-key"])
            .arg(&key)
            .arg("--cache-dir")
            .arg(scratch.dir.path().join("cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out).1);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["profile"], "recipe:arch/profile.toml", "{name}");
        let files: Vec<&str> = plan["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "user_configuration.json",
                "user_credentials.json",
                "authorized_keys",
                "10-ferry.network"
            ],
            "{name}"
        );
        let steps: Vec<&str> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["live system", "root shell", "archinstall"],
            "{name}"
        );
    }
}

/// A loop device on a sparse file, detached when dropped (also when the test fails).
struct Loop(String);

impl Loop {
    fn attach(image: &Path, size: u64) -> Loop {
        std::fs::File::create(image).unwrap().set_len(size).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {}", text(&out).1);
        Loop(text(&out).0.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// `ferry plan arch --render` for an 8 GiB disk with the routed /32 network and a root
/// password, then archinstall's own loading of the two files (tests/fixtures/validators/
/// archinstall_config.py, archinstall 2.8.0 from PyPI) with a loop device of that size as
/// the disk: what archinstall understood.
fn archinstall_reads(firmware: &str) -> serde_json::Value {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let key = test_key(dir);
    std::fs::write(dir.join("network.toml"), ROUTED_32).unwrap();
    let render = dir.join("render");
    let out = ferry()
        .args(["plan", "arch", "--image"])
        .arg(fixture("build/tiny-arch.iso"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "8G", "--firmware", firmware, "--ssh-key"])
        .arg(&key)
        .arg("--network")
        .arg(dir.join("network.toml"))
        .args(["--var", "hostname=ferrytest", "--show-secrets", "--render"])
        .arg(&render)
        .env("FERRY_SECRET_ROOT_PASSWORD", "s3cr\"et\\pw")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let files = render.join("files");
    let device = Loop::attach(&dir.join("disk8g.img"), 8 << 30);
    let python = Path::new("/opt/ferry-archinstall/bin/python");
    assert!(
        python.exists(),
        "archinstall's venv is missing: run scripts/install-deps.sh as root"
    );
    let out = Command::new(python)
        .arg(repo().join("tests/fixtures/validators/archinstall_config.py"))
        .arg(files.join("user_configuration.json"))
        .arg(files.join("user_credentials.json"))
        .arg(&device.0)
        .current_dir(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "archinstall refused it:\n{stderr}");
    let understood: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        understood["disk"]["devices"][0]["device"],
        device.0.as_str()
    );
    understood
}

/// What archinstall takes from the rendered files, common to both firmwares.
fn assert_common(a: &serde_json::Value) {
    assert_eq!(a["silent"], true);
    assert_eq!(a["hostname"], "ferrytest");
    assert_eq!(a["root_password"], "s3cr\"et\\pw");
    assert_eq!(a["bootloader"], "Grub");
    assert_eq!(a["kernels"], serde_json::json!(["linux"]));
    assert_eq!(a["packages"], serde_json::json!(["openssh"]));
    assert_eq!(
        a["services"],
        serde_json::json!([
            "sshd",
            "systemd-networkd",
            "systemd-resolved",
            "serial-getty@ttyS0"
        ])
    );
    // With --network, no archinstall network configuration: the custom command's file.
    assert_eq!(a["network"], serde_json::Value::Null);
    let commands: Vec<&str> = a["custom_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.contains("curl -fsS -o /root/.ssh/authorized_keys http://10.0.2.100/"))
            && commands.iter().any(|c| c
                .contains("curl -fsS -o /etc/systemd/network/10-ferry.network http://10.0.2.100/"))
            && commands
                .iter()
                .any(|c| c.contains("console=ttyS0,115200") && c.contains("grub-mkconfig")),
        "{commands:#?}"
    );
    let device = &a["disk"]["devices"][0];
    assert_eq!(a["disk"]["config_type"], "default_layout");
    assert_eq!(device["wipe"], true);
    assert_eq!(device["size_mib"], 8192);
}

#[test]
fn archinstall_loads_the_rendered_configuration_bios() {
    let a = archinstall_reads("bios");
    assert_common(&a);
    // One ext4 root, flagged bootable (GRUB goes to the MBR), up to the disk's last MiB.
    assert_eq!(
        a["disk"]["devices"][0]["partitions"],
        serde_json::json!([{
            "status": "create", "fs_type": "ext4", "mountpoint": "/",
            "start_mib": 1, "length_mib": 8190, "flags": ["boot"],
        }])
    );
}

#[test]
fn archinstall_loads_the_rendered_configuration_uefi() {
    let a = archinstall_reads("uefi");
    assert_common(&a);
    // The ESP on /boot, then root, ending a MiB before the disk (the backup GPT).
    assert_eq!(
        a["disk"]["devices"][0]["partitions"],
        serde_json::json!([
            {
                "status": "create", "fs_type": "fat32", "mountpoint": "/boot",
                "start_mib": 1, "length_mib": 1024, "flags": ["boot", "esp"],
            },
            {
                "status": "create", "fs_type": "ext4", "mountpoint": "/",
                "start_mib": 1025, "length_mib": 8192 - 1026, "flags": [],
            },
        ])
    );
}

/// arch against the look-alike (BIOS): archiso's entry with its archisosearchuuid (the
/// look-alike's live system drops to archiso's emergency shell without it), root's login on
/// ttyS0, archinstall fetching both URLs, the custom commands' downloads in the target.
#[test]
fn arch_recipe_installs_from_the_look_alike() {
    let (scratch, cmdline) = install_fixture("arch", "tiny-arch.iso", "bios", Some(ROUTED_32));
    assert!(
        cmdline.starts_with(&format!(
            "no_timer_check archisobasedir=arch archisosearchuuid={ISO_UUID} "
        )),
        "{cmdline}"
    );
    let parts = mbr_partitions(&scratch.disk());
    let (_, _, start, sectors) = parts[0];
    let read = |path: &str| read_from_partition(&scratch.disk(), start, sectors, path);
    let urls = read("/var/log/archinstall/fixture-urls");
    let lines: Vec<&str> = urls.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("config-url http://10.0.2.100/")
            && lines[0].ends_with("/user_configuration.json")
            && lines[1].starts_with("creds-url http://10.0.2.100/")
            && lines[1].ends_with("/user_credentials.json"),
        "{urls}"
    );
    let config = read("/var/log/archinstall/user_configuration.json");
    assert!(
        config.contains("\"device\": \"/dev/vda\"")
            && config.contains("\"hostname\": \"ferrytest\""),
        "{config}"
    );
    let keys = read("/root/.ssh/authorized_keys");
    assert!(
        keys.contains("FerryTestKeyFerryTestKeyFerryTestKey0"),
        "{keys:?}"
    );
    let network = read("/etc/systemd/network/10-ferry.network");
    for line in [
        "[Match]\nMACAddress=52:54:00:ab:cd:ef\n",
        "Address=203.0.113.10/32\n",
        "Address=2001:db8:1::2/64\n",
        "DNS=185.12.64.1\n",
        "[Route]\nGateway=172.31.1.1\nGatewayOnLink=yes\n",
        "[Route]\nGateway=fe80::1\n",
    ] {
        assert!(network.contains(line), "{line:?} not in\n{network}");
    }
}

/// UEFI: archinstall's layout there (ESP first, then root) and the removable GRUB path.
#[test]
fn arch_recipe_installs_from_the_look_alike_uefi() {
    let (scratch, _) = install_fixture("arch", "tiny-arch.iso", "uefi", None);
    let parts = gpt_partitions(&scratch.disk());
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (start, sectors) = parts[1];
    let config = read_from_partition(
        &scratch.disk(),
        start,
        sectors,
        "/var/log/archinstall/user_configuration.json",
    );
    assert!(
        config.contains("\"flags\": [\"Boot\", \"ESP\"]") && config.contains("\"removable\": true"),
        "{config}"
    );
}

/// Debian 12's systemd-networkd itself applies the rendered `.network` file (routed /32,
/// off-link gateway, fe80::1): in private network and mount namespaces, to a veth whose MAC
/// is the host's, with sysfs read-only (networkd then takes links as ready without udev).
/// It must match the file by MAC, report no problem in it, and set up what the file says.
#[test]
fn networkd_applies_the_rendered_network_file() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let key = test_key(dir);
    std::fs::write(dir.join("network.toml"), ROUTED_32).unwrap();
    let render = dir.join("render");
    let out = ferry()
        .args(["plan", "arch", "--image"])
        .arg(fixture("build/tiny-arch.iso"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--ssh-key"])
        .arg(&key)
        .arg("--network")
        .arg(dir.join("network.toml"))
        .arg("--render")
        .arg(&render)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let script = r#"
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/netif
chown systemd-network: /run/systemd/netif
mount -t sysfs -o ro sysfs /sys
mount --bind "$1" /etc/systemd/network
ip link set lo up
ip link add veth0 address 52:54:00:ab:cd:ef type veth peer name veth1
ip link set veth1 up
SYSTEMD_LOG_LEVEL=debug /lib/systemd/systemd-networkd >"$2" 2>&1 &
pid=$!
# Until both default routes are in place (30 s at most: a bound on failure only).
i=0
until ip route | grep -q '^default via 172.31.1.1 ' && ip -6 route | grep -q '^default via fe80::1 '; do
    i=$((i + 1))
    [ $i -lt 300 ] || break
    sleep 0.1
done
ip -o addr show dev veth0
ip route
ip -6 route
kill $pid
wait $pid || true
"#;
    // networkd reads its files as the systemd-network user; --render's are root's, 0600.
    let net = dir.join("network");
    std::fs::create_dir(&net).unwrap();
    std::fs::copy(
        render.join("files/10-ferry.network"),
        net.join("10-ferry.network"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (dir, 0o755),
        (&net, 0o755),
        (&net.join("10-ferry.network"), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let log = dir.join("networkd.log");
    let out = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&net)
        .arg(&log)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{stdout}\n{stderr}\n{log}");
    assert!(
        log.contains("veth0: found matching network '/etc/systemd/network/10-ferry.network'"),
        "{log}"
    );
    // networkd names the file and line of anything it does not accept.
    assert!(!log.contains("10-ferry.network:"), "{log}");
    for line in [
        "inet 203.0.113.10/32 scope global veth0",
        "inet6 2001:db8:1::2/64 scope global",
        "default via 172.31.1.1 dev veth0 proto static onlink",
        "default via fe80::1 dev veth0 proto static",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
}

/// The recipe copied out with the PXE entry `arch_http` (no `archisosearchuuid`): the
/// look-alike's initramfs cannot find its medium and drops to archiso's emergency shell, and
/// the recipe's fail pattern ends the install there with exit code 6, well before the first
/// step's 15-minute timeout.
#[test]
fn arch_recipe_fails_fast_when_archiso_cannot_find_its_medium() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let key = test_key(dir);
    let shown = |args: &[&str]| {
        let out = ferry().args(args).output().unwrap();
        assert!(out.status.success());
        text(&out).0
    };
    let profile = shown(&["recipe", "show", "arch"]);
    assert!(profile.contains("\nentry = \"arch\"\n"), "{profile}");
    std::fs::write(
        dir.join("arch-pxe.toml"),
        profile.replace("\nentry = \"arch\"\n", "\nentry = \"arch_http\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("user_configuration.json.j2"),
        shown(&[
            "recipe",
            "show",
            "arch",
            "--file",
            "user_configuration.json.j2",
        ]),
    )
    .unwrap();
    let out = ferry()
        .arg("install")
        .arg(dir.join("arch-pxe.toml"))
        .arg("--image")
        .arg(fixture("build/tiny-arch.iso"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--yes"])
        .args(TCG_ONE_VCPU)
        .arg("--ssh-key")
        .arg(&key)
        .arg("--runs-dir")
        .arg(scratch.runs())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("failure pattern /Falling back to interactive prompt/ matched"),
        "{stderr}"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}
