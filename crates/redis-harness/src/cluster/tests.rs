use std::time::Duration;

use super::RedisCluster;

fn cluster_connection(cluster: &RedisCluster) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.nodes())
        .expect("cluster client from the node urls")
        .get_connection()
        .expect("cluster connection")
}

fn plain_connection(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("node url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connection to a node")
}

#[test]
fn cluster_comes_up_and_serves_keys_through_a_cluster_client() {
    let cluster = RedisCluster::spawn();
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);

    let mut conn = cluster_connection(&cluster);
    // Keys in different slots, so more than one master is written through the client.
    for key in ["alpha", "bravo", "charlie", "delta"] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("v-{key}"))
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("SET {key}: {e}"));
        let got: String = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
        assert_eq!(got, format!("v-{key}"));

        // The key lives where master_for_key says: read it there without redirection.
        let owner = cluster.master_for_key(key);
        assert!(
            cluster.masters().contains(&owner),
            "{owner} is not a master"
        );
        let direct: Option<String> = redis::cmd("GET")
            .arg(key)
            .query(&mut plain_connection(&owner))
            .unwrap_or_else(|e| panic!("GET {key} on {owner}: {e}"));
        assert_eq!(direct.as_deref(), Some(format!("v-{key}").as_str()));
    }
}

#[test]
fn killing_a_master_fails_over_to_its_replica() {
    let mut cluster = RedisCluster::spawn();
    let victim = cluster.masters()[0].clone();
    let key = (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| cluster.master_for_key(k) == victim)
        .expect("some key lands on every master");

    let dead = cluster.kill_master(0);
    assert_eq!(dead, victim);
    let took = cluster
        .wait_for_failover(Duration::from_secs(30))
        .expect("a replica takes over");
    println!("failover took {took:?} (cluster-node-timeout 1000 ms)");

    assert_eq!(cluster.nodes().len(), 5);
    assert_eq!(
        cluster.masters().len(),
        3,
        "a replica replaced the dead master"
    );
    assert!(!cluster.masters().contains(&dead));
    let owner = cluster.master_for_key(&key);
    assert_ne!(owner, dead, "the slot moved to the promoted replica");

    let mut conn = cluster_connection(&cluster);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("after")
        .query(&mut conn)
        .unwrap();
    let got: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    assert_eq!(got, "after");
}

#[test]
fn wait_for_failover_reports_a_missing_failover() {
    let mut cluster = RedisCluster::spawn();
    cluster.kill_master(0);
    // Far shorter than failure detection (node timeout 1 s): the replica cannot have
    // taken over yet, so this must be an error, not a measured time.
    let result = cluster.wait_for_failover(Duration::ZERO);
    assert!(
        result.is_err(),
        "reported a failover before one could happen: {result:?}"
    );
}
