//! Netboot files a plan boots directly instead of an ISO's menu entry: a Debian netboot
//! package's, unpacked, or an installer tree's kernel and initrd.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fetch::Request;

/// Where a netboot image's kernel and initrd come from.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Netboot {
    /// A Debian netboot package (the fetch's request), unpacked.
    Package(NetbootUnpack),
    /// An installer tree: the fetch's request is its kernel, this is its initrd.
    Tree(Box<TreeBoot>),
}

/// The initrd of an installer tree, and the kernel argument that sends the installer there
/// for the rest of itself.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TreeBoot {
    pub initrd: Request,
    /// `ARG=URL` for each mirror's tree in the catalog's order, as the VM reaches it (a tree
    /// on this machine's loopback is at QEMU's host address).
    pub installer_arg: String,
}

/// debian-installer's netboot kernel and initrd, unpacked from the fetched `.deb` into the
/// cache next to it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NetbootUnpack {
    /// Debian's major version and architecture, which name the files' directory in the .deb.
    pub major: String,
    pub arch: String,
    pub dir: PathBuf,
}

impl NetbootUnpack {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("linux")
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.gz")
    }
    /// Unpacked already, from this very .deb (not an older one).
    pub fn is_unpacked_from(&self, deb: &Path) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (
            modified(&self.kernel()),
            modified(&self.initrd()),
            modified(deb),
        ) {
            (Some(k), Some(i), Some(d)) => k >= d && i >= d,
            _ => false,
        }
    }
}
