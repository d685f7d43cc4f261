//! Reading jobs: a record, a job by id or unique prefix, listings and paged logs.

use super::*;

impl Jobs {
    /// A job's record (its state an enum): the live view while running, else the stored one.
    pub fn record(&self, id: &str) -> Result<Option<JobRecord>, JobError> {
        if let Some(j) = self.live().get(id).map(|l| l.job.clone()) {
            return Ok(Some(j));
        }
        Ok(self.store.job(id)?)
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>, JobError> {
        if let Some(j) = self.live().get(id).map(|l| l.job.clone()) {
            return Ok(Some(records::job(j)));
        }
        Ok(self.store.job(id)?.map(records::job))
    }

    /// A job by id or by a prefix of its id that no other job's id starts with.
    pub fn find(&self, r: &str) -> Result<Job, JobError> {
        let r = r.trim();
        if let Some(j) = self.get(r)? {
            return Ok(j);
        }
        // A few are enough to say a prefix is ambiguous; with a suffix (`01a2507b…47b5`), the
        // jobs of the prefix's minute are looked through.
        let (head, tail) = crate::ids::parts(r);
        let max = if tail.is_empty() { 5 } else { 100_000 };
        let mut ids = self.store.job_ids_with_prefix(head, max)?;
        ids.extend(self.live().keys().filter(|k| k.starts_with(head)).cloned());
        match crate::ids::unique_prefix(ids.iter().map(String::as_str), r) {
            Ok(Some(id)) => self.get(&id)?.ok_or(JobError::NotFound(id)),
            Ok(None) => Err(JobError::NotFound(r.chars().take(64).collect())),
            Err(ids) => Err(JobError::Ambiguous(r.into(), ids.join(", "))),
        }
    }

    /// Most recent jobs first.
    pub fn list(&self, node_id: Option<&str>, limit: usize) -> Result<Vec<Job>, JobError> {
        let mut jobs = self.store.recent_jobs(node_id, limit)?;
        {
            let live = self.live();
            for j in &mut jobs {
                if let Some(l) = live.get(&j.id) {
                    *j = l.job.clone();
                }
            }
        }
        Ok(jobs.into_iter().map(records::job).collect())
    }

    /// Log lines with seq > after, at most `limit`, in order (committed and buffered ones).
    pub fn logs_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JobLogLine>, JobError> {
        // Buffered lines first: a line leaves the buffer only once the store has it, so every
        // line is in one of the two reads.
        let buffered: Vec<(u64, String)> = self
            .live()
            .get(id)
            .map(|l| {
                l.pending
                    .iter()
                    .filter(|(s, _)| *s > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut lines = self.store.job_logs_after(id, after, limit)?;
        lines.extend(buffered);
        lines.sort_by_key(|(s, _)| *s);
        lines.dedup_by_key(|(s, _)| *s);
        lines.truncate(limit);
        Ok(lines
            .into_iter()
            .map(|(seq, line)| JobLogLine {
                seq,
                line,
                unix_ms: 0,
            })
            .collect())
    }
}
