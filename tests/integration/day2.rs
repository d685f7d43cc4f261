//! Day-2 operations without dropping a request (issue 20): on a 3-node sandbox, a client that
//! talks only to the load balancer (a round every 50 ms from 8 source addresses: discovery, a
//! token, its introspection from another address, /identity/) runs through cert install,
//! cache password set (Redis accepts the old and the new password until every node is back),
//! replication deploy --all, schema add, gluu restart of one node and server remove; no round
//! fails, and every operation drained its nodes before restarting them.

use clustermgr_tests::Sandbox;
use clustermgr_tests::day2::sequence;
use clustermgr_tests::day2::{Day2Client, report, sources};
use std::time::Duration;

/// `sandbox down` when the test ends, passed or not (the machine guards stop only the machines).
pub(crate) struct Down<'a>(pub(crate) &'a Sandbox);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down"]);
    }
}

#[test]
fn day_two_operations_drop_no_request() {
    let sbx = Sandbox::new(3);
    let _down = Down(&sbx);
    sbx.up();
    let data = sbx.dir.join("controller");
    let files = tempfile::tempdir().unwrap();
    let ops = sequence::operations(files.path()).unwrap();
    let client = Day2Client::start(
        sequence::sandbox_target(),
        sources(8),
        &[sequence::sandbox_certificate(&sbx.dir).unwrap()],
        Duration::from_millis(50),
    );
    let base = client.wait_rounds("start", 40, Duration::from_secs(120));
    assert_eq!(base.failed, 0, "before any operation: {base:?}");
    let mut outcomes = Vec::new();
    for op in &ops {
        let o = sequence::run(&data, &client, op, 20);
        assert!(o.ok, "{}: {}", o.name, o.detail);
        outcomes.push(o);
    }
    client.phase("after");
    client.wait_rounds("after", 40, Duration::from_secs(120));
    let phases = client.stop();
    let table = sequence::table(&outcomes);
    eprintln!("{table}\n{}", report(&phases));
    // Every operation here restarts Gluu or its directory on each node: each drained them.
    for o in &outcomes {
        let one = o.name.starts_with("server remove") || o.name.starts_with("gluu restart");
        let want = if one { 1 } else { 3 };
        assert!(
            o.drains >= want,
            "{}: {} drain(s)\n{table}",
            o.name,
            o.drains
        );
    }
    let failed: Vec<_> = phases.iter().filter(|(_, t)| t.failed > 0).collect();
    assert!(failed.is_empty(), "failed rounds:\n{}", report(&phases));
    let rounds: u64 = phases.iter().map(|(_, t)| t.rounds).sum();
    assert!(rounds >= 200, "{rounds} rounds");
    // Nothing stays out of rotation.
    let conf = sbx.dir.join("hosts/lb.sandbox/root/etc/nginx/nginx.conf");
    let conf = std::fs::read_to_string(&conf).unwrap();
    assert!(
        conf.contains("max_fails") && !conf.contains(" down;"),
        "{conf}"
    );
}
