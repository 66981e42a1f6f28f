//! ferry reinstalls a server from its provider's rescue system: it boots an installer in QEMU
//! with the server's real disk attached and drives the install over the VM's serial console.
//!
//! The modules follow the flow: [`host`] facts → [`install::plan`] → boot ([`image`], [`qemu`])
//! → drive ([`console`]) → finish → verify → report. `main.rs` only parses the command line
//! ([`cli`]) and maps [`Error`] to an exit code. [`fetch`] downloads and verifies images.

/// `impl schemars::JsonSchema` for a type that serde writes as a string (its own `Serialize`),
/// with the schema's other keywords: `string_schema!(Timestamp, { "pattern": "…" })`.
macro_rules! string_schema {
    ($ty:ident, { $($key:literal : $value:expr),* $(,)? }) => {
        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", $($key: $value),* })
            }
        }
    };
}

pub mod arch;
pub mod cli;
pub mod clock;
pub mod console;
pub mod doctor;
pub mod error;
pub mod fetch;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod image;
pub mod install;
mod logging;
pub mod ops;
pub mod profile;
pub mod qemu;
pub mod recipe;
pub mod run;
pub mod style;
pub mod table;

pub use error::Error;
