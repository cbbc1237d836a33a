//! Hot reload: a `notify` watcher on the policy file's directory and SIGHUP, debounced,
//! each leading to one re-read. The directory is watched (not the file) because editors
//! replace files by rename and Kubernetes swaps ConfigMaps by re-pointing a symlink:
//! both leave a watch on the old file's inode blind. Whatever fired, the file is re-read
//! through its path and applied only when its content changed and it compiles; an invalid
//! file leaves the running rules in place.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::config::{load_str, ConfigError};
use crate::shared::Shared;

/// Counts of reload attempts, for whoever waits on them (tests, admin endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadEvent {
    /// Changed files applied.
    pub applied: u64,
    /// Files rejected (the running rules stayed).
    pub failed: u64,
    /// The last rejection, with file, line and column.
    pub last_error: Option<String>,
}

/// Re-reads a policy file into the rules of a layer (and of every service it made).
pub struct Reloader {
    shared: Arc<Shared>,
    path: PathBuf,
    last_text: Mutex<Option<String>>,
    events: watch::Sender<ReloadEvent>,
}

/// Keeps a watcher running; dropping it stops watching.
#[must_use = "dropping the handle stops watching the file"]
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle")
            .field("running", &!self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("events", &*self.events.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reloader {
    pub(crate) fn new(shared: Arc<Shared>, path: PathBuf) -> Self {
        let last_text = std::fs::read_to_string(&path).ok();
        Reloader {
            shared,
            path,
            last_text: Mutex::new(last_text),
            events: watch::channel(ReloadEvent::default()).0,
        }
    }

    /// Reload outcomes as they happen.
    pub fn subscribe(&self) -> watch::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    /// Re-reads the file now. `Ok(true)`: new rules are in force; `Ok(false)`: the
    /// content is unchanged; `Err`: the file is unusable and the old rules stay.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let result = self.try_reload();
        match &result {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(file = %self.path.display(), "rate-limit policies reloaded");
                metrics::counter!(crate::metric_names::CONFIG_RELOADS_TOTAL, "result" => "ok")
                    .increment(1);
                self.events.send_modify(|e| e.applied += 1);
            }
            Err(err) => {
                tracing::error!(error = %err, "rate-limit policy file rejected; the running policies stay in force");
                metrics::counter!(crate::metric_names::CONFIG_RELOADS_TOTAL, "result" => "failed")
                    .increment(1);
                self.events.send_modify(|e| {
                    e.failed += 1;
                    e.last_error = Some(err.to_string());
                });
            }
        }
        result
    }

    fn try_reload(&self) -> Result<bool, ConfigError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| ConfigError::Io {
            file: self.path.clone(),
            source,
        })?;
        let mut last = self.last_text.lock();
        if last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        let loaded = load_str(&text, &self.path)?;
        if loaded.rules.store() != self.shared.rules.load().store() {
            tracing::warn!(file = %self.path.display(), "the store, failure_mode, breaker or overload section changed; it takes effect on restart only");
        }
        self.shared.replace_rules(loaded.rules);
        *last = Some(text);
        Ok(true)
    }

    /// Watches the file's directory and SIGHUP, reloading once events have been quiet
    /// for `debounce`. Must be called inside a Tokio runtime.
    pub fn watch(self, debounce: Duration) -> Result<WatchHandle, notify::Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let fs_tx = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = fs_tx.send(());
                }
            })?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        spawn_sighup(tx);
        let reloader = Arc::new(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: an editor's save or a ConfigMap swap is several events.
                loop {
                    match tokio::time::timeout(debounce, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let reloader = Arc::clone(&reloader);
                // Reading and compiling touch the disk (PEM, JWKS files).
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

#[cfg(unix)]
fn spawn_sighup(tx: mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload on file change only")
        }
    }
}

#[cfg(not(unix))]
fn spawn_sighup(_tx: mpsc::UnboundedSender<()>) {}
