//! The templates' context: `vars`, `secrets`, `disk`, `vm`, `host`, `network` and `serve`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::vm::Shape;
use super::{DiskPlan, Options, PlanError};
use crate::Error;
use crate::host::Facts;
use crate::profile::Profile;
use crate::recipe::network::Network;

/// Everything a template may name.
pub(super) fn template_context(
    profile: &Profile,
    opts: &Options,
    facts: &Facts,
    vm: &Shape,
    network: Option<&Network>,
    serve_url: &str,
) -> Result<serde_json::Value, Error> {
    let spec = &profile.spec;
    let mut vars: BTreeMap<String, serde_json::Value> = spec
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    for (k, v) in &opts.vars {
        vars.insert(k.clone(), json!(v));
    }
    if let Some(path) = &opts.ssh_key {
        vars.insert("ssh_key".into(), json!(read_ssh_key(path)?));
    }
    // The installed system's network: as described with --network, else the host's own.
    let network = match network {
        Some(network) => Some(network.render()?),
        None => Network::from_host(&facts.network)
            .map(|n| n.render())
            .transpose()?,
    };
    let mut context = json!({
        "vars": vars,
        "secrets": spec.secrets,
        "disk": disk_context(&vm.disk),
        "vm": {
            "firmware": vm.firmware,
            "memory_mib": vm.sizing.memory_mib,
            "cpus": vm.sizing.cpus,
        },
        "host": host_context(facts),
        "serve": { "url": serve_url },
    });
    if let Some(network) = network {
        context["network"] = json!(network);
    }
    Ok(context)
}

/// `disk.*` template variables; absent facts are absent keys.
fn disk_context(disk: &DiskPlan) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("path".into(), json!(disk.target.path));
    map.insert("guest_path".into(), json!(disk.guest_path));
    // Partition N is {partition_prefix}N: /dev/vda1, /dev/nvme0n1p1.
    map.insert(
        "partition_prefix".into(),
        json!(partition_prefix(&disk.guest_path)),
    );
    map.insert("bus".into(), json!(disk.bus));
    map.insert("size_bytes".into(), json!(disk.target.size_bytes));
    if let Some(info) = &disk.target.info {
        if let Some(serial) = &info.serial {
            map.insert("serial".into(), json!(serial));
        }
        if let Some(model) = &info.model {
            map.insert("model".into(), json!(model));
        }
    }
    serde_json::Value::Object(map)
}

/// `host.*` template variables; absent facts are absent keys (templates use `is defined` or
/// `| default(...)`).
pub fn host_context(facts: &Facts) -> serde_json::Value {
    let net = &facts.network;
    let mut host = serde_json::Map::new();
    host.insert("hostname".into(), json!(facts.hostname));
    host.insert("firmware".into(), json!(facts.firmware));
    if let Some(nic) = net.primary_nic() {
        let mut n = serde_json::Map::new();
        n.insert("name".into(), json!(nic.name));
        for (key, value) in [
            ("predicted_name", &nic.predicted_name),
            ("mac", &nic.mac),
            ("driver", &nic.driver),
        ] {
            if let Some(v) = value {
                n.insert(key.into(), json!(v));
            }
        }
        host.insert("nic".into(), serde_json::Value::Object(n));
    } else {
        host.insert("nic".into(), json!({}));
    }
    for family in ["ipv4", "ipv6"] {
        let mut m = serde_json::Map::new();
        if let Some(a) = net.primary_address(family) {
            m.insert("address".into(), json!(a.address));
            m.insert("prefix".into(), json!(a.prefix));
        }
        if let Some(route) = net.default_route(family)
            && let Some(gw) = &route.gateway
        {
            m.insert("gateway".into(), json!(gw));
            if family == "ipv4" {
                m.insert(
                    "gateway_onlink".into(),
                    json!(route.gateway_onlink.unwrap_or(false)),
                );
            }
        }
        // Always a map, so `host.ipv6.address is defined` and `| default(...)` work.
        host.insert(family.into(), serde_json::Value::Object(m));
    }
    host.insert("dns".into(), json!(net.dns));
    host.insert("dhcp".into(), json!(net.primary_dhcp()));
    serde_json::Value::Object(host)
}

/// What a disk's partition numbers are appended to: `/dev/vda` → `/dev/vda`,
/// `/dev/nvme0n1` → `/dev/nvme0n1p` (Linux adds `p` after a name ending in a digit).
pub fn partition_prefix(disk: &str) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p")
    } else {
        disk.to_string()
    }
}

/// An input file named by an option: a regular file of at most
/// [`crate::profile::input::MAX_INPUT_BYTES`].
fn read_input(path: &Path) -> Result<String, crate::profile::input::InputError> {
    crate::profile::input::read_text(path, crate::profile::input::MAX_INPUT_BYTES)
}

/// `--ssh-key FILE`: one or more public keys, one a line.
fn read_ssh_key(path: &Path) -> Result<String, Error> {
    let text = read_input(path).map_err(|e| PlanError::option("--ssh-key", path, e))?;
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() || keys.iter().any(|k| k.contains("PRIVATE KEY")) {
        return Err(PlanError::option(
            "--ssh-key",
            path,
            "expected public keys (ssh-ed25519 AAAA... or similar), one a line",
        )
        .into());
    }
    Ok(keys.join("\n"))
}

/// `--network FILE`: the installed system's network, checked and rendered for each OS.
/// `--network FILE`: the installed system's network, which also gives the VM's NIC its MAC.
pub(super) fn read_network(path: &Path) -> Result<Network, Error> {
    let text = read_input(path).map_err(|e| PlanError::option("--network", path, e))?;
    toml::from_str(&text).map_err(|e| PlanError::option("--network", path, e.message()).into())
}
