#!/usr/bin/env python3
"""Writes the recorded host trees under tests/fixtures/hosts/ (committed; rerun to regenerate).

Each tree mimics what ferry reads on a real machine: /sys (block devices, NICs, firmware),
/proc (cpuinfo, meminfo, mounts, swaps), /etc (hostname, resolv.conf), /dev/disk/by-id links
and ip/{addr,route,route6}.json as `ip -j addr`, `ip -j route`, `ip -j -6 route` print them.
"""
import json
import os
import shutil
import sys

HOSTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "hosts")


class Tree:
    def __init__(self, name):
        self.root = os.path.join(HOSTS, name)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)

    def write(self, path, text):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(full, mode) as f:
            f.write(text)

    def link(self, path, target):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)

    def mkdir(self, path):
        os.makedirs(os.path.join(self.root, path.lstrip("/")), exist_ok=True)

    def base(self, hostname, cpus=8, model="Intel(R) Xeon(R) E-2276G CPU @ 3.80GHz", flags="fpu vme sse2 vmx",
             mem_kib=(32 * 1024 * 1024, 30 * 1024 * 1024, 200 * 1024), uefi=False, dns=("185.12.64.1", "185.12.64.2")):
        self.write("/proc/sys/kernel/hostname", hostname + "\n")
        self.write("/proc/cpuinfo", "".join(
            f"processor\t: {i}\nmodel name\t: {model}\nflags\t\t: {flags}\n\n" for i in range(cpus)))
        total, avail, shmem = mem_kib
        self.write("/proc/meminfo", f"MemTotal:       {total} kB\nMemFree:        {avail} kB\n"
                                    f"MemAvailable:   {avail} kB\nShmem:          {shmem} kB\n")
        self.write("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        self.write("/proc/self/mounts", "rescue / tmpfs rw,relatime 0 0\nproc /proc proc rw 0 0\n")
        self.write("/etc/resolv.conf", "".join(f"nameserver {d}\n" for d in dns))
        self.mkdir("/dev")
        if uefi:
            self.write("/sys/firmware/efi/fw_platform_size", "64\n")

    def disk(self, name, sectors, model=None, serial=None, vendor=None, rotational=0, parts=(), by_id=(),
             devpath=None, serial_file="device/serial", vpd=None):
        base = f"/sys/block/{name}"
        if devpath:
            self.mkdir(f"/sys/{devpath}/{name}")
            self.link(base, os.path.relpath(f"/sys/{devpath}/{name}", "/sys/block"))
        else:
            self.mkdir(base)
        self.write(f"{base}/size", f"{sectors}\n")
        self.write(f"{base}/queue/rotational", f"{rotational}\n")
        self.write(f"{base}/queue/logical_block_size", "512\n")
        self.mkdir(f"{base}/holders")
        if model:
            self.write(f"{base}/device/model", model + "\n")
        if serial and serial_file:
            self.write(f"{base}/{serial_file}", serial + "\n")
        if vendor:
            self.write(f"{base}/device/vendor", vendor + "\n")
        if vpd:
            self.write(f"{base}/device/vpd_pg80", bytes([0, 0x80, 0, len(vpd)]) + vpd.encode())
        for i, (pname, psectors, holders) in enumerate(parts, 1):
            self.write(f"{base}/{pname}/partition", f"{i}\n")
            self.write(f"{base}/{pname}/size", f"{psectors}\n")
            self.mkdir(f"{base}/{pname}/holders")
            for h in holders:
                self.link(f"{base}/{pname}/holders/{h}", f"../../../{h}")
        for i in by_id:
            self.link(f"/dev/disk/by-id/{i}", f"../../{name}")

    def nic(self, name, mac, pci, driver, virtio=None, acpi_index=None, operstate="up", speed=1000):
        pci_dir = f"/sys/devices/pci0000:00/{pci}"
        dev_dir = f"{pci_dir}/{virtio}" if virtio else pci_dir
        net_dir = f"{dev_dir}/net/{name}"
        self.write(f"{net_dir}/address", mac + "\n")
        self.write(f"{net_dir}/operstate", operstate + "\n")
        self.write(f"{net_dir}/carrier", "1\n")
        self.write(f"{net_dir}/speed", f"{speed}\n")
        self.write(f"{net_dir}/dev_port", "0\n")
        self.link(f"{net_dir}/device", "../..")
        self.mkdir(f"/sys/bus/pci/drivers/{driver}")
        self.link(f"{dev_dir}/driver", os.path.relpath(f"/sys/bus/pci/drivers/{driver}", dev_dir))
        if acpi_index is not None:
            self.write(f"{pci_dir}/acpi_index", f"{acpi_index}\n")
        self.link(f"/sys/class/net/{name}", os.path.relpath(net_dir, "/sys/class/net"))

    def ip(self, addr, route, route6):
        for name, data in (("addr", addr), ("route", route), ("route6", route6)):
            self.write(f"/ip/{name}.json", json.dumps(data, indent=1) + "\n")


def link_json(index, name, mac, addrs, altnames=()):
    entry = {"ifindex": index, "ifname": name, "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500,
             "operstate": "UP", "link_type": "ether", "address": mac, "addr_info": []}
    if altnames:
        entry["altnames"] = list(altnames)
    for family, local, prefix, scope, *dynamic in addrs:
        a = {"family": family, "local": local, "prefixlen": prefix, "scope": scope}
        if dynamic:
            a["dynamic"] = True
        entry["addr_info"].append(a)
    return entry


LO = {"ifindex": 1, "ifname": "lo", "operstate": "UNKNOWN", "link_type": "loopback", "address": "00:00:00:00:00:00",
      "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]}


def nvme_server():
    t = Tree("nvme-server")
    t.base("rescue-nvme")
    for n, serial, model in (("nvme0n1", "S4EWNX0R123456", "SAMSUNG MZVL2512HCJQ-00B00"),
                             ("nvme1n1", "S4EWNX0R654321", "SAMSUNG MZVL2512HCJQ-00B00")):
        ctrl = n[:5]
        t.disk(n, 1000215216, model=model, serial=serial,
               devpath=f"devices/pci0000:00/0000:0{n[4]}:00.0/nvme/{ctrl}",
               parts=((f"{n}p1", 1048576, ()), (f"{n}p2", 999164591, ())) if n == "nvme0n1" else (),
               by_id=(f"nvme-{model.replace(' ', '_')}_{serial}", f"nvme-eui.0025388b{n[4]}1b2c3d4"))
    t.nic("eth0", "a8:a1:59:12:34:56", "0000:00:1f.6", "e1000e", acpi_index=1)
    t.ip([LO, link_json(2, "eth0", "a8:a1:59:12:34:56",
                        [("inet", "198.51.100.20", 26, "global"), ("inet6", "2001:db8:1::2", 64, "global"),
                         ("inet6", "fe80::aaa1:59ff:fe12:3456", 64, "link")], altnames=("enp0s31f6",))],
         [{"dst": "default", "gateway": "198.51.100.1", "dev": "eth0", "flags": []},
          {"dst": "198.51.100.0/26", "dev": "eth0", "protocol": "kernel", "scope": "link",
           "prefsrc": "198.51.100.20", "flags": []}],
         [{"dst": "2001:db8:1::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": []},
          {"dst": "default", "gateway": "fe80::1", "dev": "eth0", "metric": 1024, "flags": []}])


def sata_md_server():
    t = Tree("sata-md-server")
    t.base("rescue-sata", cpus=4, mem_kib=(16 * 1024 * 1024, 15 * 1024 * 1024, 100 * 1024))
    for n, serial in (("sda", "WD-WCC4N1234567"), ("sdb", "WD-WCC4N7654321")):
        t.disk(n, 3907029168, model="WDC WD20EFRX-68E", vendor="ATA", rotational=1, vpd=serial, serial_file=None,
               devpath=f"devices/pci0000:00/0000:00:17.0/ata{1 if n == 'sda' else 2}/host0/target0:0:0/0:0:0:0/block",
               parts=((f"{n}1", 3907027087, ("md0",)),),
               by_id=(f"ata-WDC_WD20EFRX-68E_{serial}", f"wwn-0x50014ee2{n}"))
    t.write("/sys/block/md0/size", "3906762752\n")
    t.write("/sys/block/md0/md/level", "raid1\n")
    t.write("/sys/block/md0/md/array_state", "clean\n")
    t.link("/sys/block/md0/slaves/sda1", "../../sda/sda1")
    t.link("/sys/block/md0/slaves/sdb1", "../../sdb/sdb1")
    t.write("/proc/mdstat", "md0 : active raid1 sdb1[1] sda1[0]\n")
    t.nic("eno1", "0c:c4:7a:aa:bb:cc", "0000:00:19.0", "e1000e", acpi_index=1)
    t.write("/var/lib/dhcp/dhclient.eno1.leases", "lease {\n  interface \"eno1\";\n}\n")
    t.ip([LO, link_json(2, "eno1", "0c:c4:7a:aa:bb:cc", [("inet", "192.0.2.50", 24, "global", True)])],
         [{"dst": "default", "gateway": "192.0.2.1", "dev": "eno1", "protocol": "dhcp", "metric": 100, "flags": []},
          {"dst": "192.0.2.0/24", "dev": "eno1", "protocol": "kernel", "scope": "link", "flags": []}],
         [])


def virtio_vm():
    t = Tree("virtio-vm")
    t.base("rescue-vm", cpus=2, model="QEMU Virtual CPU version 2.5+", flags="fpu sse2 hypervisor",
           mem_kib=(2 * 1024 * 1024, 1600 * 1024, 400 * 1024), dns=("127.0.0.53",))
    t.write("/run/systemd/resolve/resolv.conf", "nameserver 10.0.0.2\nnameserver 10.0.0.3\n")
    t.disk("vda", 41943040, serial="vm-disk-0001", serial_file="serial",
           devpath="devices/pci0000:00/0000:00:04.0/virtio1/block",
           parts=(("vda1", 41940992, ()),), by_id=("virtio-vm-disk-0001",))
    t.nic("eth0", "52:54:00:ab:cd:ef", "0000:00:03.0", "virtio-pci", virtio="virtio0")
    t.mkdir("/sys/bus/pci/slots/3")
    t.write("/sys/bus/pci/slots/3/address", "0000:00:03\n")
    t.write("/run/systemd/netif/leases/2", "ADDRESS=10.0.0.15\n")
    t.ip([LO, link_json(2, "eth0", "52:54:00:ab:cd:ef", [("inet", "10.0.0.15", 24, "global")])],
         [{"dst": "default", "gateway": "10.0.0.1", "dev": "eth0", "flags": []}], [])


def hetzner_routed():
    t = Tree("routed-32")
    t.base("rescue-routed")
    t.disk("sda", 468862128, model="INTEL SSDSC2KB48", vendor="ATA", vpd="BTYF1234567890ABCD", serial_file=None,
           devpath="devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block",
           by_id=("ata-INTEL_SSDSC2KB48_BTYF1234567890ABCD",))
    t.nic("eth0", "90:1b:0e:11:22:33", "0000:03:00.0", "igb")
    t.write("/sys/devices/pci0000:00/0000:03:00.0/config", bytes(14) + bytes([0x80]) + bytes(49))
    t.ip([LO, link_json(2, "eth0", "90:1b:0e:11:22:33",
                        [("inet", "203.0.113.10", 32, "global"), ("inet6", "2a01:4f8:c0c:1234::2", 64, "global"),
                         ("inet6", "fe80::921b:eff:fe11:2233", 64, "link")])],
         [{"dst": "default", "gateway": "172.31.1.1", "dev": "eth0", "protocol": "static", "flags": ["onlink"]},
          {"dst": "172.31.1.1", "dev": "eth0", "protocol": "static", "scope": "link", "flags": []}],
         [{"dst": "2a01:4f8:c0c:1234::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": []},
          {"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "flags": []},
          {"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "static", "metric": 1024,
           "flags": []}])


def uefi_host():
    t = Tree("uefi-host")
    t.base("rescue-uefi", uefi=True)
    t.disk("sda", 937703088, model="MZ7LH480HAHQ0D3", vendor="ATA", vpd="S45PNA0M123456", serial_file=None,
           devpath="devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block",
           parts=(("sda1", 1048576, ()), ("sda2", 936652800, ())),
           by_id=("ata-MZ7LH480HAHQ0D3_S45PNA0M123456",))
    t.nic("eno1np0", "3c:ec:ef:01:02:03", "0000:65:00.0", "bnxt_en", acpi_index=1)
    t.write("/proc/self/mounts", "rescue / tmpfs rw 0 0\n/dev/sda2 /mnt ext4 rw 0 0\n")
    t.ip([LO, link_json(2, "eno1np0", "3c:ec:ef:01:02:03", [("inet", "198.51.100.77", 24, "global")])],
         [{"dst": "default", "gateway": "198.51.100.1", "dev": "eno1np0", "flags": []}], [])


if __name__ == "__main__":
    for make in (nvme_server, sata_md_server, virtio_vm, hetzner_routed, uefi_host):
        make()
    sys.exit(0)
