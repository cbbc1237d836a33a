//! docker-compose.yml parses, and what it refers to exists: the services, distinct host
//! ports, the Dockerfile, the mounted directories and the policy file the demos load.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    build: Option<Build>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
}

#[derive(Deserialize)]
struct Build {
    context: String,
    dockerfile: String,
}

#[test]
fn compose_file_is_consistent_with_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("docker-compose.yml")).expect("docker-compose.yml");
    let compose: Compose = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let names: HashSet<&str> = compose.services.keys().map(String::as_str).collect();
    for needed in ["redis", "demo1", "demo2", "demo3", "load"] {
        assert!(names.contains(needed), "service {needed} missing");
    }
    let mut host_ports = HashSet::new();
    for (name, service) in &compose.services {
        assert!(
            service.image.is_some() != service.build.is_some(),
            "{name}: image or build"
        );
        for dep in &service.depends_on {
            assert!(
                names.contains(dep.as_str()),
                "{name} depends on unknown {dep}"
            );
        }
        for port in &service.ports {
            let host = port.split(':').next().unwrap();
            assert!(
                host_ports.insert(host.to_owned()),
                "host port {host} used twice"
            );
        }
        if let Some(build) = &service.build {
            assert!(
                root.join(&build.context).join(&build.dockerfile).is_file(),
                "{name}: Dockerfile"
            );
        }
        let mut mounts = Vec::new();
        for volume in &service.volumes {
            let mut parts = volume.split(':');
            let (host, container) = (parts.next().unwrap(), parts.next().expect("host:container"));
            assert!(root.join(host).exists(), "{name}: mounted {host} missing");
            mounts.push((host, container));
        }
        if name.starts_with("demo") {
            assert_eq!(
                service.environment.get("REDIS_URL").map(String::as_str),
                Some("redis://redis:6379")
            );
            let config = service
                .command
                .iter()
                .skip_while(|a| *a != "--config")
                .nth(1)
                .expect("--config");
            let (host, container) = mounts
                .iter()
                .find(|(_, c)| config.starts_with(&format!("{c}/")))
                .unwrap_or_else(|| panic!("{name}: {config} is not in a mounted directory"));
            let file = root.join(host).join(&config[container.len() + 1..]);
            assert!(
                file.is_file(),
                "{name}: policy file {} missing",
                file.display()
            );
            assert!(
                service.ports.iter().any(|p| p.ends_with(":3000")),
                "{name} publishes 3000"
            );
        }
    }
}
