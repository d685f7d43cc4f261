//! The console's session checks where a request outlives one answer or carries a large body:
//! live streams (charts, log follow) end once their session is signed out or its user removed,
//! and a multipart upload from a client not signed in (or without the role) is refused before
//! its body is read.

use crate::web::{Browser, Console, VIEWER_PW, first_admin};
use crate::web_actions::{add_user, upload};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A generous ceiling for a stream's next line: the test waits for the line, not for a time.
const CEILING: Duration = Duration::from_secs(60);

/// A server-sent event stream read by curl (`-i`: the status and headers first).
struct Stream {
    curl: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Stream {
    fn open(b: &Browser, path: &str) -> Self {
        let mut curl = Command::new("curl")
            .args(["-sSNi", "--max-time", "150", "--cacert"])
            .arg(&b.ca)
            .arg("-b")
            .arg(&b.jar)
            .arg(format!("{}{path}", b.base))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = curl.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            curl,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line satisfies `want`.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) {
        loop {
            match self.lines.recv_timeout(CEILING) {
                Ok(l) => {
                    let hit = want(&l);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!("{what}: {e}; so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Reads to the end of the stream (the server closing it; curl's own limit would fail the
    /// test as an error exit); the lines seen.
    fn finish(mut self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(CEILING) {
                Ok(l) => self.seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => {
                    let _ = self.curl.kill();
                    panic!("{what}: {e}; so far:\n{}", self.seen.join("\n"));
                }
            }
        }
        let status = self.curl.wait().unwrap();
        let seen = self.seen.join("\n");
        assert!(
            status.success(),
            "{what}: curl {status} (the server did not end it):\n{seen}"
        );
        seen
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.curl.kill();
        let _ = self.curl.wait();
    }
}

fn is_event_stream(l: &str) -> bool {
    l.to_ascii_lowercase()
        .starts_with("content-type: text/event-stream")
}

fn ended_for_the_session(what: &str, seen: &str) {
    assert!(
        seen.contains("event: end") && seen.contains("Your session has ended"),
        "{what}:\n{seen}"
    );
}

#[test]
fn live_streams_end_when_their_session_is_signed_out_or_its_user_removed() {
    let c = Console::start();
    let a = c.node("gluu1.webguard.test", |_| {}, &["--metrics-interval", "1s"]);
    let admin = c.browser("admin");
    first_admin(&c.ctl, &admin);
    add_user(&admin, "olive", "operator");
    let olive = c.browser("olive");
    let r = olive.sign_in("olive", VIEWER_PW);
    assert_eq!(r.code, 303, "{}", r.body);

    // Open: the admin's cluster charts (a first drawing at once), olive's node charts and her
    // log follow (no line yet: open once its headers came).
    let mut cluster = Stream::open(&admin, "/live/monitoring?range=1h");
    cluster.until("the cluster's first drawing", |l| l.starts_with("data: "));
    let mut node = Stream::open(&olive, &format!("/live/monitoring/{}", a.hostname));
    node.until("the node's first drawing", |l| l.starts_with("data: "));
    let mut follow = Stream::open(
        &olive,
        &format!("/logs/follow?type=oxauth&host={}&grep=x", a.hostname),
    );
    follow.until("the follow's headers", is_event_stream);

    // The admin removes olive: both her streams end with the notice.
    let csrf = admin.get("/users").hidden("csrf");
    let r = admin.post("/users/remove", &[("csrf", &csrf), ("username", "olive")]);
    assert!(r.code == 200 || r.code == 303, "{}: {}", r.code, r.body);
    ended_for_the_session("olive's node charts", &node.finish("olive's node charts"));
    ended_for_the_session("olive's log follow", &follow.finish("olive's log follow"));
    assert_eq!(
        olive.get(&format!("/live/monitoring/{}", a.hostname)).code,
        303,
        "a removed user opens no stream"
    );

    // The admin signs out in another request: the open stream ends.
    let csrf = admin.get("/dashboard").hidden("csrf");
    let r = admin.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.code, 303, "{}", r.body);
    ended_for_the_session("the admin's charts", &cluster.finish("the admin's charts"));
}

#[test]
fn an_upload_is_refused_before_its_body_is_read_without_a_session_or_the_role() {
    let c = Console::start();
    let admin = c.browser("admin");
    first_admin(&c.ctl, &admin);
    add_user(&admin, "vera", "viewer");
    let vera = c.browser("vera");
    assert_eq!(vera.sign_in("vera", VIEWER_PW).code, 303);
    // A body over the 2 MiB limit: read, it would be refused as too large, not as forbidden.
    let big = c.dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 3 << 20]).unwrap();
    let anon = c.browser("anon");
    for (who, b) in [("not signed in", &anon), ("a viewer", &vera)] {
        for path in ["/certs/install", "/schema/add"] {
            let r = upload(
                b,
                path,
                &[("csrf", "x")],
                &[("certificate", &big), ("file", &big)],
            );
            assert_eq!(r.code, 403, "{who} {path}: {}", r.body);
        }
    }
    // Signed in with the role, the body is read: the same upload is refused for its size, and
    // a small one without the form's CSRF token for the token.
    let r = upload(&admin, "/certs/install", &[], &[("certificate", &big)]);
    assert_ne!(r.code, 403, "{}", r.body);
    let small = c.dir.path().join("small.pem");
    std::fs::write(&small, "not a certificate").unwrap();
    let r = upload(&admin, "/certs/install", &[], &[("certificate", &small)]);
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
}
