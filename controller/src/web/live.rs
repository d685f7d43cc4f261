//! The live parts of pages: a fragment rendered again whenever the controller's event hub says
//! something changed (a `watch` channel: the workflow driver's change notices, the metrics
//! store's new samples), sent as a server-sent event when it differs from the last one sent.
//! `console.js` puts each into the page (`data-events`); the page is never reloaded.
//!
//! Every stream is held by its session ([`Guard`]): checked before each event, at once when a
//! session is ended (sign-out, user removed or its role changed) and at each keep-alive (idle
//! and absolute expiry; a stream does not count as use). Once the session is gone or its role is
//! below what the page needs, the stream sends `end` with a notice and ends.

use super::Web;
use crate::auth::Role;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Keep-alive comments are sent this often, and a quiet stream checks its session as often.
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The session a stream was opened with (its cookie) and the role its page needs.
pub(super) struct Guard {
    id: String,
    needed: Role,
    ended: watch::Receiver<u64>,
}

/// The stream's session is gone or no longer has the role.
pub(super) struct Ended;

impl Guard {
    pub(super) fn new(web: &Web, headers: &HeaderMap, needed: Role) -> Self {
        Self {
            id: super::cookie(headers, super::sessions::COOKIE).unwrap_or_default(),
            needed,
            ended: web.sessions.subscribe(),
        }
    }

    fn holds(&self, web: &Web) -> bool {
        web.sessions.holds(&self.id, self.needed)
    }

    /// `next`'s value while the session holds: checked now, whenever a session is ended, every
    /// [`KEEP_ALIVE`], and once `next` is ready.
    pub(super) async fn wait<T>(
        &mut self,
        web: &Web,
        next: impl Future<Output = T>,
    ) -> Result<T, Ended> {
        tokio::pin!(next);
        loop {
            if !self.holds(web) {
                return Err(Ended);
            }
            tokio::select! {
                v = &mut next => return if self.holds(web) { Ok(v) } else { Err(Ended) },
                r = self.ended.changed() => r.map_err(|_| Ended)?,
                _ = tokio::time::sleep(KEEP_ALIVE) => {}
            }
        }
    }
}

/// The last event of a stream whose session ended.
pub(super) fn ended_event() -> Event {
    Event::default()
        .event("end")
        .data("<p class=\"error\">Your session has ended: sign in again to follow this page.</p>")
}

/// A stream of events as the console sends it (keep-alives, the security headers).
pub(super) fn respond<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    super::secure_headers(&mut r);
    r
}

struct State {
    web: Arc<Web>,
    changes: watch::Receiver<u64>,
    guard: Guard,
    /// The last fragment sent.
    last: String,
    /// Something changed since the last rendering.
    dirty: bool,
    ended: bool,
}

/// Streams `render`'s fragment: at once, then after each change (at most once per `pause`),
/// while it differs from the last one sent and `guard`'s session holds. `render` returns the
/// fragment and whether it is the last (sent as the `end` event, then the stream ends); `None`
/// ends the stream.
pub(super) fn live<F>(
    web: Arc<Web>,
    guard: Guard,
    changes: watch::Receiver<u64>,
    pause: Duration,
    render: F,
) -> Response
where
    F: Fn(&Web) -> Option<(String, bool)> + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let start = State {
        web,
        changes,
        guard,
        last: String::new(),
        dirty: true,
        ended: false,
    };
    let stream = futures::stream::unfold(start, move |mut st| {
        let render = render.clone();
        async move {
            if st.ended {
                return None;
            }
            loop {
                if st.dirty {
                    st.dirty = false;
                    if !st.guard.holds(&st.web) {
                        st.ended = true;
                        return Some((Ok::<_, Infallible>(ended_event()), st));
                    }
                    let (html, done) = render(&st.web)?;
                    if done {
                        st.ended = true;
                        return Some((Ok(Event::default().event("end").data(html)), st));
                    }
                    if html != st.last {
                        st.last = html.clone();
                        return Some((Ok(Event::default().data(html)), st));
                    }
                }
                match st.guard.wait(&st.web, st.changes.changed()).await {
                    Ok(r) => r.ok()?,
                    Err(Ended) => {
                        st.ended = true;
                        return Some((Ok(ended_event()), st));
                    }
                }
                // Changes meanwhile are drawn together.
                tokio::time::sleep(pause).await;
                st.dirty = true;
            }
        }
    });
    respond(stream)
}
