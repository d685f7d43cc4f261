//! The workflow event hub: wake-ups for the driver, change notices for the API and the
//! console, and the driver's own locks. It knows no workflow kind.

use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::{Notify, watch};

/// Wake-ups and change notices shared by the driver and the API.
pub struct Hub {
    pub(crate) kick: Notify,
    pub(crate) changed: watch::Sender<u64>,
    /// Jobs whose secret output is being kept right now (observed as still running meanwhile).
    pub(crate) keeping_set: Mutex<HashSet<String>>,
    /// One driver pass at a time.
    pub(crate) pass: tokio::sync::Mutex<()>,
    /// One new workflow's admission at a time, held until its record is written
    /// (`queue::Admitted`): two starts on one node never both see it free.
    pub(crate) admit: tokio::sync::Mutex<()>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            kick: Notify::new(),
            changed: watch::channel(0).0,
            keeping_set: Mutex::new(HashSet::new()),
            pass: tokio::sync::Mutex::new(()),
            admit: tokio::sync::Mutex::new(()),
        }
    }
}

impl Hub {
    /// Asks the driver to look at the workflows now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
    /// Changes once a workflow record changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
    pub(crate) fn keeping(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.keeping_set.lock().unwrap_or_else(|p| p.into_inner())
    }
}
