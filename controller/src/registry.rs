//! Live agent sessions: node id -> the sender of its stream. In memory only: a session exists
//! while the agent's stream is open.

use clustermgr_proto::ControllerMessage;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tonic::Status;

pub type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

#[derive(Clone)]
pub struct Session {
    pub generation: u64,
    pub tx: Outbound,
    pub last_seen_ms: Arc<AtomicU64>,
    pub remote: String,
    pub connected_ms: u64,
    kill: watch::Sender<bool>,
}

impl Session {
    pub fn touch(&self) {
        self.last_seen_ms
            .store(clustermgr_shared::util::now_ms(), Ordering::Relaxed);
    }
    pub fn last_seen(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// Tells the agent why (`status`), then ends the session's reader.
    async fn end(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
        let _ = self.kill.send(true);
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Session>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a new session for `node_id`, replacing (and ending) an older one. Returns the
    /// session and a receiver that fires when the session must end.
    pub fn register(
        &self,
        node_id: &str,
        tx: Outbound,
        remote: String,
    ) -> (Session, watch::Receiver<bool>) {
        let (kill, killed) = watch::channel(false);
        let now = clustermgr_shared::util::now_ms();
        let s = Session {
            generation: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            tx,
            last_seen_ms: Arc::new(AtomicU64::new(now)),
            remote,
            connected_ms: now,
            kill,
        };
        if let Ok(mut m) = self.sessions.lock()
            && let Some(old) = m.insert(node_id.to_string(), s.clone())
        {
            let _ = old.kill.send(true);
        }
        (s, killed)
    }

    /// Removes the session if it is still the given generation.
    pub fn unregister(&self, node_id: &str, generation: u64) -> bool {
        if let Ok(mut m) = self.sessions.lock()
            && m.get(node_id).map(|s| s.generation) == Some(generation)
        {
            m.remove(node_id);
            return true;
        }
        false
    }

    pub fn get(&self, node_id: &str) -> Option<Session> {
        self.sessions
            .lock()
            .ok()
            .and_then(|m| m.get(node_id).cloned())
    }

    /// Every live session's sender (for messages to all agents; send with `try_send`).
    pub fn senders(&self) -> Vec<(String, Outbound)> {
        self.sessions
            .lock()
            .map(|m| m.iter().map(|(id, s)| (id.clone(), s.tx.clone())).collect())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Ends a node's session, sending `status` to the agent first. Returns whether one existed.
    pub async fn drop_session(&self, node_id: &str, status: Status) -> bool {
        let s = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut m| m.remove(node_id));
        match s {
            Some(s) => {
                s.end(status).await;
                true
            }
            None => false,
        }
    }

    /// Ends every session (controller shutdown): the agents get `status` and reconnect later.
    pub async fn close_all(&self, status: Status) -> usize {
        let all: Vec<Session> = self
            .sessions
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default();
        for s in &all {
            s.end(status.clone()).await;
        }
        all.len()
    }

    /// Ends sessions whose last message is older than `grace_ms` (half-open connections).
    pub fn reap(&self, grace_ms: u64) -> Vec<String> {
        let now = clustermgr_shared::util::now_ms();
        let mut gone = Vec::new();
        if let Ok(mut m) = self.sessions.lock() {
            m.retain(|id, s| {
                let alive = now.saturating_sub(s.last_seen()) <= grace_ms;
                if !alive {
                    let _ = s.kill.send(true);
                    gone.push(id.clone());
                }
                alive
            });
        }
        gone
    }
}
