#!/usr/bin/env bash
# Builds ferry's release binary: static (musl), stripped, one file to copy into a rescue system.
# Needs the Rust target: rustup target add x86_64-unknown-linux-musl (or aarch64-...). ferry's
# dependencies are pure Rust except `ring` (TLS cryptography: C and assembly, no libc calls),
# which a gcc for the target compiles for musl, so no musl C toolchain (musl-tools) is needed:
# the host's gcc for x86_64, gcc-aarch64-linux-gnu's (Debian) for aarch64, which also links.
# Usage: scripts/build-release.sh [--target x86_64-unknown-linux-musl|aarch64-unknown-linux-musl]
#        → target/TARGET/release/ferry, and its man pages and shell completions in
#          target/TARGET/release/share/{man/man1,bash-completion,zsh,fish}
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
case "${1:-}" in
  --target) target=${2:?build-release: --target needs a value} ;;
  "") ;;
  *) echo "build-release: unknown argument $1 (usage: $0 [--target TRIPLE])" >&2; exit 2 ;;
esac
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  { echo "build-release: missing Rust target; run: rustup target add $target" >&2; exit 1; }
case "$target" in
  x86_64-unknown-linux-musl)
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc} ;;
  aarch64-unknown-linux-musl)
    cross=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
    command -v "$cross" >/dev/null ||
      { echo "build-release: no $cross; run: apt-get install gcc-aarch64-linux-gnu" >&2; exit 1; }
    export CC_aarch64_unknown_linux_musl=$cross
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-$cross} ;;
  *) echo "build-release: unsupported target $target" >&2; exit 2 ;;
esac
cargo build --release --locked --target "$target"
bin=target/$target/release/ferry
file "$bin"
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q "statically linked"; then
  echo "build-release: $bin is dynamically linked" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "build-release: $bin $(du -h --apparent-size "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
# A foreign binary cannot run here (unless binfmt_misc runs it through QEMU).
if [ "$(uname -m)" = "${target%%-*}" ]; then
  "$bin" --version
  gen=("$bin")
else
  # Man pages and completions are the same for every architecture: a host build writes them.
  gen=(cargo run --quiet --release --locked --)
fi
share=target/$target/release/share
rm -rf "$share"
"${gen[@]}" man "$share/man/man1"
mkdir -p "$share/bash-completion" "$share/zsh" "$share/fish"
"${gen[@]}" completions bash >"$share/bash-completion/ferry"
"${gen[@]}" completions zsh >"$share/zsh/_ferry"
"${gen[@]}" completions fish >"$share/fish/ferry.fish"
echo "build-release: man pages and completions in $share"

