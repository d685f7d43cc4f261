//! `clustermgr logs`: each node reads and filters its own files (rotated ones too) and the
//! controller merges the matches by time; follow mode streams appended lines; nothing of the
//! logs or the pattern is stored.

use clustermgr_tests::{Agent, Controller, clustermgr_bin, eventually, text};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const OXAUTH: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";
const OXTRUST: &str = "opt/gluu-server/opt/gluu/jetty/identity/logs";

fn write(root: &Path, dir: &str, name: &str, body: &str) {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), body).unwrap();
}

fn append(root: &Path, dir: &str, name: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(dir).join(name))
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

/// A Gluu-style line (`2026-11-29 05:00:01,000 LEVEL message`) `secs` seconds into today.
fn line(secs: u32, level: &str, msg: &str) -> String {
    format!(
        "2026-11-29 05:{:02}:{:02},000 {level:<5} {msg}\n",
        secs / 60,
        secs % 60
    )
}

struct Nodes {
    ctl: Controller,
    agents: Vec<Agent>,
}

fn three_nodes() -> Nodes {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents = Vec::new();
    for i in 1..=3 {
        let mut a = Agent::new(&format!("gluu{i}.logs.test"));
        a.join(&ctl, "gluu-node");
        a.start();
        agents.push(a);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    Nodes { ctl, agents }
}

#[test]
fn search_merges_by_time_across_nodes_with_type_regex_and_since_filters() {
    let n = three_nodes();
    // Node i logs ERRORs at seconds i, i+3, i+6 (rotated file holds the oldest), so the merge
    // interleaves the three nodes.
    for (i, a) in n.agents.iter().enumerate() {
        let i = i as u32 + 1;
        write(
            &a.root,
            OXAUTH,
            "oxauth.log.1",
            &(line(i, "ERROR", &format!("node{i} first"))
                + &line(i, "INFO", "noise")
                + "\tat org.gluu.Continuation(Foo.java:1)\n"),
        );
        write(
            &a.root,
            OXAUTH,
            "oxauth.log",
            &(line(i + 3, "ERROR", &format!("node{i} second"))
                + &line(i + 6, "ERROR", &format!("node{i} third"))
                + &line(i + 6, "INFO", "noise")),
        );
        write(
            &a.root,
            OXTRUST,
            "oxtrust.log",
            &line(i, "ERROR", &format!("node{i} oxtrust")),
        );
        // Rotation: the .1 file is older.
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(a.root.join(OXAUTH).join("oxauth.log.1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let out = n
        .ctl
        .cli_ok(&["logs", "--type", "oxauth", "--grep", "ERROR.*node\\d"]);
    let lines: Vec<&str> = out.lines().collect();
    let msgs: Vec<String> = lines
        .iter()
        .map(|l| l.rsplit(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let want: Vec<String> = ["first", "second", "third"]
        .iter()
        .flat_map(|w| (1..=3).map(move |i| format!("{w} node{i}")))
        .collect();
    assert_eq!(msgs, want, "merged by time across nodes:\n{out}");
    assert!(
        lines[0].starts_with("2026-11-29T05:00:01")
            && lines[0].contains("gluu1.logs.test oxauth |"),
        "{out}"
    );
    assert!(!out.contains("oxtrust"), "type filter: {out}");

    // Continuation lines take the time of the stamped line before them.
    let json = n.ctl.cli_ok(&[
        "--output",
        "json",
        "logs",
        "--node",
        "gluu2.logs.test",
        "--grep",
        "Continuation",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["hostname"], "gluu2.logs.test");
    assert_eq!(v["type"], "oxauth");
    assert_eq!(v["time"], "2026-11-29T05:00:02Z");
    assert!(
        v["file"]
            .as_str()
            .unwrap()
            .ends_with("/oxauth/logs/oxauth.log.1"),
        "{v}"
    );

    // Every type, one node, a limit: the newest are kept and the summary says so.
    let o = n.ctl.cli(&[
        "logs",
        "--node",
        "gluu1.logs.test",
        "--grep",
        "node1",
        "--limit",
        "2",
    ]);
    assert!(o.status.success());
    let shown = text(&o.stdout);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(
        shown.contains("node1 third") && shown.contains("node1 second"),
        "the newest by time, whatever the type: {shown}"
    );
    assert!(
        text(&o.stderr).contains("gluu1.logs.test: 4 line(s) matched, 2 shown (the oldest"),
        "{}",
        text(&o.stderr)
    );

    // --since: the fixture's lines are from 2026-11-29 05:00; "now" is later, so a short window
    // keeps nothing while the files themselves are fresh.
    let recent = n.ctl.cli_ok(&["logs", "--grep", "ERROR", "--since", "1m"]);
    assert_eq!(recent.trim(), "", "{recent}");

    // A bad pattern is refused before any node is asked (exit 2, the regex error).
    let bad = n.ctl.cli(&["logs", "--grep", "(unclosed"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("invalid --grep pattern"),
        "{}",
        text(&bad.stderr)
    );

    // A viewer may not read logs.
    let bundle = n.ctl.dir.path().join("viewer.toml");
    let b = bundle.to_str().unwrap();
    n.ctl
        .cli_ok(&["operator", "create", "vera", "--role", "viewer", "--out", b]);
    let denied = n.ctl.cli(&["--config", b, "logs"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied.stderr).contains("needs role operator"),
        "{}",
        text(&denied.stderr)
    );

    // Neither the pattern nor any line is kept: jobs and audit hold counts only.
    let jobs = n
        .ctl
        .cli_ok(&["--output", "json", "job", "list", "--limit", "100"]);
    assert!(jobs.contains("search-logs"), "{jobs}");
    let audit = n
        .ctl
        .cli_ok(&["--output", "json", "audit", "--limit", "1000"]);
    for hay in [&jobs, &audit] {
        assert!(!hay.contains("node1 first"), "a log line was stored: {hay}");
        assert!(
            !hay.contains("Continuation"),
            "the pattern was stored: {hay}"
        );
    }
    assert!(audit.contains("logs.search"), "{audit}");
}

#[test]
fn follow_streams_new_lines_and_ends_when_the_caller_leaves() {
    let n = three_nodes();
    for a in &n.agents {
        write(&a.root, OXAUTH, "oxauth.log", &line(1, "INFO", "boot"));
    }
    let mut child = Command::new(clustermgr_bin())
        .arg("--data-dir")
        .arg(&n.ctl.data)
        .args(["logs", "--follow", "--type", "oxauth", "--grep", "WARN"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send((Instant::now(), l)).is_err() {
                break;
            }
        }
    });
    // The follow is running on every node once each has a running search-logs job.
    eventually(Duration::from_secs(20), "three running searches", || {
        let jobs = n.ctl.json(&["job", "list", "--limit", "100"]);
        let running = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["kind"] == "search-logs" && j["state"] == "running")
            .count();
        if running == 3 {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    });
    // Each node's follow is live once a line appended now shows: a probe, appended again until
    // one does (the first scan may still be reading the file).
    for (i, a) in n.agents.iter().enumerate() {
        let mut k = 0;
        eventually(
            Duration::from_secs(30),
            "the follow delivers a probe",
            || {
                k += 1;
                let probe = format!("probe{i}-{k}");
                append(&a.root, OXAUTH, "oxauth.log", &line(5, "WARN", &probe));
                match rx.recv_timeout(Duration::from_millis(500)) {
                    Ok((_, l)) if l.contains(&format!("probe{i}-")) => Ok(()),
                    Ok((_, l)) if l.contains("probe") => Err(format!("an earlier probe: {l}")),
                    Ok((_, l)) => panic!("an unexpected line: {l}"),
                    Err(_) => Err("nothing yet".into()),
                }
            },
        );
    }
    // The next line that is not a probe (later copies of a probe may still come).
    let next = |limit: Duration| loop {
        let (at, l) = rx.recv_timeout(limit).expect("a followed line");
        if !l.contains("probe") {
            return (at, l);
        }
    };
    for (i, a) in n.agents.iter().enumerate() {
        let written = Instant::now();
        append(
            &a.root,
            OXAUTH,
            "oxauth.log",
            &line(10, "WARN", &format!("appended{i}")),
        );
        append(&a.root, OXAUTH, "oxauth.log", &line(11, "INFO", "not this"));
        let (at, got) = next(Duration::from_secs(20));
        assert!(got.contains(&format!("appended{i}")), "{got}");
        eprintln!(
            "followed line {i} seen after {:?}",
            at.duration_since(written)
        );
    }
    // A rotation: the file is replaced, the new one is read from its start.
    let a = &n.agents[0];
    std::fs::rename(
        a.root.join(OXAUTH).join("oxauth.log"),
        a.root.join(OXAUTH).join("oxauth.log.1"),
    )
    .unwrap();
    write(
        &a.root,
        OXAUTH,
        "oxauth.log",
        &line(20, "WARN", "after rotation"),
    );
    let (_, got) = next(Duration::from_secs(20));
    assert!(got.contains("after rotation"), "{got}");
    let others: Vec<String> = rx
        .try_iter()
        .map(|(_, l)| l)
        .filter(|l| !l.contains("probe"))
        .collect();
    assert!(others.is_empty(), "nothing else: {others:?}");

    // The caller leaves: every node's search ends (succeeded, not left running).
    child.kill().unwrap();
    let _ = child.wait();
    eventually(Duration::from_secs(20), "the searches ended", || {
        let jobs = n.ctl.json(&["job", "list", "--limit", "100"]);
        let states: Vec<String> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["kind"] == "search-logs")
            .map(|j| j["state"].as_str().unwrap_or("").to_string())
            .collect();
        if states.len() == 3 && states.iter().all(|s| s == "succeeded") {
            Ok(())
        } else {
            Err(format!("{states:?}"))
        }
    });
}

/// The agent runs with fixed malloc thresholds and two arenas (it starts itself again with them,
/// same process id): what a search frees goes back to the system instead of staying in the
/// process. A search still returns every match under those settings.
#[test]
fn agent_runs_with_fixed_allocator_settings_and_still_searches() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("gluu1.memory.logs.test");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let pid = a.pid().expect("agent running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let tunables = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"GLIBC_TUNABLES=".as_slice()))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let tunables =
        tunables.unwrap_or_else(|| panic!("the agent (pid {pid}) runs without GLIBC_TUNABLES"));
    // Started again at most once: the marker stops a second exec.
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == b"CLUSTERMGR_AGENT_ALLOCATOR=1".as_slice()),
        "the agent (pid {pid}) runs without the marker of its start again"
    );
    // glibc cuts the variable after the first setting it applied (Debian's 2.36): the rest are
    // in force but no longer in the environment.
    assert!(
        tunables.starts_with("glibc.malloc.mmap_threshold=131072"),
        "GLIBC_TUNABLES={tunables}"
    );
    let mut body = String::new();
    for i in 0..200_000u32 {
        let msg = if i % 1000 == 0 {
            "invalid_grant here"
        } else {
            "token issued"
        };
        body.push_str(&line(i % 3600, "INFO", msg));
    }
    write(&a.root, OXAUTH, "oxauth.log", &body);
    let out = ctl.cli_ok(&["logs", "--grep", "invalid_grant", "--type", "oxauth"]);
    assert_eq!(
        out.lines().filter(|l| l.contains("invalid_grant")).count(),
        200,
        "{out}"
    );
    a.stop();
    ctl.stop();
}
