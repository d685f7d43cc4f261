//! Jobs and their log lines.

use super::*;

impl Store {
    // ----- jobs -----

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.get_msg(JOBS, id)
    }

    /// The ids of the jobs whose id starts with `prefix`, at most `max` of them.
    pub fn job_ids_with_prefix(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        self.read(|txn| {
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for row in t.range(prefix..)? {
                let (k, _) = row?;
                let id = k.value();
                if !id.starts_with(prefix) || out.len() >= max {
                    break;
                }
                out.push(id.to_string());
            }
            Ok(out)
        })
    }

    /// Most recent jobs first (job ids are time-ordered UUIDv7), optionally of one node.
    pub fn recent_jobs(&self, node_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        self.read(|txn| {
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for row in t.iter()?.rev() {
                let (_, v) = row?;
                let job: JobRecord = decode("jobs", v.value())?;
                if node_id.is_none_or(|n| job.node_id == n) {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Writes a job record (insert or replace) with an optional audit row and log lines, in one
    /// transaction. Queued at once: writes queued in order commit in order.
    pub fn put_job(
        &self,
        job: JobRecord,
        logs: Vec<(u64, String)>,
        audit: Option<AuditEntry>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            put(txn, JOBS, &job.id, &job)?;
            if !logs.is_empty() {
                let mut t = txn.open_table(JOB_LOGS)?;
                for (seq, line) in &logs {
                    t.insert((job.id.as_str(), *seq), line.as_str())?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
    }

    /// Appends log lines of running jobs: (job id, seq, line).
    pub fn append_job_logs(
        &self,
        lines: Vec<(String, u64, String)>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            let mut t = txn.open_table(JOB_LOGS)?;
            for (id, seq, line) in &lines {
                t.insert((id.as_str(), *seq), line.as_str())?;
            }
            Ok(())
        })
    }

    /// Stored log lines of a job with seq > `after`, at most `limit`, in order.
    pub fn job_logs_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        self.read(|txn| {
            let t = txn.open_table(JOB_LOGS)?;
            let mut out = Vec::new();
            for row in t
                .range((id, after.saturating_add(1))..=(id, u64::MAX))?
                .take(limit)
            {
                let (k, v) = row?;
                out.push((k.value().1, v.value().to_string()));
            }
            Ok(out)
        })
    }

    /// Marks every job recorded as running as interrupted (`edit` fills the details); returns
    /// how many.
    pub async fn interrupt_running_jobs<F>(&self, edit: F) -> Result<usize>
    where
        F: Fn(&mut JobRecord) + Send + 'static,
    {
        self.submit(move |txn| {
            let mut t = txn.open_table(JOBS)?;
            let mut stale = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let job: JobRecord = decode("jobs", v.value())?;
                if job.state() == JobState::Running {
                    stale.push((k.value().to_string(), job));
                }
            }
            for (k, job) in &mut stale {
                edit(job);
                put_in(&mut t, k, job)?;
            }
            Ok(stale.len())
        })
        .await
    }
}
