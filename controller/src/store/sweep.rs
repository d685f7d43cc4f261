//! The retention sweep in one transaction: audit, jobs and their logs, health events, by age and count.

use super::*;

pub(super) fn sweep_in(txn: &WriteTransaction, l: &SweepLimits) -> Result<Swept> {
    // Audit: every row by age, routine rows also by count.
    let mut swept = Swept {
        audit: audit::sweep_in(txn, l)?,
        ..Default::default()
    };
    // Finished jobs and their logs.
    {
        let mut jobs = txn.open_table(JOBS)?;
        let mut doomed = Vec::new();
        for row in jobs.iter()? {
            let (k, v) = row?;
            if doomed.len() >= l.batch {
                break;
            }
            let j: JobRecord = decode("jobs", v.value())?;
            if j.state().is_finished() && j.finished_unix_ms < l.jobs_before_ms {
                doomed.push(k.value().to_string());
            }
        }
        let mut logs = txn.open_table(JOB_LOGS)?;
        for id in &doomed {
            jobs.remove(id.as_str())?;
            let seqs: Vec<u64> = logs
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?
                .map(|r| r.map(|(k, _)| k.value().1))
                .collect::<std::result::Result<_, _>>()?;
            for s in &seqs {
                logs.remove((id.as_str(), *s))?;
            }
            swept.job_logs += seqs.len();
        }
        swept.jobs = doomed.len();
    }
    // Expired tokens (used ones expire too: a token lives at most a week).
    {
        let mut t = txn.open_table(TOKENS)?;
        let mut doomed = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if doomed.len() >= l.batch {
                break;
            }
            let rec: TokenRecord = decode("tokens", v.value())?;
            if rec.expires_unix < l.tokens_expired_before_unix {
                doomed.push(k.value().to_string());
            }
        }
        for k in &doomed {
            t.remove(k.as_str())?;
        }
        swept.tokens = doomed.len();
    }
    Ok(swept)
}
