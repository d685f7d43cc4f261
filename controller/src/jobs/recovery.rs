//! Jobs across restarts and reconnects: the running jobs a restarted controller finds in the
//! store, what an agent reports at its Hello, results re-observed, a removed node's jobs.

use super::*;

impl Jobs {
    /// Marks jobs left running by a previous controller process as interrupted. Each stays
    /// eligible to be taken up again when its own node reconnects and reports it (see
    /// [`Jobs::reconcile`]).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let seen: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let collect = seen.clone();
        let n = self
            .store
            .interrupt_running_jobs(move |job| {
                job.state = JobState::Interrupted as i32;
                job.error = RECOVERED_ERROR.into();
                job.finished_unix_ms = now_ms();
                job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
                collect
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(job.id.clone(), job.node_id.clone());
            })
            .await?;
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
        self.recovered().extend(seen);
        Ok(n)
    }

    /// Ends every running job of a node that was removed (it will never report them). A node
    /// whose session merely dropped keeps its jobs: see [`Jobs::reconcile`].
    pub async fn node_removed(&self, node_id: &str) {
        let ids: Vec<String> = self
            .live()
            .iter()
            .filter(|(_, j)| j.job.node_id == node_id)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            self.finish(
                &id,
                JobState::Interrupted,
                "the node was removed before the job finished",
                None,
            )
            .await;
        }
        self.recovered().retain(|_, n| n != node_id);
    }

    /// What a node's `Hello` says about its jobs (`node_id` from its certificate): results in
    /// `finished` are applied like live results; jobs in `running` stay running (or, if a
    /// controller restart marked them interrupted, run again with their timeout restarted for
    /// the time left); the node's other running jobs are marked interrupted, except those sent
    /// on the session that is current now (the agent said hello before it got them).
    pub async fn reconcile(
        self: &Arc<Self>,
        node_id: &str,
        running: Vec<String>,
        finished: Vec<JobEvent>,
    ) -> Reconciled {
        let mut done = Reconciled::default();
        let mut reported: HashSet<String> = running.iter().cloned().collect();
        for ev in finished {
            reported.insert(ev.job_id.clone());
            if let Some(job_event::Event::Result(r)) = ev.event
                && self.result(node_id, &ev.job_id, r).await
            {
                done.results += 1;
            }
        }
        let current = self.registry.get(node_id).map(|s| s.generation);
        for id in &running {
            if !self.is_live(id) && self.resume(node_id, id, current.unwrap_or(0)).await {
                done.resumed += 1;
            }
        }
        let unknown: Vec<String> = self
            .live()
            .iter()
            .filter(|(id, l)| {
                l.job.node_id == node_id && !reported.contains(*id) && Some(l.sent_on) != current
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in unknown {
            self.finish(&id, JobState::Interrupted, UNKNOWN_TO_AGENT, None)
                .await;
            done.interrupted += 1;
        }
        // What the node did not report is not running there: it stays interrupted.
        self.recovered().retain(|_, n| n != node_id);
        if done != Reconciled::default() {
            tracing::info!(node = %node_id, results = done.results, resumed = done.resumed,
                interrupted = done.interrupted, "jobs reconciled with the agent's report");
        }
        done
    }

    /// Takes a job `recover` marked interrupted out of the eligible set if it belongs to
    /// `node_id`, and returns its stored record if it is still interrupted.
    /// A job a controller restart marked interrupted whose node has not reported since: its
    /// outcome is not known yet (a workflow waits for the node rather than run it again).
    pub fn awaiting_node(&self, id: &str) -> bool {
        self.recovered().contains_key(id)
    }

    pub(super) fn claim_recovered(&self, node_id: &str, id: &str) -> Option<JobRecord> {
        {
            let mut r = self.recovered();
            match r.get(id) {
                Some(n) if n == node_id => {
                    r.remove(id);
                }
                _ => return None,
            }
        }
        match self.store.job(id) {
            Ok(Some(mut j)) if j.node_id == node_id && j.state() == JobState::Interrupted => {
                self.count_stored_log(&mut j);
                Some(j)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot read the job to take it up again");
                None
            }
        }
    }

    /// Sets a job's log counters from its stored lines (the record is written with them only
    /// at the job's end, so a crash leaves them behind): new lines number on from the last.
    pub(super) fn count_stored_log(&self, job: &mut JobRecord) {
        const PAGE: usize = 1000;
        let (mut lines, mut bytes, mut last) = (0u64, 0u64, String::new());
        loop {
            let page = match self.store.job_logs_after(&job.id, lines, PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "cannot read the job's log lines");
                    break;
                }
            };
            let n = page.len();
            for (seq, text) in page {
                lines = lines.max(seq);
                bytes += text.len() as u64;
                last = text;
            }
            if n < PAGE || lines >= self.limits.max_lines {
                break;
            }
        }
        job.log_lines = job.log_lines.max(lines);
        job.log_bytes = job.log_bytes.max(bytes);
        job.log_truncated |= last.starts_with("[log truncated");
    }

    /// A job a controller restart marked interrupted that its node still runs: live again.
    pub(super) async fn resume(self: &Arc<Self>, node_id: &str, id: &str, generation: u64) -> bool {
        let Some(mut job) = self.claim_recovered(node_id, id) else {
            return false;
        };
        job.state = JobState::Running as i32;
        job.error.clear();
        job.finished_unix_ms = 0;
        job.duration_ms = 0;
        let persisted = self.store.put_job(job.clone(), Vec::new(), None);
        let timeout = Duration::from_millis(u64::from(job.timeout_ms));
        let deadline = job.created_unix_ms + (timeout + TIMEOUT_GRACE).as_millis() as u64;
        let left = Duration::from_millis(deadline.saturating_sub(now_ms())).max(TIMEOUT_GRACE);
        let (done, _) = watch::channel(None);
        self.live().insert(
            id.to_string(),
            Live {
                finishing: false,
                job,
                sent_on: generation,
                resumed: true,
                done,
                logs: None,
                pending: Vec::new(),
            },
        );
        self.arm_timeout(node_id, id, timeout, left);
        if let Err(e) = persisted.await {
            tracing::error!(job = id, error = %e, "cannot record the job as running again");
        }
        tracing::info!(
            job = id,
            node = node_id,
            "job still running on its node after a controller restart"
        );
        true
    }

    /// The result of a job a controller restart marked interrupted, from its own node.
    pub(super) async fn reobserve(&self, node_id: &str, id: &str, r: JobResult) -> bool {
        let Some(mut job) = self.claim_recovered(node_id, id) else {
            return false;
        };
        let state = if r.success {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        let mut output = r.output;
        // No caller waits for it any more: the content is dropped.
        let _ = output.as_mut().and_then(OperationOutput::take_secrets);
        job.state = state as i32;
        job.error = if r.success {
            String::new()
        } else {
            let e: String = r.error.chars().take(4096).collect();
            format!("{e} {REOBSERVED_NOTE}")
        };
        job.exit_code = r.exit_code;
        job.output = output;
        job.finished_unix_ms = now_ms();
        job.duration_ms = job.finished_unix_ms.saturating_sub(job.created_unix_ms);
        if let Err(e) = self.store.put_job(job.clone(), Vec::new(), None).await {
            tracing::error!(job = id, error = %e, "cannot persist job result");
            return false;
        }
        tracing::info!(
            job = id,
            node = node_id,
            state = state.label(),
            "job result re-observed after a controller restart"
        );
        let _ = self.ended.send(JobEnded {
            job_id: job.id,
            node_id: job.node_id,
            workflow_id: job.workflow_id,
            state,
        });
        true
    }
}
