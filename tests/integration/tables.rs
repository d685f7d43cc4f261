//! Tables fit the terminal's width (COLUMNS) with ids shown short; `--output json` and `show`
//! keep whole ids, and a command taking an id takes a unique prefix of it.

use clustermgr_tests::{Agent, Controller, clustermgr_bin, text};
use std::process::{Command, Output, Stdio};

fn at_width(ctl: &Controller, columns: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(clustermgr_bin());
    c.arg("--data-dir").arg(&ctl.data).args(args);
    match columns {
        Some(w) => c.env("COLUMNS", w),
        None => c.env_remove("COLUMNS"),
    };
    c.stdin(Stdio::null()).output().expect("run clustermgr")
}

fn widest(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn tables_fit_columns_and_ids_are_short_in_tables_whole_in_json() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("gluu-worker-with-a-rather-long-name.datacenter-one.example.org");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let node = "gluu-worker-with-a-rather-long-name.datacenter-one.example.org";
    for _ in 0..3 {
        ctl.cli_ok(&["job", "run", node, "ping"]);
    }
    ctl.cli_ok(&["job", "run", node, "facts"]);
    ctl.token("gluu-node");

    for args in [
        &["audit"][..],
        &["node", "list"],
        &["job", "list"],
        &["token", "list"],
        &["operator", "list"],
    ] {
        // Unfitted, the audit and the job list are wider than a terminal; fitted, no line is.
        let wide = at_width(&ctl, None, args);
        assert!(wide.status.success(), "{args:?}: {}", text(&wide.stderr));
        let wide = text(&wide.stdout);
        if args == ["audit"] || args == ["job", "list"] || args == ["node", "list"] {
            assert!(widest(&wide) > 80, "{args:?}:\n{wide}");
        }
        for columns in ["80", "120"] {
            let o = at_width(&ctl, Some(columns), args);
            assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
            let out = text(&o.stdout);
            assert!(out.lines().count() >= 4, "{args:?}:\n{out}");
            let limit: usize = columns.parse().unwrap();
            assert!(
                widest(&out) <= limit,
                "{args:?} at {columns} columns:\n{out}"
            );
        }
    }

    // JSON holds whole ids; the table a short form, which names the same job.
    let jobs = ctl.json(&["job", "list"]);
    let ids: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4, "{jobs}");
    assert!(ids.iter().all(|i| i.len() == 36), "{ids:?}");
    let table = text(&at_width(&ctl, Some("80"), &["job", "list"]).stdout);
    for id in &ids {
        assert!(!table.contains(id.as_str()), "{table}");
        let short = table
            .split_whitespace()
            .find(|w| names(id, w))
            .unwrap_or_else(|| panic!("no short form of {id}:\n{table}"));
        let shown = ctl.json(&["job", "show", short]);
        assert_eq!(shown["id"], id.as_str(), "{short}");
        ctl.cli_ok(&["job", "logs", short]);
    }
    // Jobs made in the same minute share their first characters: a prefix that names several
    // is refused, listing them.
    let common = ids[0]
        .bytes()
        .zip(ids[1].bytes())
        .take_while(|(x, y)| x == y)
        .count();
    assert!(common >= 4, "{ids:?}");
    let o = ctl.cli(&["job", "show", &ids[0][..common]]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("several job ids"), "{err}");
    assert!(err.contains(&ids[0]) && err.contains(&ids[1]), "{err}");

    // Fewer than 4 characters name nothing, even when one id alone starts with them.
    let o = ctl.cli(&["node", "show", &a.node_id[..3]]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    // A node by the 8 characters its table shows.
    let shown = ctl.json(&["node", "show", &a.node_id[..8]]);
    assert_eq!(shown["id"], a.node_id.as_str());
    assert_eq!(shown["hostname"], node);
    let table = text(&at_width(&ctl, Some("80"), &["node", "list"]).stdout);
    assert!(
        table.contains(&a.node_id[..8]) && !table.contains(&a.node_id),
        "{table}"
    );
}

/// Whether `short` is how a table shows `id`: 8 characters or more of its start, or
/// `START…END`.
fn names(id: &str, short: &str) -> bool {
    let (head, tail) = short.split_once('…').unwrap_or((short, ""));
    head.len() >= 8 && id.starts_with(head) && id[head.len()..].ends_with(tail)
}
