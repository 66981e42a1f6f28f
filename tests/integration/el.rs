//! The RHEL-family recipes (rocky-*, alma-*) against lorax's layouts: the boot ISO look-alike
//! and the same installer as a BaseOS tree served over HTTP, whose kernel and initrd are all
//! ferry downloads.

use std::path::Path;

use crate::fetch::{Reply, Server};
use crate::recipes::{ROUTED_32, gpt_partitions, install_fixture, test_key};
use crate::support::*;

/// rocky-9 against lorax's layout (UEFI): the "Install" entry, not the default media check;
/// the look-alike's Anaconda needs inst.stage2, fetches inst.ks and leaves the kickstart in
/// /root/anaconda-ks.cfg, as Anaconda does.
#[test]
fn rhel_recipe_installs_from_the_lorax_look_alike() {
    let (scratch, cmdline) = install_fixture("rocky-9", "tiny-el.iso", "uefi", Some(ROUTED_32));
    assert!(
        cmdline
            .contains("no_timer_check inst.stage2=hd:LABEL=Rocky-9-6-x86_64-dvd quiet inst.ks=http://10.0.2.100/")
            && !cmdline.contains("rd.live.check"),
        "{cmdline}"
    );
    let parts = gpt_partitions(&scratch.disk());
    let (start, sectors) = parts[1];
    let ks = read_from_partition(&scratch.disk(), start, sectors, "/root/anaconda-ks.cfg");
    for line in [
        "ignoredisk --only-use=vda\n",
        "network --bootproto=dhcp --device=link --activate --hostname=ferrytest\n",
        "FerryTestKeyFerryTestKeyFerryTestKey0 test@ferry\nFERRY_EOF\n",
        "[ethernet]\nmac-address=52:54:00:AB:CD:EF\n",
        "route1=0.0.0.0/0,172.31.1.1\nroute1_options=onlink=true\n",
        "\npoweroff\n",
    ] {
        assert!(ks.contains(line), "{line:?} not in\n{ks}");
    }
}

/// The files of `dir` over HTTP on the loopback, under `prefix`; 404 for anything else.
fn serve_tree(dir: &Path, prefix: &'static str) -> Server {
    let dir = dir.to_path_buf();
    Server::start(move |seen, _| {
        let Some(relative) = seen.path.strip_prefix(prefix) else {
            return Reply::Status(404);
        };
        match std::fs::read(dir.join(relative)) {
            Ok(bytes) if !relative.contains("..") => Reply::File(bytes),
            _ => Reply::Status(404),
        }
    })
}

/// A catalog holding only rocky-9-netboot, whose mirrors are `trees`.
fn tree_catalog(scratch: &Scratch, trees: &[String]) -> std::path::PathBuf {
    let dir = scratch.dir.path().join("catalog");
    std::fs::create_dir_all(&dir).unwrap();
    let entry = std::fs::read_to_string(repo().join("images/rocky-9-netboot.toml")).unwrap();
    let start = entry.find("urls = [").unwrap();
    let end = start + entry[start..].find("]\n").unwrap() + 2;
    let urls: Vec<String> = trees.iter().map(|t| format!("\"{t}\"")).collect();
    let entry = format!(
        "{}urls = [{}]\n{}",
        &entry[..start],
        urls.join(", "),
        &entry[end..]
    );
    std::fs::write(dir.join("rocky-9-netboot.toml"), entry).unwrap();
    dir
}

/// A tree of `dir` served under `prefix`, a scratch directory, and a catalog there whose
/// rocky-9-netboot points at the tree.
struct ServedTree {
    server: Server,
    scratch: Scratch,
    catalog: std::path::PathBuf,
}

impl ServedTree {
    fn new(dir: &Path, prefix: &'static str) -> ServedTree {
        ServedTree::with_mirrors(dir, prefix, &[prefix])
    }

    /// The catalog's mirrors are `mirrors` on the same server: those other than `prefix`
    /// answer 404.
    fn with_mirrors(dir: &Path, prefix: &'static str, mirrors: &[&str]) -> ServedTree {
        let server = serve_tree(dir, prefix);
        let scratch = Scratch::new();
        let urls: Vec<String> = mirrors.iter().map(|m| server.url(m)).collect();
        let catalog = tree_catalog(&scratch, &urls);
        ServedTree {
            server,
            scratch,
            catalog,
        }
    }

    fn cache(&self) -> std::path::PathBuf {
        self.scratch.dir.path().join("cache")
    }

    /// `ferry install rocky-9` from the tree onto a new 2G image, with root's test key.
    fn install(&self, extra: &[&str]) -> std::process::Output {
        let key = test_key(self.scratch.dir.path());
        ferry()
            .args(["install", "rocky-9", "--catalog"])
            .arg(&self.catalog)
            .arg("--cache-dir")
            .arg(self.cache())
            .arg("--disk")
            .arg(self.scratch.disk())
            .args(["--size", "2G", "--yes", "--ssh-key"])
            .arg(&key)
            .arg("--runs-dir")
            .arg(self.scratch.runs())
            .args(extra)
            .output()
            .unwrap()
    }
}

/// rocky-9 by default: ferry downloads the BaseOS tree's kernel and initrd only (each checked
/// against the tree's .treeinfo), boots them with inst.stage2= the tree as the VM reaches it
/// (this machine's loopback through QEMU's host address), and the look-alike's dracut fetches
/// its stage2 from there, as Anaconda's does, before the kickstart install.
#[test]
fn rhel_recipe_installs_from_the_trees_kernel_and_initrd() {
    const PREFIX: &str = "/pub/rocky/9/BaseOS/x86_64/os/";
    let tree = ServedTree::new(&fixture("build/el-tree"), PREFIX);
    let (server, scratch) = (&tree.server, &tree.scratch);
    let network = scratch.dir.path().join("network.toml");
    std::fs::write(&network, ROUTED_32).unwrap();
    let mut extra = vec![
        "--firmware",
        "uefi",
        "--var",
        "hostname=ferrytest",
        "--network",
    ];
    extra.push(network.to_str().unwrap());
    extra.extend(TCG_ONE_VCPU);
    let out = tree.install(&extra);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    for file in ["images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"] {
        let line = format!(
            "downloading {}{file} (sha256 from ../../.treeinfo)",
            server.url(PREFIX)
        );
        assert!(stderr.contains(&line), "{line:?} not in\n{stderr}");
    }

    let run = scratch.run_dir();
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["fetch"]["delivery"]["why"]["reason"], "tree", "{plan}");
    let port = server.url("").rsplit(':').next().unwrap().to_string();
    let stage2 = format!("http://10.0.2.2:{port}{PREFIX}");
    let cmdline = plan["boot"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.starts_with(&format!(
            "no_timer_check inst.stage2={stage2} inst.ks=http://10.0.2.100/"
        )) && cmdline.ends_with(" inst.text console=ttyS0,115200n8"),
        "{cmdline}"
    );
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    let fetched = format!("dracut: stage2 {stage2}images/install.img in memory (4194304 bytes)");
    assert!(serial.contains(&fetched), "{fetched:?} not in\n{serial}");

    // ferry stored the kernel and initrd; the stage2 went to the VM alone, once.
    let stored: Vec<String> = walk(&tree.cache())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        stored.contains(&"vmlinuz".to_string())
            && stored.contains(&"initrd.img".to_string())
            && !stored.iter().any(|n| n.contains("install")),
        "{stored:?}"
    );
    let stage2_requests = server
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/images/install.img"))
        .count();
    assert_eq!(stage2_requests, 1);

    let parts = gpt_partitions(&scratch.disk());
    let (start, sectors) = parts[1];
    let ks = read_from_partition(&scratch.disk(), start, sectors, "/root/anaconda-ks.cfg");
    assert!(ks.contains("ignoredisk --only-use=vda\n"), "{ks}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// A first mirror that is gone: ferry downloads the kernel and initrd from the second, and the
/// installer, given every mirror's tree in order, fetches its stage2 from the second too.
#[test]
fn a_mirror_that_is_gone_is_passed_over_by_ferry_and_by_the_installer() {
    const PREFIX: &str = "/second/os/";
    let tree = ServedTree::with_mirrors(&fixture("build/el-tree"), PREFIX, &["/gone/os/", PREFIX]);
    let mut extra = vec![];
    extra.extend(TCG_ONE_VCPU);
    let out = tree.install(&extra);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let port = tree.server.url("").rsplit(':').next().unwrap().to_string();
    let [gone, second] = ["/gone/os/", PREFIX].map(|p| format!("http://10.0.2.2:{port}{p}"));
    let run = tree.scratch.run_dir();
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    let cmdline = plan["boot"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.contains(&format!("inst.stage2={gone} inst.stage2={second} ")),
        "{cmdline}"
    );
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    let fetched = format!("dracut: stage2 {second}images/install.img in memory");
    assert!(serial.contains(&fetched), "{fetched:?} not in\n{serial}");
    let from_second = |file: &str| {
        tree.server
            .seen()
            .iter()
            .any(|s| s.path == format!("{PREFIX}{file}"))
    };
    assert!(from_second("images/pxeboot/initrd.img") && from_second("images/install.img"));
    assert!(tree.scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// A tree whose initrd no longer matches its .treeinfo: the fetch fails naming the file, and
/// nothing boots.
#[test]
fn a_tree_file_that_does_not_match_its_treeinfo_is_refused() {
    const PREFIX: &str = "/os/";
    let tree = Scratch::new();
    let copy = tree.dir.path().join("tree");
    for file in [
        ".treeinfo",
        "images/pxeboot/vmlinuz",
        "images/pxeboot/initrd.img",
    ] {
        let to = copy.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture("build/el-tree").join(file), &to).unwrap();
    }
    std::fs::write(copy.join("images/pxeboot/initrd.img"), b"a changed initrd").unwrap();
    let served = ServedTree::new(&copy, PREFIX);
    let (server, scratch) = (&served.server, &served.scratch);
    let out = served.install(&[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&server.url(&format!("{PREFIX}images/pxeboot/initrd.img"))),
        "{stderr}"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// A tree's kernel and initrd cannot be streamed: `--stream` is refused, naming the release's
/// ISO, which can be.
#[test]
fn streaming_a_tree_points_at_the_iso() {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .args(["plan", "rocky-9", "--stream", "--size", "8G", "--disk"])
        .arg(scratch.disk())
        .arg("--ssh-key")
        .arg(&key)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "netboot files are booted directly, so they cannot be streamed: \
             drop --stream, or install rocky-9-boot (the ISO, which can be)"
        ),
        "{stderr}"
    );
}

/// `ferry fetch` of a tree's entry fetches both files and prints both paths; `--output`, which
/// names one file, is refused.
#[test]
fn fetching_a_tree_fetches_its_kernel_and_initrd() {
    const PREFIX: &str = "/os/";
    let tree = ServedTree::new(&fixture("build/el-tree"), PREFIX);
    let fetch = |extra: &[&str]| {
        ferry()
            .args(["fetch", "rocky-9-netboot", "--quiet", "--catalog"])
            .arg(&tree.catalog)
            .arg("--cache-dir")
            .arg(tree.cache())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = fetch(&[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let paths: Vec<&str> = stdout.lines().collect();
    assert_eq!(paths.len(), 2, "{stdout}");
    assert!(
        paths[0].ends_with("/os/images/pxeboot/vmlinuz")
            && paths[1].ends_with("/os/images/pxeboot/initrd.img"),
        "{stdout}"
    );
    let initrd = std::fs::read(fixture("build/el-tree/images/pxeboot/initrd.img")).unwrap();
    assert_eq!(std::fs::read(paths[1]).unwrap(), initrd);

    let out = fetch(&["--output", "/tmp/ferry-never-written"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rocky-9-netboot is 2 files") && stderr.contains("drop --output"),
        "{stderr}"
    );
}
