//! Downloads and their verification.

pub mod debian;
