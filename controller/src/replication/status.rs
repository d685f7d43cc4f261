//! `replication status`: every replicated node asked now, change stamps compared and lag measured; the periodic check whose result `server list` shows.

use super::*;

/// `20261129031500.123456Z#000000#001#000000` → ms since the epoch.
pub(super) fn csn_ms(csn: &str) -> Option<u64> {
    let t = csn.split('#').next()?;
    let (main, frac) = t
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((t.trim_end_matches('Z'), "0"));
    if main.len() != 14 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main.get(r)?.parse::<i64>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let dt = date
        .with_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8)
        .ok()?
        .assume_utc();
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(dt.unix_timestamp() as u64 * 1000 + micros / 1000)
}

pub(super) fn csn_sid(csn: &str) -> String {
    csn.split('#').nth(2).unwrap_or("").to_string()
}

/// Compares the nodes' change stamps: agreement per base, and how far each node is behind.
pub fn compare(nodes: &mut [NodeReplicationState]) -> bool {
    let mut all_agree = true;
    for base in BASES {
        // Newest stamp per server id across the reachable nodes.
        let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
        let mut sets = Vec::new();
        for n in nodes.iter() {
            if let Some(b) = n.bases.iter().find(|b| b.base == base && b.reachable) {
                let mut set = b.context_csn.clone();
                set.sort();
                sets.push(set);
                for c in &b.context_csn {
                    let t = csn_ms(c).unwrap_or(0);
                    let e = newest.entry(csn_sid(c)).or_insert((0, String::new()));
                    if t > e.0 {
                        *e = (t, c.clone());
                    }
                }
            }
        }
        let agree = sets.windows(2).all(|w| w[0] == w[1]);
        all_agree &= agree;
        for n in nodes.iter_mut() {
            if let Some(b) = n.bases.iter_mut().find(|b| b.base == base) {
                b.in_agreement = agree && b.reachable;
                let mine: BTreeMap<String, u64> = b
                    .context_csn
                    .iter()
                    .map(|c| (csn_sid(c), csn_ms(c).unwrap_or(0)))
                    .collect();
                b.lag_ms = newest
                    .iter()
                    .map(|(sid, (t, _))| t.saturating_sub(mine.get(sid).copied().unwrap_or(0)))
                    .max()
                    .unwrap_or(0);
            }
        }
    }
    for n in nodes.iter_mut() {
        n.lag_ms = n.bases.iter().map(|b| b.lag_ms).max().unwrap_or(0);
        if !n.reachable {
            all_agree = false;
        }
    }
    all_agree
}

/// Asks every replicated server (every installed one if none replicates yet) now.
pub async fn status(ctl: &Arc<Ctl>) -> Result<ReplicationStatusReport, WorkflowError> {
    let settings = settings::settings_record(ctl)?;
    let password = settings::ldap_admin_password(ctl, &settings)?;
    let servers = ctl.store.servers()?;
    let any_replicated = servers.iter().any(|s| s.replicated);
    let chosen: Vec<ServerRecord> = servers
        .into_iter()
        .filter(|s| {
            if any_replicated {
                s.replicated
            } else {
                installed(ctl, s)
            }
        })
        .collect();
    let asks = chosen.iter().map(|s| {
        let ctl = ctl.clone();
        let password = password.clone();
        let s = s.clone();
        async move { ask(&ctl, &s, &password).await }
    });
    let mut nodes: Vec<NodeReplicationState> = futures::future::join_all(asks).await;
    let in_agreement = compare(&mut nodes) && !nodes.is_empty();
    Ok(ReplicationStatusReport {
        nodes,
        in_agreement,
        checked_unix_ms: now_ms(),
    })
}

pub(super) async fn ask(ctl: &Arc<Ctl>, s: &ServerRecord, password: &str) -> NodeReplicationState {
    let mut out = NodeReplicationState {
        node_id: s.node_id.clone(),
        hostname: hostname(ctl, &s.node_id),
        server_id: s.ldap_server_id,
        ..Default::default()
    };
    let node: NodeRecord = match ctl.store.node(&s.node_id) {
        Ok(Some(n)) => n,
        _ => {
            out.error = "the node was removed".into();
            return out;
        }
    };
    let Some(addr) = nodes::address(&node) else {
        out.error = "the node's address is unknown".into();
        return out;
    };
    let op = Operation {
        kind: Some(operation::Kind::ReplicationStatus(ReplicationStatus {
            host: addr,
            port: LDAPS_PORT,
            admin_password: password.as_bytes().to_vec(),
            bases: BASES.iter().map(|b| b.to_string()).collect(),
        })),
    };
    let checked = nodes::check(
        ctl,
        &node,
        op,
        ("controller:replication-check", "replication.status"),
        |k| match k {
            operation_output::Kind::ReplicationStatus(r) => Some(r),
            _ => None,
        },
    )
    .await;
    match checked {
        Ok(r) => {
            out.reachable = r.bases.iter().any(|b| b.reachable);
            if r.server_id != 0 {
                out.server_id = r.server_id;
            }
            out.bases = r
                .bases
                .into_iter()
                .map(|b| BaseReplicationState {
                    base: b.base,
                    reachable: b.reachable,
                    error: b.error,
                    context_csn: b.context_csn,
                    partners: b.partners,
                    ..Default::default()
                })
                .collect();
        }
        Err(e) => out.error = e,
    }
    out
}

/// The one-word state `server list` shows.
pub fn state_word(n: &NodeReplicationState) -> String {
    if !n.reachable {
        "unreachable".into()
    } else if n.bases.iter().all(|b| b.in_agreement) {
        "in-sync".into()
    } else {
        format!("lagging {}s", n.lag_ms.div_ceil(1000))
    }
}

/// Checks replication on the cluster's period and records the result on the servers.
pub fn start_checker(ctl: Arc<Ctl>) {
    tokio::spawn(async move {
        loop {
            let period = settings::settings_record(&ctl)
                .ok()
                .map(|s| s.ldap_check_period_ms)
                .filter(|ms| *ms > 0)
                .unwrap_or(5 * 60_000);
            tokio::time::sleep(Duration::from_millis(period)).await;
            let any = ctl
                .store
                .servers()
                .map(|v| v.iter().any(|s| s.replicated))
                .unwrap_or(false);
            if !any {
                continue;
            }
            match status(&ctl).await {
                Ok(report) => {
                    if let Err(e) = record(&ctl, &report).await {
                        tracing::warn!(error = %e, "cannot record the replication check");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "replication check failed"),
            }
        }
    });
}

/// Stores a report's per-node state on the server records.
pub async fn record(ctl: &Ctl, report: &ReplicationStatusReport) -> Result<(), WorkflowError> {
    let states: HashMap<String, String> = report
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), state_word(n)))
        .collect();
    let at = report.checked_unix_ms;
    ctl.store
        .change_servers(
            move |servers| {
                let write = servers
                    .into_iter()
                    .filter_map(|mut s| {
                        let st = states.get(&s.node_id)?;
                        s.replication_state = st.clone();
                        s.replication_checked_unix_ms = at;
                        Some(s)
                    })
                    .collect();
                Ok::<_, WorkflowError>((write, Vec::new(), ()))
            },
            None,
        )
        .await??;
    Ok(())
}
