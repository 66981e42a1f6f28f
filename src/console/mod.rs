//! The consoles (the serial stream, the VGA text screen), transcript, escape-sequence
//! stripping, the expect engine, typed keys.
//!
//! - [`ansi`]: streaming removal of escape sequences (what patterns are matched against).
//! - [`expect`]: [`Console`], the reader thread and the expect engine.
//! - [`transcript`]: `serial.log` and `transcript.cast`, the run's records of the stream.
//! - [`screen`]: the rendered screen shown in errors.
//! - [`vga`]: the VGA text screen as a second source, for boot loaders without a serial console.
//! - [`keys`]: typed keys in Packer's boot-command syntax.

pub mod ansi;
pub mod expect;
pub mod keys;
pub mod screen;
pub mod transcript;
pub mod vga;

pub use expect::{Console, ExpectError, Expectation, InputHandle, Matched, Pattern, Sink};
