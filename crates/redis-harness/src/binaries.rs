//! The external Redis binaries the harness runs, and the failure when one is missing.

/// Panics with install instructions when spawning `binary` failed because it is not
/// installed; otherwise returns the error as text for the caller's retry or report.
///
/// Tests never skip on a missing Redis: a skipped fault test reads as a passing one.
pub(crate) fn spawn_error(binary: &str, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        panic!(
            "`{binary}` is not installed: the tests need a real Redis (redis-server and \
             redis-cli). Install it with `apt-get install -y redis-server redis-tools` \
             (or run scripts/test.sh, which does)."
        );
    }
    format!("spawning {binary}: {e}")
}
