//! Console sessions (in memory: a controller restart signs everyone out) and the sign-in rate
//! limit.
//!
//! A session is a random 256-bit id in the cookie `__Host-clustermgr` (`Secure; HttpOnly;
//! SameSite=Strict; Path=/`), kept here by its SHA-256, with its own CSRF token; it ends after
//! [`IDLE`] without a request or [`ABSOLUTE`] after sign-in, at sign-out, or when its user is
//! removed.

use crate::auth::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "__Host-clustermgr";
/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// Failed sign-ins allowed per user name, and per source address, within [`WINDOW`].
pub const MAX_FAILURES_PER_USER: u32 = 5;
pub const MAX_FAILURES_PER_SOURCE: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Counters kept at most (the oldest go first): a flood of names cannot grow memory.
const MAX_COUNTERS: usize = 50_000;

/// Who a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `name` for a local user, `name@openid` for one signed in through OpenID Connect.
    pub user: String,
    pub role: Role,
    /// The token every state-changing form carries.
    pub csrf: String,
}

struct Entry {
    session: Session,
    created: Instant,
    used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Entry>>,
    /// Bumped whenever sessions are ended (sign-out, user removed): open live streams check
    /// their own session again at once.
    ended: tokio::sync::watch::Sender<u64>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `user`; returns the cookie value and the session.
    pub fn create(&self, user: &str, role: Role) -> (String, Session) {
        let id = random_token();
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_token(),
        };
        let now = Instant::now();
        let mut map = self.map();
        map.retain(|_, e| alive(e, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Entry {
                session: session.clone(),
                created: now,
                used: now,
            },
        );
        (id, session)
    }

    /// The live session of cookie value `id`, marked used now.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map();
        let key = digest(id);
        match map.get_mut(&key) {
            Some(e) if alive(e, now) => {
                e.used = now;
                Some(e.session.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// The live session of cookie value `id` if its role is at least `needed`, without marking
    /// it used (a live stream does not keep its session from idling out).
    pub fn holds(&self, id: &str, needed: Role) -> bool {
        let now = Instant::now();
        self.map()
            .get(&digest(id))
            .is_some_and(|e| alive(e, now) && e.session.role >= needed)
    }

    /// Notified when sessions are ended (sign-out, a user removed or its role changed).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ended.subscribe()
    }

    pub fn end(&self, id: &str) {
        self.map().remove(&digest(id));
        self.ended.send_modify(|n| *n += 1);
    }

    /// Ends every session of `user` (removed, or its role changed).
    pub fn end_user(&self, user: &str) {
        self.map().retain(|_, e| e.session.user != user);
        self.ended.send_modify(|n| *n += 1);
    }

    /// Ends every session whose user `ends` says; how many ended.
    pub fn end_where(&self, ends: impl Fn(&str) -> bool) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, e| !ends(&e.session.user));
        let ended = before - map.len();
        drop(map);
        if ended > 0 {
            self.ended.send_modify(|n| *n += 1);
        }
        ended
    }
}

impl Session {
    /// The audit subject of what this session does: `web:USER`.
    pub fn audit(&self, action: &'static str, target: impl Into<String>) -> crate::audit::Audit {
        crate::audit::Audit::new(format!("web:{}", self.user), action, target)
    }
}

fn alive(e: &Entry, now: Instant) -> bool {
    now.duration_since(e.used) < IDLE && now.duration_since(e.created) < ABSOLUTE
}

/// Failed sign-ins counted per user name and per source address.
#[derive(Default)]
pub struct LoginLimiter {
    counters: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when `user` or `source` failed too often within the window.
    pub fn check(&self, user: &str, source: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.map();
        let over = |key: String, max: u32| {
            map.get(&key)
                .filter(|(n, since)| *n >= max && now.duration_since(*since) < WINDOW)
                .map(|(_, since)| WINDOW.saturating_sub(now.duration_since(*since)))
        };
        match over(format!("u:{user}"), MAX_FAILURES_PER_USER)
            .or_else(|| over(format!("s:{source}"), MAX_FAILURES_PER_SOURCE))
        {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn failed(&self, user: &str, source: &str) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_COUNTERS {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_COUNTERS {
                map.clear();
            }
        }
        for key in [format!("u:{user}"), format!("s:{source}")] {
            let e = map.entry(key).or_insert((0, now));
            if now.duration_since(e.1) >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// A successful sign-in clears its user's count (not its source's).
    pub fn succeeded(&self, user: &str) {
        self.map().remove(&format!("u:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_only_and_ends() {
        let s = Sessions::default();
        let (id, sess) = s.create("alice", Role::Admin);
        assert_eq!(s.get(&id), Some(sess.clone()));
        assert_eq!(s.get("not-the-id"), None);
        let (other, _) = s.create("bob", Role::Viewer);
        s.end(&id);
        assert_eq!(s.get(&id), None);
        assert!(s.get(&other).is_some());
        let ended = s.subscribe();
        assert!(s.holds(&other, Role::Viewer));
        assert!(
            !s.holds(&other, Role::Operator),
            "a viewer holds no operator page"
        );
        assert!(
            !s.holds(&id, Role::Viewer),
            "an ended session holds nothing"
        );
        s.end_user("bob");
        assert!(ended.has_changed().unwrap(), "live streams are told");
        assert!(!s.holds(&other, Role::Viewer));
        assert_eq!(s.get(&other), None);
        assert_ne!(sess.csrf, id, "the CSRF token is not the session id");
    }

    #[test]
    fn failures_lock_a_user_then_a_source() {
        let l = LoginLimiter::default();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(l.check("alice", "192.0.2.1").is_ok());
            l.failed("alice", "192.0.2.1");
        }
        let wait = l.check("alice", "192.0.2.9").unwrap_err();
        assert!(wait > Duration::from_secs(60) && wait <= WINDOW, "{wait:?}");
        // Another user from the same source is not locked yet...
        assert!(l.check("bob", "192.0.2.1").is_ok());
        // ...until the source itself failed too often.
        for i in 0..MAX_FAILURES_PER_SOURCE {
            l.failed(&format!("u{i}"), "192.0.2.1");
        }
        assert!(l.check("carol", "192.0.2.1").is_err());
        assert!(l.check("carol", "192.0.2.2").is_ok());
        // A success clears the user's count.
        let l = LoginLimiter::default();
        l.failed("dave", "192.0.2.3");
        l.succeeded("dave");
        for _ in 0..MAX_FAILURES_PER_USER - 1 {
            l.failed("dave", "192.0.2.4");
        }
        assert!(l.check("dave", "192.0.2.5").is_ok());
    }
}
