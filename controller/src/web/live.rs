//! The live parts of pages: a fragment rendered again whenever the controller's event hub says
//! something changed (a `watch` channel: the workflow driver's change notices, the metrics
//! store's new samples), sent as a server-sent event when it differs from the last one sent.
//! `console.js` puts each into the page (`data-events`); the page is never reloaded.

use super::Web;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Streams `render`'s fragment: at once, then after each change (at most once per `pause`),
/// while it differs from the last one sent. `render` returns the fragment and whether it is the
/// last (sent as the `end` event, then the stream ends); `None` ends the stream.
pub(super) fn live<F>(
    web: Arc<Web>,
    changes: watch::Receiver<u64>,
    pause: Duration,
    render: F,
) -> Response
where
    F: Fn(&Web) -> Option<(String, bool)> + Send + Sync + 'static,
{
    let render = Arc::new(render);
    // (web, changes, the last fragment sent, ended)
    let stream = futures::stream::unfold(
        (web, changes, String::new(), false),
        move |(web, mut changes, last, ended)| {
            let render = render.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    let (html, done) = render(&web)?;
                    if done {
                        let ev = Event::default().event("end").data(html);
                        return Some((
                            Ok::<_, Infallible>(ev),
                            (web, changes, String::new(), true),
                        ));
                    }
                    if html != last {
                        let ev = Event::default().data(html.clone());
                        return Some((Ok(ev), (web, changes, html, false)));
                    }
                    changes.changed().await.ok()?;
                    // Changes meanwhile are drawn together.
                    tokio::time::sleep(pause).await;
                }
            }
        },
    );
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    super::secure_headers(&mut r);
    r
}
