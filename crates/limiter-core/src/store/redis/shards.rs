//! [`Shards`]: a Redis store's wires (timeout and circuit breaker), one per Cluster shard
//! (one for a standalone Redis), and the shard each key's slot belongs to.
//!
//! Why one per shard: a Cluster's masters fail one at a time. Under one breaker for the
//! whole store, a stalled master's timeouts opened it for every key, and every batch
//! (whose entries span all masters) waited out the timeout on that master's entries: one
//! master of three stalled degraded every decision (crates/loadtest's fault windows).
//! Here a master's failures open its own shard's breaker only, and `Batched` sends each
//! shard's batches apart, so the other masters' keys are decided by Redis throughout.

use parking_lot::RwLock;
use redis::Value;

use super::wire::Wire;
use super::BreakerConfig;
use super::BreakerState;
use crate::connection::Connection;
use crate::policy::Policy;

/// Slots in a Redis Cluster.
const SLOTS: usize = 16_384;

/// The wires of a store and, on a Cluster, which shard serves each slot.
pub(super) struct Shards {
    wires: Box<[Wire]>,
    /// `None` on a standalone Redis: one shard.
    layout: Option<RwLock<Layout>>,
}

/// Which shard serves each slot, and where each shard's health probe goes.
struct Layout {
    shard_of_slot: Box<[u16]>,
    /// A slot each shard serves; `None` for a shard that serves none since a refresh (a
    /// cluster with fewer masters than when the store connected).
    probe_slot: Box<[Option<u16>]>,
}

/// A master's slot ranges (inclusive), as `CLUSTER SLOTS` lists them.
pub(super) type SlotRanges = Vec<(u16, u16)>;

impl Shards {
    /// One wire for a standalone Redis.
    pub(super) fn single(timeout: std::time::Duration, breaker: BreakerConfig) -> Shards {
        Shards {
            wires: Box::new([Wire::new(timeout, breaker, None)]),
            layout: None,
        }
    }

    /// One wire per master of a Cluster, `masters` as [`cluster_slots`] reads them;
    /// without masters (the slot map could not be read), one wire for the whole Cluster.
    pub(super) fn cluster(
        timeout: std::time::Duration,
        breaker: BreakerConfig,
        masters: &[SlotRanges],
    ) -> Shards {
        if masters.is_empty() {
            return Shards::single(timeout, breaker);
        }
        let wires = masters
            .iter()
            .map(|ranges| Wire::new(timeout, breaker.clone(), Some(label(ranges))))
            .collect();
        Shards {
            wires,
            layout: Some(RwLock::new(Layout::new(masters, masters.len()))),
        }
    }

    /// How many shards: fixed when the store connects.
    pub(super) fn len(&self) -> usize {
        self.wires.len()
    }

    /// The wire of shard `shard` (of [`len`](Self::len)).
    pub(super) fn wire(&self, shard: usize) -> &Wire {
        &self.wires[shard % self.wires.len()]
    }

    /// The shard serving `key` (normalized) under `policy`: 0 on a standalone Redis.
    pub(super) fn shard_of(&self, policy: &Policy, key: &str) -> usize {
        let Some(layout) = &self.layout else {
            return 0;
        };
        usize::from(layout.read().shard_of_slot[usize::from(slot_of(policy, key))])
    }

    /// A slot of `shard`, where its health probe goes: `None` on a standalone Redis or
    /// where the shard serves no slot.
    pub(super) fn probe_slot(&self, shard: usize) -> Option<u16> {
        let layout = self.layout.as_ref()?;
        layout.read().probe_slot.get(shard).copied().flatten()
    }

    /// Maps the slots anew from `masters` (read after the connection was renewed): after
    /// a failover the slots stay with their shard; after slots moved between masters,
    /// each master's slots go to the shard of its rank (wrapping round when the cluster
    /// has more masters than when the store connected).
    pub(super) fn refresh(&self, masters: &[SlotRanges]) {
        if let (Some(layout), false) = (&self.layout, masters.is_empty()) {
            *layout.write() = Layout::new(masters, self.wires.len());
        }
    }

    /// The worst breaker state of any shard: open if one is.
    pub(super) fn state(&self) -> BreakerState {
        self.wires
            .iter()
            .map(|w| w.breaker().state())
            .max_by_key(|&s| s as u8)
            .unwrap_or(BreakerState::Closed)
    }
}

impl Layout {
    /// Master `i` (in `masters`' order) serves shard `i % shards`; unlisted slots (no
    /// master) shard 0.
    fn new(masters: &[SlotRanges], shards: usize) -> Layout {
        let mut shard_of_slot = vec![0u16; SLOTS].into_boxed_slice();
        let mut probe_slot = vec![None; shards].into_boxed_slice();
        for (i, ranges) in masters.iter().enumerate() {
            let shard = i % shards;
            for &(start, end) in ranges {
                let (start, end) = (usize::from(start), usize::from(end).min(SLOTS - 1));
                for slot in shard_of_slot.iter_mut().take(end + 1).skip(start) {
                    *slot = u16::try_from(shard).unwrap_or(u16::MAX);
                }
                probe_slot[shard].get_or_insert(u16::try_from(start).unwrap_or(0));
            }
        }
        Layout {
            shard_of_slot,
            probe_slot,
        }
    }
}

/// The `slots` label of a shard's metrics: its ranges, e.g. `0-5460` or `0-10,20-30`.
fn label(ranges: &SlotRanges) -> String {
    let ranges: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    ranges.join(",")
}

/// The slot of `key`'s windows under `policy`: their key names share the hash tag
/// `{<policy>:<key>}`, which ends at the key's first `}` if it has one (a policy name and
/// the prefix have none), as Redis reads it.
fn slot_of(policy: &Policy, key: &str) -> u16 {
    let key = key.split('}').next().unwrap_or(key);
    let mut crc = crc16::State::<crc16::XMODEM>::new();
    crc.update(policy.name().as_bytes());
    crc.update(b":");
    crc.update(key.as_bytes());
    crc.get() % SLOTS as u16
}

/// Each master's slot ranges, ordered by their first slot, from `CLUSTER SLOTS`.
pub(super) async fn cluster_slots(conn: &Connection) -> redis::RedisResult<Vec<SlotRanges>> {
    let reply: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn.clone())
        .await?;
    let mut masters: Vec<(Vec<u8>, SlotRanges)> = Vec::new();
    for range in &reply {
        let Some((start, end, master)) = parse_range(range) else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected CLUSTER SLOTS entry",
            )));
        };
        match masters.iter_mut().find(|(id, _)| *id == master) {
            Some((_, ranges)) => ranges.push((start, end)),
            None => masters.push((master, vec![(start, end)])),
        }
    }
    let mut masters: Vec<SlotRanges> = masters.into_iter().map(|(_, r)| r).collect();
    for ranges in &mut masters {
        ranges.sort_unstable();
    }
    masters.sort_unstable_by_key(|ranges| ranges.first().map(|r| r.0));
    Ok(masters)
}

/// One entry of `CLUSTER SLOTS`: `[start, end, [ip, port, id, ...], replicas...]`, as
/// (start, end, the master's ip and port).
fn parse_range(range: &Value) -> Option<(u16, u16, Vec<u8>)> {
    let Value::Array(fields) = range else {
        return None;
    };
    let [Value::Int(start), Value::Int(end), Value::Array(master), ..] = fields.as_slice() else {
        return None;
    };
    let [ip, Value::Int(port), ..] = master.as_slice() else {
        return None;
    };
    let mut address = match ip {
        Value::BulkString(ip) => ip.clone(),
        Value::SimpleString(ip) => ip.clone().into_bytes(),
        _ => return None,
    };
    address.extend_from_slice(format!(":{port}").as_bytes());
    Some((
        u16::try_from(*start).ok()?,
        u16::try_from(*end).ok()?,
        address,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::Limit;

    fn policy() -> Policy {
        Policy::new("api", vec![Limit::new(5, Duration::from_secs(60))]).unwrap()
    }

    #[test]
    fn a_key_maps_to_the_slot_redis_gives_its_hash_tag() {
        // `CLUSTER KEYSLOT 'rl:{api:user-42}:0g'`: CRC16/XMODEM of the tag, mod 16384.
        assert_eq!(slot_of(&policy(), "user-42"), 15_557);
        // The tag ends at the key's first `}`: `CLUSTER KEYSLOT 'rl:{api:a}b}:0g'`.
        assert_eq!(slot_of(&policy(), "a}b"), slot_of(&policy(), "a"));
    }

    #[test]
    fn each_masters_slots_go_to_its_shard_and_a_refresh_keeps_the_shard_count() {
        let masters = vec![vec![(0, 5460)], vec![(5461, 10922)], vec![(10923, 16383)]];
        let shards = Shards::cluster(
            Duration::from_millis(250),
            BreakerConfig::default(),
            &masters,
        );
        assert_eq!(shards.len(), 3);
        assert_eq!(shards.shard_of(&policy(), "user-42"), 2);
        assert_eq!(shards.probe_slot(2), Some(10_923));
        // Two masters now: the third shard serves nothing and has no probe slot.
        shards.refresh(&[vec![(0, 8000)], vec![(8001, 16383)]]);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards.shard_of(&policy(), "user-42"), 1);
        assert_eq!(shards.probe_slot(2), None);
        // Four masters: the fourth's slots share the first shard.
        shards.refresh(&[
            vec![(0, 99)],
            vec![(100, 199)],
            vec![(200, 299)],
            vec![(300, 16383)],
        ]);
        assert_eq!(shards.shard_of(&policy(), "user-42"), 0);
        assert_eq!(shards.probe_slot(0), Some(0));
    }

    #[test]
    fn a_standalone_redis_is_one_shard() {
        let shards = Shards::single(Duration::from_millis(250), BreakerConfig::default());
        assert_eq!(shards.len(), 1);
        assert_eq!(shards.shard_of(&policy(), "user-42"), 0);
        assert_eq!(shards.probe_slot(0), None);
        assert_eq!(shards.state(), BreakerState::Closed);
    }
}
