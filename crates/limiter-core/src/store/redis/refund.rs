//! Giving back a lease's unused units: `refund.lua`.

use super::{key_count, store_error, Connection, RedisStore};
use crate::error::Error;
use crate::key;
use crate::policy::{Algorithm, Policy};

impl RedisStore {
    /// Gives back `unused` of the `taken` units an admitted decision consumed for `key`
    /// under `policy` at store time `taken_at` (µs), where each window's algorithm can
    /// still tell them apart (see `refund.lua`).
    pub(crate) async fn refund_units(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at: i64,
    ) -> Result<(), Error> {
        let key = key::normalize(key)?;
        let limits = policy.limits();
        let mut cmd = redis::Cmd::with_capacity(8 + 2 * limits.len() + 3 * limits.len(), 256);
        cmd.arg("EVALSHA")
            .arg(self.scripts.refund.get_hash())
            .arg(key_count(policy));
        self.push_keys(&mut cmd, policy, &key);
        cmd.arg(taken).arg(unused).arg(taken_at).arg(limits.len());
        for limit in limits {
            let window = limit.window_us();
            let aligned = taken_at - taken_at.rem_euclid(window);
            let (code, span, start) = match limit.algo() {
                Algorithm::Gcra { .. } => (1, limit.emission_us(), 0),
                Algorithm::FixedWindow => (2, window, aligned),
                Algorithm::Calendar(period) => (3, window, period.bounds(taken_at).0),
                Algorithm::SlidingWindow => (4, window, aligned),
                Algorithm::SlidingLog => (5, window, 0),
            };
            cmd.arg(code).arg(span).arg(start);
        }
        #[cfg(feature = "test-clock")]
        self.push_script_clock(&mut cmd);
        let script = &self.scripts.refund;
        match &self.conn {
            Connection::Single(conn) => self.run(script, &cmd, &mut conn.clone()).await,
            Connection::Cluster(conn) => self.run(script, &cmd, &mut conn.clone()).await,
        }
        .map(drop)
        .map_err(store_error)
    }
}
