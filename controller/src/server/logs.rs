//! The `Logs`, `Monitor` and `Metrics` services: thin adapters over `crate::logs`,
//! `crate::health` and `crate::metrics`.

use super::Ctl;
use crate::auth::{Role, caller, caller_fingerprint};
use crate::error::status;
use clustermgr_proto::{LogSearchEvent, SearchLogsRequest, logs_server::Logs};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct LogsApi {
    pub ctl: Arc<Ctl>,
    pub logs: Arc<crate::logs::Broker>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<LogSearchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Logs for LogsApi {
    type SearchStream = EventStream;

    async fn search(
        &self,
        req: Request<SearchLogsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        // Logs may hold personal data: operators only. Each node's job is audited.
        let p = caller(&req)?;
        crate::auth::require(&p, Role::Operator, "searching logs")?;
        let fp = caller_fingerprint(&req);
        let mut events = crate::logs::search(
            self.ctl.clone(),
            self.logs.clone(),
            &p.to_string(),
            req.into_inner(),
        )
        .await
        .map_err(status)?;
        let revoked = self.ctl.auth.clone().until_revoked(fp);
        let out = async_stream(move |tx| async move {
            tokio::pin!(revoked);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ev) => if tx.send(Ok(ev)).await.is_err() { return },
                        None => return,
                    },
                    // The caller went away: dropping `events` ends every node's search.
                    _ = tx.closed() => return,
                    _ = &mut revoked => {
                        let _ = tx
                            .send(Err(Status::unauthenticated(
                                "this credential was revoked or has expired",
                            )))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(out))
    }
}

/// A stream fed by a task; the task sees the caller leave as a failed send.
fn async_stream<F, Fut>(f: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<LogSearchEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub struct MonitorApi {
    pub ctl: Arc<Ctl>,
    pub health: Arc<crate::health::Health>,
}

#[tonic::async_trait]
impl clustermgr_proto::monitor_server::Monitor for MonitorApi {
    async fn get_status(
        &self,
        req: Request<clustermgr_proto::GetStatusRequest>,
    ) -> Result<Response<clustermgr_proto::ClusterStatus>, Status> {
        super::viewer(&req)?;
        let events = match req.into_inner().events {
            0 => 20,
            n => n.min(1000),
        } as usize;
        crate::health::status(&self.ctl, &self.health, events)
            .map(Response::new)
            .map_err(status)
    }
}

pub struct MetricsApi {
    pub ctl: Arc<Ctl>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[tonic::async_trait]
impl clustermgr_proto::metrics_server::Metrics for MetricsApi {
    async fn query(
        &self,
        req: Request<clustermgr_proto::MetricsQuery>,
    ) -> Result<Response<clustermgr_proto::MetricsResult>, Status> {
        super::viewer(&req)?;
        crate::metrics::query(&self.ctl, &self.metrics, req.get_ref())
            .map(Response::new)
            .map_err(status)
    }

    async fn latest(
        &self,
        req: Request<clustermgr_proto::LatestRequest>,
    ) -> Result<Response<clustermgr_proto::LatestResult>, Status> {
        super::viewer(&req)?;
        crate::metrics::latest(&self.ctl, &self.metrics)
            .map(Response::new)
            .map_err(status)
    }
}
