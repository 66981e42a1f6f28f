//! The serial console: transcript, escape-sequence stripping, the expect engine.
//!
//! - [`ansi`]: streaming removal of escape sequences (what patterns are matched against).
//! - [`expect`]: [`Console`], the reader thread and the expect engine.
//! - [`transcript`]: `serial.log` and `transcript.cast`, the run's records of the stream.
//! - [`screen`]: the rendered screen shown in errors.

pub mod ansi;
pub mod expect;
pub mod screen;
pub mod transcript;

pub use expect::{Console, ExpectError, Expectation, InputHandle, Matched, Pattern, Sink};
