//! Cluster settings, servers, workflows (with their indexes and kept outputs), the key
//! rotation state and file replication's records.

use super::*;

impl Store {
    // ----- cluster settings, servers, workflows -----

    pub fn cluster_settings(&self) -> Result<Option<ClusterSettingsRecord>> {
        self.get_msg(CLUSTER, "settings")
    }

    /// Replaces the settings; `check` sees the stored record and the servers first and may
    /// refuse (its error comes back as `Ok(Err(..))` with nothing written).
    pub async fn put_cluster_settings<C, E>(
        &self,
        rec: ClusterSettingsRecord,
        check: C,
        audit: AuditEntry,
    ) -> Result<std::result::Result<(), E>>
    where
        C: Fn(Option<&ClusterSettingsRecord>, &[ServerRecord]) -> std::result::Result<(), E>
            + Send
            + 'static,
        E: Send + 'static,
    {
        self.submit(move |txn| {
            let old: Option<ClusterSettingsRecord> = {
                let t = txn.open_table(CLUSTER)?;
                get_in(&t, "cluster", "settings")?
            };
            let servers = servers_in(txn)?;
            if let Err(e) = check(old.as_ref(), &servers) {
                return Ok(Err(e));
            }
            put(txn, CLUSTER, "settings", &rec)?;
            append_audit_in(txn, &audit)?;
            Ok(Ok(()))
        })
        .await
    }

    /// The cache the cluster should have (one record beside the settings).
    pub fn cache_record(&self) -> Result<Option<CacheRecord>> {
        self.get_msg(CLUSTER, "cache")
    }

    pub async fn put_cache_record(&self, rec: CacheRecord) -> Result<()> {
        self.submit(move |txn| put(txn, CLUSTER, "cache", &rec))
            .await
    }

    pub fn servers(&self) -> Result<Vec<ServerRecord>> {
        Ok(self
            .all_msgs(SERVERS)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    pub fn server(&self, node_id: &str) -> Result<Option<ServerRecord>> {
        self.get_msg(SERVERS, node_id)
    }

    /// Applies `change` to the servers in one transaction: it gets every server record and
    /// returns the records to write and the ids to delete, or a refusal (nothing written).
    pub async fn change_servers<C, T, E>(
        &self,
        change: C,
        audit: Option<AuditEntry>,
    ) -> Result<std::result::Result<T, E>>
    where
        C: Fn(Vec<ServerRecord>) -> std::result::Result<(Vec<ServerRecord>, Vec<String>, T), E>
            + Send
            + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit(move |txn| {
            let servers = servers_in(txn)?;
            let (write, delete, out) = match change(servers) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            {
                let mut t = txn.open_table(SERVERS)?;
                for s in &write {
                    put_in(&mut t, &s.node_id, s)?;
                }
                for id in &delete {
                    t.remove(id.as_str())?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(Ok(out))
        })
        .await
    }

    pub fn workflow(&self, id: &str) -> Result<Option<Workflow>> {
        self.get_msg(WORKFLOWS, id)
    }

    /// Every workflow, oldest first (ids are time-ordered UUIDv7).
    pub fn workflows(&self) -> Result<Vec<Workflow>> {
        Ok(self
            .all_msgs(WORKFLOWS)?
            .into_iter()
            .map(|(_, w)| w)
            .collect())
    }

    /// The workflows that have not ended, oldest first (from the index, not a scan).
    pub fn active_workflows(&self) -> Result<Vec<Workflow>> {
        self.read(|txn| {
            let ids = txn.open_table(ACTIVE_WORKFLOWS)?;
            let t = txn.open_table(WORKFLOWS)?;
            let mut out = Vec::new();
            for row in ids.iter()? {
                let (k, _) = row?;
                if let Some(w) = get_in(&t, WORKFLOWS.name(), k.value())? {
                    out.push(w);
                }
            }
            Ok(out)
        })
    }

    /// The newest workflow of `kind`.
    pub fn latest_workflow(&self, kind: &str) -> Result<Option<Workflow>> {
        self.read(|txn| {
            let latest = txn.open_table(LATEST_WORKFLOWS)?;
            let Some(id) = latest.get(kind)?.map(|v| v.value().to_string()) else {
                return Ok(None);
            };
            get_in(&txn.open_table(WORKFLOWS)?, WORKFLOWS.name(), &id)
        })
    }

    /// Writes a workflow record, with the server records that point at it and an audit row, in
    /// one transaction.
    pub async fn put_workflow(
        &self,
        wf: Workflow,
        servers: Vec<ServerRecord>,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        self.submit(move |txn| {
            put_workflow_in(txn, &wf)?;
            if !servers.is_empty() {
                let mut t = txn.open_table(SERVERS)?;
                for s in &servers {
                    put_in(&mut t, &s.node_id, s)?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
        .await
    }

    /// Keeps a sealed output of a workflow's step under `key`.
    pub async fn put_kept(&self, workflow_id: &str, key: &str, sealed: Vec<u8>) -> Result<()> {
        let (w, k) = (workflow_id.to_string(), key.to_string());
        self.submit(move |txn| {
            let mut t = txn.open_table(KEPT)?;
            t.insert((w.as_str(), k.as_str()), sealed.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The sealed outputs a workflow kept, by key.
    pub fn kept(&self, workflow_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|txn| {
            let t = txn.open_table(KEPT)?;
            let mut out = Vec::new();
            for row in t.range((workflow_id, "")..)? {
                let (k, v) = row?;
                let (w, key) = k.value();
                if w != workflow_id {
                    break;
                }
                out.push((key.to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Deletes a finished workflow's kept outputs (they hold secrets).
    pub async fn drop_kept(&self, workflow_id: &str) -> Result<usize> {
        let w = workflow_id.to_string();
        self.submit(move |txn| {
            let mut t = txn.open_table(KEPT)?;
            let keys: Vec<String> = t
                .range((w.as_str(), "")..)?
                .map(|r| r.map(|(k, _)| (k.value().0.to_string(), k.value().1.to_string())))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .take_while(|(wid, _)| *wid == w)
                .map(|(_, k)| k)
                .collect();
            for k in &keys {
                t.remove((w.as_str(), k.as_str()))?;
            }
            Ok(keys.len())
        })
        .await
    }
}

// ----- oxAuth keys -----

impl Store {
    /// The key rotation state (public data only).
    pub fn keys_record(&self) -> Result<Option<clustermgr_proto::KeysRecord>> {
        self.get_msg(CLUSTER, "keys")
    }

    /// Replaces the key rotation state, with the change's audit row when there is one.
    pub async fn put_keys_record(
        &self,
        rec: clustermgr_proto::KeysRecord,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        self.submit(move |txn| {
            put(txn, CLUSTER, "keys", &rec)?;
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
        .await
    }

    /// Starts a workflow and records the key rotation state, keeping the workflow's sealed
    /// values, in one transaction.
    pub async fn start_keys_workflow(
        &self,
        wf: Workflow,
        rec: clustermgr_proto::KeysRecord,
        kept: Vec<(String, Vec<u8>)>,
        audit: AuditEntry,
    ) -> Result<()> {
        self.submit(move |txn| {
            put_workflow_in(txn, &wf)?;
            put(txn, CLUSTER, "keys", &rec)?;
            {
                let mut t = txn.open_table(KEPT)?;
                for (k, v) in &kept {
                    t.insert((wf.id.as_str(), k.as_str()), v.as_slice())?;
                }
            }
            append_audit_in(txn, &audit)
        })
        .await
    }
}

// ----- file replication -----

impl Store {
    pub fn fsrep_settings(&self) -> Result<Option<clustermgr_proto::FsrepSettingsRecord>> {
        self.get_msg(FSREP, "settings")
    }

    /// Replaces the file replication settings, with the change's audit row.
    pub async fn put_fsrep_settings(
        &self,
        rec: clustermgr_proto::FsrepSettingsRecord,
        audit: AuditEntry,
    ) -> Result<()> {
        self.submit(move |txn| {
            put(txn, FSREP, "settings", &rec)?;
            append_audit_in(txn, &audit)
        })
        .await
    }

    pub fn fsrep_conflicts(&self) -> Result<Option<clustermgr_proto::FsrepConflictsRecord>> {
        self.get_msg(FSREP, "conflicts")
    }

    /// The sealed state of every replicated path.
    pub fn fsrep_files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|txn| {
            let t = txn.open_table(FSREP_FILES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Records the new state of one path (sealed by the caller); with a conflict, the conflict
    /// list and its audit row in the same transaction. `content`: a file holding the state's
    /// content, synced to disk before the record is written (in the writer, in order).
    pub fn put_fsrep_file(
        &self,
        path: String,
        sealed: Vec<u8>,
        conflict: Option<(clustermgr_proto::FsrepConflictsRecord, AuditEntry)>,
        content: Option<std::path::PathBuf>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            if let Some(f) = &content {
                std::fs::File::open(f)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| StoreError::Commit(format!("cannot sync {}: {e}", f.display())))?;
            }
            txn.open_table(FSREP_FILES)?
                .insert(path.as_str(), sealed.as_slice())?;
            if let Some((list, audit)) = &conflict {
                put(txn, FSREP, "conflicts", list)?;
                append_audit_in(txn, audit)?;
            }
            Ok(())
        })
    }

    /// Forgets replicated paths (tombstones every server holds).
    pub fn delete_fsrep_files(
        &self,
        paths: Vec<String>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            let mut t = txn.open_table(FSREP_FILES)?;
            for p in &paths {
                t.remove(p.as_str())?;
            }
            Ok(())
        })
    }

    /// Records a conflict the stored state won (nothing else changes).
    pub fn put_fsrep_conflict(
        &self,
        list: clustermgr_proto::FsrepConflictsRecord,
        audit: AuditEntry,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            put(txn, FSREP, "conflicts", &list)?;
            append_audit_in(txn, &audit)
        })
    }
}

pub(super) fn ended(w: &Workflow) -> bool {
    matches!(
        w.status(),
        clustermgr_proto::WorkflowStatus::Succeeded
            | clustermgr_proto::WorkflowStatus::Failed
            | clustermgr_proto::WorkflowStatus::Cancelled
    )
}

/// Keeps the workflow indexes in step with one workflow record.
pub(super) fn index_workflow_in(
    active: &mut redb::Table<&str, ()>,
    latest: &mut redb::Table<&str, &str>,
    w: &Workflow,
) -> Result<()> {
    if ended(w) {
        active.remove(w.id.as_str())?;
    } else {
        active.insert(w.id.as_str(), ())?;
    }
    // Ids are time-ordered (UUIDv7): the greatest is the newest.
    let newer = match latest.get(w.kind.as_str())? {
        Some(id) => id.value() < w.id.as_str(),
        None => true,
    };
    if newer {
        latest.insert(w.kind.as_str(), w.id.as_str())?;
    }
    Ok(())
}

pub(super) fn put_workflow_in(txn: &WriteTransaction, w: &Workflow) -> Result<()> {
    put(txn, WORKFLOWS, &w.id, w)?;
    index_workflow_in(
        &mut txn.open_table(ACTIVE_WORKFLOWS)?,
        &mut txn.open_table(LATEST_WORKFLOWS)?,
        w,
    )
}

/// Rebuilds the workflow indexes from the records: the migration from schema 2 (a store
/// written before they existed, or by a build that did not keep them, gets them right).
pub(super) fn index_workflows(txn: &WriteTransaction) -> Result<()> {
    txn.delete_table(ACTIVE_WORKFLOWS)?;
    txn.delete_table(LATEST_WORKFLOWS)?;
    let mut active = txn.open_table(ACTIVE_WORKFLOWS)?;
    let mut latest = txn.open_table(LATEST_WORKFLOWS)?;
    let t = txn.open_table(WORKFLOWS)?;
    for row in t.iter()? {
        let (_, v) = row?;
        let w: Workflow = decode(WORKFLOWS.name(), v.value())?;
        index_workflow_in(&mut active, &mut latest, &w)?;
    }
    Ok(())
}

pub(super) fn servers_in(txn: &WriteTransaction) -> Result<Vec<ServerRecord>> {
    let t = txn.open_table(SERVERS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        out.push(decode::<ServerRecord>("servers", v.value())?);
    }
    Ok(out)
}
