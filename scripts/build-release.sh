#!/usr/bin/env bash
# Builds ferry's release binary: static (musl), stripped, one file to copy into a rescue system.
# Needs the Rust target: rustup target add x86_64-unknown-linux-musl. ferry's dependencies are
# pure Rust except `ring` (TLS cryptography: C and assembly, no libc calls), which the host's
# gcc compiles for musl, so no musl C toolchain (musl-tools) is needed.
# Usage: scripts/build-release.sh   → target/x86_64-unknown-linux-musl/release/ferry
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  { echo "build-release: missing Rust target; run: rustup target add $target" >&2; exit 1; }
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc}
cargo build --release --locked --target "$target"
bin=target/$target/release/ferry
file "$bin"
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q "statically linked"; then
  echo "build-release: $bin is dynamically linked" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "build-release: $bin $(du -h --apparent-size "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
"$bin" --version
