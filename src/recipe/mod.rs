//! Built-in recipes and what they share.

pub mod network;
