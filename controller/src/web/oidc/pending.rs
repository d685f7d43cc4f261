//! A sign-in between the redirect to the OP and the callback, kept in the browser that started
//! it: its state, nonce, PKCE verifier, issuer and expiry sealed (ChaCha20-Poly1305) under a key
//! drawn when the console starts, in the `__Host-clustermgr-oidc` cookie. Starting a sign-in
//! stores nothing in the console, so no number of them pushes out another browser's. A sealed
//! sign-in opens only with the `state` it was made for, until it expires, and once: the states
//! used are remembered until their expiry (a callback's own cookie adds one, nothing else does).

use crate::sealing::Sealer;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::OidcError;

/// A sign-in started and not finished yet lives this long.
pub const LIFETIME: Duration = Duration::from_secs(600);
const PURPOSE: &str = "web.oidc.pending";

/// What the callback needs of the sign-in it finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The issuer the browser was sent to.
    pub issuer: String,
    /// Unix seconds.
    expires: i64,
}

impl Pending {
    pub fn new(state: String, nonce: String, verifier: String, issuer: String, now: i64) -> Self {
        Self {
            state,
            nonce,
            verifier,
            issuer,
            expires: now + LIFETIME.as_secs() as i64,
        }
    }
}

/// The console's key for pending sign-ins and the states already used.
pub struct PendingSeal {
    sealer: Sealer,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    states: HashSet<String>,
    by_expiry: BTreeSet<(i64, String)>,
}

impl PendingSeal {
    /// A fresh key: sign-ins started before a restart are refused after it (start again).
    pub fn new() -> Result<Self, OidcError> {
        let key = rand::random::<[u8; 32]>();
        let sealer = Sealer::from_bytes(&key)
            .map_err(|e| OidcError::Config(format!("the sign-in key: {e}")))?;
        Ok(Self {
            sealer,
            used: Mutex::new(Used::default()),
        })
    }

    /// The cookie value of `p`.
    pub fn seal(&self, p: &Pending) -> Result<String, OidcError> {
        let plain = serde_json::to_vec(p).map_err(|e| OidcError::Config(e.to_string()))?;
        let sealed = self
            .sealer
            .seal(PURPOSE, &plain)
            .map_err(|e| OidcError::Config(format!("sealing a sign-in: {e}")))?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The sign-in of `cookie` when it was sealed here for `state`, has not expired at `now`
    /// and was not taken before; taken now.
    pub fn take(&self, cookie: &str, state: &str, now: i64) -> Option<Pending> {
        let sealed = URL_SAFE_NO_PAD.decode(cookie).ok()?;
        let plain = self.sealer.open(PURPOSE, &sealed).ok()?;
        let p: Pending = serde_json::from_slice(&plain).ok()?;
        if state.is_empty() || p.state != state || p.expires <= now {
            return None;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(first) = used.by_expiry.first().cloned()
            && first.0 <= now
        {
            used.by_expiry.remove(&first);
            used.states.remove(&first.1);
        }
        if !used.states.insert(p.state.clone()) {
            return None;
        }
        used.by_expiry.insert((p.expires, p.state.clone()));
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn pending(state: &str) -> Pending {
        Pending::new(
            state.into(),
            "n".into(),
            "v".into(),
            "https://idp".into(),
            NOW,
        )
    }

    #[test]
    fn a_started_sign_in_survives_a_flood_of_others_and_opens_once_for_its_state() {
        let seal = PendingSeal::new().unwrap();
        let alice = seal.seal(&pending("s-alice")).unwrap();
        // Twenty thousand sign-ins started (and some finished) by someone else.
        for i in 0..20_000 {
            let c = seal.seal(&pending(&format!("s-{i}"))).unwrap();
            if i % 100 == 0 {
                assert!(seal.take(&c, &format!("s-{i}"), NOW + 1).is_some());
            }
        }
        // Alice's cookie with another state, another console's key, tampered, expired.
        assert!(seal.take(&alice, "s-0", NOW + 1).is_none());
        let other = PendingSeal::new().unwrap();
        assert!(other.take(&alice, "s-alice", NOW + 1).is_none());
        let mut bytes = URL_SAFE_NO_PAD.decode(&alice).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(seal.take(&tampered, "s-alice", NOW + 1).is_none());
        let late = NOW + LIFETIME.as_secs() as i64;
        assert!(seal.take(&alice, "s-alice", late).is_none());
        // Alice's, in time: once.
        assert_eq!(
            seal.take(&alice, "s-alice", NOW + 2),
            Some(pending("s-alice"))
        );
        assert!(seal.take(&alice, "s-alice", NOW + 3).is_none());
        // The used states are forgotten once expired (then the cookie has expired too).
        assert!(!seal.used.lock().unwrap().states.is_empty());
        let later = Pending::new("s-later".into(), "n".into(), "v".into(), "i".into(), late);
        let fresh = seal.seal(&later).unwrap();
        assert!(seal.take(&fresh, "s-later", late + 1).is_some());
        let u = seal.used.lock().unwrap();
        assert_eq!(u.states.len(), 1);
        assert_eq!(u.by_expiry.len(), 1);
    }
}
