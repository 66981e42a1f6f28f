//! The alpine recipe: listed, shown and planned by its name and its catalog image's; installed
//! from the Alpine look-alike ISO (tests/fixtures/build/tiny-alpine.iso); and the installed
//! network of every recorded host brought up by ifupdown-ng and busybox nameif.

use std::path::{Path, PathBuf};

use crate::recipes::{
    ROUTED_32, fat_listing, gpt_partitions, install_fixture, read_ext4, test_key,
};
use crate::support::*;

/// `ferry plan ARGS --json` with a test key and a scratch disk and cache: the plan.
fn plan(scratch: &Scratch, args: &[&str]) -> serde_json::Value {
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .arg("plan")
        .args(args)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "8G", "--json", "--ssh-key"])
        .arg(&key)
        .arg("--cache-dir")
        .arg(scratch.dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out).1);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn alpine_recipe_is_listed_shown_and_planned_by_name_and_image() {
    let out = ferry().args(["recipe", "list"]).output().unwrap();
    assert!(
        text(&out)
            .0
            .contains("\nalpine       Alpine Linux, virt ISO: setup-alpine with an answer file"),
        "{}",
        text(&out).0
    );
    for (file, shipped) in [
        (None, "profile.toml"),
        (Some("answers.j2"), "answers.j2"),
        (Some("finish.sh.j2"), "finish.sh.j2"),
    ] {
        let mut cmd = ferry();
        cmd.args(["recipe", "show", "alpine"]);
        cmd.args(file.map(|f| ["--file", f]).iter().flatten());
        let out = cmd.output().unwrap();
        let expected =
            std::fs::read_to_string(repo().join("scripts/recipes/alpine").join(shipped)).unwrap();
        assert_eq!(text(&out).0, expected, "{file:?}");
    }

    // By the recipe's name and by its catalog image's: the catalog's ISO (not downloaded).
    let scratch = Scratch::new();
    for name in ["alpine", "alpine-virt"] {
        let planned = plan(&scratch, &[name]);
        assert_eq!(planned["profile"], "recipe:alpine/profile.toml", "{name}");
        let files: Vec<&str> = planned["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "answers",
                "finish.sh",
                "authorized_keys",
                "interfaces",
                "mactab",
                "resolv.conf",
                "ferry-nameif"
            ],
            "{name}"
        );
        let plan_text = planned.to_string();
        assert!(
            plan_text.contains("alpine-virt-3.22.2-x86_64.iso"),
            "{plan_text}"
        );
    }

    // The look-alike's menus as aports builds them: the one entry, its kernel and command
    // line, and the serial console ferry adds.
    let iso = fixture("build/tiny-alpine.iso");
    let planned = plan(&scratch, &["alpine", "--image", iso.to_str().unwrap()]);
    let boot = &planned["boot"];
    assert_eq!(boot["entry"]["title"], "Linux virt");
    assert_eq!(boot["kernel"], "/boot/vmlinuz-virt");
    assert_eq!(
        boot["cmdline"],
        "no_timer_check modules=loop,squashfs,sd-mod,usb-storage quiet console=ttyS0,115200n8"
    );
}

/// The served answer file, sourced by busybox sh as setup-alpine sources it (`. FILE`): every
/// step answered, the whole disk in sys mode, and setup-disk's environment exported.
#[test]
fn alpine_answer_file_sourced_as_setup_alpine_does() {
    let scratch = Scratch::new();
    let dir = render(&scratch, &["--var", "hostname=web1"]);
    let answers = dir.join("files/answers");
    let script = format!(
        ". {}\nfor v in KEYMAPOPTS HOSTNAMEOPTS DEVDOPTS TIMEZONEOPTS PROXYOPTS APKREPOSOPTS \
         USEROPTS SSHDOPTS ROOTSSHKEY NTPOPTS DISKOPTS LBUOPTS APKCACHEOPTS; do \
         eval \"echo $v=[\\${{$v}}]\"; done\nprintf 'INTERFACESOPTS=[%s]\\n' \"$INTERFACESOPTS\"\n\
         sh -c 'echo ERASE_DISKS=[$ERASE_DISKS] KERNELOPTS=[$KERNELOPTS]'\n",
        answers.display()
    );
    let out = std::process::Command::new("busybox")
        .args(["sh", "-euc", &script])
        .output()
        .expect("busybox (busybox-static) runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "KEYMAPOPTS=[none]\nHOSTNAMEOPTS=[web1]\nDEVDOPTS=[mdev]\nTIMEZONEOPTS=[UTC]\n\
         PROXYOPTS=[none]\n\
         APKREPOSOPTS=[https://dl-cdn.alpinelinux.org/alpine/v3.22/main https://dl-cdn.alpinelinux.org/alpine/v3.22/community]\n\
         USEROPTS=[none]\nSSHDOPTS=[openssh]\nROOTSSHKEY=[http://10.0.2.100/authorized_keys]\n\
         NTPOPTS=[none]\nDISKOPTS=[-m sys /dev/vda]\nLBUOPTS=[none]\nAPKCACHEOPTS=[none]\n\
         INTERFACESOPTS=[auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n]\n\
         ERASE_DISKS=[/dev/vda] KERNELOPTS=[quiet console=tty0 console=ttyS0,115200n8]\n"
    );
    // finish.sh and the OpenRC service are plain sh.
    for file in ["finish.sh", "ferry-nameif"] {
        let out = std::process::Command::new("busybox")
            .args(["sh", "-n"])
            .arg(dir.join("files").join(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", text(&out).1);
    }
}

/// A root password reaches finish.sh as a quoted heredoc (any character survives) and is
/// hashed there; without one, root gets `*` (no password, key login still allowed).
#[test]
fn alpine_finish_script_sets_roots_password_or_none() {
    let scratch = Scratch::new();
    let dir = render(
        &scratch,
        &["--var", "root_password=it's $(not) run", "--show-secrets"],
    );
    let finish = std::fs::read_to_string(dir.join("files/finish.sh")).unwrap();
    assert!(
        finish.contains(
            "password=$(cat <<'FERRY_EOF'\nit's $(not) run\nFERRY_EOF\n)\nhash=$(cryptpw -m sha512 \"$password\")\n"
        ) && !finish.contains("root:*:"),
        "{finish}"
    );
    // The heredoc yields the password unchanged: sh runs the same lines with an echo for cryptpw.
    let start = finish.find("password=$(").unwrap();
    let end = finish.find("hash=").unwrap();
    let script = format!("{}printf '%s' \"$password\"", &finish[start..end]);
    let out = std::process::Command::new("busybox")
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "it's $(not) run");

    let scratch = Scratch::new();
    let finish = std::fs::read_to_string(render(&scratch, &[]).join("files/finish.sh")).unwrap();
    assert!(
        finish.contains("sed -i 's|^root:[^:]*:|root:*:|' /mnt/etc/shadow\n")
            && !finish.contains("cryptpw"),
        "{finish}"
    );
}

/// Opt-in (needs a checkout of alpinelinux/alpine-conf, which no package registry carries):
/// alpine-conf's own setup-alpine sources the rendered answer file, dry, with every command it
/// runs recorded (tests/fixtures/validators/alpine-conf-dry-run.sh); then the setup-* calls
/// must be the unattended ones.
///
///   FERRY_ALPINE_CONF=/path/to/alpine-conf cargo test --test integration -- --ignored alpine_conf
#[test]
#[ignore = "needs FERRY_ALPINE_CONF, a checkout of alpinelinux/alpine-conf"]
fn alpine_answer_file_through_alpine_confs_setup_alpine() {
    let conf = std::env::var("FERRY_ALPINE_CONF").expect("FERRY_ALPINE_CONF");
    let scratch = Scratch::new();
    let dir = render(&scratch, &["--var", "hostname=web1"]);
    let out = std::process::Command::new("sh")
        .arg(repo().join("tests/fixtures/validators/alpine-conf-dry-run.sh"))
        .arg(conf)
        .arg(dir.join("files/answers"))
        .output()
        .unwrap();
    let (calls, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for call in [
        "\nsetup-hostname [web1]\n",
        "\nsetup-interfaces [-r] [-i]\n  stdin: auto lo\n",
        "  stdin: iface eth0 inet dhcp\n",
        "\nsetup-apkrepos [https://dl-cdn.alpinelinux.org/alpine/v3.22/main] [https://dl-cdn.alpinelinux.org/alpine/v3.22/community]\n",
        "\nsetup-user [none]\n",
        "\nsetup-sshd [-k] [http://10.0.2.100/authorized_keys] [openssh]\n",
        "] [-q] [-m] [sys] [/dev/vda]\n  env: ERASE_DISKS=[/dev/vda] KERNELOPTS=[quiet console=tty0 console=ttyS0,115200n8]\n",
    ] {
        assert!(calls.contains(call), "{call:?} not in\n{calls}");
    }
    // -e: no password asked.
    assert!(!calls.contains("\npasswd"), "{calls}");
}

/// `ferry plan alpine --render DIR` with `extra`: DIR (in the scratch directory).
fn render(scratch: &Scratch, extra: &[&str]) -> PathBuf {
    let dir = scratch.dir.path().join("render");
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .args(["plan", "alpine", "--image"])
        .arg(fixture("build/tiny-alpine.iso"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "8G", "--ssh-key"])
        .arg(&key)
        .args(extra)
        .arg("--render")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    dir
}

/// The installed system's network from each recorded host (tests/fixtures/hosts/), as its
/// boot brings it up: busybox nameif renames the NIC with the host's MAC from the served
/// mactab, and Alpine's ifupdown-ng applies the served interfaces file with the real `ip`, in
/// a network namespace of its own (tests/fixtures/validators/alpine-network.sh).
#[test]
fn alpine_network_of_each_host_comes_up_under_ifupdown_ng_and_nameif() {
    let expected: &[(&str, &str, &[&str])] = &[
        (
            "routed-32",
            "enp3s0f0",
            &[
                "enp3s0f0         DOWN           203.0.113.10/32 2a01:4f8:c0c:1234::2/64",
                "\ndefault via 172.31.1.1 dev enp3s0f0 linkdown",
                "\n172.31.1.1 dev enp3s0f0 scope link linkdown",
                "\ndefault via fe80::1 dev enp3s0f0 metric 1 linkdown",
            ],
        ),
        (
            "nvme-server",
            "eno1",
            &[
                "eno1             DOWN           198.51.100.20/26 2001:db8:1::2/64",
                "\ndefault via 198.51.100.1 dev eno1 metric 1 linkdown",
                "\ndefault via fe80::1 dev eno1 metric 1 linkdown",
            ],
        ),
        (
            "uefi-host",
            "eno1",
            &["\ndefault via 198.51.100.1 dev eno1 metric 1 linkdown"],
        ),
        ("sata-md-server", "eno1", &["dhcp client started on eno1\n"]),
        (
            "virtio-vm",
            "ens3",
            &[
                "dhcp client started on ens3\n",
                "ens3             DOWN           10.0.0.15/24",
            ],
        ),
    ];
    for (host, name, lines) in expected {
        let scratch = Scratch::new();
        let host_root = fixture(&format!("hosts/{host}"));
        let dir = render(&scratch, &["--host-root", host_root.to_str().unwrap()]);
        let files = dir.join("files");
        let mactab = std::fs::read_to_string(files.join("mactab")).unwrap();
        let mac = mactab
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{host}: {name} not in\n{mactab}"));
        let result = network_up(&files, mac);
        // The NIC with the MAC has its name; the other NIC keeps the kernel's.
        assert!(
            result.contains(&format!("\n{name:<16} DOWN           {mac} <NO-CARRIER,"))
                && result.contains("\neth0             DOWN           02:00:00:00:00:01"),
            "{host}: {result}"
        );
        for line in *lines {
            assert!(result.contains(line), "{host}: {line:?} not in\n{result}");
        }
    }

    // What the rendering avoids: ifupdown-ng's plain `gateway` for a /32's off-link gateway
    // asks the kernel for a route it refuses ("Nexthop has invalid gateway"), and the server
    // would have no IPv4 default route.
    let scratch = Scratch::new();
    let host_root = fixture("hosts/routed-32");
    let files = render(&scratch, &["--host-root", host_root.to_str().unwrap()]).join("files");
    let interfaces = std::fs::read_to_string(files.join("interfaces")).unwrap();
    let naive: String = interfaces
        .lines()
        .filter(|l| !l.contains(" route "))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "\tgateway fe80::1",
            "\tgateway 172.31.1.1\n\tgateway fe80::1",
        );
    std::fs::write(files.join("interfaces"), naive).unwrap();
    let result = network_up(&files, "90:1b:0e:11:22:33");
    assert!(
        !result.contains("default via 172.31.1.1") && result.contains("default via fe80::1"),
        "{result}"
    );
}

/// Runs tests/fixtures/validators/alpine-network.sh on FILES in a new network namespace.
fn network_up(files: &Path, mac: &str) -> String {
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh"])
        .arg(repo().join("tests/fixtures/validators/alpine-network.sh"))
        .arg(files)
        .arg(mac)
        .output()
        .expect("unshare (util-linux) runs");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "alpine-network.sh (root, and ifupdown-ng from scripts/install-deps.sh, needed): {stdout}{stderr}"
    );
    stdout
}

/// The recipe typed into the look-alike's live system (BIOS, the routed /32 from --network):
/// setup-alpine with the served answer file, finish.sh, then the boot check. The installed
/// root file system is the sys layout's last partition.
#[test]
fn alpine_recipe_installs_from_the_look_alike() {
    let (scratch, cmdline) = install_fixture("alpine", "tiny-alpine.iso", "bios", Some(ROUTED_32));
    assert_eq!(
        cmdline,
        "no_timer_check modules=loop,squashfs,sd-mod,usb-storage quiet console=ttyS0,115200n8"
    );
    // The live system read its modloop from the CD (what a streamed image's test changes).
    let serial = std::fs::read_to_string(scratch.run_dir().join("serial.log")).unwrap();
    assert!(
        serial.contains(" * Mounting modloop /media/cdrom/boot/modloop-virt ... [ ok ]"),
        "{serial}"
    );
    let parts = mbr_partitions(&scratch.disk());
    let kinds: Vec<(bool, u8)> = parts.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(kinds, [(true, 0x83), (false, 0x82), (false, 0x83)]);
    let root = parts[2].2;
    let read = |path: &str| read_ext4(&scratch.disk(), root, path);
    assert_eq!(
        read("/fixture-commands.log"),
        "setup-alpine -e -f http://10.0.2.100/answers\n"
    );
    assert_eq!(read("/etc/hostname"), "ferrytest\n");
    for (path, lines) in [
        (
            "/etc/network/interfaces",
            &[
                "auto enp7s0\niface enp7s0\n\taddress 203.0.113.10/32\n\taddress 2001:db8:1::2/64\n",
                "\tpost-up ip -4 route add default via 172.31.1.1 dev enp7s0\n",
                "\tgateway fe80::1\n",
            ][..],
        ),
        ("/etc/mactab", &["\nenp7s0 52:54:00:ab:cd:ef\n"]),
        ("/etc/init.d/ferry-nameif", &["\tnameif -c /etc/mactab\n"]),
        ("/etc/resolv.conf", &["nameserver 185.12.64.1\n"]),
        (
            "/etc/inittab",
            &["ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"],
        ),
        (
            "/etc/update-extlinux.conf",
            &["default_kernel_opts=\"quiet console=tty0 console=ttyS0,115200n8\"\n"],
        ),
        (
            "/root/.ssh/authorized_keys",
            &["FerryTestKeyFerryTestKeyFerryTestKey0 test@ferry\n"],
        ),
        (
            "/etc/apk/repositories",
            &["https://dl-cdn.alpinelinux.org/alpine/v3.22/main\n"],
        ),
        // No password logs in as root (the key does).
        ("/etc/shadow", &["root:*:"]),
    ] {
        let text = read(path);
        for line in lines {
            assert!(text.contains(line), "{path}: {line:?} not in\n{text}");
        }
    }
    // ferry-nameif runs in the boot runlevel.
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg("stat /etc/runlevels/boot/ferry-nameif")
        .arg(format!(
            "{}?offset={}",
            scratch.disk().display(),
            u64::from(root) * 512
        ))
        .output()
        .unwrap();
    assert!(
        text(&out)
            .0
            .contains("Fast link dest: \"/etc/init.d/ferry-nameif\""),
        "{}",
        text(&out).0
    );
}

/// UEFI: GPT with the ESP first and GRUB also at the fallback path \EFI\boot\bootx64.efi,
/// which is what the verify boot (a fresh variable store) finds.
#[test]
fn alpine_recipe_uefi_boots_through_the_fallback_loader() {
    let (scratch, _) = install_fixture("alpine", "tiny-alpine.iso", "uefi", None);
    let parts = gpt_partitions(&scratch.disk());
    assert_eq!(parts.len(), 3, "{parts:?}");
    let keys = read_ext4(&scratch.disk(), parts[2].0, "/root/.ssh/authorized_keys");
    assert!(
        keys.contains("FerryTestKeyFerryTestKeyFerryTestKey0"),
        "{keys}"
    );
    let listing = fat_listing(&scratch.disk(), parts[0].0, "/EFI/boot");
    assert!(
        listing.to_lowercase().contains("/efi/boot/bootx64.efi"),
        "{listing}"
    );
}
