use super::*;
use crate::engine::new_workflow;

/// A workflow `id` of `kind` on `nodes`, with `status`.
fn wf(id: &str, kind: &str, nodes: &[&str], status: WorkflowStatus) -> Workflow {
    let mut w = new_workflow(
        id,
        kind,
        "operator:a",
        1,
        nodes
            .iter()
            .map(|n| (n.to_string(), n.to_string(), vec!["s"]))
            .collect(),
    );
    w.set_status(status);
    w
}

/// `w` with its cancel asked for.
fn cancelled(mut w: Workflow) -> Workflow {
    assert!(crate::engine::cancel(&mut w));
    w
}

/// `w` after its start-time change failed.
fn unstartable(mut w: Workflow) -> Workflow {
    fail_unstartable(&mut w, "the new password was not kept", 5);
    w
}

use WorkflowStatus::{Cancelled, Failed, Pending, Queued, Running, Succeeded};

const INSTALL: &str = crate::gluu_install::KIND;
const REPL: &str = crate::replication::KIND;
const CACHE_INSTALL: &str = "cache-install";
const CACHE_PASSWORD: &str = "cache-password";
const HOSTS: &str = crate::hosts::KIND;
const LB: &str = crate::lb::INSTALL_KIND;

fn wait(ids: &[&str]) -> Admission {
    Admission::Wait(ids.iter().map(|s| s.to_string()).collect())
}

#[test]
fn a_new_workflow_waits_for_those_holding_its_nodes() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<Workflow>, Workflow, Admission)> = vec![
        (
            "nothing else runs",
            vec![],
            wf("n", INSTALL, &["a"], Pending),
            Admission::Start,
        ),
        (
            "another node only",
            vec![wf("1", CACHE_INSTALL, &["b"], Running)],
            wf("n", INSTALL, &["a"], Pending),
            Admission::Start,
        ),
        (
            "server add's cache client on the node: gluu install waits",
            vec![wf("1", CACHE_INSTALL, &["c"], Running)],
            wf("n", INSTALL, &["a", "c"], Pending),
            wait(&["1"]),
        ),
        (
            "queued ones ahead count too (first come, first served)",
            vec![
                wf("1", REPL, &["a", "b"], Running),
                wf("2", INSTALL, &["b"], Queued),
            ],
            wf("n", INSTALL, &["b"], Pending),
            wait(&["1", "2"]),
        ),
        (
            "ended ones hold nothing",
            vec![
                wf("1", REPL, &["a"], Succeeded),
                wf("2", REPL, &["a"], Cancelled),
            ],
            wf("n", INSTALL, &["a"], Pending),
            Admission::Start,
        ),
        (
            "two cache workflows share the cache record",
            vec![wf("1", CACHE_INSTALL, &["x"], Running)],
            wf("n", CACHE_PASSWORD, &["y"], Pending),
            wait(&["1"]),
        ),
        (
            "hosts never waits",
            vec![wf("1", REPL, &["a"], Running)],
            wf("n", HOSTS, &["a"], Pending),
            Admission::Start,
        ),
        (
            "hosts never holds",
            vec![wf("1", HOSTS, &["a"], Running)],
            wf("n", REPL, &["a"], Pending),
            Admission::Start,
        ),
        (
            "the load balancer's workflows neither hold nor wait",
            vec![wf("1", LB, &["a", "lb"], Running)],
            wf("n", REPL, &["a"], Pending),
            Admission::Start,
        ),
        (
            "a cancelled queued workflow holds nothing",
            vec![cancelled(wf("1", CACHE_PASSWORD, &["a"], Queued))],
            wf("n", CACHE_INSTALL, &["b"], Pending),
            Admission::Start,
        ),
        (
            "a retried workflow does not wait for itself",
            vec![wf("n", REPL, &["a"], Running)],
            wf("n", REPL, &["a"], Running),
            Admission::Start,
        ),
    ];
    for (name, active, new, want) in cases {
        assert_eq!(admit_new(&active, &new), want, "{name}");
    }
}

#[test]
fn queued_workflows_start_in_order_once_their_holders_ended() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<Workflow>, Vec<(&str, Admission)>)> = vec![
        (
            "the holder still runs",
            vec![
                wf("1", CACHE_INSTALL, &["c"], Running),
                wf("2", INSTALL, &["a", "c"], Queued),
            ],
            vec![("2", wait(&["1"]))],
        ),
        (
            "the holder ended (it left the active list)",
            vec![wf("2", INSTALL, &["a", "c"], Queued)],
            vec![("2", Admission::Start)],
        ),
        (
            "the holder ended in this pass (still listed, terminal)",
            vec![
                wf("1", CACHE_INSTALL, &["c"], Succeeded),
                wf("2", INSTALL, &["c"], Queued),
            ],
            vec![("2", Admission::Start)],
        ),
        (
            "two queued on one node: the first starts, the second waits for it",
            vec![
                wf("2", REPL, &["a"], Queued),
                wf("3", INSTALL, &["a"], Queued),
            ],
            vec![("2", Admission::Start), ("3", wait(&["2"]))],
        ),
        (
            "two queued on different nodes both start",
            vec![
                wf("2", REPL, &["a"], Queued),
                wf("3", INSTALL, &["b"], Queued),
            ],
            vec![("2", Admission::Start), ("3", Admission::Start)],
        ),
        (
            "a retried (older) workflow running holds a newer queued one",
            vec![
                wf("0", REPL, &["a"], Running),
                wf("1", INSTALL, &["a"], Queued),
            ],
            vec![("1", wait(&["0"]))],
        ),
        (
            "a retried workflow queued behind a newer running one",
            vec![
                wf("0", REPL, &["a"], Queued),
                wf("1", INSTALL, &["a"], Running),
            ],
            vec![("0", wait(&["1"]))],
        ),
        (
            "a cancelled queued workflow never starts (its start-time change must not run)",
            vec![cancelled(wf("2", CACHE_PASSWORD, &["a"], Queued))],
            vec![],
        ),
        (
            "one behind a cancelled queued workflow does not wait for it",
            vec![
                cancelled(wf("2", CACHE_PASSWORD, &["a"], Queued)),
                wf("3", CACHE_INSTALL, &["b"], Queued),
            ],
            vec![("3", Admission::Start)],
        ),
        (
            "a cancelled queued workflow behind a running one: the others still wait for the runner",
            vec![
                wf("1", CACHE_INSTALL, &["c"], Running),
                cancelled(wf("2", CACHE_PASSWORD, &["a"], Queued)),
                wf("3", CACHE_PASSWORD, &["a"], Queued),
            ],
            vec![("3", wait(&["1"]))],
        ),
        (
            "one failed at its start holds nothing",
            vec![
                unstartable(wf("2", CACHE_PASSWORD, &["a"], Queued)),
                wf("3", CACHE_INSTALL, &["b"], Queued),
            ],
            vec![("3", Admission::Start)],
        ),
        (
            "a pending (just admitted) workflow holds",
            vec![
                wf("1", REPL, &["a"], Pending),
                wf("2", INSTALL, &["a"], Queued),
            ],
            vec![("2", wait(&["1"]))],
        ),
    ];
    for (name, active, want) in cases {
        let got = admit_queued(&active);
        let want: Vec<(String, Admission)> =
            want.into_iter().map(|(i, a)| (i.to_string(), a)).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn apply_records_the_wait_and_the_start() {
    let mut w = wf("2", INSTALL, &["a"], Pending);
    assert!(apply(&mut w, &wait(&["1"])));
    assert_eq!(w.status(), Queued);
    assert_eq!(w.queued_behind, ["1"]);
    assert!(!apply(&mut w, &wait(&["1"])), "nothing changed");
    assert!(apply(&mut w, &Admission::Start));
    assert_eq!(w.status(), Pending);
    assert!(w.queued_behind.is_empty());
    // A retried workflow admitted at once stays running.
    let mut r = wf("3", REPL, &["a"], Running);
    assert!(!apply(&mut r, &Admission::Start));
    assert_eq!(r.status(), Running);
}

#[test]
fn a_queued_workflow_that_cannot_start_fails_and_can_be_retried() {
    let w = unstartable(wf("2", CACHE_PASSWORD, &["a"], Queued));
    assert_eq!(w.status(), Failed);
    assert_eq!(w.error, "cannot start: the new password was not kept");
    assert!(w.queued_behind.is_empty());
    assert_eq!(w.finished_unix_ms, 5);
    assert!(admit_queued(std::slice::from_ref(&w)).is_empty());
    let mut r = w.clone();
    crate::engine::retry(&mut r, 6).unwrap();
    assert_eq!(r.status(), Running);
    assert!(r.error.is_empty());
}
