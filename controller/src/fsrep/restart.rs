//! The restarts a node's actions ask for (`FsrepRestart`): never run by the node itself, they
//! become a drained gluu-restart workflow of that node (`gluu::fsrep_restart`), one node out of
//! rotation at a time like every other restart. Here: what of a request is taken, and the
//! refusal kept as the node's last error.

use super::{Fsrep, limits};

impl Fsrep {
    /// A node asks for `services` to restart: the services of the configured actions are
    /// taken (what a node sends is checked, not trusted), from a current stream only; the rest
    /// is the node's last error in `fsrep status`.
    pub fn restarts_taken(
        &self,
        node: &str,
        generation: u64,
        services: Vec<String>,
    ) -> Vec<String> {
        let mut st = self.lock();
        match st.peers.get(node) {
            Some(p) if p.generation == generation && p.enabled => {}
            _ => return Vec::new(),
        }
        let (known, unknown): (Vec<String>, Vec<String>) = services
            .into_iter()
            .partition(|s| st.settings.actions.iter().any(|a| &a.service == s));
        if !unknown.is_empty() {
            tracing::warn!(node = %node, services = ?unknown, "a node asked to restart services no action names; ignored");
            st.last_error.insert(
                node.to_string(),
                limits::bounded(format!(
                    "asked to restart {} (no action names it): ignored",
                    unknown.join(", ")
                )),
            );
        }
        known
    }

    /// A restart the node asked for could not start: its last error in `fsrep status`.
    pub fn restart_refused(&self, node: &str, why: String) {
        self.lock()
            .last_error
            .insert(node.to_string(), limits::bounded(why));
    }
}
