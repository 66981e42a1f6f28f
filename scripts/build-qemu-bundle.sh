#!/usr/bin/env bash
# Builds ferry's portable QEMU bundle from this Debian system's installed packages:
#   bin/qemu-system-x86_64
#   lib/                 the binary's full shared-library closure, glibc and its loader included
#   lib/qemu/            modules: the TCG accelerator (a module on Debian 12) and virtio-vga
#   share/qemu/          firmware: SeaBIOS + VGA BIOSes, iPXE ROMs, option ROMs, OVMF code + vars
#   BUNDLE               what it was built from (package versions)
# It runs on any x86-64 Linux as
#   QEMU_MODULE_DIR=B/lib/qemu B/lib/ld-linux-x86-64.so.2 --library-path B/lib \
#       B/bin/qemu-system-x86_64 -L B/share/qemu ...
# (`ferry` does that itself: src/qemu/bundle.rs).
#
# Needs: qemu-system-x86 (pulls qemu-system-common, qemu-system-data, seabios, ipxe-qemu), ovmf,
# xz-utils. Usage: [XZ_LEVEL=0-9] scripts/build-qemu-bundle.sh [OUT.tar.xz]
# (default: target/qemu-bundle.tar.xz, xz level 6: about 14 MB from 56 MB).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/target/qemu-bundle.tar.xz}")
qemu=/usr/bin/qemu-system-x86_64
modules=/usr/lib/x86_64-linux-gnu/qemu
packages=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu ovmf)

for p in "${packages[@]}"; do
  grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" ||
    { echo "build-qemu-bundle: package $p is not installed (apt-get install ${packages[*]})" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
b=$work/bundle
mkdir -p "$b/bin" "$b/lib/qemu" "$b/share/qemu"

install -m 755 "$qemu" "$b/bin/"
# Modules: TCG itself, and virtio-vga (-vga virtio) with the virtio-gpu modules it needs.
for m in accel-tcg-x86_64 hw-display-virtio-gpu hw-display-virtio-gpu-pci hw-display-virtio-vga; do
  install -m 644 "$modules/$m.so" "$b/lib/qemu/"
done

# The shared-library closure of the binary and the modules, resolved by the system's loader.
# ldd prints "name => /path (addr)" and the loader as "/lib64/ld-linux-x86-64.so.2 (addr)".
ldd "$b/bin/qemu-system-x86_64" "$b"/lib/qemu/*.so |
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(/ { print $1 }' | sort -u |
  while read -r lib; do
    cp -L "$lib" "$b/lib/$(basename "$lib")"
  done
if grep -q "not found" <<<"$(ldd "$b/bin/qemu-system-x86_64" "$b"/lib/qemu/*.so)"; then
  echo "build-qemu-bundle: unresolved libraries:" >&2
  ldd "$b/bin/qemu-system-x86_64" | grep "not found" >&2
  exit 1
fi
test -f "$b/lib/ld-linux-x86-64.so.2" || { echo "build-qemu-bundle: no loader in the closure" >&2; exit 1; }
chmod 755 "$b/lib/ld-linux-x86-64.so.2"

# Firmware. x86 machines: SeaBIOS and its VGA BIOSes, QEMU's option ROMs (direct kernel boot,
# kvmvapic), iPXE NIC ROMs (loaded for every NIC unless romfile= says otherwise), OVMF.
cp -L /usr/share/seabios/bios-256k.bin /usr/share/seabios/bios.bin /usr/share/seabios/vgabios-*.bin "$b/share/qemu/"
cp -L /usr/share/qemu/{kvmvapic,linuxboot,linuxboot_dma,multiboot,multiboot_dma,pvh}.bin "$b/share/qemu/"
cp -L /usr/lib/ipxe/qemu/efi-*.rom /usr/lib/ipxe/qemu/pxe-*.rom "$b/share/qemu/"
cp -L /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd "$b/share/qemu/"

version=$("$qemu" --version | head -1)
{
  echo "$version"
  dpkg-query -W -f='${Package} ${Version}\n' "${packages[@]}" libc6
} > "$b/BUNDLE"

# It must run from the bundle alone: own loader, own libraries, no PATH, no system firmware.
accels=$(env -i QEMU_MODULE_DIR="$b/lib/qemu" "$b/lib/ld-linux-x86-64.so.2" --library-path "$b/lib" \
  "$b/bin/qemu-system-x86_64" -L "$b/share/qemu" -accel help) || accels=
grep -qx tcg <<<"$accels" ||
  { echo "build-qemu-bundle: the bundled QEMU does not list the TCG accelerator" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
tar -C "$b" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . |
  xz -T0 "-${XZ_LEVEL:-6}" > "$out.partial"
mv "$out.partial" "$out"

echo "build-qemu-bundle: $version"
echo "build-qemu-bundle: unpacked $(du -sh --apparent-size "$b" | cut -f1)" \
  "(bin $(du -sh --apparent-size "$b/bin" | cut -f1), lib $(du -sh --apparent-size "$b/lib" | cut -f1)" \
  "in $(find "$b/lib" -maxdepth 1 -name '*.so*' | wc -l) libraries + $(ls "$b/lib/qemu" | wc -l) modules," \
  "firmware $(du -sh --apparent-size "$b/share" | cut -f1))"
echo "build-qemu-bundle: wrote $out ($(du -h --apparent-size "$out" | cut -f1), $(stat -c %s "$out") bytes)"
echo "build-qemu-bundle: sha256 $(sha256sum "$out" | cut -d' ' -f1)"
