//! Every workflow kind this controller knows, registered once: the driver finds a kind here
//! and nowhere else. Adding a kind adds one line.

use crate::ctl::{DuplicateKind, Kinds};
use std::sync::Arc;

/// The kinds, with the domain state a kind's hooks use.
pub fn all(backups: Arc<crate::backup::Backups>) -> Result<Kinds, DuplicateKind> {
    let [keys, key_retirement] = crate::keys::kinds();
    Kinds::new(vec![
        Arc::new(crate::gluu::GluuInstallKind),
        Arc::new(crate::gluu::GluuAdoptKind),
        Arc::new(crate::gluu::GluuRestartKind),
        Arc::new(crate::cache::CacheKind),
        Arc::new(crate::replication::ReplicationKind),
        crate::hosts::kind(),
        crate::agent_upgrade::kind(),
        crate::lb::kind(),
        crate::certs::kind(),
        crate::schema::kind(),
        keys,
        key_retirement,
        Arc::new(crate::backup::BackupKind { backups }),
        Arc::new(crate::backup::RestoreKind),
    ])
}
