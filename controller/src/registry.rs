//! Live agent sessions: node id -> the sender of its stream. In memory only: a session exists
//! while the agent's stream is open.

use clustermgr_proto::ControllerMessage;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
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

    /// Ends the session's reader at once, then tells the agent why (`status`) if there is room
    /// in its outbound queue: an agent that stopped reading cannot hold this up.
    fn end(&self, status: Status) {
        let _ = self.kill.send(true);
        let _ = self.tx.try_send(Err(status));
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Session>>,
    next: AtomicU64,
}

impl Registry {
    // Every change under this lock is a single insert/remove/retain: a poisoned guard still holds
    // a consistent map, so it is recovered rather than treated as empty.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

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
        if let Some(old) = self.lock().insert(node_id.to_string(), s.clone()) {
            let _ = old.kill.send(true);
        }
        (s, killed)
    }

    /// Removes the session if it is still the given generation.
    pub fn unregister(&self, node_id: &str, generation: u64) -> bool {
        let mut m = self.lock();
        if m.get(node_id).map(|s| s.generation) == Some(generation) {
            m.remove(node_id);
            return true;
        }
        false
    }

    pub fn get(&self, node_id: &str) -> Option<Session> {
        self.lock().get(node_id).cloned()
    }

    /// Every live session's sender (for messages to all agents; send with `try_send`).
    pub fn senders(&self) -> Vec<(String, Outbound)> {
        self.sessions
            .lock()
            .map(|m| m.iter().map(|(id, s)| (id.clone(), s.tx.clone())).collect())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Ends a node's session, sending `status` to the agent first. Returns whether one existed.
    pub fn drop_session(&self, node_id: &str, status: Status) -> bool {
        let s = self.lock().remove(node_id);
        match s {
            Some(s) => {
                s.end(status);
                true
            }
            None => false,
        }
    }

    /// Ends every session (controller shutdown): the agents get `status` and reconnect later.
    pub fn close_all(&self, status: Status) -> usize {
        let all: Vec<Session> = self.lock().drain().map(|(_, s)| s).collect();
        for s in &all {
            s.end(status.clone());
        }
        all.len()
    }

    /// Ends sessions whose last message is older than `grace_ms` (half-open connections).
    pub fn reap(&self, grace_ms: u64) -> Vec<String> {
        let now = clustermgr_shared::util::now_ms();
        let mut gone = Vec::new();
        self.lock().retain(|id, s| {
            let alive = now.saturating_sub(s.last_seen()) <= grace_ms;
            if !alive {
                let _ = s.kill.send(true);
                gone.push(id.clone());
            }
            alive
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_a_session_whose_queue_is_full_does_not_block() {
        let reg = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        let (_s, mut killed) = reg.register("n1", tx.clone(), "peer".into());
        // The agent never reads: its queue is full.
        tx.send(Ok(ControllerMessage::default())).await.unwrap();
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            reg.drop_session("n1", Status::permission_denied("removed"))
        })
        .await
        .expect("drop_session blocked");
        assert!(dropped);
        assert!(*killed.borrow_and_update());
    }

    #[test]
    fn a_poisoned_registry_still_finds_its_sessions() {
        let reg = std::sync::Arc::new(Registry::default());
        let (tx, _rx) = mpsc::channel(1);
        let _ = reg.register("n1", tx, "peer".into());
        let r = reg.clone();
        let _ = std::thread::spawn(move || {
            let _g = r.sessions.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(reg.sessions.is_poisoned());
        assert!(reg.get("n1").is_some());
        assert_eq!(reg.count(), 1);
    }
}
