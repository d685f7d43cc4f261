//! The restarts a node's actions ask for (`FsrepRestart`): never run by the node itself, they
//! become a drained gluu-restart workflow of that node (`workflows::restart_wanted`), one node
//! out of rotation at a time like every other restart.

use super::{Fsrep, limits};
use crate::ctl::Ctl;
use std::sync::Arc;

impl Fsrep {
    /// A node asks for `services` to restart. Only services of the configured actions are
    /// taken (what a node sends is checked, not trusted); the workflow starts beside the
    /// stream, and a refusal is the node's last error in `fsrep status`.
    pub fn restart_wanted(
        self: &Arc<Self>,
        ctl: &Arc<Ctl>,
        node: &str,
        generation: u64,
        services: Vec<String>,
    ) {
        let wanted: Vec<String> = {
            let mut st = self.lock();
            match st.peers.get(node) {
                Some(p) if p.generation == generation && p.enabled => {}
                _ => return,
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
        };
        if wanted.is_empty() {
            return;
        }
        let ctl = ctl.clone();
        let me = self.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            match crate::workflows::restart_wanted(&ctl, &node, wanted.clone()).await {
                Ok(id) => {
                    tracing::info!(node = %node, services = ?wanted, workflow = %id, "file replication's actions restart services through a drained gluu-restart")
                }
                Err(e) => {
                    tracing::warn!(node = %node, services = ?wanted, error = %e, "cannot restart what file replication's actions asked for");
                    me.lock().last_error.insert(
                        node,
                        limits::bounded(format!("restart of {}: {e}", wanted.join(", "))),
                    );
                }
            }
        });
    }
}
