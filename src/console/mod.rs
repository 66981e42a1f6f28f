//! The serial console: transcript, escape-sequence stripping, the expect engine.
