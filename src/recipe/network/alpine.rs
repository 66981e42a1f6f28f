//! Alpine Linux's renderings: ifupdown-ng's `/etc/network/interfaces` and busybox nameif's
//! `/etc/mactab`.
//!
//! Alpine has no udev `.link` files: its default device manager, mdev, leaves the kernel's
//! names (eth0, eth1, ... in probe order). The installed system therefore renames the NIC by
//! its MAC with busybox `nameif`, which reads `/etc/mactab`, from an OpenRC service that runs
//! before networking (the alpine recipe's `ferry-nameif`), and ifupdown-ng then configures
//! the name it gave.

use std::fmt::Write as _;

use super::{Network, Reach};

impl Network {
    /// The name the NIC gets in the installed Alpine system: [`Network::interface`], except
    /// that a kernel-style `ethN` becomes `lanN`. nameif cannot rename a NIC to a name another
    /// NIC already has, and mdev may well have given `ethN` to another NIC of the server.
    pub fn alpine_interface(&self) -> String {
        let name = self.interface();
        match name.strip_prefix("eth") {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                format!("lan{n}")
            }
            _ => name.to_string(),
        }
    }

    /// `/etc/mactab` for busybox nameif: the NIC with this MAC is [`Network::alpine_interface`].
    pub fn mactab(&self) -> String {
        format!(
            "# Written by ferry: busybox nameif (service ferry-nameif) names the NIC with this MAC.\n{} {}\n",
            self.alpine_interface(),
            self.mac.to_lowercase()
        )
    }

    /// Alpine's `/etc/network/interfaces`, in ifupdown-ng's own syntax (interfaces(5) of
    /// ifupdown-ng): one stanza with every address of both families, `use dhcp` for DHCP,
    /// `gateway` for a gateway in a subnet (or link-local, as `fe80::1`); a gateway outside
    /// every subnet gets a host route on the interface, then the default route through it
    /// (ifupdown-ng's `gateway` would ask the kernel for a route it cannot reach).
    pub fn ifupdown_ng(&self) -> String {
        let ifname = self.alpine_interface();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by ferry for the NIC with MAC {}: /etc/mactab names it {ifname}.\n\
             auto lo\niface lo inet loopback\n\nauto {ifname}\niface {ifname}",
            self.mac.to_lowercase()
        );
        if self.dhcp {
            out.push_str("\tuse dhcp\n");
        }
        for (address, prefix) in self.v4().chain(self.v6()) {
            let _ = writeln!(out, "\taddress {address}/{prefix}");
        }
        for (gw, family) in [(&self.ipv4_gateway, "-4"), (&self.ipv6_gateway, "-6")] {
            let Some(gw) = gw else { continue };
            match self.reach(gw) {
                Reach::Subnet => {
                    let _ = writeln!(out, "\tgateway {}", gw.address);
                }
                Reach::OnLinkRoute => {
                    let gw = gw.address;
                    let _ = writeln!(
                        out,
                        "\tpost-up ip {family} route add {gw} dev {ifname}\n\
                         \tpost-up ip {family} route add default via {gw} dev {ifname}\n\
                         \tpre-down ip {family} route del default via {gw} dev {ifname}\n\
                         \tpre-down ip {family} route del {gw} dev {ifname}"
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Gateway;
    use super::*;

    fn routed_32() -> Network {
        Network {
            name: "eth0".into(),
            predicted_name: Some("enp7s0".into()),
            mac: "52:54:00:AB:CD:EF".into(),
            addresses: vec![
                ("203.0.113.10".parse().unwrap(), 32),
                ("2001:db8:1::2".parse().unwrap(), 64),
            ],
            ipv4_gateway: Some(Gateway {
                address: "172.31.1.1".parse().unwrap(),
                onlink: true,
            }),
            ipv6_gateway: Some(Gateway {
                address: "fe80::1".parse().unwrap(),
                onlink: false,
            }),
            dns: vec!["185.12.64.1".parse().unwrap()],
            dhcp: false,
            freebsd_name: None,
        }
    }

    #[test]
    fn routed_32_routes_the_off_link_gateway_and_uses_fe80_1() {
        let r = routed_32().render().unwrap();
        assert_eq!(
            r.ifupdown_ng,
            "# Written by ferry for the NIC with MAC 52:54:00:ab:cd:ef: /etc/mactab names it enp7s0.\n\
             auto lo\niface lo inet loopback\n\nauto enp7s0\niface enp7s0\n\
             \taddress 203.0.113.10/32\n\taddress 2001:db8:1::2/64\n\
             \tpost-up ip -4 route add 172.31.1.1 dev enp7s0\n\
             \tpost-up ip -4 route add default via 172.31.1.1 dev enp7s0\n\
             \tpre-down ip -4 route del default via 172.31.1.1 dev enp7s0\n\
             \tpre-down ip -4 route del 172.31.1.1 dev enp7s0\n\
             \tgateway fe80::1\n"
        );
        assert_eq!(
            r.mactab,
            "# Written by ferry: busybox nameif (service ferry-nameif) names the NIC with this MAC.\n\
             enp7s0 52:54:00:ab:cd:ef\n"
        );
        assert_eq!(r.alpine_interface, "enp7s0");
    }

    #[test]
    fn dhcp_and_a_gateway_in_the_subnet() {
        let n = Network {
            dhcp: true,
            addresses: vec![("2001:db8::5".parse().unwrap(), 64)],
            ipv4_gateway: None,
            ipv6_gateway: Some(Gateway {
                address: "2001:db8::1".parse().unwrap(),
                onlink: false,
            }),
            ..routed_32()
        };
        assert!(
            n.ifupdown_ng().ends_with(
                "iface enp7s0\n\tuse dhcp\n\taddress 2001:db8::5/64\n\tgateway 2001:db8::1\n"
            ),
            "{}",
            n.ifupdown_ng()
        );
    }

    #[test]
    fn kernel_style_names_are_moved_out_of_the_kernels_way() {
        let n = Network {
            predicted_name: None,
            name: "eth1".into(),
            ..routed_32()
        };
        assert_eq!(n.alpine_interface(), "lan1");
        assert!(n.mactab().ends_with("\nlan1 52:54:00:ab:cd:ef\n"));
        for name in ["eth", "ethx", "eno1", "enp7s0", "lan0"] {
            let n = Network {
                predicted_name: None,
                name: name.into(),
                ..routed_32()
            };
            assert_eq!(n.alpine_interface(), name);
        }
    }
}
