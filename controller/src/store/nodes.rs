//! Nodes, their certificate principals, join tokens and operators.

use super::*;

impl Store {
    // ----- nodes -----

    pub fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        self.get_msg(NODES, id)
    }

    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(self.all_msgs(NODES)?.into_iter().map(|(_, n)| n).collect())
    }

    /// Enrollment in one transaction: re-checks the join token (`check` gets `None` for an
    /// unknown one and must refuse it, and a used or expired one), consumes one use, creates the
    /// node and its certificate principal and writes the audit row. Returns the token as it
    /// was, or `check`'s refusal (then nothing is written).
    pub async fn enroll_node<D, C>(
        &self,
        token_id: String,
        check: C,
        node: NodeRecord,
        fingerprint: String,
        principal: PrincipalRecord,
        audit: AuditEntry,
    ) -> Result<std::result::Result<TokenRecord, D>>
    where
        C: Fn(Option<&TokenRecord>) -> std::result::Result<(), D> + Send + 'static,
        D: Send + 'static,
    {
        self.submit(move |txn| {
            let mut tokens = txn.open_table(TOKENS)?;
            let rec = get_in::<TokenRecord>(&tokens, "tokens", &token_id)?;
            if let Err(d) = check(rec.as_ref()) {
                return Ok(Err(d));
            }
            let Some(mut rec) = rec else {
                return Err(StoreError::Commit("the token vanished".into()));
            };
            let before = rec.clone();
            rec.uses_left = rec.uses_left.saturating_sub(1);
            put_in(&mut tokens, &token_id, &rec)?;
            put(txn, NODES, &node.id, &node)?;
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            append_audit_in(txn, &audit)?;
            Ok(Ok(before))
        })
        .await
    }

    /// Read-modify-write of one node (no-op, `None`, if it was removed), with an optional audit
    /// row in the same transaction.
    pub fn update_node<F>(
        &self,
        id: &str,
        f: F,
        audit: Option<AuditEntry>,
    ) -> impl Future<Output = Result<Option<NodeRecord>>> + Send + 'static
    where
        F: Fn(&mut NodeRecord) + Send + 'static,
    {
        let id = id.to_string();
        self.submit(move |txn| {
            let mut t = txn.open_table(NODES)?;
            let Some(mut n) = get_in::<NodeRecord>(&t, "nodes", &id)? else {
                return Ok(None);
            };
            f(&mut n);
            put_in(&mut t, &id, &n)?;
            drop(t);
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(Some(n))
        })
    }

    /// Removes a node and every certificate issued to it, with its audit row, in one transaction.
    pub async fn remove_node(&self, id: &str, audit: AuditEntry) -> Result<Option<NodeRecord>> {
        let id = id.to_string();
        self.submit(move |txn| {
            let removed = {
                let mut t = txn.open_table(NODES)?;
                let r = t.remove(id.as_str())?;
                match r {
                    Some(v) => Some(decode::<NodeRecord>("nodes", v.value())?),
                    None => None,
                }
            };
            if removed.is_some() {
                purge_principals(txn, PrincipalKind::Node, &id, None)?;
                // A removed node is no longer one of the cluster's servers.
                txn.open_table(SERVERS)?.remove(id.as_str())?;
                append_audit_in(txn, &audit)?;
            }
            Ok(removed)
        })
        .await
    }

    /// Certificate renewal in one transaction: the node must still exist and must not have
    /// renewed within `min_interval_ms`; the new certificate's principal is inserted and every
    /// other certificate of the node except `keep` (the one the agent is connected with) is
    /// revoked.
    pub async fn renew_node(
        &self,
        id: &str,
        fingerprint: String,
        principal: PrincipalRecord,
        keep: Option<String>,
        now_ms: u64,
        min_interval_ms: u64,
    ) -> Result<Renewal> {
        let id = id.to_string();
        self.submit(move |txn| {
            let mut nodes = txn.open_table(NODES)?;
            let Some(mut n) = get_in::<NodeRecord>(&nodes, "nodes", &id)? else {
                return Ok(Renewal::NodeGone);
            };
            let since = now_ms.saturating_sub(n.last_renewal_unix_ms);
            if n.last_renewal_unix_ms != 0 && since < min_interval_ms {
                return Ok(Renewal::TooSoon {
                    retry_in_secs: (min_interval_ms - since).div_ceil(1000),
                });
            }
            n.last_renewal_unix_ms = now_ms;
            n.certificate_not_after_unix = principal.not_after_unix;
            put_in(&mut nodes, &id, &n)?;
            drop(nodes);
            purge_principals(txn, PrincipalKind::Node, &id, keep.as_deref())?;
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            Ok(Renewal::Renewed)
        })
        .await
    }

    /// Revokes every certificate of a node but `keep` (after the agent connected with `keep`).
    pub async fn retire_node_certificates(&self, id: &str, keep: &str) -> Result<usize> {
        let (id, keep) = (id.to_string(), keep.to_string());
        self.submit(move |txn| purge_principals(txn, PrincipalKind::Node, &id, Some(&keep)))
            .await
    }

    // ----- principals -----

    /// Every issued certificate: (fingerprint, record).
    pub fn principals(&self) -> Result<Vec<(String, PrincipalRecord)>> {
        self.all_msgs(PRINCIPALS)
    }

    /// Registers one more certificate of an existing principal.
    pub async fn add_principal(&self, fingerprint: String, rec: PrincipalRecord) -> Result<()> {
        self.submit(move |txn| put(txn, PRINCIPALS, &fingerprint, &rec))
            .await
    }

    /// Creates an operator record unless one of that name exists; returns the stored one.
    pub async fn ensure_operator(&self, rec: OperatorRecord) -> Result<OperatorRecord> {
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            if let Some(existing) = get_in::<OperatorRecord>(&ops, "operators", &rec.name)? {
                return Ok(existing);
            }
            put_in(&mut ops, &rec.name, &rec)?;
            Ok(rec.clone())
        })
        .await
    }

    // ----- tokens -----

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get_msg(TOKENS, id)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.all_msgs(TOKENS)?.into_iter().map(|(_, t)| t).collect())
    }

    pub async fn create_token(&self, rec: TokenRecord, audit: AuditEntry) -> Result<()> {
        self.submit(move |txn| {
            put(txn, TOKENS, &rec.id, &rec)?;
            append_audit_in(txn, &audit)
        })
        .await
    }

    /// Deletes a token; `audit` (given the removed record) is written in the same transaction.
    pub async fn revoke_token<A>(&self, id: &str, audit: A) -> Result<Option<TokenRecord>>
    where
        A: Fn(&TokenRecord) -> AuditEntry + Send + 'static,
    {
        let id = id.to_string();
        self.submit(move |txn| {
            let rec = {
                let mut t = txn.open_table(TOKENS)?;
                let r = t.remove(id.as_str())?;
                match r {
                    Some(v) => Some(decode::<TokenRecord>("tokens", v.value())?),
                    None => None,
                }
            };
            if let Some(r) = &rec {
                append_audit_in(txn, &audit(r))?;
            }
            Ok(rec)
        })
        .await
    }

    // ----- operators -----

    pub fn operator(&self, name: &str) -> Result<Option<OperatorRecord>> {
        self.get_msg(OPERATORS, name)
    }

    pub fn operators(&self) -> Result<Vec<OperatorRecord>> {
        Ok(self
            .all_msgs(OPERATORS)?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// Creates an operator and its certificate principal in one transaction. Returns false (and
    /// writes nothing) when an operator of that name exists already.
    pub async fn create_operator(
        &self,
        rec: OperatorRecord,
        fingerprint: String,
        principal: PrincipalRecord,
        audit: Option<AuditEntry>,
    ) -> Result<bool> {
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            if ops.get(rec.name.as_str())?.is_some() {
                return Ok(false);
            }
            put_in(&mut ops, &rec.name, &rec)?;
            drop(ops);
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(true)
        })
        .await
    }

    /// Removes an operator and every certificate issued to it, refusing to remove the last admin.
    pub async fn remove_operator<A>(&self, name: &str, audit: A) -> Result<OperatorRemoval>
    where
        A: Fn(&OperatorRecord) -> AuditEntry + Send + 'static,
    {
        let name = name.to_string();
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            let mut admins = 0;
            let mut target: Option<OperatorRecord> = None;
            for row in ops.iter()? {
                let (k, v) = row?;
                let rec: OperatorRecord = decode("operators", v.value())?;
                if rec.role() == OperatorRole::Admin {
                    admins += 1;
                }
                if k.value() == name {
                    target = Some(rec);
                }
            }
            let Some(rec) = target else {
                return Ok(OperatorRemoval::NotFound);
            };
            if rec.role() == OperatorRole::Admin && admins == 1 {
                return Ok(OperatorRemoval::LastAdmin);
            }
            ops.remove(name.as_str())?;
            drop(ops);
            purge_principals(txn, PrincipalKind::Operator, &name, None)?;
            append_audit_in(txn, &audit(&rec))?;
            Ok(OperatorRemoval::Removed(rec))
        })
        .await
    }
}

/// Deletes the certificate fingerprints issued to a principal, except `keep`; returns how many.
pub(super) fn purge_principals(
    txn: &WriteTransaction,
    kind: PrincipalKind,
    id: &str,
    keep: Option<&str>,
) -> Result<usize> {
    let mut t = txn.open_table(PRINCIPALS)?;
    let mut fps = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let rec: PrincipalRecord = decode("principals", v.value())?;
        if rec.kind() == kind && rec.id == id && keep != Some(k.value()) {
            fps.push(k.value().to_string());
        }
    }
    for fp in &fps {
        t.remove(fp.as_str())?;
    }
    Ok(fps.len())
}
