#!/bin/bash
# Build ferry's test installer ISOs from Debian packages installed on this machine.
#
#   scripts/make-fixtures.sh [OUTDIR]      (default: tests/fixtures/build)
#
# Outputs (see tests/fixtures/README.md for the guest contract):
#   tiny-isolinux.iso  NixOS-style isolinux layout, BIOS-bootable, isohybrid
#   tiny-grub.iso      GRUB-only layout (BIOS + EFI, grub-mkrescue)
#   tiny-screen.iso    isolinux on the VGA screen only, waiting at `boot:` for a typed entry
#   tiny-menu.iso      isolinux's text menu on the VGA screen only: <down>, <tab>, typed options
#   tiny-nixos.iso     NixOS minimal ISO look-alike: its menu layouts and store paths, a live
#                      system that auto-logs in on ttyS0 with fake NixOS tools that record
#                      their command lines and install the tiny OS
#   tiny-ubuntu.iso    Ubuntu 24.04 live-server look-alike: its GRUB menu and casper paths
#   tiny-el.iso        Rocky Linux 9 boot ISO look-alike: lorax's GRUB and isolinux menus
#   el-tree/           the same installer as a Rocky BaseOS tree: images/pxeboot, the stage2
#                      stand-in images/install.img, and .treeinfo with their checksums
#   tiny-alpine.iso    Alpine virt ISO look-alike: aports' syslinux and GRUB menus and boot
#                      files, a live system with a root login on ttyS0 and a stand-in
#                      setup-alpine that reads the answer file and installs the tiny OS
#   tiny-arch.iso      Arch Linux monthly ISO look-alike: archiso's syslinux and systemd-boot
#                      menus, /arch/boot/x86_64 (these boot the tiny installer, which then
#                      plays Subiquity, Anaconda or archiso's live system with archinstall)
#   vmlinuz, installer.gz   the kernel and installer initramfs all ISOs carry
#   tiny-arm64.iso     the tiny installer for arm64 (GRUB layout, UEFI-bootable through
#                      grub-mkrescue): Debian's arm64 cloud kernel and static busybox, fetched
#                      as packages into arm64-debs/ (the x86 ones come from this machine)
#   vmlinuz-arm64, installer-arm64.gz   its kernel and installer initramfs
#   sercon-port.bin    fw_cfg blob making SeaBIOS mirror VGA text to COM1
#   stamp              cache key; a rebuild happens only when it changes
#
# Needs no loop devices or mounts: initramfs images are built with cpio, ISOs with xorriso.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUEST=$REPO/tests/fixtures/guest
OUT=${1:-$REPO/tests/fixtures/build}
VOLID=TINY_INSTALLER

# Modules the installer loads, in dependency order (checked against modinfo -F depends at
# build time). NVMe, ext2/ext4, the partition parsers and af_packet are built into Debian's
# cloud kernel.
# The cloud kernel has no AHCI driver: SATA disks are only visible through ata_piix (IDE on
# QEMU's default "pc" machine); use virtio-scsi for a /dev/sdX disk on q35.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk scsi_common scsi_mod virtio_scsi failover net_failover virtio_net
libata ata_piix sd_mod cdrom sr_mod isofs fat vfat nls_cp437 nls_ascii"

# The arm64 installer's modules (same order rule); QEMU's virt board has no IDE.
ARM64_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk scsi_common scsi_mod virtio_scsi failover net_failover virtio_net
sd_mod cdrom sr_mod isofs fat vfat nls_cp437 nls_ascii"

# The arm64 packages, fetched with apt-get download (install-deps.sh adds the arm64 architecture)
# and cached in $OUT/arm64-debs: the kernel is the one linux-image-cloud-arm64 depends on; sfdisk
# with the libraries this machine's sfdisk links (add_arm64_sfdisk checks the list).
ARM64_PACKAGES="busybox-static grub-efi-arm64-bin fdisk libfdisk1 libsmartcols1 libtinfo6
libreadline8 libc6 libuuid1 libblkid1"

# GRUB modules for the installed disk's boot images.
GRUB_COMMON_MODULES=(part_msdos part_gpt ext2 search search_label normal configfile linux serial terminal echo test)

die() {
	echo "make-fixtures: error: $*" >&2
	exit 1
}

need_file() { # FILE PACKAGE
	[ -e "$1" ] || die "$1 not found: apt-get install $2"
}

need_cmd() { # COMMAND PACKAGE
	command -v "$1" >/dev/null || die "$1 not found: apt-get install $2"
}

check_prerequisites() {
	need_cmd xorriso xorriso
	need_cmd cpio cpio
	need_cmd gzip gzip
	need_cmd grub-mkimage grub-common
	need_cmd grub-mkrescue grub-common
	need_cmd mformat mtools # grub-mkrescue builds its EFI boot image with mtools
	need_cmd sfdisk fdisk
	need_cmd ldd libc-bin
	need_cmd modinfo kmod
	# The guest runs busybox with no shared libraries: it must be the static build.
	grep -q 'ok installed' <<<"$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null)" ||
		die "static busybox not installed: apt-get install busybox-static"
	need_file /usr/lib/grub/i386-pc/boot.img grub-pc-bin
	need_file /usr/lib/grub/x86_64-efi/linux.mod grub-efi-amd64-bin
	need_file /usr/lib/ISOLINUX/isolinux.bin isolinux
	need_file /usr/lib/ISOLINUX/isohdpfx.bin isolinux
	need_file /usr/lib/syslinux/modules/bios/menu.c32 syslinux-common
}

find_kernel() {
	# The newest /boot kernel that has its modules installed.
	local v
	for v in $(printf '%s\n' /boot/vmlinuz-* | sed 's|^/boot/vmlinuz-||' | sort -rV); do
		if [ -d "/lib/modules/$v/kernel" ]; then
			KVER=$v
			return
		fi
	done
	die "no kernel in /boot with modules in /lib/modules: apt-get install linux-image-cloud-amd64"
}

stamp() {
	# Everything the outputs depend on: this script, the guest files, the kernel and the
	# versions of the Debian packages copied into the images.
	(
		cd "$REPO" && sha256sum scripts/make-fixtures.sh tests/fixtures/guest/*
		stat -c '%a %n' tests/fixtures/guest/* # an init that lost its x bit cannot run
		echo "kernel $KVER"
		dpkg-query -W busybox-static grub-pc-bin grub-efi-amd64-bin isolinux fdisk
		ls "$OUT/arm64-debs"
	) | sha256sum | cut -d' ' -f1
}

# run_logged CMD...: keep chatty tools quiet unless they fail.
run_logged() {
	"$@" >"$WORK/log" 2>&1 || {
		cat "$WORK/log" >&2
		die "$1 failed"
	}
}

# make_cpio DIR OUT: a gzip'd newc archive of DIR, everything owned by root.
make_cpio() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$2"
}

# add_busybox ROOT: the static busybox ($BUSYBOX, this machine's or the arm64 one) plus a
# symlink for every applet. The applet list comes from this machine's busybox: the arm64
# package is checked to be the same version (fetch_arm64_debs).
add_busybox() {
	mkdir -p "$1/bin" "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/etc"
	cp "$BUSYBOX" "$1/bin/busybox"
	local applet
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$1/bin/$applet"
	done
}

# add_with_libs ROOT BINARY: a dynamically linked host binary plus its shared libraries.
add_with_libs() {
	local lib
	install -D "$2" "$1$2"
	for lib in $(ldd "$2" | grep -o '/[^ ]*'); do
		install -D "$lib" "$1$lib"
	done
}

build_installed_initrd() { # OUT
	local root=$WORK/installed-$ARCH
	add_busybox "$root"
	cp "$GUEST/installed-init" "$root/init"
	echo 'root::0:0:root:/root:/bin/sh' >"$root/etc/passwd"
	echo 'root:x:0:' >"$root/etc/group"
	# getty expands \n to the hostname (its \l would say /dev/ttyS0).
	printf 'Tiny GNU/Linux 1.0 \\n %s\n\n' "$CONSOLE" >"$root/etc/issue"
	mkdir -p "$root/root"
	make_cpio "$root" "$1"
}

build_grub_images() { # DIR: core.img + boot.img (BIOS), grubx64.efi (UEFI)
	# Both images embed a config that finds the root file system by its label, whatever the
	# disk order, and reads /boot/grub/grub.cfg from there. No comments inside: GRUB runs it
	# with the rescue parser, which knows no '#' and stops at the first unknown command.
	local embedded=$WORK/grub-embedded.cfg
	# shellcheck disable=SC2016 # $root is GRUB's variable
	printf '%s\n' 'search --no-floppy --label tiny-root --set=root' 'set prefix=($root)/boot/grub' >"$embedded"
	grub-mkimage -O i386-pc -o "$1/core.img" -c "$embedded" \
		-p '(hd0,msdos1)/boot/grub' biosdisk "${GRUB_COMMON_MODULES[@]}"
	# core.img goes in the gap between the MBR and the partition at sector 2048.
	[ "$(stat -c %s "$1/core.img")" -lt $((2047 * 512)) ] || die "core.img does not fit before sector 2048"
	cp /usr/lib/grub/i386-pc/boot.img "$1/boot.img"
	grub-mkimage -O x86_64-efi -o "$1/grubx64.efi" -c "$embedded" \
		-p /boot/grub fat "${GRUB_COMMON_MODULES[@]}"
}

build_arm64_grub_image() { # DIR: grubaa64.efi, as build_grub_images' UEFI image
	local embedded=$WORK/grub-embedded.cfg
	# shellcheck disable=SC2016 # $root is GRUB's variable
	printf '%s\n' 'search --no-floppy --label tiny-root --set=root' 'set prefix=($root)/boot/grub' >"$embedded"
	grub-mkimage -d "$ARM64_ROOT/usr/lib/grub/arm64-efi" -O arm64-efi -o "$1/grubaa64.efi" \
		-c "$embedded" -p /boot/grub fat "${GRUB_COMMON_MODULES[@]}"
}

# add_arm64_sfdisk ROOT: the arm64 sfdisk, its loader and the libraries this machine's sfdisk
# links (the same util-linux), at the paths the arm64 loader searches.
add_arm64_sfdisk() {
	local lib name found d
	install -D "$ARM64_ROOT/sbin/sfdisk" "$1/sbin/sfdisk"
	mkdir -p "$1/lib/aarch64-linux-gnu"
	cp -L "$ARM64_ROOT/lib/ld-linux-aarch64.so.1" "$1/lib/"
	for lib in $(ldd "$(command -v sfdisk)" | awk '/=>/ {print $1}'); do
		found=
		for d in lib usr/lib; do
			[ -e "$ARM64_ROOT/$d/aarch64-linux-gnu/$lib" ] && found=$ARM64_ROOT/$d/aarch64-linux-gnu/$lib
		done
		[ -n "$found" ] || die "arm64 $lib (needed by sfdisk) is in none of ARM64_PACKAGES"
		cp -L "$found" "$1/lib/aarch64-linux-gnu/$lib"
	done
}

# The installer for $ARCH (amd64: this machine's kernel, busybox and sfdisk; arm64: the
# fetched packages').
build_installer() { # OUT
	local root=$WORK/installer-$ARCH m
	add_busybox "$root"
	cp "$GUEST/installer-init" "$root/init"
	cp "$GUEST/archiso-live" "$root/archiso-live"
	cp "$GUEST/udhcpc.script" "$root/etc/udhcpc.script"
	# busybox fdisk cannot write GPT: bring util-linux sfdisk.
	if [ "$ARCH" = arm64 ]; then
		add_arm64_sfdisk "$root"
	else
		add_with_libs "$root" "$(command -v sfdisk)"
	fi

	add_modules "$root"

	mkdir -p "$root/payload"
	cp "$KERNEL" "$root/payload/vmlinuz"
	build_installed_initrd "$root/payload/initrd.img"
	if [ "$ARCH" = arm64 ]; then
		build_arm64_grub_image "$root/payload"
	else
		build_grub_images "$root/payload"
	fi
	make_cpio "$root" "$1"
}

add_modules() { # ROOT
	local root=$1 m
	# The guest insmods in list order, so check the order against the kernel's dependencies.
	mkdir -p "$root/lib/modules"
	local loaded=" " ko dep
	for m in $MODULES; do
		ko=$(modinfo -b "$MODULES_BASE" -k "$KVER" -n "$m") || die "module $m missing from $MODULES_BASE/lib/modules/$KVER"
		for dep in $(modinfo -b "$MODULES_BASE" -k "$KVER" -F depends "$m" | tr , ' '); do
			case "$loaded" in *" $dep "*) ;; *) die "module $m needs $dep: list it earlier in MODULES" ;; esac
		done
		case "$ko" in
		"(builtin)") ;;
		/*.ko) cp "$ko" "$root/lib/modules/$m.ko" && echo "$m" >>"$root/lib/modules/load-order" ;;
		*) die "module $m is $ko: expected an uncompressed .ko" ;;
		esac
		loaded="$loaded$m "
	done
}

# The NixOS look-alike's store paths (as on a real ISO: /boot/ + /nix/store/...).
NIXOS_KERNEL=/boot/nix/store/0c2nylr4ri9h5lx0zx5fjhdhhnclq0a1-linux-6.1.0-tiny/bzImage
NIXOS_INITRD=/boot/nix/store/kf4nnd0cl3dkxw8zr4b2rc0jkd5s3lv5-initrd-linux-6.1.0-tiny/initrd
NIXOS_FAKES="sudo parted mkfs.ext4 mkfs.fat mkswap swapon mount curl nixos-generate-config nixos-install poweroff"

build_nixos_live() { # OUT: the live system's initramfs
	local root=$WORK/nixos-live f
	add_busybox "$root"
	cp "$GUEST/nixos-live-init" "$root/init"
	cp "$GUEST/udhcpc.script" "$root/etc/udhcpc.script"
	add_with_libs "$root" "$(command -v sfdisk)"
	add_modules "$root"
	mkdir -p "$root/usr/local/bin" "$root/usr/local/lib" "$root/root" "$root/home/nixos"
	cp "$GUEST/nixos-fake" "$root/usr/local/lib/nixos-fake"
	# Busybox's shell runs its own applets before searching PATH: fakes named like an applet
	# (mount, poweroff...) are reached through shell functions, defined in every shell's $ENV.
	# The list is read whole first: `busybox --list | grep -q` under pipefail fails now and then
	# (grep ends at the match, busybox's next write gets SIGPIPE), which left a fake unlogged.
	: >"$root/etc/fixture-shrc"
	local applets
	applets=$(/bin/busybox --list)
	for f in $NIXOS_FAKES; do
		ln -s ../lib/nixos-fake "$root/usr/local/bin/$f"
		if grep -qx -- "$f" <<<"$applets"; then
			echo "$f() { /usr/local/bin/$f \"\$@\"; }" >>"$root/etc/fixture-shrc"
		fi
	done
	# What the fake nixos-install puts on the disk: the tiny OS, with GRUB images that find
	# their configuration where a NixOS install has it: /boot/grub on the root file system
	# labelled "nixos" (BIOS), /grub on the ESP labelled "boot" (UEFI, ESP mounted on /boot).
	mkdir -p "$root/payload"
	cp "$WORK/installer-amd64/payload/vmlinuz" "$WORK/installer-amd64/payload/initrd.img" \
		"$WORK/installer-amd64/payload/boot.img" "$root/payload/"
	# shellcheck disable=SC2016 # $root is GRUB's variable
	printf '%s\n' 'search --no-floppy --label nixos --set=root' 'set prefix=($root)/boot/grub' >"$WORK/nixos-bios.cfg"
	# shellcheck disable=SC2016
	printf '%s\n' 'search --no-floppy --label boot --set=root' 'set prefix=($root)/grub' >"$WORK/nixos-efi.cfg"
	grub-mkimage -O i386-pc -o "$root/payload/core.img" -c "$WORK/nixos-bios.cfg" \
		-p '(hd0,msdos1)/boot/grub' biosdisk "${GRUB_COMMON_MODULES[@]}"
	grub-mkimage -O x86_64-efi -o "$root/payload/grubx64.efi" -c "$WORK/nixos-efi.cfg" \
		-p /grub fat "${GRUB_COMMON_MODULES[@]}"
	make_cpio "$root" "$1"
}

build_nixos_iso() { # OUT
	local tree=$WORK/nixos-tree
	mkdir -p "$tree/isolinux" "$tree/EFI/BOOT" "$(dirname "$tree$NIXOS_KERNEL")" "$(dirname "$tree$NIXOS_INITRD")"
	cp "$OUT/vmlinuz" "$tree$NIXOS_KERNEL"
	build_nixos_live "$tree$NIXOS_INITRD"
	cp /usr/lib/ISOLINUX/isolinux.bin "$tree/isolinux/"
	cp /usr/lib/syslinux/modules/bios/{ldlinux,vesamenu,libutil,libcom32}.c32 "$tree/isolinux/"
	cp "$GUEST/nixos-isolinux.cfg" "$tree/isolinux/isolinux.cfg"
	# Only the menu: ferry boots the kernel directly, so no EFI boot image is needed.
	cp "$GUEST/nixos-grub.cfg" "$tree/EFI/BOOT/grub.cfg"
	run_logged xorriso -as mkisofs -o "$1" -V nixos-minimal-24.11-x86_64 -R -J \
		-isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
		-b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table \
		"$tree"
}

# xorriso ISO9660 + Rock Ridge + Joliet of TREE with volume id VOLID; ferry boots the kernels
# directly, so the look-alikes need no El Torito boot image.
plain_iso() { # TREE VOLID OUT
	run_logged xorriso -as mkisofs -o "$3" -V "$2" -R -J "$1"
}

build_ubuntu_iso() { # OUT
	local tree=$WORK/ubuntu-tree
	mkdir -p "$tree/boot/grub" "$tree/casper"
	cp "$OUT/vmlinuz" "$tree/casper/vmlinuz"
	cp "$OUT/installer.gz" "$tree/casper/initrd"
	cp "$GUEST/ubuntu-grub.cfg" "$tree/boot/grub/grub.cfg"
	plain_iso "$tree" "Ubuntu-Server 24.04.3 LTS amd64" "$1"
}

# The Arch look-alike's build date: mkarchiso derives the ISO's label, version and UUID (the
# ISO 9660 modification date, which archisosearchuuid= finds) from SOURCE_DATE_EPOCH.
ARCH_SOURCE_DATE_EPOCH=1796111652 # 2026-12-01 07:54:12 UTC

# archiso's releng profile as mkarchiso lays it out (archiso commit 52bf735; guest/archiso*):
# /boot/syslinux/*.cfg and /loader (systemd-boot, also copied onto ISO 9660) with mkarchiso's
# substitutions, kernel and initramfs under /arch/boot/x86_64, /arch/version, the empty
# /boot/UUID.uuid GRUB would search for. The releng profile boots EFI by systemd-boot, so there
# is no grub.cfg on the ISO. The initramfs is installer.gz plus /etc/archiso-uuid (a second
# cpio archive), the UUID its archiso personality looks for.
build_arch_iso() { # OUT
	local tree=$WORK/arch-tree f uuid version label
	uuid=$(TZ=UTC date -d "@$ARCH_SOURCE_DATE_EPOCH" +%F-%H-%M-%S-00)
	version=$(TZ=UTC date -d "@$ARCH_SOURCE_DATE_EPOCH" +%Y.%m.%d)
	label=ARCH_$(TZ=UTC date -d "@$ARCH_SOURCE_DATE_EPOCH" +%Y%m)
	mkdir -p "$tree/boot/syslinux" "$tree/loader/entries" "$tree/arch/boot/x86_64" "$WORK/arch-uuid/etc"
	substitute() { # FILE OUT: mkarchiso's sed
		sed "s|%ARCHISO_LABEL%|$label|g; s|%ARCHISO_UUID%|$uuid|g; s|%INSTALL_DIR%|arch|g; s|%ARCH%|x86_64|g" "$1" >"$2"
	}
	substitute "$GUEST/archiso-syslinux.cfg" "$tree/boot/syslinux/syslinux.cfg"
	for f in "$GUEST"/archiso_*.cfg; do
		substitute "$f" "$tree/boot/syslinux/${f##*/}"
	done
	cp "$GUEST/archiso-loader.conf" "$tree/loader/loader.conf"
	for f in "$GUEST"/archiso-0*.conf; do
		f=${f##*/}
		substitute "$GUEST/$f" "$tree/loader/entries/${f#archiso-}"
	done
	cp "$OUT/vmlinuz" "$tree/arch/boot/x86_64/vmlinuz-linux"
	echo "$uuid" >"$WORK/arch-uuid/etc/archiso-uuid"
	make_cpio "$WORK/arch-uuid" "$WORK/arch-uuid.cpio.gz"
	cat "$OUT/installer.gz" "$WORK/arch-uuid.cpio.gz" >"$tree/arch/boot/x86_64/initramfs-linux.img"
	echo "$version" >"$tree/arch/version"
	: >"$tree/boot/$uuid.uuid"
	# xorriso takes every ISO 9660 date from SOURCE_DATE_EPOCH, as in mkarchiso's builds.
	SOURCE_DATE_EPOCH=$ARCH_SOURCE_DATE_EPOCH run_logged xorriso -as mkisofs -o "$1" -V "$label" \
		-iso-level 3 -full-iso9660-filenames -joliet -joliet-long -rational-rock "$tree"
	[ "$(blkid -o value -s UUID "$1")" = "$uuid" ] || die "tiny-arch.iso's UUID is not $uuid"
}

# Laid out as lorax's share/templates.d/99-generic/x86.tmpl lays out the boot ISO: the stage2
# (images/install.img; a 4 MiB stand-in here, a real one is most of the ISO), the kernel and
# initrd in images/pxeboot with isolinux's hard links to them, the EFI and isolinux menus.
build_el_iso() { # OUT
	local tree=$WORK/el-tree
	mkdir -p "$tree/EFI/BOOT" "$tree/isolinux" "$tree/images/pxeboot"
	cp "$OUT/vmlinuz" "$tree/images/pxeboot/vmlinuz"
	cp "$OUT/installer.gz" "$tree/images/pxeboot/initrd.img"
	head -c 4194304 <(yes "stand-in for Anaconda's stage2 (squashfs)") >"$tree/images/install.img"
	# isolinux's copies (lorax installs the kernel twice); hard links keep one copy of the data.
	ln "$tree/images/pxeboot/vmlinuz" "$tree/isolinux/vmlinuz"
	ln "$tree/images/pxeboot/initrd.img" "$tree/isolinux/initrd.img"
	cp "$GUEST/el-grub.cfg" "$tree/EFI/BOOT/grub.cfg"
	cp "$GUEST/el-isolinux.cfg" "$tree/isolinux/isolinux.cfg"
	plain_iso "$tree" Rocky-9-6-x86_64-dvd "$1"
}

# The same files as a BaseOS/x86_64/os/ installer tree, with the .treeinfo pungi writes there
# (productmd 1.2: lorax's treeinfo entries, and [checksums] of the images).
build_el_tree() { # OUTDIR
	local tree=$1 f
	rm -rf "$tree"
	mkdir -p "$tree/images/pxeboot"
	cp "$WORK/el-tree/images/pxeboot/"{vmlinuz,initrd.img} "$tree/images/pxeboot/"
	cp "$WORK/el-tree/images/install.img" "$tree/images/"
	{
		echo "[checksums]"
		for f in images/install.img images/pxeboot/initrd.img images/pxeboot/vmlinuz; do
			echo "$f = sha256:$(sha256sum "$tree/$f" | cut -d' ' -f1)"
		done
		cat "$GUEST/el-treeinfo"
	} >"$tree/.treeinfo"
}

# The Alpine look-alike's live initramfs: its own init (alpine-live-init) and setup-alpine
# stand-in (alpine-setup), Alpine's busybox tools, sfdisk, and the tiny OS with the GRUB
# images of the tiny installer (they find the root file system by its label, tiny-root).
build_alpine_live() { # OUT
	local root=$WORK/alpine-live
	add_busybox "$root"
	cp "$GUEST/alpine-live-init" "$root/init"
	cp "$GUEST/udhcpc.script" "$root/etc/udhcpc.script"
	add_with_libs "$root" "$(command -v sfdisk)"
	add_modules "$root"
	mkdir -p "$root/usr/local/bin" "$root/root" "$root/mnt" "$root/payload"
	cp "$GUEST/alpine-setup" "$root/usr/local/bin/setup-alpine"
	# Busybox's shell runs its poweroff applet before PATH, which only signals PID 1.
	printf '%s\n' 'cd "$HOME"' "PS1='\\h:\\w\\$ '" 'poweroff() { sync; /bin/busybox poweroff -f; }' >"$root/etc/fixture-shrc"
	: >"$root/etc/inittab"
	# Alpine's own: busybox's prompt shows root's home as ~ through it.
	echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
	echo 'root:x:0:root' >"$root/etc/group"
	cp "$WORK/installer-amd64/payload/"{vmlinuz,initrd.img,boot.img,core.img,grubx64.efi} "$root/payload/"
	make_cpio "$root" "$1"
}

# Laid out as aports' mkimg.base.sh lays out the virt ISO (profile_virt): boot/vmlinuz-virt,
# boot/initramfs-virt, boot/modloop-virt, boot/syslinux/syslinux.cfg, boot/grub/grub.cfg,
# apks/.boot_repository, .alpine-release; its volume id. The modloop (a squashfs of the
# kernel's modules) is a stand-in file the live system reads at boot, 4 MiB (a real one is
# larger): the look-alike's modules are in its initramfs.
build_alpine_iso() { # OUT
	local tree=$WORK/alpine-tree
	mkdir -p "$tree/boot/syslinux" "$tree/boot/grub" "$tree/apks/x86_64"
	cp "$OUT/vmlinuz" "$tree/boot/vmlinuz-virt"
	build_alpine_live "$tree/boot/initramfs-virt"
	head -c 4194304 <(yes "stand-in for the virt kernel's modloop (squashfs)") >"$tree/boot/modloop-virt"
	cp "$GUEST/alpine-syslinux.cfg" "$tree/boot/syslinux/syslinux.cfg"
	cp "$GUEST/alpine-grub.cfg" "$tree/boot/grub/grub.cfg"
	: >"$tree/apks/.boot_repository"
	echo "alpine-virt-3.22.2 x86_64" >"$tree/.alpine-release"
	plain_iso "$tree" "alpine-virt 3.22.2 x86_64" "$1"
}

build_isolinux_iso() { # OUT
	local tree=$WORK/isolinux-tree
	mkdir -p "$tree/isolinux" "$tree/boot"
	cp "$OUT/vmlinuz" "$tree/boot/vmlinuz"
	cp "$OUT/installer.gz" "$tree/boot/installer.gz"
	cp /usr/lib/ISOLINUX/isolinux.bin "$tree/isolinux/"
	# isolinux 6 loads ldlinux.c32 itself; menu.c32 needs libutil and libcom32.
	cp /usr/lib/syslinux/modules/bios/{ldlinux,menu,libutil,libcom32}.c32 "$tree/isolinux/"
	cp "$GUEST/isolinux.cfg" "$GUEST/more.cfg" "$tree/isolinux/"
	run_logged xorriso -as mkisofs -o "$1" -V "$VOLID" -R -J \
		-isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
		-b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table \
		"$tree"
}

build_screen_iso() { # OUT
	local tree=$WORK/screen-tree
	mkdir -p "$tree/isolinux" "$tree/boot"
	ln "$OUT/vmlinuz" "$tree/boot/vmlinuz" 2>/dev/null || cp "$OUT/vmlinuz" "$tree/boot/vmlinuz"
	cp "$OUT/installer.gz" "$tree/boot/installer.gz"
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$tree/isolinux/"
	cp "$GUEST/screen-isolinux.cfg" "$tree/isolinux/isolinux.cfg"
	run_logged xorriso -as mkisofs -o "$1" -V "$VOLID" -R -J \
		-b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table \
		"$tree"
}

build_menu_iso() { # OUT
	local tree=$WORK/menu-tree
	mkdir -p "$tree/isolinux" "$tree/boot"
	cp "$OUT/vmlinuz" "$tree/boot/vmlinuz"
	cp "$OUT/installer.gz" "$tree/boot/installer.gz"
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/{ldlinux,menu,libutil,libcom32}.c32 "$tree/isolinux/"
	cp "$GUEST/menu-isolinux.cfg" "$tree/isolinux/isolinux.cfg"
	run_logged xorriso -as mkisofs -o "$1" -V "$VOLID" -R -J \
		-b isolinux/isolinux.bin -c isolinux/boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table \
		"$tree"
}

build_grub_iso() { # OUT
	local tree=$WORK/grub-tree
	mkdir -p "$tree/boot/grub"
	cp "$OUT/vmlinuz" "$tree/boot/vmlinuz"
	cp "$OUT/installer.gz" "$tree/boot/installer.gz"
	cp "$GUEST/grub.cfg" "$tree/boot/grub/grub.cfg"
	# Arguments after -- go to xorriso's mkisofs emulation.
	run_logged grub-mkrescue -o "$1" "$tree" -- -volid "$VOLID" -joliet on
}

# use_amd64 / use_arm64: what the builders above take for each architecture.
use_amd64() {
	ARCH=amd64 BUSYBOX=/bin/busybox KERNEL=/boot/vmlinuz-$KVER MODULES_BASE=/ CONSOLE=ttyS0
}

fetch_arm64_debs() {
	local dir=$OUT/arm64-debs kernel p complete=yes
	for p in linux-image-*-cloud-arm64 $ARM64_PACKAGES; do
		# shellcheck disable=SC2086 # the kernel's name is a pattern
		ls "$dir"/${p}_*.deb >/dev/null 2>&1 || complete=no
	done
	if [ $complete = no ]; then
		grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)" ||
			die "no arm64 packages: dpkg --add-architecture arm64 && apt-get update (scripts/install-deps.sh)"
		echo "make-fixtures: fetching the arm64 packages into $dir"
		rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
		(cd "$dir.tmp" && apt-get download -q linux-image-cloud-arm64:arm64) >/dev/null 2>&1 ||
			die "apt-get download linux-image-cloud-arm64:arm64 failed"
		kernel=$(dpkg-deb -f "$dir.tmp"/linux-image-cloud-arm64_*.deb Depends | sed 's/[ ,].*//')
		rm "$dir.tmp"/linux-image-cloud-arm64_*.deb
		# shellcheck disable=SC2086 # a list of package names
		(cd "$dir.tmp" && apt-get download -q "$kernel:arm64" $(printf '%s:arm64 ' $ARM64_PACKAGES)) >/dev/null 2>&1 ||
			die "apt-get download $kernel:arm64 $(echo $ARM64_PACKAGES) (arm64) failed"
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
	fi
	[ "$(dpkg-deb -f "$dir"/busybox-static_*.deb Version)" = "$(dpkg-query -W -f '${Version}' busybox-static)" ] ||
		die "arm64 busybox-static is not this machine's version (its applet list is used): rm -r $dir"
}

use_arm64() {
	local deb
	ARM64_ROOT=$WORK/arm64-root
	mkdir -p "$ARM64_ROOT"
	for deb in "$OUT"/arm64-debs/*.deb; do
		dpkg-deb -x "$deb" "$ARM64_ROOT"
	done
	KVER=$(ls "$ARM64_ROOT/lib/modules")
	# The package's postinst would write modules.dep: modinfo needs it.
	depmod -b "$ARM64_ROOT" "$KVER"
	ARCH=arm64 BUSYBOX=$ARM64_ROOT/bin/busybox KERNEL=$ARM64_ROOT/boot/vmlinuz-$KVER
	MODULES_BASE=$ARM64_ROOT MODULES=$ARM64_MODULES CONSOLE=ttyAMA0
}

build_arm64_iso() { # OUT
	local tree=$WORK/arm64-tree
	mkdir -p "$tree/boot/grub"
	cp "$OUT/vmlinuz-arm64" "$tree/boot/vmlinuz"
	cp "$OUT/installer-arm64.gz" "$tree/boot/installer.gz"
	cp "$GUEST/grub.cfg" "$tree/boot/grub/grub.cfg"
	run_logged grub-mkrescue -d "$ARM64_ROOT/usr/lib/grub/arm64-efi" -o "$1" "$tree" -- -volid "$VOLID" -joliet on
}

main() {
	check_prerequisites
	find_kernel
	mkdir -p "$OUT"
	fetch_arm64_debs
	local key
	key=$(stamp)
	if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$key" ] &&
		[ -f "$OUT/tiny-isolinux.iso" ] && [ -f "$OUT/tiny-grub.iso" ] && [ -f "$OUT/tiny-nixos.iso" ] &&
		[ -f "$OUT/tiny-ubuntu.iso" ] && [ -f "$OUT/tiny-el.iso" ] && [ -f "$OUT/el-tree/.treeinfo" ] &&
		[ -f "$OUT/tiny-screen.iso" ] &&
		[ -f "$OUT/tiny-menu.iso" ] && [ -f "$OUT/tiny-alpine.iso" ] &&
		[ -f "$OUT/tiny-arch.iso" ] && [ -f "$OUT/tiny-arm64.iso" ]; then
		echo "make-fixtures: $OUT is up to date (kernel $KVER)"
		return
	fi

	echo "make-fixtures: building into $OUT (kernel $KVER)"
	rm -f "$OUT/stamp"
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT

	use_amd64
	cp "$KERNEL" "$OUT/vmlinuz"
	build_installer "$OUT/installer.gz"
	build_isolinux_iso "$OUT/tiny-isolinux.iso"
	build_grub_iso "$OUT/tiny-grub.iso"
	build_nixos_iso "$OUT/tiny-nixos.iso"
	build_ubuntu_iso "$OUT/tiny-ubuntu.iso"
	build_el_iso "$OUT/tiny-el.iso"
	build_el_tree "$OUT/el-tree"
	build_alpine_iso "$OUT/tiny-alpine.iso"
	build_arch_iso "$OUT/tiny-arch.iso"
	build_screen_iso "$OUT/tiny-screen.iso"
	build_menu_iso "$OUT/tiny-menu.iso"
	use_arm64
	cp "$KERNEL" "$OUT/vmlinuz-arm64"
	build_installer "$OUT/installer-arm64.gz"
	build_arm64_iso "$OUT/tiny-arm64.iso"
	printf '\xf8\x03' >"$OUT/sercon-port.bin"
	echo "$key" >"$OUT/stamp"
	echo "make-fixtures: done"
	ls -l "$OUT"
}

main
