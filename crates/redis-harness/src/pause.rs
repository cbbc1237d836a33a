//! Stalling a server's clients with `CLIENT PAUSE ... ALL`, and lifting the stall.
//!
//! Under `CLIENT PAUSE ALL`, Redis postpones every command of every normal client,
//! `CLIENT UNPAUSE` included (checked on Redis 7.0). Replicas and `MONITOR` clients are
//! exempt, so `pause` first opens a connection in `MONITOR` mode and `unpause` sends
//! `CLIENT UNPAUSE` through it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::RedisServer;

/// How long the control connection waits for a reply.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisServer {
    /// Stalls every client's commands server-side for `d` (`CLIENT PAUSE <ms> ALL`):
    /// connections stay open, replies wait. Ends after `d` or at [`RedisServer::unpause`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let server = redis_harness::RedisServer::spawn();
    /// server.pause(Duration::from_secs(30));
    /// // ... commands from the code under test now hang ...
    /// server.unpause();
    /// ```
    ///
    /// # Panics
    /// When the server rejects the command or the control connection cannot be opened.
    pub fn pause(&self, d: Duration) {
        let control = self.open_control();
        *self.lock_control() = Some(control);
        let ms = d.as_millis().max(1).to_string();
        let _: () = self.cmd(&["CLIENT", "PAUSE", &ms, "ALL"]);
    }

    /// Lets paused clients go (`CLIENT UNPAUSE`); their postponed commands run now.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let server = redis_harness::RedisServer::spawn();
    /// server.pause(Duration::from_secs(30));
    /// server.unpause();
    /// let pong: String = server.cmd(&["PING"]);
    /// ```
    ///
    /// # Panics
    /// When the server does not confirm.
    pub fn unpause(&self) {
        let Some(mut control) = self.lock_control().take() else {
            // Not paused through this handle: an ordinary client can unpause a pause that
            // is not `ALL` (or no pause at all).
            let _: () = self.cmd(&["CLIENT", "UNPAUSE"]);
            return;
        };
        control
            .write_all(b"CLIENT UNPAUSE\r\n")
            .unwrap_or_else(|e| panic!("sending CLIENT UNPAUSE to port {}: {e}", self.port()));
        // The connection is a monitor: lines describing other clients' commands
        // ("+<timestamp> [...] ...") may come before our reply, which is exactly "+OK".
        let mut reader = BufReader::new(control);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "port {}: connection closed before CLIENT UNPAUSE",
                    self.port()
                ),
                Ok(_) if line == "+OK\r\n" => return,
                Ok(_) if line.starts_with('-') => {
                    panic!(
                        "port {}: CLIENT UNPAUSE failed: {}",
                        self.port(),
                        line.trim()
                    )
                }
                Ok(_) => {}
                Err(e) => panic!("port {}: no reply to CLIENT UNPAUSE: {e}", self.port()),
            }
        }
    }

    /// A raw connection in `MONITOR` mode: the one kind of client a pause exempts.
    fn open_control(&self) -> TcpStream {
        let fail = |e: std::io::Error| -> ! {
            panic!(
                "opening the pause control connection to port {}: {e}",
                self.port()
            )
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port())).unwrap_or_else(|e| fail(e));
        stream
            .set_read_timeout(Some(CONTROL_TIMEOUT))
            .unwrap_or_else(|e| fail(e));
        stream.write_all(b"MONITOR\r\n").unwrap_or_else(|e| fail(e));
        let mut reply = [0u8; 5];
        std::io::Read::read_exact(&mut stream, &mut reply).unwrap_or_else(|e| fail(e));
        assert_eq!(
            &reply,
            b"+OK\r\n",
            "MONITOR on port {} was refused",
            self.port()
        );
        stream
    }

    fn lock_control(&self) -> std::sync::MutexGuard<'_, Option<TcpStream>> {
        // A panic while holding the lock leaves nothing half-written: the value is an
        // Option swapped in one step.
        self.pause_control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn pause_stalls_clients_until_unpaused() {
        let server = RedisServer::spawn();
        let mut conn = server.connection();
        server.pause(Duration::from_secs(60));

        let (done, finished) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let reply: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
            done.send(reply).expect("the test waits for the reply");
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(500)).is_err(),
            "a command completed while the server was paused"
        );

        server.unpause();
        let reply = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the postponed command completes after unpause");
        assert_eq!(reply.expect("PING succeeds"), "PONG");
        worker.join().expect("worker thread");
        let pong: String = server.cmd(&["PING"]);
        assert_eq!(pong, "PONG", "new clients are served after unpause");
    }
}
