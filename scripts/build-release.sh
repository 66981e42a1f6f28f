#!/usr/bin/env bash
# Builds ferry's release binary: static (musl), stripped, one file to copy into a rescue system.
# Needs the Rust target: rustup target add x86_64-unknown-linux-musl (or aarch64-...). ferry's
# dependencies are pure Rust except `ring` (TLS cryptography: C and assembly, no libc calls),
# which a gcc for the target compiles for musl, so no musl C toolchain (musl-tools) is needed:
# the host's gcc for x86_64, gcc-aarch64-linux-gnu's (Debian) for aarch64, which also links; ring
# includes <stdint.h>/<string.h> only (types, no libc calls), so the glibc headers of
# libc6-dev-arm64-cross serve (they are Recommends, missed with --no-install-recommends).
# A foreign binary is checked by running it: `--version` and `recipe list` under qemu-user
# (qemu-aarch64-static, Debian's qemu-user-static) when installed, else it is reported unrun.
# Usage: scripts/build-release.sh [--target x86_64-unknown-linux-musl|aarch64-unknown-linux-musl]
#        → $CARGO_TARGET_DIR (default target)/TARGET/release/ferry, and its man pages and shell
#          completions in …/TARGET/release/share/{man/man1,bash-completion,zsh,fish}
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
case "${1:-}" in
  --target) target=${2:?build-release: --target needs a value} ;;
  "") ;;
  *) echo "build-release: unknown argument $1 (usage: $0 [--target TRIPLE])" >&2; exit 2 ;;
esac
grep -qx "$target" <<<"$(rustup target list --installed 2>/dev/null)" ||
  { echo "build-release: missing Rust target; run: rustup target add $target" >&2; exit 1; }
case "$target" in
  x86_64-unknown-linux-musl)
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc} ;;
  aarch64-unknown-linux-musl)
    cross=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
    echo '#include <stdint.h>' | "$cross" -E - >/dev/null 2>&1 ||
      { echo "build-release: $cross cannot compile C; run:" \
          "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2; exit 1; }
    export CC_aarch64_unknown_linux_musl=$cross
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-$cross} ;;
  *) echo "build-release: unsupported target $target" >&2; exit 2 ;;
esac
# ring's build script reruns when CARGO_PKG_*/CARGO_MANIFEST_* change, and a caller inside cargo
# (the integration test) has ferry's set: without them, shell and test share one build (else
# each switch costs a 13-minute cross rebuild).
for v in $(compgen -e | grep -E '^CARGO_(PKG_|MANIFEST_|BIN_|CRATE_|PRIMARY_|TARGET_TMPDIR)'); do
  unset "$v"
done
cargo build --release --locked --target "$target"
arch=${target%%-*}
bin=${CARGO_TARGET_DIR:-target}/$target/release/ferry
# `file`, not ldd: the host's ldd cannot read a foreign binary. x86_64 links static-pie, aarch64
# plain static; either way no interpreter and no shared library.
kind=$(file -b "$bin")
echo "$bin: $kind"
case "$arch:$kind" in
  x86_64:*x86-64*|aarch64:*"ARM aarch64"*) ;;
  *) echo "build-release: $bin is not an $arch binary" >&2; exit 1 ;;
esac
case "$kind" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "build-release: $bin is not static" >&2; exit 1 ;;
esac
echo "build-release: $bin $(du -h --apparent-size "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
run=()
if [ "$(uname -m)" != "$arch" ]; then
  emu=$(command -v "qemu-$arch-static" || command -v "qemu-$arch" || true)
  run=(${emu:+"$emu"})
fi
if [ "$(uname -m)" = "$arch" ] || [ ${#run[@]} -gt 0 ]; then
  "${run[@]}" "$bin" --version
  "${run[@]}" "$bin" recipe list >/dev/null ||
    { echo "build-release: $bin recipe list failed" >&2; exit 1; }
  echo "build-release: $bin runs${run:+ (under ${run[0]})}: --version, recipe list"
  gen=("${run[@]}" "$bin")
else
  echo "build-release: $bin not run (no qemu-$arch-static: apt-get install qemu-user-static)"
  # Man pages and completions are the same for every architecture: a host build writes them.
  gen=(cargo run --quiet --release --locked --)
fi
share=${CARGO_TARGET_DIR:-target}/$target/release/share
rm -rf "$share"
"${gen[@]}" man "$share/man/man1"
mkdir -p "$share/bash-completion" "$share/zsh" "$share/fish"
"${gen[@]}" completions bash >"$share/bash-completion/ferry"
"${gen[@]}" completions zsh >"$share/zsh/_ferry"
"${gen[@]}" completions fish >"$share/fish/ferry.fish"
echo "build-release: man pages and completions in $share"

