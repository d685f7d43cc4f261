//! A server added gets its cache client, a removed one loses it (`cache-detach`).

use super::*;

/// After `server add`: a Gluu server joining a cluster with a cache gets its stunnel client
/// (and twemproxy), and Gluu's configuration once Gluu runs there. Returns the workflow it
/// started.
pub async fn after_server_add(ctl: &Ctl, node_id: &str, audit: &Audit) -> Option<Workflow> {
    let r = async {
        let mut rec = record(ctl)?;
        if !rec.installed || rec.client_node_ids.iter().any(|c| c == node_id) {
            return Ok::<_, CacheError>(None);
        }
        rec.client_node_ids.push(node_id.to_string());
        ctl.store.put_cache_record(rec.clone()).await?;
        let (_, primary) = gluu_servers(ctl)?;
        let client = [node_id.to_string()];
        let st = Start::plain(
            Action::Install,
            &rec.server_node_ids,
            &client,
            &primary,
            false,
        );
        Ok(start(ctl, st, false, WhenBusy::Queue, audit)
            .await?
            .workflow)
    };
    r.await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot give the new server its cache client");
        None
    })
}

/// After `server remove`: the removed server leaves the cache's clients, and its twemproxy
/// and stunnel client (with their keys) are removed by a `cache-detach` workflow. The
/// replicated `oxCacheConfiguration` is not touched.
pub async fn after_server_remove(ctl: &Ctl, node_id: &str, audit: &Audit) {
    let r = async {
        let mut rec = record(ctl)?;
        if !rec.installed || !rec.client_node_ids.iter().any(|c| c == node_id) {
            return Ok::<_, CacheError>(());
        }
        rec.client_node_ids.retain(|c| c != node_id);
        rec.changed_unix_ms = now_ms();
        ctl.store.put_cache_record(rec.clone()).await?;
        if ctl.store.node(node_id)?.is_none() {
            return Ok(());
        }
        let (_, primary) = gluu_servers(ctl)?;
        let client = [node_id.to_string()];
        let st = Start::plain(
            Action::Detach,
            &rec.server_node_ids,
            &client,
            &primary,
            false,
        );
        start(ctl, st, false, WhenBusy::Queue, audit).await?;
        Ok(())
    };
    if let Err(e) = r.await {
        tracing::warn!(error = %e, "cannot remove the cache client of the removed server");
    }
}
