//! The shared policy file: which demo endpoints the traffic uses, their limits, and the
//! YAML every instance loads (and reloads when it is rewritten).

use std::path::Path;

/// The demo endpoints the load test sends to, each under one policy with one limit per
/// hour, so that the admitted count per key can be checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /users/{id}`, one budget per user (JWT `sub`).
    Users,
    /// `GET /me`, one budget per user.
    Me,
    /// `GET /catalog`, one budget per client address (`X-Forwarded-For`).
    Catalog,
    /// `GET /hello`, one request per client address: the memory-pressure storm's fresh
    /// addresses are each denied on their second request, filling the local cache.
    Storm,
    /// `GET /status`, one global budget: the flood phase.
    Flood,
}

/// The steady traffic's mix: (endpoint, share of requests).
pub const MIX: [(Endpoint, f64); 3] = [
    (Endpoint::Users, 0.4),
    (Endpoint::Me, 0.3),
    (Endpoint::Catalog, 0.3),
];

/// Every limit's window: longer than any run, so an admitted count is checked against
/// one budget (plus what the GCRA refills over the run; see accuracy.rs).
pub const WINDOW_S: u64 = 3600;

impl Endpoint {
    /// The policy's name in the file and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Users => "users-read",
            Endpoint::Me => "me",
            Endpoint::Catalog => "catalog",
            Endpoint::Storm => "storm",
            Endpoint::Flood => "flood",
        }
    }

    /// Requests admitted per key per hour. The per-user and per-address limits are low
    /// enough that the top users exceed them within a run (so denials, the local cache
    /// and leases are exercised) and the tail never does.
    pub fn limit(self, flood_limit: u64) -> u64 {
        match self {
            Endpoint::Users => 40,
            Endpoint::Me => 20,
            Endpoint::Catalog => 60,
            Endpoint::Storm => 1,
            Endpoint::Flood => flood_limit,
        }
    }

    /// The request path for identity `i`.
    pub fn path(self, i: u32) -> String {
        match self {
            Endpoint::Users => format!("/users/{i}"),
            Endpoint::Me => "/me".into(),
            Endpoint::Catalog => "/catalog".into(),
            Endpoint::Storm => "/hello".into(),
            Endpoint::Flood => "/status".into(),
        }
    }

    /// Whether the request carries the identity's JWT (the others are keyed by address).
    pub fn signed(self) -> bool {
        matches!(self, Endpoint::Users | Endpoint::Me)
    }

    fn yaml(self, flood_limit: u64) -> String {
        let (path, scope) = match self {
            Endpoint::Users => ("/users/{id}", "user"),
            Endpoint::Me => ("/me", "user"),
            Endpoint::Catalog => ("/catalog", "ip"),
            Endpoint::Storm => ("/hello", "ip"),
            Endpoint::Flood => ("/status", "global"),
        };
        format!(
            "  - path: {path}\n    methods: [GET]\n    name: {}\n    scopes: [{scope}]\n    \
             limits: [{{ name: hour, max: {}, window: {WINDOW_S}s }}]\n",
            self.name(),
            self.limit(flood_limit)
        )
    }
}

/// What the file says beyond the endpoints.
pub struct Policy {
    /// `redis://host:port` of every cluster node, as the instances reach them.
    pub nodes: Vec<String>,
    pub leases: bool,
    pub flood_limit: u64,
}

impl Policy {
    /// The YAML; `reloaded` adds one policy (for `/public`, which no request uses), so a
    /// reload swaps the rules without changing any budget the accuracy check counts.
    pub fn yaml(&self, reloaded: bool) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("\"{n}\"")).collect();
        // The store as a user would write it: failure mode, breaker, batching and the
        // memory guard at their defaults; leases on or off; the local cache of denials
        // smaller than the denied keys of a run, so it evicts (memory pressure).
        let leases = if self.leases { "  leases: on\n" } else { "" };
        let mut yaml = format!(
            "# Written by crates/loadtest: every instance loads this file.\n\
             store:\n  kind: redis_cluster\n  nodes: [{}]\n  key_prefix: \"lt:\"\n  \
             local_cache: {{ max_keys: 2000 }}\n{leases}\
             client_ip:\n  trusted_proxies: [\"127.0.0.1/32\"]\n\
             jwt:\n  algorithms: [HS256]\n  hs_secret_env: DEMO_JWT_SECRET\n  \
             audience: limiter-demo\n  on_invalid: ip\n\
             plans: {{ claim: plan, default: free, names: [pro] }}\n\
             endpoints:\n",
            nodes.join(", ")
        );
        for e in [
            Endpoint::Users,
            Endpoint::Me,
            Endpoint::Catalog,
            Endpoint::Storm,
            Endpoint::Flood,
        ] {
            yaml.push_str(&e.yaml(self.flood_limit));
        }
        if reloaded {
            yaml.push_str(
                "  - path: /public\n    name: public\n    scopes: [ip]\n    \
                 limits: [{ name: minute, max: 100, window: 60s }]   # added by the reload\n",
            );
        }
        yaml
    }

    /// Writes the file in one step (a temporary file renamed over it), so an instance
    /// watching it never reads half of it.
    pub fn write(&self, path: &Path, reloaded: bool) -> std::io::Result<()> {
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.yaml(reloaded))?;
        std::fs::rename(&tmp, path)
    }
}
