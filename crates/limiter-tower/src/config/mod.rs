//! The YAML policy file: its types ([`ConfigFile`]), loading with precise errors,
//! compiling into [`Rules`](crate::Rules), the JSON Schema, and hot reload.

mod client_clock;
mod compile;
mod enumeration;
mod env;
mod error;
mod guard;
mod load;
mod memory_guard;
mod model;
mod overload;
mod reload;
mod schema;
mod throughput;

pub use client_clock::ClientTimestampConfig;
pub use enumeration::{EnumerationConfig, Honeypot};
pub use error::{ConfigError, Position};
pub use load::{load, load_str, parse, Loaded};
pub use model::*;
pub use overload::OverloadConfig;
pub use reload::{ReloadEvent, Reloader, WatchHandle};
pub use schema::schema_json;
