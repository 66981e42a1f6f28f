//! ferry's integration tests: the real binary, real QEMU (TCG), real fixture ISOs built by
//! `scripts/make-fixtures.sh`, real disk image files.

mod install;
mod recipes;
mod support;
