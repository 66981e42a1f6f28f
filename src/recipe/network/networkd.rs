//! systemd-networkd's `.network` file (Arch Linux, and any system that runs networkd).

use std::fmt::Write as _;

use super::{Network, Reach};

impl Network {
    /// A systemd-networkd `.network` file (`/etc/systemd/network/NAME.network`) bound to the NIC
    /// by its MAC, whatever the kernel calls it: its addresses, DHCP, name servers and default
    /// routes. A gateway outside every subnet gets `GatewayOnLink=yes` (networkd then adds the
    /// route without a route to the gateway first); a link-local IPv6 gateway (`fe80::1`) is
    /// reached on this link. IPv6 router advertisements stay on (networkd's default).
    pub fn networkd(&self) -> String {
        let mut out = String::new();
        let mac = self.mac.to_lowercase();
        let _ = writeln!(
            out,
            "# Written by ferry for the NIC with MAC {mac}.\n[Match]\nMACAddress={mac}\n\n[Network]"
        );
        if self.dhcp {
            out.push_str("DHCP=ipv4\n");
        }
        for (address, prefix) in self.v4().chain(self.v6()) {
            let _ = writeln!(out, "Address={address}/{prefix}");
        }
        for dns in &self.dns {
            let _ = writeln!(out, "DNS={dns}");
        }
        for gw in [&self.ipv4_gateway, &self.ipv6_gateway]
            .into_iter()
            .flatten()
        {
            let reach = self.reach(gw);
            // Under DHCP the lease brings the IPv4 gateway on the lease's subnet.
            if gw.address.is_ipv4() && self.dhcp && reach == Reach::Subnet {
                continue;
            }
            let _ = writeln!(out, "\n[Route]\nGateway={}", gw.address);
            if reach == Reach::OnLinkRoute {
                out.push_str("GatewayOnLink=yes\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Gateway;
    use super::*;

    // The same NIC and address helper as the other renderings' tests.
    use super::super::tests::{ip, nic as base};

    #[test]
    fn routed_32_with_off_link_gateway_and_fe80() {
        let n = Network {
            addresses: vec![(ip("203.0.113.10"), 32), (ip("2001:db8:1::2"), 64)],
            ipv4_gateway: Some(Gateway {
                address: ip("172.31.1.1"),
                onlink: true,
            }),
            ipv6_gateway: Some(Gateway {
                address: ip("fe80::1"),
                onlink: false,
            }),
            dns: vec![ip("185.12.64.1"), ip("2a01:4ff:ff00::add:1")],
            ..base()
        };
        assert_eq!(
            n.render().unwrap().networkd,
            "# Written by ferry for the NIC with MAC 90:1b:0e:aa:bb:cc.\n\
             [Match]\nMACAddress=90:1b:0e:aa:bb:cc\n\n\
             [Network]\nAddress=203.0.113.10/32\nAddress=2001:db8:1::2/64\n\
             DNS=185.12.64.1\nDNS=2a01:4ff:ff00::add:1\n\n\
             [Route]\nGateway=172.31.1.1\nGatewayOnLink=yes\n\n\
             [Route]\nGateway=fe80::1\n"
        );
    }

    #[test]
    fn dhcp_leaves_the_gateway_to_the_lease_unless_it_is_off_link() {
        let dhcp = Network {
            dhcp: true,
            ..base()
        };
        assert!(dhcp.networkd().ends_with("[Network]\nDHCP=ipv4\n"));
        let onlink = Network {
            dhcp: true,
            ipv4_gateway: Some(Gateway {
                address: ip("192.0.2.1"),
                onlink: true,
            }),
            ..base()
        };
        assert!(
            onlink
                .networkd()
                .ends_with("DHCP=ipv4\n\n[Route]\nGateway=192.0.2.1\nGatewayOnLink=yes\n")
        );
        let subnet = Network {
            addresses: vec![(ip("198.51.100.7"), 24)],
            ipv4_gateway: Some(Gateway {
                address: ip("198.51.100.1"),
                onlink: false,
            }),
            ..base()
        };
        assert!(
            subnet
                .networkd()
                .ends_with("Address=198.51.100.7/24\n\n[Route]\nGateway=198.51.100.1\n"),
            "{}",
            subnet.networkd()
        );
    }

    /// Every host fixture with a primary NIC: the `.network` file carries its MAC, each static
    /// address, each gateway (on-link where the host's route says so) and its name servers.
    #[test]
    fn rendered_for_every_host_fixture() {
        let hosts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
        let mut rendered = 0;
        for dir in std::fs::read_dir(&hosts).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let facts = crate::host::Facts::read_at(&crate::host::Root::at(&dir));
            let Some(network) = Network::from_host(&facts.network) else {
                continue;
            };
            let text = network.render().unwrap().networkd;
            let host = dir.display();
            assert!(
                text.contains(&format!(
                    "[Match]\nMACAddress={}\n",
                    network.mac.to_lowercase()
                )),
                "{host}:\n{text}"
            );
            assert_eq!(
                text.contains("DHCP=ipv4\n"),
                network.dhcp,
                "{host}:\n{text}"
            );
            for (address, prefix) in &network.addresses {
                assert!(
                    text.contains(&format!("Address={address}/{prefix}\n")),
                    "{host}:\n{text}"
                );
            }
            for dns in &network.dns {
                assert!(text.contains(&format!("DNS={dns}\n")), "{host}:\n{text}");
            }
            for gw in [&network.ipv4_gateway, &network.ipv6_gateway]
                .into_iter()
                .flatten()
            {
                let route = format!("[Route]\nGateway={}\n", gw.address);
                assert!(text.contains(&route), "{host}:\n{text}");
                if gw.onlink {
                    assert!(
                        text.contains(&format!("{route}GatewayOnLink=yes\n")),
                        "{host}:\n{text}"
                    );
                }
            }
            rendered += 1;
        }
        assert!(
            rendered >= 3,
            "only {rendered} host fixtures have a primary NIC"
        );
    }
}
