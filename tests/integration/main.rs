//! ferry's integration tests: the real binary, real QEMU (TCG), real fixture ISOs built by
//! `scripts/make-fixtures.sh`, real disk image files.

mod alpine;
mod ansible;
mod arch;
mod arm64;
mod bundle;
mod cli;
mod debian;
mod el;
mod fetch;
mod host;
mod inputs;
mod install;
mod json;
mod ops;
mod qemu_archive;
mod recipes;
mod release;
mod render;
mod screen;
mod secrets;
mod stream;
mod support;
mod vga;
