//! Network facts: NICs from /sys/class/net, addresses and routes from `ip -j` (the honest
//! source: what the kernel uses right now), DNS servers from /etc/resolv.conf.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::Root;

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Network {
    /// Physical NICs (those with a `device` in sysfs) and any interface a default route uses.
    pub nics: Vec<Nic>,
    pub routes: Vec<Route>,
    /// Name servers, in resolv.conf order.
    pub dns: Vec<String>,
    /// The NIC carrying the default route (IPv4 first, then IPv6).
    pub primary: Option<String>,
    /// Where addresses and routes came from, and anything that could not be read.
    pub source: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Nic {
    pub name: String,
    pub altnames: Vec<String>,
    pub mac: Option<String>,
    pub driver: Option<String>,
    /// PCI address of the device (`0000:00:1f.6`).
    pub pci_path: Option<String>,
    /// The name systemd/udev would give this NIC on an installed system (`eno1`, `ens3`,
    /// `enp0s31f6`): onboard index, then hot-plug slot, then PCI path.
    pub predicted_name: Option<String>,
    /// Operational state (`up`, `down`, `unknown`).
    pub link: String,
    pub carrier: Option<bool>,
    pub speed_mbps: Option<u32>,
    pub addresses: Vec<Address>,
    /// Lease files or `dynamic` addresses show DHCP in use on this NIC.
    pub dhcp: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Address {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    pub address: String,
    pub prefix: u8,
    /// `global`, `link`, `host`.
    pub scope: String,
    /// Has a lifetime (DHCP or SLAAC).
    pub dynamic: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Route {
    pub family: &'static str,
    /// `default` or a prefix.
    pub dst: String,
    pub gateway: Option<String>,
    pub dev: Option<String>,
    /// `kernel`, `static`, `dhcp`, `ra`, `boot`...
    pub protocol: Option<String>,
    pub metric: Option<u32>,
    /// For a route with a gateway: `true` when the gateway lies outside every prefix of the
    /// interface (a /32 address with its gateway elsewhere, Hetzner style), so the installed
    /// system needs an explicit on-link route to it before the default route; `false` when
    /// the gateway is inside one of the interface's prefixes (IPv6 link-local gateways such
    /// as `fe80::1` are). `None` for routes without a gateway.
    pub gateway_onlink: Option<bool>,
}

/// `ip -j addr` entries (the fields ferry reads).
#[derive(Debug, Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    ifindex: u32,
    address: Option<String>,
    #[serde(default)]
    altnames: Vec<String>,
    operstate: Option<String>,
    link_type: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Debug, Deserialize)]
struct IpAddrInfo {
    family: String,
    local: String,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    dynamic: bool,
}

#[derive(Debug, Deserialize)]
struct IpRoute {
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
    protocol: Option<String>,
    metric: Option<u32>,
    #[serde(default)]
    flags: Vec<String>,
}

impl Network {
    pub fn read(root: &Root) -> Network {
        let mut net = Network::default();
        type Json = (
            Option<Vec<IpLink>>,
            Option<Vec<IpRoute>>,
            Option<Vec<IpRoute>>,
        );
        let (links, routes4, routes6): Json = if root.is_system() {
            net.source = "ip -j addr, ip -j route, ip -j -6 route".into();
            // All three at once: this is on the path from `ferry install` to the guest's boot.
            let [addr, route4, route6] = [
                &["-j", "addr"][..],
                &["-j", "route"],
                &["-j", "-6", "route"],
            ]
            .map(spawn_ip);
            (
                ip_json(addr, &mut net.problems),
                ip_json(route4, &mut net.problems),
                ip_json(route6, &mut net.problems),
            )
        } else {
            net.source = format!("{}/ip/{{addr,route,route6}}.json", root.dir().display());
            (
                file_json(root, "/ip/addr.json", &mut net.problems),
                file_json(root, "/ip/route.json", &mut net.problems),
                file_json(root, "/ip/route6.json", &mut net.problems),
            )
        };
        let links = links.unwrap_or_default();
        let mut routes = Vec::new();
        for (family, list) in [("ipv4", routes4), ("ipv6", routes6)] {
            for r in list.unwrap_or_default().into_iter().map(|r| (family, r)) {
                routes.push(r);
            }
        }

        let mut names: Vec<String> = std::fs::read_dir(root.path("/sys/class/net"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| root.exists(format!("/sys/class/net/{n}/device")))
            .collect();
        let default_devs: Vec<String> = routes
            .iter()
            .filter(|(_, r)| r.dst == "default")
            .filter_map(|(_, r)| r.dev.clone())
            .collect();
        for dev in &default_devs {
            if !names.contains(dev) {
                names.push(dev.clone());
            }
        }
        names.sort();
        for name in names {
            let link = links.iter().find(|l| l.ifname == name);
            net.nics.push(read_nic(root, &name, link));
        }

        net.routes = routes
            .into_iter()
            .map(|(family, r)| {
                let gateway_onlink = r.gateway.as_ref().map(|gw| {
                    let addresses = net
                        .nics
                        .iter()
                        .find(|n| Some(&n.name) == r.dev.as_ref())
                        .map(|n| n.addresses.as_slice());
                    let addresses = addresses.unwrap_or_default();
                    r.flags.iter().any(|f| f == "onlink")
                        || !addresses.iter().any(|a| contains(&a.address, a.prefix, gw))
                });
                Route {
                    family,
                    dst: r.dst,
                    gateway: r.gateway,
                    dev: r.dev,
                    protocol: r.protocol,
                    metric: r.metric,
                    gateway_onlink,
                }
            })
            .collect();
        net.primary = ["ipv4", "ipv6"].iter().find_map(|family| {
            net.routes
                .iter()
                .filter(|r| r.family == *family && r.dst == "default" && r.dev.is_some())
                .min_by_key(|r| r.metric.unwrap_or(0))
                .and_then(|r| r.dev.clone())
        });
        net.dns = read_dns(root);
        net
    }

    pub fn primary_nic(&self) -> Option<&Nic> {
        let name = self.primary.as_ref()?;
        self.nics.iter().find(|n| &n.name == name)
    }

    /// The default route of `family` through the primary NIC.
    pub fn default_route(&self, family: &str) -> Option<&Route> {
        let primary = self.primary.as_ref()?;
        self.routes
            .iter()
            .filter(|r| r.family == family && r.dst == "default" && r.dev.as_ref() == Some(primary))
            .min_by_key(|r| r.metric.unwrap_or(0))
    }

    /// The primary NIC's first global address of `family`.
    pub fn primary_address(&self, family: &str) -> Option<&Address> {
        self.primary_nic()?
            .addresses
            .iter()
            .find(|a| a.family == family && a.scope == "global")
    }

    /// Whether the primary NIC's IPv4 configuration came from DHCP.
    pub fn primary_dhcp(&self) -> bool {
        let route = self.default_route("ipv4");
        route.is_some_and(|r| r.protocol.as_deref() == Some("dhcp"))
            || self.primary_nic().is_some_and(|n| n.dhcp)
    }
}

/// `ip ARGS`, started; its output is read by [`ip_json`].
fn spawn_ip<'a>(args: &'a [&'a str]) -> (&'a [&'a str], std::io::Result<std::process::Child>) {
    let child = Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    (args, child)
}

fn ip_json<T: serde::de::DeserializeOwned>(
    (args, child): (&[&str], std::io::Result<std::process::Child>),
    problems: &mut Vec<String>,
) -> Option<T> {
    let output = match child.and_then(|c| c.wait_with_output()) {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            problems.push(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
            return None;
        }
        Err(e) => {
            problems.push(format!("ip {}: {e} (install iproute2)", args.join(" ")));
            return None;
        }
    };
    serde_json::from_slice(&output.stdout)
        .map_err(|e| problems.push(format!("ip {}: unexpected output: {e}", args.join(" "))))
        .ok()
}

fn file_json<T: serde::de::DeserializeOwned>(
    root: &Root,
    abs: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let path = root.path(abs);
    let text = std::fs::read_to_string(&path).ok()?;
    serde_json::from_str(&text)
        .map_err(|e| problems.push(format!("{}: {e}", path.display())))
        .ok()
}

fn read_nic(root: &Root, name: &str, link: Option<&IpLink>) -> Nic {
    let sys = format!("/sys/class/net/{name}");
    let pci_path = pci_address_of(root, &format!("{sys}/device"));
    let driver = root
        .resolve_link(Path::new(&format!("{sys}/device/driver")))
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    let mut addresses: Vec<Address> = link
        .map(|l| {
            l.addr_info
                .iter()
                .filter_map(|a| {
                    let family = match a.family.as_str() {
                        "inet" => "ipv4",
                        "inet6" => "ipv6",
                        _ => return None,
                    };
                    Some(Address {
                        family,
                        address: a.local.clone(),
                        prefix: a.prefixlen,
                        scope: a.scope.clone(),
                        dynamic: a.dynamic,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    addresses.sort_by_key(|a| a.family);
    let ifindex = link.map(|l| l.ifindex).unwrap_or(0);
    let dynamic_v4 = addresses.iter().any(|a| a.family == "ipv4" && a.dynamic);
    Nic {
        name: name.to_string(),
        altnames: link.map(|l| l.altnames.clone()).unwrap_or_default(),
        mac: root.read(format!("{sys}/address")).or_else(|| {
            link.filter(|l| l.link_type.as_deref() == Some("ether"))
                .and_then(|l| l.address.clone())
        }),
        driver,
        predicted_name: pci_path
            .as_deref()
            .and_then(|pci| predicted_name(root, name, pci)),
        pci_path,
        link: root
            .read(format!("{sys}/operstate"))
            .or_else(|| link.and_then(|l| l.operstate.as_ref().map(|s| s.to_lowercase())))
            .unwrap_or_else(|| "unknown".into()),
        carrier: root.read(format!("{sys}/carrier")).map(|c| c == "1"),
        speed_mbps: root
            .read(format!("{sys}/speed"))
            .and_then(|s| s.parse().ok()),
        addresses,
        dhcp: dynamic_v4 || has_lease(root, name, ifindex),
    }
}

/// The PCI address among the components of a sysfs device path (a virtio NIC's device is
/// `.../0000:00:03.0/virtio2`: the PCI function is the parent).
fn pci_address_of(root: &Root, device_link: &str) -> Option<String> {
    let canonical = root.canonical(Path::new(device_link));
    canonical
        .components()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .find(|c| parse_pci(c).is_some())
}

/// `0000:00:1f.6` → (domain, bus, slot, function).
fn parse_pci(text: &str) -> Option<(u32, u32, u32, u32)> {
    let mut parts = text.split(':');
    let (domain, bus, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || domain.len() != 4 || bus.len() != 2 {
        return None;
    }
    let (slot, func) = rest.split_once('.')?;
    if slot.len() != 2 || func.len() != 1 {
        return None;
    }
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    Some((hex(domain)?, hex(bus)?, hex(slot)?, hex(func)?))
}

/// systemd's predictable interface name (naming scheme v252 and later, `NamePolicy=onboard
/// slot path`): `eno<acpi_index or index>` for onboard devices, `ens<slot>` for hot-plug
/// slots, else `enp<bus>s<slot>` — each with `f<function>` when the function is not 0 or the
/// device is multi-function, and `d<dev_port>` when the port is not 0.
pub fn predicted_name(root: &Root, name: &str, pci: &str) -> Option<String> {
    let (domain, bus, slot, func) = parse_pci(pci)?;
    let sys = format!("/sys/class/net/{name}");
    let pci_dir = root.canonical(Path::new(&format!("{sys}/device")));
    let pci_dir = pci_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|f| f == pci))?
        .to_path_buf();
    let dev_port = root
        .read(format!("{sys}/dev_port"))
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    let port = if dev_port > 0 {
        format!("d{dev_port}")
    } else {
        String::new()
    };
    let onboard = root
        .read(pci_dir.join("acpi_index"))
        .or_else(|| root.read(pci_dir.join("index")))
        .and_then(|i| i.parse::<u32>().ok())
        .filter(|&i| i > 0 && i <= 16383);
    if let Some(index) = onboard {
        return Some(format!("eno{index}{port}"));
    }
    let multifunction = std::fs::read(root.path(pci_dir.join("config")))
        .ok()
        .and_then(|c| c.get(0x0e).copied())
        .is_some_and(|b| b & 0x80 != 0);
    let function = if func > 0 || multifunction {
        format!("f{func}")
    } else {
        String::new()
    };
    let slot_address = format!("{}:{:02x}:{:02x}", &pci[..4], bus, slot);
    let hotplug_slot = std::fs::read_dir(root.path("/sys/bus/pci/slots"))
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            let slot_name = e.file_name().to_string_lossy().into_owned();
            (root
                .read(format!("/sys/bus/pci/slots/{slot_name}/address"))
                .as_deref()
                == Some(slot_address.as_str()))
            .then(|| slot_name.parse::<u32>().ok())
            .flatten()
        });
    let domain = if domain > 0 {
        format!("P{domain}")
    } else {
        String::new()
    };
    Some(match hotplug_slot {
        Some(n) => format!("en{domain}s{n}{function}{port}"),
        None => format!("en{domain}p{bus}s{slot}{function}{port}"),
    })
}

/// DHCP client lease files naming the interface (dhclient, dhcpcd, NetworkManager,
/// systemd-networkd by interface index).
fn has_lease(root: &Root, name: &str, ifindex: u32) -> bool {
    if ifindex > 0 && root.exists(format!("/run/systemd/netif/leases/{ifindex}")) {
        return true;
    }
    [
        "/var/lib/dhcp",
        "/var/lib/dhclient",
        "/run",
        "/var/lib/dhcpcd",
        "/var/lib/NetworkManager",
    ]
    .iter()
    .any(|dir| {
        std::fs::read_dir(root.path(dir))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                (file.ends_with(".lease") || file.ends_with(".leases")) && file.contains(name)
            })
    })
}

/// Name servers from /etc/resolv.conf; behind systemd-resolved's stub, its upstream list.
fn read_dns(root: &Root) -> Vec<String> {
    let parse = |text: String| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let servers = parse(root.read("/etc/resolv.conf").unwrap_or_default());
    if servers.iter().all(|s| s.starts_with("127.0.0.53")) && !servers.is_empty() {
        let upstream = parse(
            root.read("/run/systemd/resolve/resolv.conf")
                .unwrap_or_default(),
        );
        if !upstream.is_empty() {
            return upstream;
        }
    }
    servers
}

/// Whether `ip` lies in `net/prefix`.
fn contains(net: &str, prefix: u8, ip: &str) -> bool {
    match (net.parse::<IpAddr>(), ip.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(n)), Ok(IpAddr::V4(i))) => {
            let bits = u32::from(prefix.min(32));
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (Ok(IpAddr::V6(n)), Ok(IpAddr::V6(i))) => {
            let bits = u32::from(prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(contains("192.0.2.2", 24, "192.0.2.1"));
        assert!(!contains("203.0.113.10", 32, "172.31.1.1"));
        assert!(contains("fe80::5054:ff:fe12:3456", 64, "fe80::1"));
        assert!(!contains("2001:db8::2", 64, "fe80::1"));
        assert!(!contains("192.0.2.2", 24, "fe80::1"));
    }

    #[test]
    fn pci_addresses() {
        assert_eq!(parse_pci("0000:00:1f.6"), Some((0, 0, 0x1f, 6)));
        assert_eq!(parse_pci("0000:3b:00.1"), Some((0, 0x3b, 0, 1)));
        assert_eq!(parse_pci("virtio2"), None);
        assert_eq!(parse_pci("pci0000:00"), None);
    }
}
