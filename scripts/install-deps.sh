#!/usr/bin/env bash
# Installs the Debian packages ferry's tests and fixtures need (run as root on Debian 12).
# The same list is what a rescue system needs to run ferry with its system QEMU.
set -euo pipefail

packages=(
  qemu-system-x86 qemu-utils ovmf seabios     # the VMs
  qemu-system-arm qemu-efi-aarch64            # arm64 guests under TCG (tests/integration/arm64.rs)
  qemu-system-common qemu-system-data ipxe-qemu  # scripts/build-qemu-bundle.sh (Depends of qemu-system-x86)
  xorriso isolinux syslinux-common mtools     # fixture ISOs
  grub-pc-bin grub-efi-amd64-bin grub-common  # fixture boot loaders
  busybox-static linux-image-cloud-amd64      # the fixture OS
  e2fsprogs dosfstools fdisk cpio xz-utils    # fixture file systems; reading disk images in tests
  iproute2                                    # `ss`, to check what ferry listens on
  python3                                     # scripts/bench; the mirror script's offline tests (with dpkg-deb, cpio, readelf)
  tmux                                        # terminals for the operations tests
  cloud-init python3-jsonschema python3-yaml  # recipe tests: `cloud-init schema`, Subiquity's schema
  netplan.io                                  # recipe tests: `netplan generate` checks the netplan rendering
  python3-venv                                # recipe tests: pykickstart's ksvalidator (below)
  mksh                                        # OpenBSD install.sub's answer matching (recipe tests)
  libparted-dev pkg-config gcc python3-dev    # recipe tests: archinstall's pyparted is built from source (below)
  pciutils                                    # recipe tests: archinstall runs lspci when imported
  systemd                                     # recipe tests: systemd-networkd applies the arch recipe's .network file
)

# need_root WHAT: only root installs what is missing; anyone else is told how.
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: $1 missing; run as root: sudo $0" >&2
    return 1
  fi
}

# pip_venv DIR SPEC...: a virtual environment in DIR with SPEC... installed from PyPI.
pip_venv() {
  local dir=$1
  shift
  echo "install-deps: installing $* into $dir"
  python3 -m venv "$dir" && "$dir/bin/pip" install -q "$@"
}

# pykickstart is not packaged in Debian 12: its ksvalidator comes from PyPI into a venv,
# linked onto PATH. The tests need its RHEL9 and RHEL10 syntax versions (3.78 has both).
KICKSTART_VENV=/opt/ferry-validators
install_ksvalidator() {
  if command -v ksvalidator >/dev/null && grep -qx RHEL10 <<<"$(ksvalidator -l)"; then
    return
  fi
  need_root "ksvalidator (pykickstart)" || exit 1
  pip_venv "$KICKSTART_VENV" --upgrade pykickstart
  ln -sf "$KICKSTART_VENV/bin/ksvalidator" /usr/local/bin/ksvalidator
  grep -qx RHEL10 <<<"$(ksvalidator -l)" || {
    echo "install-deps: the installed pykickstart has no RHEL10 syntax" >&2
    exit 1
  }
}

# ansible-core (PyPI) runs contrib/ansible's role in the tests, from its own venv.
ANSIBLE_VENV=/opt/ferry-ansible
install_ansible() {
  if [ -x "$ANSIBLE_VENV/bin/ansible-playbook" ]; then
    return
  fi
  need_root ansible-core || exit 1
  pip_venv "$ANSIBLE_VENV" ansible-core
}

# Alpine's ifupdown-ng (Debian packages it; installing it would replace this machine's
# ifupdown): unpacked into /opt/ferry-validators/ifupdown-ng for the alpine recipe's tests,
# which run its ifup in a network namespace of their own.
IFUPDOWN_NG=/opt/ferry-validators/ifupdown-ng
install_ifupdown_ng() {
  if [ -x "$IFUPDOWN_NG/sbin/ifup" ]; then
    return
  fi
  need_root ifupdown-ng || exit 1
  echo "install-deps: unpacking ifupdown-ng into $IFUPDOWN_NG"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q ifupdown-ng) || { apt-get update -q && (cd "$tmp" && apt-get download -q ifupdown-ng); }
  mkdir -p "$IFUPDOWN_NG"
  dpkg-deb -x "$tmp"/ifupdown-ng_*.deb "$IFUPDOWN_NG"
  rm -rf "$tmp"
}

# archinstall (PyPI) loads the arch recipe's configuration in the tests, from its own venv.
# 2.8.0 is the newest release that runs on Debian 12's Python 3.11 (2.8.1 and later use 3.12
# syntax). A failure here (no PyPI) is reported, not fatal: only that test then fails.
ARCHINSTALL_VENV=/opt/ferry-archinstall
install_archinstall() {
  if "$ARCHINSTALL_VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("archinstall") == "2.8.0"' 2>/dev/null; then
    return
  fi
  need_root archinstall || return 1
  pip_venv "$ARCHINSTALL_VENV" archinstall==2.8.0
}

# scripts/make-fixtures.sh fetches the arm64 fixture's packages (kernel, busybox, GRUB, sfdisk)
# with `apt-get download PKG:arm64`: apt must know the arm64 architecture's package lists.
add_arm64_architecture() {
  if grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)" && apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
    return
  fi
  need_root "the arm64 architecture (apt's package lists)" || exit 1
  echo "install-deps: adding the arm64 architecture (dpkg --add-architecture arm64)"
  dpkg --add-architecture arm64
  apt-get update -q
}

# missing: the listed packages that are not installed.
find_missing() {
  missing=()
  local p
  for p in "${packages[@]}"; do
    grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
  done
}

# The listed Debian packages, installed where missing.
install_packages() {
  find_missing
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    return
  fi
  need_root "${missing[*]}" || exit 1
  echo "install-deps: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # apt may remove a listed package that conflicts with the new ones (a newer qemu-utils from
  # backports breaks bookworm's qemu-system-x86): install it again, now in the matching version.
  find_missing
  if [ ${#missing[@]} -ne 0 ]; then
    echo "install-deps: installing again what apt removed: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

add_arm64_architecture
install_packages
install_ksvalidator
install_ansible
install_ifupdown_ng
install_archinstall || echo "install-deps: archinstall not installed: the arch recipe's validator test will fail" >&2
