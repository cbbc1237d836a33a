//! The committed configuration files load, the committed schema is the generated one,
//! and bad files are reported with file, line, column and field.

use std::path::{Path, PathBuf};

use limiter_tower::config::{load, load_str, schema_json, ConfigError};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn reference_yaml_loads() {
    std::env::set_var("JWT_SECRET", "reference-secret");
    let loaded = load(&repo("config/reference.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rules.policies().count(), 6);
}

#[test]
fn demo_yaml_loads() {
    std::env::set_var("DEMO_JWT_SECRET", "demo-secret");
    let loaded = load(&repo("config/demo.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rules.policies().count(), 16);
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = repo("config/schema.json");
    let generated = schema_json();
    if std::env::var_os("LIMITER_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "config/schema.json is stale: run `LIMITER_WRITE_SCHEMA=1 cargo test -p limiter-tower --test config_files`"
    );
}

fn error(yaml: &str) -> ConfigError {
    match load_str(yaml, Path::new("policies.yaml")) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e,
    }
}

#[test]
fn unknown_field_names_line_column_and_field() {
    let e = error("endpoints:\n  - path: /a\n    name: a\n    limits:\n      - { name: m, max: 1, windw: 60s }\n");
    let text = e.to_string();
    assert!(text.starts_with("policies.yaml:5:"), "{text}");
    assert_eq!(e.field(), Some("endpoints[0].limits[0].windw"), "{text}");
    assert!(text.contains("windw"), "{text}");
}

#[test]
fn bad_duration_and_bad_cidr_are_located() {
    let e = error("endpoints:\n  - path: /a\n    name: a\n    limits:\n      - name: m\n        max: 1\n        window: soon\n");
    assert_eq!(e.position().map(|p| p.line), Some(7), "{e}");
    assert_eq!(e.field(), Some("endpoints[0].limits[0].window"), "{e}");
    let e = error("client_ip:\n  trusted_proxies: [\"10.0.0.0/33\"]\n");
    assert_eq!(e.position().map(|p| p.line), Some(2), "{e}");
    assert!(
        e.field().unwrap().starts_with("client_ip.trusted_proxies"),
        "{e}"
    );
}

#[test]
fn invalid_policies_point_at_their_entry() {
    let e = error("endpoints:\n  - path: /a\n    name: a\n    limits: [{ name: m, max: 1, window: 60s }]\n  - path: /b\n    name: b\n    limits: [{ name: m, max: 0, window: 60s }]\n");
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
    assert_eq!(e.position().map(|p| p.line), Some(5), "{e}");
    assert_eq!(e.field(), Some("endpoints[1].limits[0].max"), "{e}");
    assert!(e.to_string().contains("max must be at least 1"), "{e}");

    let dup = error("endpoints:\n  - path: /a\n    name: a\n    limits: [{ name: m, max: 1, window: 1s }]\n  - path: /b\n    name: a\n    limits: [{ name: m, max: 1, window: 1s }]\n");
    assert!(dup.to_string().contains("used twice"), "{dup}");

    let conflict = error("endpoints:\n  - path: /a/{x}\n    name: a\n    limits: [{ name: m, max: 1, window: 1s }]\n  - path: /a/{y}\n    name: b\n    limits: [{ name: m, max: 1, window: 1s }]\n");
    assert_eq!(conflict.field(), Some("endpoints[1].path"), "{conflict}");
}

#[test]
fn user_scope_without_jwt_and_unset_env_are_errors() {
    let e = error("endpoints:\n  - path: /a\n    name: a\n    scopes: [user]\n    limits: [{ name: m, max: 1, window: 1s }]\n");
    assert_eq!(e.field(), Some("jwt"), "{e}");
    let e = error("store:\n  kind: redis\n  url: ${LIMITER_TEST_SURELY_UNSET}\n");
    assert!(
        matches!(e, ConfigError::Env { ref var, .. } if var == "LIMITER_TEST_SURELY_UNSET"),
        "{e}"
    );
}

#[test]
fn not_yaml_is_an_error_not_a_panic() {
    for text in ["{", "endpoints: 7", "- a\n- b", "\u{0}", "endpoints:\n  - path: /a\n    name: a\n    limits: [{ name: \"a\\\"b\", max: 1, window: 1s }]\n"] {
        let _ = error(text);
    }
}

#[test]
fn failure_modes_and_breaker_are_read_and_checked() {
    let setup = |yaml: &str| {
        load_str(yaml, Path::new("policies.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .rules
            .store()
            .clone()
    };
    use limiter_core::FailureMode;
    assert_eq!(setup("{}").failure_mode, FailureMode::Open);
    assert_eq!(
        setup("failure_mode: deny\n").failure_mode,
        FailureMode::Closed
    );
    assert_eq!(
        setup("failure_mode: closed\n").failure_mode,
        FailureMode::Closed
    );
    assert_eq!(
        setup("failure_mode: { mode: local, share: 0.25 }\n").failure_mode,
        FailureMode::Local { share: 0.25 }
    );
    let breaker = setup("breaker: { failures: 3, probe_interval: 2s }\n").breaker;
    assert_eq!(breaker.failures, 3);
    assert_eq!(breaker.probe_interval, std::time::Duration::from_secs(2));
    assert_eq!(
        breaker.slow_calls,
        limiter_core::BreakerConfig::default().slow_calls,
        "unset fields keep their defaults"
    );

    let e = error("failure_mode: { mode: local, share: 1.5 }\n");
    assert!(e.to_string().contains("at most 1"), "{e}");
    assert_eq!(e.position().map(|p| p.line), Some(1), "{e}");
    let e = error("failure_mode: local\n");
    assert!(e.to_string().contains("share"), "{e}");
    let e = error("failure_mode: maybe\n");
    assert!(e.to_string().contains("unknown failure mode"), "{e}");
    let e = error("breaker:\n  failures: 0\n");
    assert_eq!(e.field(), Some("breaker.failures"), "{e}");
    let e = error("breaker:\n  probe_interval: 0s\n");
    assert_eq!(e.field(), Some("breaker.probe_interval"), "{e}");
    let e = error("breaker:\n  slow_share: 1.5\n");
    assert_eq!(e.field(), Some("breaker.slow_share"), "{e}");
    let e = error("store: { kind: redis, url: \"redis://127.0.0.1/\", timeout: 0s }\n");
    assert_eq!(e.field(), Some("store.timeout"), "{e}");
    let e = error("overload:\n  max_wait: 0s\n");
    assert!(e.to_string().contains("max_wait"), "{e}");
    let e = error("overload:\n  max_queued: 0\n");
    assert!(e.to_string().contains("max_queued"), "{e}");
}

#[test]
fn local_cache_is_read_on_redis_stores_and_checked() {
    use limiter_tower::config::StoreConfig;
    let store = |yaml: &str| {
        load_str(yaml, Path::new("policies.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .rules
            .store()
            .store
            .clone()
    };
    let local_cache = |yaml: &str| match store(yaml) {
        StoreConfig::Redis { local_cache, .. } | StoreConfig::RedisCluster { local_cache, .. } => {
            local_cache.map(|c| c.max_keys.get())
        }
        other => panic!("not a Redis store: {other:?}"),
    };
    assert_eq!(
        local_cache("store: { kind: redis, url: \"redis://127.0.0.1:1\" }\n"),
        None,
        "off unless configured"
    );
    assert_eq!(
        local_cache(
            "store:\n  kind: redis\n  url: redis://127.0.0.1:1\n  local_cache: { max_keys: 500 }\n"
        ),
        Some(500)
    );
    assert_eq!(
        local_cache(
            "store: { kind: redis_cluster, nodes: [\"redis://127.0.0.1:1\"], local_cache: {} }\n"
        ),
        Some(10_000),
        "the default bound"
    );

    // Errors inside `store` are located at the section (serde reads a `kind`-tagged enum
    // from a buffer without positions), so their messages name the value at fault.
    let e = error("headers: draft\nstore:\n  kind: redis\n  url: redis://127.0.0.1:1\n  local_cache:\n    max_keys: 0\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert_eq!(e.field(), Some("store"), "{e}");
    // The `store:` line or its first field's, as the YAML parser reports the section.
    let line = e.position().map(|p| p.line);
    assert!(matches!(line, Some(2 | 3)), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "policies.yaml:{}: store: local_cache.max_keys must be at least 1",
            e.position().unwrap()
        )),
        "{e}"
    );

    let e =
        error("store:\n  kind: redis\n  url: redis://127.0.0.1:1\n  local_cache: { max_key: 5 }\n");
    assert!(matches!(e.position().map(|p| p.line), Some(1 | 2)), "{e}");
    assert!(
        e.to_string()
            .contains(": store: unknown field `max_key`, expected"),
        "{e}"
    );
    let e = error("store:\n  kind: redis\n  url: redis://127.0.0.1:1\n  local_cache: -3\n");
    assert!(matches!(e.position().map(|p| p.line), Some(1 | 2)), "{e}");

    // The memory store does not offer it: it would only add a lookup.
    let e = error("store:\n  kind: memory\n  local_cache: { max_keys: 5 }\n");
    assert!(e.to_string().contains("unknown field `local_cache`"), "{e}");
    assert!(matches!(e.position().map(|p| p.line), Some(1 | 2)), "{e}");
}

/// The `batch` and `leases` sections of a Redis store, as compiled.
fn throughput(
    yaml: &str,
) -> (
    Option<limiter_tower::config::BatchConfig>,
    Option<limiter_tower::config::LeasesConfig>,
) {
    use limiter_tower::config::StoreConfig;
    let loaded = load_str(yaml, Path::new("policies.yaml")).unwrap_or_else(|e| panic!("{e}"));
    match loaded.rules.store().store.clone() {
        StoreConfig::Redis { batch, leases, .. }
        | StoreConfig::RedisCluster { batch, leases, .. } => (batch, leases),
        other => panic!("not a Redis store: {other:?}"),
    }
}

#[test]
fn batching_is_on_and_leases_off_unless_configured() {
    use limiter_tower::config::{BatchConfig, ByteSize, LeasesConfig};
    use std::time::Duration;
    let (batch, leases) = throughput("store: { kind: redis, url: \"redis://127.0.0.1:1\" }\n");
    assert_eq!(
        batch,
        Some(BatchConfig::default()),
        "batching is on by default, with limiter-core's settings"
    );
    assert_eq!(leases, None, "leases are off by default");

    for off in ["off", "false", "\"off\""] {
        let yaml =
            format!("store: {{ kind: redis, url: \"redis://127.0.0.1:1\", batch: {off} }}\n");
        assert_eq!(throughput(&yaml).0, None, "batch: {off}");
    }
    for on in ["on", "true", "{}"] {
        let yaml =
            format!("store:\n  kind: redis_cluster\n  nodes: [\"redis://127.0.0.1:1\"]\n  batch: {on}\n  leases: {on}\n");
        let (batch, leases) = throughput(&yaml);
        assert_eq!(batch, Some(BatchConfig::default()), "batch: {on}");
        assert_eq!(leases, Some(LeasesConfig::default()), "leases: {on}");
    }
    let (batch, leases) = throughput(
        "store:\n  kind: redis\n  url: redis://127.0.0.1:1\n  batch: { max_batch: 64, linger: 50us, max_in_flight: 4 }\n  leases:\n    lifetime: 50ms\n    reserve: 0.2\n    speculation: 0.05\n    min_demand: 8\n    max_units: 500\n    max_memory: 64MiB\n",
    );
    let batch = batch.unwrap();
    assert_eq!(batch.max_batch.map(|n| n.get()), Some(64));
    assert_eq!(batch.linger, Some(Duration::from_micros(50)));
    assert_eq!(batch.max_in_flight.map(|n| n.get()), Some(4));
    let leases = leases.unwrap();
    assert_eq!(leases.lifetime, Some(Duration::from_millis(50)));
    assert_eq!(leases.reserve, Some(0.2));
    assert_eq!(leases.speculation, Some(0.05));
    assert_eq!((leases.min_demand, leases.max_units), (Some(8), Some(500)));
    assert_eq!(leases.max_memory, Some(ByteSize(64 << 20)));
    let (batch, leases) = throughput(
        "store: { kind: redis, url: \"redis://127.0.0.1:1\", batch: { linger: 0s }, leases: { max_memory: 100MB, reserve: 0 } }\n",
    );
    let batch = batch.unwrap();
    assert_eq!(batch.linger, Some(Duration::ZERO), "no linger at all");
    assert_eq!(batch.max_batch, None, "unset: limiter-core's default");
    let leases = leases.unwrap();
    assert_eq!(leases.max_memory, Some(ByteSize(100_000_000)));
    assert_eq!(leases.reserve, Some(0.0));
    assert_eq!(leases.lifetime, None, "unset: limiter-core's default");
}

#[test]
fn bad_batch_and_lease_values_name_the_field() {
    // Inside `store`, errors are located at the section (see the local_cache test above),
    // so each message names the value at fault.
    for (section, message) in [
        (
            "batch: { max_batch: 0 }",
            "batch.max_batch must be at least 1",
        ),
        (
            "batch: { max_in_flight: 0 }",
            "batch.max_in_flight must be at least 1",
        ),
        ("batch: { linger: 5ms }", "batch.linger must be at most 1ms"),
        ("batch: { linger: soon }", "batch.linger: invalid duration"),
        ("batch: { max_bach: 5 }", "unknown field `max_bach`"),
        (
            "batch: sometimes",
            "batch: expected `off`, `on` or a map of settings",
        ),
        (
            "leases: { reserve: 1 }",
            "leases.reserve must be at least 0 and below 1, not 1",
        ),
        (
            "leases: { reserve: -0.1 }",
            "leases.reserve must be at least 0 and below 1",
        ),
        (
            "leases: { lifetime: 0s }",
            "leases.lifetime must be longer than zero",
        ),
        (
            "leases: { speculation: 1.5 }",
            "leases.speculation must be from 0 to 1, not 1.5",
        ),
        (
            "leases: { min_demand: 0 }",
            "leases.min_demand must be at least 1",
        ),
        ("leases: { max_units: -3 }", "leases.max_units: invalid"),
        (
            "leases: { max_units: 0 }",
            "leases.max_units must be at least 1",
        ),
        (
            "leases: { max_memory: 0 }",
            "leases.max_memory must be above zero",
        ),
        (
            "leases: { max_memory: 10 parsecs }",
            "leases.max_memory: invalid size \"10 parsecs\"",
        ),
        ("leases: { lifetme: 5ms }", "unknown field `lifetme`"),
    ] {
        let yaml = format!(
            "headers: draft\nstore:\n  kind: redis\n  url: redis://127.0.0.1:1\n  {section}\n"
        );
        let e = error(&yaml);
        assert!(matches!(e, ConfigError::Syntax { .. }), "{section}: {e}");
        assert_eq!(e.field(), Some("store"), "{section}: {e}");
        assert!(
            matches!(e.position().map(|p| p.line), Some(2 | 3)),
            "{section}: {e}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("policies.yaml:{}: store: ", e.position().unwrap())),
            "{section}: {text}"
        );
        assert!(text.contains(message), "{section}: {text}");
    }
    // The memory store has neither.
    let e = error("store:\n  kind: memory\n  leases: on\n");
    assert!(e.to_string().contains("unknown field `leases`"), "{e}");
}

#[test]
fn a_policy_may_turn_leases_off_or_set_its_own_lifetime() {
    use limiter_core::Leasing;
    use std::time::Duration;
    let yaml = "\
store: { kind: redis, url: \"redis://127.0.0.1:1\", leases: on }
default_policy: { name: rest, leases: off, limits: [{ name: m, max: 100, window: 60s }] }
endpoints:
  - { path: /a, name: a, limits: [{ name: m, max: 100, window: 60s }] }
  - { path: /b, name: b, leases: off, limits: [{ name: m, max: 100, window: 60s }] }
  - { path: /c, name: c, leases: { lifetime: 50ms }, limits: [{ name: m, max: 100, window: 60s }] }
  - { path: /d, name: d, leases: on, limits: [{ name: m, max: 100, window: 60s }] }
  - { path: /e, name: e, leases: false, limits: [{ name: m, max: 100, window: 60s }] }
  - { path: /f, name: f, leases: {}, limits: [{ name: m, max: 100, window: 60s }] }
";
    let loaded = load_str(yaml, Path::new("policies.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let leasing: Vec<(String, Leasing)> = loaded
        .rules
        .policies()
        .map(|p| (p.name().to_owned(), p.leasing()))
        .collect();
    assert_eq!(
        leasing,
        [
            ("a".to_owned(), Leasing::Store),
            ("b".to_owned(), Leasing::Off),
            ("c".to_owned(), Leasing::Lifetime(Duration::from_millis(50))),
            ("d".to_owned(), Leasing::Store),
            ("e".to_owned(), Leasing::Off),
            ("f".to_owned(), Leasing::Store),
            ("rest".to_owned(), Leasing::Off),
        ]
    );

    // Outside `store`, errors name the line and the field itself.
    let e = error("endpoints:\n  - path: /a\n    name: a\n    limits: [{ name: m, max: 1, window: 60s }]\n  - path: /b\n    name: b\n    leases:\n      lifetime: 0s\n    limits: [{ name: m, max: 1, window: 60s }]\n");
    assert_eq!(e.field(), Some("endpoints[1].leases.lifetime"), "{e}");
    assert_eq!(e.position().map(|p| p.line), Some(8), "{e}");
    assert!(e.to_string().contains("must be longer than zero"), "{e}");
    let e = error("endpoints:\n  - path: /a\n    name: a\n    leases: { lifetme: 5ms }\n    limits: [{ name: m, max: 1, window: 60s }]\n");
    assert_eq!(e.position().map(|p| p.line), Some(4), "{e}");
    assert!(e.field().unwrap().starts_with("endpoints[0].leases"), "{e}");
    assert!(e.to_string().contains("unknown field `lifetme`"), "{e}");
    let e = error("default_policy:\n  name: d\n  leases: sometimes\n  limits: [{ name: m, max: 1, window: 60s }]\n");
    assert_eq!(e.position().map(|p| p.line), Some(3), "{e}");
    assert_eq!(e.field(), Some("default_policy.leases"), "{e}");
    assert!(e.to_string().contains("expected `off`, `on`"), "{e}");
}

#[test]
fn durations_take_microseconds() {
    let loaded = load_str(
        "endpoints:\n  - { path: /a, name: a, limits: [{ name: m, max: 1, window: 1500000us }] }\n",
        Path::new("policies.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let policy = loaded.rules.policies().next().unwrap();
    assert_eq!(
        policy.limits()[0].window(),
        std::time::Duration::from_millis(1500)
    );
}

#[test]
fn usage_and_units_are_checked_and_located() {
    let entry = |usage: &str, limits: &str| {
        format!(
            "endpoints:\n  - path: /a\n    name: a\n    limits: [{limits}]\n    usage: {usage}\n"
        )
    };
    let one = "{ name: m, max: 10, window: 60s }";
    let cases = [
        (
            entry("{ actual: header }", one),
            "endpoints[0].usage.header",
            "needs the header",
        ),
        (
            entry("{ actual: report, header: x-used }", one),
            "endpoints[0].usage.header",
            "only with `actual: header`",
        ),
        (
            entry("{ actual: header, header: \"bad header\" }", one),
            "endpoints[0].usage.header",
            "not a valid header name",
        ),
        (
            entry("{ charge_statuses: [401, 99] }", one),
            "endpoints[0].usage.charge_statuses[1]",
            "not an HTTP status",
        ),
        (
            entry(
                "{ actual: report }",
                "{ name: t, max: 10, window: 60s, unit: tokens }, { name: b, max: 10, window: 60s, unit: bytes }",
            ),
            "endpoints[0].limits[1].unit",
            "bytes",
        ),
        (
            entry("{ actual: report }", "{ name: t, max: 10, window: 60s, unit: \"\" }"),
            "endpoints[0].limits[0]",
            "must not be empty",
        ),
    ];
    for (yaml, field, message) in cases {
        let e = error(&yaml);
        assert_eq!(e.field(), Some(field), "{e}");
        assert_eq!(e.position().map(|p| p.line), Some(2), "{e}");
        assert!(e.to_string().contains(message), "{e}");
    }
    let e = error(&entry("{ actual: guess }", one));
    assert!(e.to_string().contains("guess"), "{e}");
}

#[test]
fn plans_are_checked_and_located() {
    let jwt = "jwt: { algorithms: [HS256], hs_secret_env: PLANS_TEST_SECRET }\n";
    std::env::set_var("PLANS_TEST_SECRET", "s");
    let policy = |plans: &str| {
        format!("endpoints:\n  - path: /a\n    name: a\n    scopes: [user]\n    limits: [{{ name: m, max: 5, window: 1h }}]\n    plans:\n{plans}")
    };
    let pro = "      pro: { limits: [{ name: m, max: 50, window: 1h }] }\n";
    let section = "plans: { claim: plan, default: free, names: [pro] }\n";

    // Loads, and the plan is the policy's, under its name.
    let loaded = load_str(
        &format!("{jwt}{section}{}", policy(pro)),
        Path::new("p.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rules.policies().count(), 1);

    let cases = [
        // No `plans` section: nothing says where a plan is read.
        (format!("{jwt}{}", policy(pro)), "endpoints[0].plans.pro", "need a `plans` section", Some(2)),
        // A plan nobody declared (a typo).
        (format!("{jwt}{section}{}", policy(pro.replace("pro", "por").as_str())), "endpoints[0].plans.por", "not declared", Some(3)),
        // The default plan's limits are the policy's own.
        (format!("{jwt}{section}{}", policy(pro.replace("pro", "free").as_str())), "endpoints[0].plans.free", "default plan", Some(3)),
        // A plan's bad window names its place.
        (format!("{jwt}{section}{}", policy("      pro: { limits: [{ name: m, max: 0, window: 1h }] }\n")), "endpoints[0].plans.pro.limits[0].max", "at least 1", Some(3)),
        // A claim needs tokens verified.
        (format!("{section}endpoints: []\n"), "plans.claim", "no `jwt` section", None),
        // A header is believed only from trusted proxies.
        ("plans: { header: x-plan, default: free }\n".to_owned(), "plans.header", "trusted proxies", None),
        ("plans: { header: \"bad header\", default: free }\nclient_ip: { trusted_proxies: [10.0.0.0/8] }\n".to_owned(), "plans.header", "not a valid header name", None),
        // Exactly one source.
        ("plans: { claim: plan, header: x-plan, default: free }\n".to_owned(), "plans", "exactly one", None),
        ("plans: { default: free }\n".to_owned(), "plans", "exactly one", None),
        ("plans: { api_keys: { \"${PLANS_TEST_UNSET}\": pro }, default: free }\n".to_owned(), "plans.api_keys", "PLANS_TEST_UNSET", None),
    ];
    for (yaml, field, message, line) in cases {
        let e = error(&yaml);
        assert_eq!(e.field(), Some(field), "{e}\n{yaml}");
        assert!(e.to_string().contains(message), "{e}\n{yaml}");
        assert_eq!(
            e.position().map(|p| p.line),
            line.map(|l: u64| l + 1),
            "{e}\n{yaml}"
        );
    }
}

#[test]
fn shared_policies_are_checked_and_located() {
    let shared = "policies:\n  - name: team\n    scopes: [global]\n    limits: [{ name: m, max: 25, window: 1h }]\n";
    let endpoint = |extra: &str| {
        format!("endpoints:\n  - path: /a\n    name: a\n    limits: [{{ name: m, max: 5, window: 1h }}]\n{extra}")
    };
    let loaded = load_str(
        &format!("{shared}{}", endpoint("    also: [team]\n")),
        Path::new("p.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rules.policies().count(), 2);

    let cases = [
        (
            format!("{shared}{}", endpoint("    also: [teams]\n")),
            "endpoints[0].also[0]",
            "no shared policy",
            Some(6),
        ),
        (
            format!("{shared}{}", endpoint("    also: [team, team]\n")),
            "endpoints[0].also[1]",
            "twice",
            Some(6),
        ),
        (
            format!(
                "{shared}{}",
                endpoint("    also: [team]\n    shadow: true\n")
            ),
            "endpoints[0].also[0]",
            "shadow",
            Some(6),
        ),
        (
            format!(
                "{shared}{}",
                endpoint("    also: [team]\n    usage: { refund_server_errors: true }\n")
            ),
            "endpoints[0].also[0]",
            "settles",
            Some(6),
        ),
        (
            format!("{shared}    also: [a]\n{}", endpoint("")),
            "policies[0].also",
            "only an endpoint",
            Some(2),
        ),
        (
            format!("{}{}", shared.replace("team", "a"), endpoint("")),
            "endpoints[0].name",
            "used twice",
            Some(6),
        ),
    ];
    for (yaml, field, message, line) in cases {
        let e = error(&yaml);
        assert_eq!(e.field(), Some(field), "{e}\n{yaml}");
        assert!(e.to_string().contains(message), "{e}\n{yaml}");
        assert_eq!(e.position().map(|p| p.line), line, "{e}\n{yaml}");
    }
}
