//! The installed system's network, translated from one plain description of the host's NIC
//! into each OS's own configuration: Debian's ifupdown `/etc/network/interfaces`, a systemd
//! `.link` file that pins the interface name to the MAC, `/etc/resolv.conf`, NixOS options,
//! Ubuntu's netplan, a NetworkManager keyfile (RHEL family), a systemd-networkd `.network`
//! file (Arch Linux, `networkd.rs`), and for Alpine ifupdown-ng's interfaces with busybox
//! nameif's `/etc/mactab` (`network/alpine.rs`).
//!
//! The input, [`Network`], says nothing about where it came from (a `--network` file today,
//! the host's facts later), and every output is a pure function of it.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

mod alpine;
mod networkd;

/// The host's network as the installed system should have it: one NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The interface's name in the rescue system (often `eth0`: rescue systems tend to boot
    /// with `net.ifnames=0`).
    pub name: String,
    /// The name systemd's predictable naming gives it on this hardware (`enp0s31f6`, `eno1`):
    /// the name the installed system will see. Falls back to `name`.
    #[serde(default)]
    pub predicted_name: Option<String>,
    /// The NIC's MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Static addresses with their prefix lengths, IPv4 and IPv6, in order of preference.
    #[serde(default)]
    pub addresses: Vec<(IpAddr, u8)>,
    #[serde(default)]
    pub ipv4_gateway: Option<Gateway>,
    #[serde(default)]
    pub ipv6_gateway: Option<Gateway>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// IPv4 from DHCP (static IPv4 addresses, if any, are added on top).
    #[serde(default)]
    pub dhcp: bool,
    /// The NIC's name under FreeBSD (`em0`, `igb1`, `vtnet0`): FreeBSD names NICs by its
    /// driver and a unit, not by MAC. [`Network::from_host`] derives it ([`freebsd_name`]).
    #[serde(default)]
    pub freebsd_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub address: IpAddr,
    /// The host's route says `onlink`: the gateway is reached directly even though no
    /// address's subnet holds it (Hetzner-style /32 addresses).
    #[serde(default)]
    pub onlink: bool,
}

/// A description that cannot be turned into a working configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("network: `{0}` is not a MAC address (expected aa:bb:cc:dd:ee:ff)")]
    Mac(String),
    #[error("network: `{0}` is not a usable interface name")]
    Name(String),
    #[error("network: prefix /{prefix} is too long for {address}")]
    Prefix { address: IpAddr, prefix: u8 },
    #[error("network: the {family} gateway {address} is not an {family} address")]
    GatewayFamily {
        family: &'static str,
        address: IpAddr,
    },
    #[error(
        "network: no IPv4 address and no DHCP, but an IPv4 gateway {0}: add the address or set dhcp = true"
    )]
    GatewayWithoutAddress(IpAddr),
    #[error("network: no address, no DHCP: the installed system would be unreachable")]
    Unreachable,
}

/// Every rendering of one [`Network`], as templates see it (`network.ifupdown`, ...), next to
/// the input's own fields (`network.mac`, `network.addresses`, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    #[serde(flatten)]
    pub input: Network,
    /// The name the installed system gives the interface (pinned to the MAC by `systemd_link`).
    pub interface: String,
    pub ifupdown: String,
    pub systemd_link: String,
    pub resolv_conf: String,
    pub nixos: String,
    pub netplan: String,
    pub networkmanager: String,
    pub networkd: String,
    /// FreeBSD's `rc.conf` lines, when the FreeBSD name is known.
    pub freebsd_rc_conf: Option<String>,
    /// Alpine: the NIC's name there, ifupdown-ng's interfaces and busybox nameif's mactab.
    pub alpine_interface: String,
    pub ifupdown_ng: String,
    pub mactab: String,
}

/// How a gateway is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Inside one of the interface's subnets (or link-local): an ordinary gateway.
    Subnet,
    /// Outside every subnet: needs a host route to it on the interface first.
    OnLinkRoute,
}

impl Network {
    /// The installed system's network, read off the rescue system's primary NIC (the one with
    /// the default route): its MAC and predicted name, its global static addresses, its
    /// gateways and DNS servers. Addresses DHCP or router advertisements gave it are left to
    /// those to give again. `None` when the host has no primary NIC with a MAC.
    pub fn from_host(net: &crate::host::Network) -> Option<Network> {
        let nic = net.primary_nic()?;
        let dhcp = net.primary_dhcp();
        let addresses = nic
            .addresses
            .iter()
            .filter(|a| a.scope == "global" && !a.dynamic)
            .filter_map(|a| Some((a.address.parse().ok()?, a.prefix)))
            .collect();
        let gateway = |family| {
            let route = net.default_route(family)?;
            Some(Gateway {
                address: route.gateway.as_deref()?.parse().ok()?,
                onlink: route.gateway_onlink.unwrap_or(false),
            })
        };
        Some(Network {
            name: nic.name.clone(),
            predicted_name: nic.predicted_name.clone(),
            mac: nic.mac.clone()?,
            addresses,
            ipv4_gateway: if dhcp { None } else { gateway("ipv4") },
            ipv6_gateway: gateway("ipv6"),
            dns: net.dns.iter().filter_map(|d| d.parse().ok()).collect(),
            dhcp,
            freebsd_name: freebsd_name(net, nic),
        })
    }

    /// Checks the description and renders every output.
    pub fn render(&self) -> Result<Rendered, NetworkError> {
        self.check()?;
        Ok(Rendered {
            input: self.clone(),
            interface: self.interface().to_string(),
            ifupdown: self.ifupdown(),
            systemd_link: self.systemd_link(),
            resolv_conf: self.resolv_conf(),
            nixos: self.nixos(),
            netplan: self.netplan(),
            networkmanager: self.networkmanager(),
            networkd: self.networkd(),
            freebsd_rc_conf: self.freebsd_rc_conf(),
            alpine_interface: self.alpine_interface(),
            ifupdown_ng: self.ifupdown_ng(),
            mactab: self.mactab(),
        })
    }

    /// The interface's name in the installed system.
    pub fn interface(&self) -> &str {
        self.predicted_name.as_deref().unwrap_or(&self.name)
    }

    fn check(&self) -> Result<(), NetworkError> {
        let octets: Vec<&str> = self.mac.split(':').collect();
        if octets.len() != 6
            || !octets
                .iter()
                .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(NetworkError::Mac(self.mac.clone()));
        }
        for name in std::iter::once(&self.name).chain(&self.predicted_name) {
            // Linux's own rule (IFNAMSIZ, no '/', no whitespace) plus shell- and Nix-safe.
            if name.is_empty()
                || name.len() > 15
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(NetworkError::Name(name.clone()));
            }
        }
        for &(address, prefix) in &self.addresses {
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(NetworkError::Prefix { address, prefix });
            }
        }
        if let Some(gw) = &self.ipv4_gateway {
            if !gw.address.is_ipv4() {
                return Err(NetworkError::GatewayFamily {
                    family: "IPv4",
                    address: gw.address,
                });
            }
            if !self.dhcp && self.v4().next().is_none() {
                return Err(NetworkError::GatewayWithoutAddress(gw.address));
            }
        }
        if let Some(gw) = &self.ipv6_gateway
            && !gw.address.is_ipv6()
        {
            return Err(NetworkError::GatewayFamily {
                family: "IPv6",
                address: gw.address,
            });
        }
        if !self.dhcp && self.addresses.is_empty() {
            return Err(NetworkError::Unreachable);
        }
        Ok(())
    }

    fn v4(&self) -> impl Iterator<Item = &(IpAddr, u8)> {
        self.addresses.iter().filter(|(a, _)| a.is_ipv4())
    }

    fn v6(&self) -> impl Iterator<Item = &(IpAddr, u8)> {
        self.addresses.iter().filter(|(a, _)| a.is_ipv6())
    }

    fn reach(&self, gw: &Gateway) -> Reach {
        let link_local = match gw.address {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            IpAddr::V4(_) => false,
        };
        if link_local {
            return Reach::Subnet;
        }
        // Under DHCP the lease brings its own route to the gateway.
        if gw.address.is_ipv4() && self.dhcp && !gw.onlink {
            return Reach::Subnet;
        }
        let in_subnet = self
            .addresses
            .iter()
            .any(|&(a, p)| same_subnet(a, gw.address, p));
        if in_subnet && !gw.onlink {
            Reach::Subnet
        } else {
            Reach::OnLinkRoute
        }
    }

    /// Debian's `/etc/network/interfaces`. One stanza per address (interfaces(5): several
    /// stanzas for one interface are all applied); the first of each family carries the
    /// gateway. A gateway outside every subnet gets a host route on the interface first.
    pub fn ifupdown(&self) -> String {
        let ifname = self.interface();
        let mut out = String::new();
        let _ = writeln!(out, "# Written by ferry for the NIC with MAC {}.", self.mac);
        out.push_str("source /etc/network/interfaces.d/*\n\n");
        out.push_str("auto lo\niface lo inet loopback\n\n");
        let _ = writeln!(out, "auto {ifname}\nallow-hotplug {ifname}");
        let mut first_v4 = true;
        if self.dhcp {
            let _ = writeln!(out, "iface {ifname} inet dhcp");
            first_v4 = false;
        }
        let dns = |out: &mut String, family_v4: bool| {
            let servers: Vec<String> = self
                .dns
                .iter()
                .filter(|d| d.is_ipv4() == family_v4)
                .map(ToString::to_string)
                .collect();
            if !servers.is_empty() {
                // Used only when the resolvconf package is installed; /etc/resolv.conf is
                // written as well.
                let _ = writeln!(out, "    dns-nameservers {}", servers.join(" "));
            }
        };
        for &(address, prefix) in self.v4() {
            let _ = writeln!(
                out,
                "iface {ifname} inet static\n    address {address}/{prefix}"
            );
            if first_v4 {
                if let Some(gw) = &self.ipv4_gateway {
                    gateway_lines(&mut out, ifname, gw, self.reach(gw), "");
                }
                dns(&mut out, true);
                first_v4 = false;
            }
        }
        if self.dhcp
            && let Some(gw) = &self.ipv4_gateway
            && self.reach(gw) == Reach::OnLinkRoute
        {
            // A static gateway the lease would not give: routes only.
            let _ = writeln!(out, "# default route through {} (on-link)", gw.address);
            onlink_route_lines(&mut out, ifname, gw.address, "");
        }
        let mut first_v6 = true;
        for &(address, prefix) in self.v6() {
            let _ = writeln!(
                out,
                "iface {ifname} inet6 static\n    address {address}/{prefix}"
            );
            if first_v6 {
                if let Some(gw) = &self.ipv6_gateway {
                    gateway_lines(&mut out, ifname, gw, self.reach(gw), "-6 ");
                }
                dns(&mut out, false);
                first_v6 = false;
            }
        }
        out
    }

    /// A systemd `.link` file (for `/etc/systemd/network/10-ferry-NAME.link`) giving the NIC
    /// with this MAC its name, whatever the VM or the kernel would have called it. udev
    /// applies it whether or not systemd-networkd runs.
    pub fn systemd_link(&self) -> String {
        format!(
            "# Written by ferry: the NIC with this MAC is {name}.\n[Match]\nMACAddress={mac}\n\n[Link]\nName={name}\n",
            mac = self.mac.to_lowercase(),
            name = self.interface()
        )
    }

    /// `/etc/resolv.conf`; empty when the description has no DNS servers (DHCP's then).
    pub fn resolv_conf(&self) -> String {
        self.dns
            .iter()
            .map(|d| format!("nameserver {d}\n"))
            .collect()
    }

    /// FreeBSD `rc.conf` lines for the NIC (`None` without [`Network::freebsd_name`]): its
    /// addresses, gateways (a gateway outside every subnet gets a host route on the interface
    /// first, as `static_routes`), and DHCP.
    pub fn freebsd_rc_conf(&self) -> Option<String> {
        let ifname = self.freebsd_name.as_deref()?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# The NIC with MAC {} (FreeBSD names NICs by driver).",
            self.mac
        );
        let mut v4 = self.v4();
        match (self.dhcp, v4.next()) {
            (true, _) => {
                let _ = writeln!(out, "ifconfig_{ifname}=\"SYNCDHCP\"");
            }
            (false, Some((a, p))) => {
                let _ = writeln!(out, "ifconfig_{ifname}=\"inet {a}/{p}\"");
            }
            (false, None) => {}
        }
        for (i, (a, p)) in v4.enumerate() {
            let _ = writeln!(out, "ifconfig_{ifname}_alias{i}=\"inet {a}/{p}\"");
        }
        for (i, (a, p)) in self.v6().enumerate() {
            let key = if i == 0 {
                format!("ifconfig_{ifname}_ipv6")
            } else {
                format!("ifconfig_{ifname}_alias{}", i + self.v4().count())
            };
            let _ = writeln!(out, "{key}=\"inet6 {a}/{p}\"");
        }
        if let Some(gw) = &self.ipv4_gateway {
            if self.reach(gw) == Reach::OnLinkRoute {
                let _ = writeln!(
                    out,
                    "static_routes=\"ferrygw\"\nroute_ferrygw=\"-host {} -iface {ifname}\"",
                    gw.address
                );
            }
            let _ = writeln!(out, "defaultrouter=\"{}\"", gw.address);
        }
        if let Some(gw) = &self.ipv6_gateway {
            let address = match gw.address {
                IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => {
                    format!("{}%{ifname}", gw.address)
                }
                _ => gw.address.to_string(),
            };
            if self.reach(gw) == Reach::OnLinkRoute {
                let _ = writeln!(
                    out,
                    "ipv6_static_routes=\"ferrygw6\"\nipv6_route_ferrygw6=\"-host {} -iface {ifname}\"",
                    gw.address
                );
            }
            let _ = writeln!(out, "ipv6_defaultrouter=\"{address}\"");
        }
        Some(out)
    }

    /// NixOS options (a fragment for inside `{ ... }` of configuration.nix): the interface
    /// pinned to the MAC with a `.link` (read by udev, works without networkd), its addresses,
    /// gateways and name servers.
    pub fn nixos(&self) -> String {
        let ifname = self.interface();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# The NIC with MAC {mac} is {ifname}, whatever the kernel would call it.\n\
             systemd.network.links.\"10-{ifname}\" = {{\n  matchConfig.MACAddress = \"{mac}\";\n  linkConfig.Name = \"{ifname}\";\n}};",
            mac = self.mac.to_lowercase()
        );
        out.push_str("networking.useDHCP = false;\n");
        let _ = writeln!(out, "networking.interfaces.{ifname} = {{");
        if self.dhcp {
            out.push_str("  useDHCP = true;\n");
        }
        for (family, addrs) in [
            ("ipv4", self.v4().collect::<Vec<_>>()),
            ("ipv6", self.v6().collect::<Vec<_>>()),
        ] {
            if addrs.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {family}.addresses = [");
            for (address, prefix) in addrs {
                let _ = writeln!(
                    out,
                    "    {{ address = \"{address}\"; prefixLength = {prefix}; }}"
                );
            }
            out.push_str("  ];\n");
        }
        for (family, gw) in [("ipv4", &self.ipv4_gateway), ("ipv6", &self.ipv6_gateway)] {
            if let Some(gw) = gw
                && self.reach(gw) == Reach::OnLinkRoute
            {
                let host = if gw.address.is_ipv4() { 32 } else { 128 };
                let _ = writeln!(
                    out,
                    "  # the gateway is outside every subnet: a host route to it first\n  {family}.routes = [ {{ address = \"{}\"; prefixLength = {host}; }} ];",
                    gw.address
                );
            }
        }
        out.push_str("};\n");
        for (option, gw) in [
            ("defaultGateway", &self.ipv4_gateway),
            ("defaultGateway6", &self.ipv6_gateway),
        ] {
            if let Some(gw) = gw {
                let _ = writeln!(
                    out,
                    "networking.{option} = {{ address = \"{}\"; interface = \"{ifname}\"; }};",
                    gw.address
                );
            }
        }
        if !self.dns.is_empty() {
            let servers: Vec<String> = self.dns.iter().map(|d| format!("\"{d}\"")).collect();
            let _ = writeln!(out, "networking.nameservers = [ {} ];", servers.join(" "));
        }
        out
    }

    /// A netplan file (`/etc/netplan/NAME.yaml`): the NIC matched by its MAC and given its
    /// name with `set-name`, its addresses, default routes (`on-link` for a gateway outside
    /// every subnet) and name servers. IPv6 router advertisements stay on (netplan's default).
    pub fn netplan(&self) -> String {
        let ifname = self.interface();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by ferry for the NIC with MAC {mac}.\nnetwork:\n  version: 2\n  ethernets:\n    {ifname}:\n      match:\n        macaddress: \"{mac}\"\n      set-name: {ifname}\n      dhcp4: {dhcp}",
            mac = self.mac.to_lowercase(),
            dhcp = self.dhcp,
        );
        if !self.addresses.is_empty() {
            out.push_str("      addresses:\n");
            for (address, prefix) in self.v4().chain(self.v6()) {
                let _ = writeln!(out, "        - \"{address}/{prefix}\"");
            }
        }
        let gateways: Vec<&Gateway> = [&self.ipv4_gateway, &self.ipv6_gateway]
            .into_iter()
            .flatten()
            .collect();
        if !gateways.is_empty() {
            out.push_str("      routes:\n");
            for gw in gateways {
                let _ = writeln!(
                    out,
                    "        - to: default\n          via: \"{}\"",
                    gw.address
                );
                if self.reach(gw) == Reach::OnLinkRoute {
                    out.push_str("          on-link: true\n");
                }
            }
        }
        if !self.dns.is_empty() {
            let servers: Vec<String> = self.dns.iter().map(|d| format!("\"{d}\"")).collect();
            let _ = writeln!(
                out,
                "      nameservers:\n        addresses: [{}]",
                servers.join(", ")
            );
        }
        out
    }

    /// A NetworkManager keyfile (`/etc/NetworkManager/system-connections/NAME.nmconnection`,
    /// mode 600) bound to the NIC by its MAC, whatever the interface is called. A gateway
    /// outside every subnet becomes a default route with `onlink=true`.
    pub fn networkmanager(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by ferry for the NIC with MAC {mac}.\n[connection]\nid=ferry-{ifname}\ntype=ethernet\nautoconnect=true\n\n[ethernet]\nmac-address={mac}",
            mac = self.mac.to_uppercase(),
            ifname = self.interface(),
        );
        for (family, addrs, gw, default_net) in [
            (
                "ipv4",
                self.v4().collect::<Vec<_>>(),
                &self.ipv4_gateway,
                "0.0.0.0/0",
            ),
            (
                "ipv6",
                self.v6().collect::<Vec<_>>(),
                &self.ipv6_gateway,
                "::/0",
            ),
        ] {
            let method = match (family, addrs.is_empty(), self.dhcp) {
                ("ipv4", _, true) => "auto",
                ("ipv4", true, false) => "disabled",
                ("ipv6", true, _) => "auto", // router advertisements
                _ => "manual",
            };
            let _ = writeln!(out, "\n[{family}]\nmethod={method}");
            for (i, (address, prefix)) in addrs.iter().enumerate() {
                let _ = writeln!(out, "address{}={address}/{prefix}", i + 1);
            }
            if let Some(gw) = gw {
                match self.reach(gw) {
                    Reach::Subnet => {
                        let _ = writeln!(out, "gateway={}", gw.address);
                    }
                    Reach::OnLinkRoute => {
                        let _ = writeln!(
                            out,
                            "route1={default_net},{}\nroute1_options=onlink=true",
                            gw.address
                        );
                    }
                }
            }
            let servers: Vec<String> = self
                .dns
                .iter()
                .filter(|d| d.is_ipv4() == (family == "ipv4"))
                .map(|d| format!("{d};"))
                .collect();
            if !servers.is_empty() {
                let _ = writeln!(out, "dns={}", servers.concat());
            }
        }
        out
    }
}

fn gateway_lines(out: &mut String, ifname: &str, gw: &Gateway, reach: Reach, family: &str) {
    match reach {
        Reach::Subnet => {
            let _ = writeln!(out, "    gateway {}", gw.address);
        }
        Reach::OnLinkRoute => onlink_route_lines(out, ifname, gw.address, family),
    }
}

/// `ifup` would fail to add a default route through a gateway it cannot reach: add the host
/// route to the gateway on the interface, then the default route through it.
fn onlink_route_lines(out: &mut String, ifname: &str, gw: IpAddr, family: &str) {
    let _ = writeln!(
        out,
        "    post-up ip {family}route add {gw} dev {ifname}\n    \
         post-up ip {family}route add default via {gw} dev {ifname}\n    \
         pre-down ip {family}route del default via {gw} dev {ifname}\n    \
         pre-down ip {family}route del {gw} dev {ifname}"
    );
}

/// Whether `a` and `b` share the first `prefix` bits (false across families).
fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    let bits = |x: IpAddr| -> (u128, u32) {
        match x {
            IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    };
    let ((a, la), (b, lb)) = (bits(a), bits(b));
    if la != lb {
        return false;
    }
    let prefix = u32::from(prefix).min(la);
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - prefix);
    a & mask == b & mask
}

/// FreeBSD's name for the host's `nic`: FreeBSD's driver for the hardware the Linux driver
/// runs ([`freebsd_driver`]), and as unit the NIC's rank among the host's NICs of that driver
/// in PCI order (FreeBSD numbers a driver's devices from 0 as the bus attaches them). `None`
/// for hardware the table does not know: the recipe then says so.
pub fn freebsd_name(net: &crate::host::Network, nic: &crate::host::net::Nic) -> Option<String> {
    let driver = freebsd_driver(nic.driver.as_deref()?)?;
    let unit = net
        .nics
        .iter()
        .filter(|n| n.driver == nic.driver && n.pci_path < nic.pci_path)
        .count();
    Some(format!("{driver}{unit}"))
}

/// FreeBSD's driver for the NICs a Linux driver runs (the common server NICs).
pub fn freebsd_driver(linux: &str) -> Option<&'static str> {
    Some(match linux {
        // Intel: 8254x/8257x/I217-I219 desktop and older server parts; I210/I350/82575/82576;
        // I225/I226; 82599/X520/X540/X550; X710/XL710; E810.
        "e1000" | "e1000e" => "em",
        "igb" => "igb",
        "igc" => "igc",
        "ixgbe" => "ix",
        "i40e" => "ixl",
        "ice" => "ice",
        "virtio_net" => "vtnet",
        "vmxnet3" => "vmx",
        "r8169" => "re",
        "tg3" => "bge",
        "bnxt_en" => "bnxt",
        "mlx4_core" | "mlx4_en" => "mlxen",
        "mlx5_core" => "mce",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
