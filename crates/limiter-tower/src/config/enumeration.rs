//! The `enumeration` section: the key-enumeration defence as the file writes it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::enumeration::Enumeration;
use limiter_core::config_serde::{no_default, DurationText};

/// The key-enumeration defence (on by default). Per client address, and per network
/// (/24 for IPv4, `client_ip.ipv6_prefix` for IPv6), the distinct identities presented
/// (verified users, API keys) are counted in a window, and per address the distinct
/// failed credentials (tokens that do not verify, keys the application reports as
/// unknown). Above a threshold, or at the first use of a honeypot identity, the source
/// is answered 429 `abnormal-usage-detected` for `block`. Counted in Redis (HyperLogLog)
/// on a Redis store, shared by every instance; blocks are kept by each instance.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnumerationConfig {
    /// `false` turns the defence off.
    #[serde(default = "on")]
    pub enabled: bool,
    /// The counting window, from a source's first identity (default 1m).
    #[serde(
        default = "default_window",
        deserialize_with = "limiter_core::config_serde::duration"
    )]
    #[schemars(with = "DurationText", transform = no_default)]
    pub window: Duration,
    /// Distinct identities one address may present in a window (default 100).
    #[serde(default = "default_max_identities")]
    pub max_identities: u64,
    /// Distinct identities one network may present in a window (default 1000).
    #[serde(default = "default_max_identities_per_network")]
    pub max_identities_per_network: u64,
    /// Distinct failed credentials one address may present in a window (default 30).
    #[serde(default = "default_max_failed_auth")]
    pub max_failed_auth: u64,
    /// How long a source stays blocked (default 10m).
    #[serde(
        default = "default_block",
        deserialize_with = "limiter_core::config_serde::duration"
    )]
    #[schemars(with = "DurationText", transform = no_default)]
    pub block: Duration,
    /// Sources tracked in each process at once, the least used forgotten first (default
    /// 10000). Read at start-up.
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
    /// Identities no real client has: any use blocks the source at once.
    #[serde(default)]
    pub honeypot: Honeypot,
}

/// Honeypot identities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Honeypot {
    /// Users, as the `user` scope reads them from verified tokens.
    #[serde(default)]
    pub users: Vec<String>,
    /// API keys, as sent in the `api_key.header`.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

fn on() -> bool {
    true
}

fn defaults() -> Enumeration {
    Enumeration::default()
}

fn default_window() -> Duration {
    defaults().window
}

fn default_max_identities() -> u64 {
    defaults().max_identities
}

fn default_max_identities_per_network() -> u64 {
    defaults().max_identities_per_network
}

fn default_max_failed_auth() -> u64 {
    defaults().max_failed_auth
}

fn default_block() -> Duration {
    defaults().block
}

fn default_max_sources() -> usize {
    defaults().max_sources
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        EnumerationConfig {
            enabled: true,
            window: default_window(),
            max_identities: default_max_identities(),
            max_identities_per_network: default_max_identities_per_network(),
            max_failed_auth: default_max_failed_auth(),
            block: default_block(),
            max_sources: default_max_sources(),
            honeypot: Honeypot::default(),
        }
    }
}

impl EnumerationConfig {
    /// What the builder takes: `None` when off.
    pub(crate) fn to_builder(&self) -> Option<Enumeration> {
        self.enabled.then(|| {
            Enumeration::default()
                .window(self.window)
                .max_identities(self.max_identities)
                .max_identities_per_network(self.max_identities_per_network)
                .max_failed_auth(self.max_failed_auth)
                .block(self.block)
                .max_sources(self.max_sources)
                .honeypot_users(self.honeypot.users.iter().cloned())
                .honeypot_api_keys(self.honeypot.api_keys.iter().cloned())
        })
    }
}
