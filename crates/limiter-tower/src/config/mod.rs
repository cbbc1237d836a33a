//! The YAML policy file: its types ([`ConfigFile`]), loading with precise errors,
//! compiling into [`Rules`](crate::Rules), and the JSON Schema.

mod client_clock;
mod compile;
mod enumeration;
mod env;
mod error;
mod load;
mod model;
mod schema;

pub use client_clock::ClientTimestampConfig;
pub use enumeration::{EnumerationConfig, Honeypot};
pub use error::{ConfigError, Position};
pub use load::{load, load_str, parse, Loaded};
pub use model::*;
pub use schema::schema_json;

// The vocabulary the file shares with the code-first builder and the layer lives beside
// the code that uses it; it is named here too, where the file's model is.
pub use crate::headers::{HeaderStyle, QuotaUnit};
pub use crate::key::{ForwardedHeader, Scope, TokenFallback};
pub use crate::reload::{ReloadEvent, Reloader, WatchHandle};
pub use crate::store::{
    BatchConfig, ByteSize, LeasesConfig, LocalCacheConfig, MemoryGuardConfig, OverloadConfig,
    PolicyLeases, StoreConfig, StoreSetup,
};
