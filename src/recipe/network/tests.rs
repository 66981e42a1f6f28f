use super::*;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn nic() -> Network {
    Network {
        name: "eth0".into(),
        predicted_name: Some("enp0s31f6".into()),
        mac: "90:1B:0E:AA:BB:CC".into(),
        addresses: Vec::new(),
        ipv4_gateway: None,
        ipv6_gateway: None,
        dns: Vec::new(),
        dhcp: false,
        freebsd_name: Some("em0".into()),
    }
}

fn gw(s: &str, onlink: bool) -> Option<Gateway> {
    Some(Gateway {
        address: ip(s),
        onlink,
    })
}

const HEADER: &str = "# Written by ferry for the NIC with MAC 90:1B:0E:AA:BB:CC.\n\
    source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n\
    auto enp0s31f6\nallow-hotplug enp0s31f6\n";

#[test]
fn dhcp() {
    let n = Network {
        dhcp: true,
        ..nic()
    };
    let r = n.render().unwrap();
    assert_eq!(r.ifupdown, format!("{HEADER}iface enp0s31f6 inet dhcp\n"));
    assert_eq!(r.resolv_conf, "");
    assert_eq!(
        r.nixos,
        "# The NIC with MAC 90:1b:0e:aa:bb:cc is enp0s31f6, whatever the kernel would call it.\n\
         systemd.network.links.\"10-enp0s31f6\" = {\n  matchConfig.MACAddress = \"90:1b:0e:aa:bb:cc\";\n  linkConfig.Name = \"enp0s31f6\";\n};\n\
         networking.useDHCP = false;\n\
         networking.interfaces.enp0s31f6 = {\n  useDHCP = true;\n};\n"
    );
}

#[test]
fn slash_32_with_off_link_gateway() {
    let n = Network {
        addresses: vec![(ip("203.0.113.10"), 32)],
        ipv4_gateway: gw("172.31.1.1", true),
        dns: vec![ip("185.12.64.1"), ip("2a01:4ff:ff00::add:1")],
        ..nic()
    };
    let r = n.render().unwrap();
    assert_eq!(
        r.ifupdown,
        format!(
            "{HEADER}iface enp0s31f6 inet static\n    address 203.0.113.10/32\n\
             \x20   post-up ip route add 172.31.1.1 dev enp0s31f6\n\
             \x20   post-up ip route add default via 172.31.1.1 dev enp0s31f6\n\
             \x20   pre-down ip route del default via 172.31.1.1 dev enp0s31f6\n\
             \x20   pre-down ip route del 172.31.1.1 dev enp0s31f6\n\
             \x20   dns-nameservers 185.12.64.1\n"
        )
    );
    assert_eq!(
        r.resolv_conf,
        "nameserver 185.12.64.1\nnameserver 2a01:4ff:ff00::add:1\n"
    );
    assert!(
        r.nixos.contains(
            "networking.interfaces.enp0s31f6 = {\n  ipv4.addresses = [\n    { address = \"203.0.113.10\"; prefixLength = 32; }\n  ];\n\
             \x20 # the gateway is outside every subnet: a host route to it first\n\
             \x20 ipv4.routes = [ { address = \"172.31.1.1\"; prefixLength = 32; } ];\n};\n\
             networking.defaultGateway = { address = \"172.31.1.1\"; interface = \"enp0s31f6\"; };\n\
             networking.nameservers = [ \"185.12.64.1\" \"2a01:4ff:ff00::add:1\" ];\n"
        ),
        "{}",
        r.nixos
    );
}

#[test]
fn off_link_is_detected_without_the_flag() {
    let n = Network {
        addresses: vec![(ip("203.0.113.10"), 32)],
        ipv4_gateway: gw("172.31.1.1", false),
        ..nic()
    };
    assert!(
        n.ifupdown()
            .contains("post-up ip route add 172.31.1.1 dev enp0s31f6\n")
    );
    assert!(!n.ifupdown().contains("gateway "));
}

#[test]
fn several_addresses_and_ipv6_with_link_local_gateway() {
    let n = Network {
        addresses: vec![
            (ip("198.51.100.7"), 24),
            (ip("198.51.100.8"), 24),
            (ip("2001:db8:1::2"), 64),
            (ip("2001:db8:1::3"), 64),
        ],
        ipv4_gateway: gw("198.51.100.1", false),
        ipv6_gateway: gw("fe80::1", false),
        dns: vec![ip("198.51.100.53")],
        ..nic()
    };
    let r = n.render().unwrap();
    assert_eq!(
        r.ifupdown,
        format!(
            "{HEADER}iface enp0s31f6 inet static\n    address 198.51.100.7/24\n    gateway 198.51.100.1\n\
             \x20   dns-nameservers 198.51.100.53\n\
             iface enp0s31f6 inet static\n    address 198.51.100.8/24\n\
             iface enp0s31f6 inet6 static\n    address 2001:db8:1::2/64\n    gateway fe80::1\n\
             iface enp0s31f6 inet6 static\n    address 2001:db8:1::3/64\n"
        )
    );
    assert!(r.nixos.contains(
        "  ipv4.addresses = [\n    { address = \"198.51.100.7\"; prefixLength = 24; }\n    { address = \"198.51.100.8\"; prefixLength = 24; }\n  ];\n\
         \x20 ipv6.addresses = [\n    { address = \"2001:db8:1::2\"; prefixLength = 64; }\n    { address = \"2001:db8:1::3\"; prefixLength = 64; }\n  ];\n};\n\
         networking.defaultGateway = { address = \"198.51.100.1\"; interface = \"enp0s31f6\"; };\n\
         networking.defaultGateway6 = { address = \"fe80::1\"; interface = \"enp0s31f6\"; };\n"
    ), "{}", r.nixos);
    assert!(!r.nixos.contains("routes"), "{}", r.nixos);
}

#[test]
fn ipv6_only_with_a_global_gateway_outside_the_prefix() {
    let n = Network {
        addresses: vec![(ip("2001:db8:1::2"), 128)],
        ipv6_gateway: gw("2001:db8:ffff::1", false),
        ..nic()
    };
    let text = n.ifupdown();
    assert!(
        text.contains("post-up ip -6 route add 2001:db8:ffff::1 dev enp0s31f6\n    post-up ip -6 route add default via 2001:db8:ffff::1 dev enp0s31f6\n"),
        "{text}"
    );
    assert!(!text.contains("inet dhcp") && !text.contains("inet static"));
}

#[test]
fn nic_named_by_mac_without_a_predicted_name() {
    let n = Network {
        predicted_name: None,
        mac: "52:54:00:12:34:56".into(),
        dhcp: true,
        ..nic()
    };
    let r = n.render().unwrap();
    assert_eq!(r.interface, "eth0");
    assert_eq!(
        r.systemd_link,
        "# Written by ferry: the NIC with this MAC is eth0.\n[Match]\nMACAddress=52:54:00:12:34:56\n\n[Link]\nName=eth0\n"
    );
    assert!(r.ifupdown.contains("iface eth0 inet dhcp\n"));
    assert!(
        r.nixos
            .contains("matchConfig.MACAddress = \"52:54:00:12:34:56\";")
    );
}

#[test]
fn dhcp_plus_static_gateway_on_link() {
    let n = Network {
        dhcp: true,
        ipv4_gateway: gw("10.9.9.1", true),
        ..nic()
    };
    let text = n.ifupdown();
    assert!(
        text.ends_with("iface enp0s31f6 inet dhcp\n# default route through 10.9.9.1 (on-link)\n    post-up ip route add 10.9.9.1 dev enp0s31f6\n    post-up ip route add default via 10.9.9.1 dev enp0s31f6\n    pre-down ip route del default via 10.9.9.1 dev enp0s31f6\n    pre-down ip route del 10.9.9.1 dev enp0s31f6\n"),
        "{text}"
    );
}

#[test]
fn invalid_descriptions_are_refused() {
    let bad = |n: Network| n.render().unwrap_err().to_string();
    assert_eq!(
        bad(Network {
            mac: "90:1b:0e".into(),
            dhcp: true,
            ..nic()
        }),
        "network: `90:1b:0e` is not a MAC address (expected aa:bb:cc:dd:ee:ff)"
    );
    assert_eq!(
        bad(nic()),
        "network: no address, no DHCP: the installed system would be unreachable"
    );
    assert_eq!(
        bad(Network {
            addresses: vec![(ip("10.0.0.1"), 33)],
            ..nic()
        }),
        "network: prefix /33 is too long for 10.0.0.1"
    );
    assert_eq!(
        bad(Network {
            addresses: vec![(ip("2001:db8::1"), 64)],
            ipv4_gateway: gw("10.0.0.1", false),
            ..nic()
        }),
        "network: no IPv4 address and no DHCP, but an IPv4 gateway 10.0.0.1: add the address or set dhcp = true"
    );
    assert_eq!(
        bad(Network {
            dhcp: true,
            ipv6_gateway: gw("10.0.0.1", false),
            ..nic()
        }),
        "network: the IPv6 gateway 10.0.0.1 is not an IPv6 address"
    );
    assert_eq!(
        bad(Network {
            name: "eth0; rm".into(),
            dhcp: true,
            ..nic()
        }),
        "network: `eth0; rm` is not a usable interface name"
    );
}

#[test]
fn subnets() {
    assert!(same_subnet(ip("10.0.0.5"), ip("10.0.0.1"), 24));
    assert!(!same_subnet(ip("10.0.1.5"), ip("10.0.0.1"), 24));
    assert!(same_subnet(ip("10.0.1.5"), ip("10.0.0.1"), 0));
    assert!(!same_subnet(ip("10.0.0.5"), ip("10.0.0.1"), 32));
    assert!(same_subnet(ip("2001:db8::5"), ip("2001:db8::1"), 64));
    assert!(!same_subnet(ip("2001:db8::5"), ip("10.0.0.1"), 0));
}

#[test]
fn reads_from_toml() {
    let n: Network = toml::from_str(
        r#"
name = "eth0"
mac = "52:54:00:12:34:56"
addresses = [["203.0.113.10", 32], ["2001:db8::2", 64]]
ipv4_gateway = { address = "172.31.1.1", onlink = true }
ipv6_gateway = { address = "fe80::1" }
dns = ["185.12.64.1"]
"#,
    )
    .unwrap();
    assert_eq!(n.addresses[1], (ip("2001:db8::2"), 64));
    assert!(n.ipv4_gateway.unwrap().onlink);
    assert!(!n.dhcp);
}

#[test]
fn from_host_facts_of_a_routed_32_server() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/routed-32");
    let facts = crate::host::Facts::read_at(&crate::host::Root::at(&root));
    let network = Network::from_host(&facts.network).expect("the fixture host has a primary NIC");
    assert_eq!(network.name, "eth0");
    assert!(!network.dhcp);
    assert_eq!(
        network.addresses,
        vec![
            ("203.0.113.10".parse().unwrap(), 32),
            ("2a01:4f8:c0c:1234::2".parse().unwrap(), 64)
        ],
        "global static addresses only, no link-local"
    );
    assert_eq!(
        network.ipv4_gateway,
        Some(Gateway {
            address: "172.31.1.1".parse().unwrap(),
            onlink: true
        })
    );
    assert_eq!(
        network.ipv6_gateway.as_ref().map(|g| g.address.to_string()),
        Some("fe80::1".into())
    );
    let rendered = network.render().unwrap();
    assert!(
        rendered
            .ifupdown
            .contains("post-up ip route add 172.31.1.1 dev"),
        "{}",
        rendered.ifupdown
    );
    assert!(
        rendered
            .ifupdown
            .contains("post-up ip route add default via 172.31.1.1 dev"),
        "{}",
        rendered.ifupdown
    );
    assert!(rendered.resolv_conf.contains("nameserver 185.12.64.1"));
    // Ubuntu and the RHEL family get the same facts: the MAC, the on-link route, fe80::1.
    let mac = network.mac.to_lowercase();
    for (os, text, lines) in [
        (
            "netplan",
            &rendered.netplan,
            [
                format!("macaddress: \"{mac}\""),
                "via: \"172.31.1.1\"\n          on-link: true".into(),
                "via: \"fe80::1\"".into(),
            ],
        ),
        (
            "NetworkManager",
            &rendered.networkmanager,
            [
                format!("mac-address={}", mac.to_uppercase()),
                "route1=0.0.0.0/0,172.31.1.1\nroute1_options=onlink=true".into(),
                "gateway=fe80::1".into(),
            ],
        ),
    ] {
        for line in lines {
            assert!(text.contains(&line), "{os}: {line:?} not in\n{text}");
        }
    }
}

/// A routed /32 with an off-link IPv4 gateway and IPv6 through fe80::1, as Hetzner gives them.
fn routed_32() -> Network {
    Network {
        addresses: vec![(ip("203.0.113.10"), 32), (ip("2001:db8:1::2"), 64)],
        ipv4_gateway: gw("172.31.1.1", true),
        ipv6_gateway: gw("fe80::1", false),
        dns: vec![ip("185.12.64.1"), ip("2a01:4ff:ff00::add:1")],
        ..nic()
    }
}

#[test]
fn netplan_matches_the_mac_and_routes_on_link() {
    assert_eq!(
        routed_32().render().unwrap().netplan,
        "# Written by ferry for the NIC with MAC 90:1b:0e:aa:bb:cc.\n\
         network:\n  version: 2\n  ethernets:\n    enp0s31f6:\n\
         \x20     match:\n        macaddress: \"90:1b:0e:aa:bb:cc\"\n\
         \x20     set-name: enp0s31f6\n      dhcp4: false\n\
         \x20     addresses:\n        - \"203.0.113.10/32\"\n        - \"2001:db8:1::2/64\"\n\
         \x20     routes:\n\
         \x20       - to: default\n          via: \"172.31.1.1\"\n          on-link: true\n\
         \x20       - to: default\n          via: \"fe80::1\"\n\
         \x20     nameservers:\n        addresses: [\"185.12.64.1\", \"2a01:4ff:ff00::add:1\"]\n"
    );
    let dhcp = Network {
        dhcp: true,
        ..nic()
    };
    let text = dhcp.netplan();
    assert!(text.ends_with("      dhcp4: true\n"), "{text}");
}

#[test]
fn networkmanager_keyfile_binds_the_mac() {
    assert_eq!(
        routed_32().render().unwrap().networkmanager,
        "# Written by ferry for the NIC with MAC 90:1B:0E:AA:BB:CC.\n\
         [connection]\nid=ferry-enp0s31f6\ntype=ethernet\nautoconnect=true\n\n\
         [ethernet]\nmac-address=90:1B:0E:AA:BB:CC\n\n\
         [ipv4]\nmethod=manual\naddress1=203.0.113.10/32\n\
         route1=0.0.0.0/0,172.31.1.1\nroute1_options=onlink=true\ndns=185.12.64.1;\n\n\
         [ipv6]\nmethod=manual\naddress1=2001:db8:1::2/64\ngateway=fe80::1\ndns=2a01:4ff:ff00::add:1;\n"
    );
    let subnet = Network {
        addresses: vec![(ip("198.51.100.7"), 24)],
        ipv4_gateway: gw("198.51.100.1", false),
        ..nic()
    };
    let text = subnet.networkmanager();
    assert!(
        text.contains("[ipv4]\nmethod=manual\naddress1=198.51.100.7/24\ngateway=198.51.100.1\n\n[ipv6]\nmethod=auto\n"),
        "{text}"
    );
    let dhcp = Network {
        dhcp: true,
        ..nic()
    };
    assert!(dhcp.networkmanager().contains("[ipv4]\nmethod=auto\n"));
}

/// netplan's own parser (`netplan generate`, Debian's netplan.io) accepts the rendering and
/// turns it into networkd files with the MAC match and the on-link route.
#[test]
fn netplan_generate_accepts_the_rendering() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/netplan");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, network) in [
        ("routed", routed_32()),
        (
            "dhcp",
            Network {
                dhcp: true,
                name: "eth1".into(),
                predicted_name: None,
                mac: "52:54:00:00:00:01".into(),
                ..nic()
            },
        ),
    ] {
        std::fs::write(dir.join(format!("50-{name}.yaml")), network.netplan()).unwrap();
    }
    let out = std::process::Command::new("netplan")
        .arg("generate")
        .arg("--root-dir")
        .arg(root.path())
        .output()
        .expect("netplan (Debian's netplan.io, scripts/install-deps.sh) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let networkd = root.path().join("run/systemd/network");
    let read = |f: &str| std::fs::read_to_string(networkd.join(f)).unwrap_or_default();
    let network = read("10-netplan-enp0s31f6.network");
    for line in [
        "Address=203.0.113.10/32",
        "Gateway=172.31.1.1\nGatewayOnLink=true",
        "Gateway=fe80::1",
        "DNS=185.12.64.1",
    ] {
        assert!(network.contains(line), "{line:?} not in\n{network}");
    }
    let link = read("10-netplan-enp0s31f6.link");
    assert!(
        link.contains("MACAddress=90:1b:0e:aa:bb:cc") && link.contains("Name=enp0s31f6"),
        "{link}"
    );
}

#[test]
fn freebsd_rc_conf_for_a_routed_32_server() {
    let n = Network {
        addresses: vec![(ip("203.0.113.10"), 32), (ip("2a01:4f8::2"), 64)],
        ipv4_gateway: gw("172.31.1.1", true),
        ipv6_gateway: gw("fe80::1", false),
        dns: vec![ip("185.12.64.1")],
        ..nic()
    };
    assert_eq!(
        n.render().unwrap().freebsd_rc_conf.unwrap(),
        "# The NIC with MAC 90:1B:0E:AA:BB:CC (FreeBSD names NICs by driver).\n\
         ifconfig_em0=\"inet 203.0.113.10/32\"\n\
         ifconfig_em0_ipv6=\"inet6 2a01:4f8::2/64\"\n\
         static_routes=\"ferrygw\"\nroute_ferrygw=\"-host 172.31.1.1 -iface em0\"\n\
         defaultrouter=\"172.31.1.1\"\n\
         ipv6_defaultrouter=\"fe80::1%em0\"\n"
    );
    let dhcp = Network {
        dhcp: true,
        ..nic()
    };
    assert!(
        dhcp.freebsd_rc_conf()
            .unwrap()
            .ends_with("ifconfig_em0=\"SYNCDHCP\"\n")
    );
    let unknown = Network {
        freebsd_name: None,
        ..dhcp
    };
    assert_eq!(unknown.freebsd_rc_conf(), None);
}

#[test]
fn freebsd_names_nics_by_driver_and_pci_order() {
    assert_eq!(freebsd_driver("e1000e"), Some("em"));
    assert_eq!(freebsd_driver("igb"), Some("igb"));
    assert_eq!(freebsd_driver("ixgbe"), Some("ix"));
    assert_eq!(freebsd_driver("virtio_net"), Some("vtnet"));
    assert_eq!(freebsd_driver("r8169"), Some("re"));
    assert_eq!(freebsd_driver("some_new_nic"), None);
    let nic = |name: &str, driver: &str, pci: &str| crate::host::net::Nic {
        name: name.into(),
        driver: Some(driver.into()),
        pci_path: Some(pci.into()),
        ..Default::default()
    };
    let net = crate::host::Network {
        nics: vec![
            nic("eth1", "igb", "0000:03:00.1"),
            nic("eth0", "igb", "0000:03:00.0"),
            nic("eth2", "e1000e", "0000:00:1f.6"),
        ],
        ..Default::default()
    };
    let names: Vec<_> = net.nics.iter().map(|n| freebsd_name(&net, n)).collect();
    assert_eq!(
        names,
        [Some("igb1".into()), Some("igb0".into()), Some("em0".into())]
    );
}
