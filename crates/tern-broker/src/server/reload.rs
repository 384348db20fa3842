//! SIGHUP for the settings file: its `[limits]` are read again and put in
//! force without dropping a connection. New connections and sessions get
//! the new limits; open ones keep what they negotiated. A file that cannot
//! be read or parsed is logged (naming the file, key and line) and the
//! settings in force stay. Listeners, `[tls]` and `[security]` paths,
//! `[metrics]`, `[storage]` and `[cluster]` take effect at the next start:
//! a reload that finds them changed logs each one as not applied. (The
//! password, ACL and certificate files in force are read again by
//! `security::Reloader`, and `[[bridge]]` tables by the bridge connector.)

use super::{BrokerSettings, driver::Control};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};
use tokio::sync::{Semaphore, mpsc};

/// What a reload of the settings file changes.
#[derive(Debug, Clone)]
pub(crate) struct LimitsReloader {
    /// The settings in force.
    current: Arc<Mutex<BrokerSettings>>,
    /// Hands the core its new configuration.
    control: mpsc::Sender<Control>,
    /// The listeners' connection cap.
    limit: Arc<Semaphore>,
    max_connections: Arc<AtomicUsize>,
}

impl LimitsReloader {
    pub(crate) fn new(
        current: BrokerSettings,
        control: mpsc::Sender<Control>,
        limit: Arc<Semaphore>,
        max_connections: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            current: Arc::new(Mutex::new(current)),
            control,
            limit,
            max_connections,
        }
    }

    /// Reads the settings file again (if the settings came from one); the
    /// changed limits are logged and put in force. The error names the file.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = current.file.clone() else {
            return Ok(());
        };
        let new = match BrokerSettings::load(&path) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!("reload: {e}; the settings in force stay");
                return Err(e.to_string());
            }
        };
        let later = current.restart_changes(&new);
        if !later.is_empty() {
            tracing::warn!(
                file = %path.display(),
                "reload: not applied until the next start: {}",
                later.join(", ")
            );
        }
        let changes = current.limits_changes(&new);
        if changes.is_empty() {
            tracing::info!(file = %path.display(), "reload: no limit changed");
            return Ok(());
        }
        let mut next = current.clone();
        next.limits = new.limits;
        if self
            .control
            .try_send(Control::Reconfigure(Box::new(next.broker_config())))
            .is_err()
        {
            let e = "the broker core is not taking new settings (stopping?)";
            tracing::error!("reload: {e}; the settings in force stay");
            return Err(e.into());
        }
        self.resize(next.limits.max_connections);
        tracing::info!(
            file = %path.display(),
            "reload: {}",
            changes.join(", ")
        );
        *current = next;
        Ok(())
    }

    /// Changes the connection cap: more permits now, or fewer as
    /// connections end (permits in use are never taken back).
    fn resize(&self, max: usize) {
        let old = self.max_connections.swap(max, Ordering::Relaxed);
        if max > old {
            self.limit.add_permits(max - old);
        } else if max < old {
            let limit = self.limit.clone();
            let fewer = (old - max) as u32;
            tokio::spawn(async move {
                if let Ok(permits) = limit.acquire_many_owned(fewer).await {
                    permits.forget();
                }
            });
        }
    }
}
