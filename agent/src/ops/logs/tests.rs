use super::scan::{BLOCK, Scan, to_ms};
use super::*;
use crate::host::{PackageFormat, PackageMode, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install, start_machine};
use regex::bytes::Regex;

#[test]
fn line_times_in_the_formats_nodes_write() {
    let gluu = line_time(b"2026-11-29 05:01:02,345 INFO  [qtp] hello").unwrap();
    assert_eq!(gluu, to_ms(2026, 11, 29, 5, 1, 2, 345).unwrap());
    assert_eq!(
        line_time(b"[2026-11-29 5:01:02.345678 +00:00:00] started"),
        Some(gluu)
    );
    assert_eq!(line_time(b"2026-11-29T05:01:02.345Z x"), Some(gluu));
    assert_eq!(
        line_time(b"[29/Nov/2026:05:01:02 +0000] conn=1 op=0 BIND"),
        to_ms(2026, 11, 29, 5, 1, 2, 0)
    );
    assert_eq!(
        line_time(b"127.0.0.1 - - [29/Nov/2026:05:01:02 +0000] \"GET / HTTP/1.1\" 200"),
        to_ms(2026, 11, 29, 5, 1, 2, 0)
    );
    assert_eq!(
        line_time(b"4242:M 29 Nov 2026 05:01:02.345 * Ready to accept connections"),
        Some(gluu)
    );
    assert_eq!(line_time(b"\tat org.gluu.Foo.bar(Foo.java:12)"), None);
    assert_eq!(line_time(b"2026-13-40 99:99:99 nonsense"), None);
    assert_eq!(line_time(b""), None);
}

#[test]
fn scan_keeps_the_newest_matches_and_gives_continuation_lines_their_stamp() {
    let re = compile("ERROR|Caused").unwrap();
    let since = to_ms(2026, 11, 29, 5, 0, 0, 0).unwrap();
    let mut scan = Scan::new(&re, since, 2);
    let text = b"2026-11-29 04:59:59,000 ERROR too old\n\
        2026-11-29 05:00:01,000 ERROR one\n\
        \tCaused by: x\n\
        2026-11-29 05:00:02,000 INFO fine\n\
        2026-11-29 05:00:03,000 ERROR three\n\
        2026-11-29 05:00:04,000 ERROR partial";
    let mut last = 0;
    let n = scan
        .read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
        .unwrap();
    assert_eq!(
        n as usize,
        text.len() - "2026-11-29 05:00:04,000 ERROR partial".len(),
        "an unfinished last line is left for the next read"
    );
    let (kept, matched, truncated) = scan.finish();
    assert_eq!(matched, 3);
    assert!(truncated);
    let lines: Vec<(&str, u64)> = kept.iter().map(|m| (m.line.as_str(), m.unix_ms)).collect();
    assert_eq!(
        lines,
        vec![
            ("\tCaused by: x", to_ms(2026, 11, 29, 5, 0, 1, 0).unwrap()),
            (
                "2026-11-29 05:00:03,000 ERROR three",
                to_ms(2026, 11, 29, 5, 0, 3, 0).unwrap()
            ),
        ]
    );
}

fn scan_of(re: &Regex, since: u64) -> Scan<'_> {
    Scan::new(re, since, 1000)
}

#[test]
fn a_match_is_a_line_that_matches_by_itself() {
    let re = compile(r"ERROR\s+two|done$|^\tat").unwrap();
    let mut scan = scan_of(&re, 0);
    let text = b"2026-11-29 05:00:01,000 ERROR\ntwo is on the next line\n\
        2026-11-29 05:00:02,000 ERROR   two on one line\n\
        2026-11-29 05:00:03,000 job done\r\n\
        2026-11-29 05:00:04,000 not done yet\n\
        \tat org.gluu.Foo.bar(Foo.java:12)\n";
    let mut last = 0;
    scan.read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
        .unwrap();
    let (kept, matched, _) = scan.finish();
    let lines: Vec<(&str, u64)> = kept.iter().map(|m| (m.line.as_str(), m.unix_ms)).collect();
    assert_eq!(matched, 3, "{lines:?}");
    assert_eq!(
        lines,
        vec![
            (
                "2026-11-29 05:00:02,000 ERROR   two on one line",
                to_ms(2026, 11, 29, 5, 0, 2, 0).unwrap()
            ),
            (
                "2026-11-29 05:00:03,000 job done",
                to_ms(2026, 11, 29, 5, 0, 3, 0).unwrap()
            ),
            (
                "\tat org.gluu.Foo.bar(Foo.java:12)",
                to_ms(2026, 11, 29, 5, 0, 4, 0).unwrap()
            ),
        ]
    );
    assert_eq!(last, to_ms(2026, 11, 29, 5, 0, 4, 0).unwrap());
}

#[test]
fn unstamped_lines_cost_one_walk_per_block() {
    // 1 MiB of lines in a format without a stamp, every one matching: each match's walk
    // back stops at the previous match (quadratic otherwise: minutes, not milliseconds).
    let re = compile("conn=").unwrap();
    let line = b"Nov 29 05:00:00 host slapd[1]: conn=1000 op=1 SRCH\n";
    let mut text = Vec::new();
    while text.len() < 2 * BLOCK {
        text.extend_from_slice(line);
    }
    let lines = (text.len() / line.len()) as u64;
    let mut scan = scan_of(&re, 0);
    scan.limit = 10;
    let mut last = 7;
    scan.read(LogType::Ldap, "/f", &mut &text[..], &mut last)
        .unwrap();
    let walked = scan.walked;
    let (kept, matched, _) = scan.finish();
    assert_eq!(matched, lines);
    assert!(
        walked <= lines + 2,
        "{walked} line visits for {lines} lines"
    );
    // No stamp anywhere: the file's time carried in.
    assert!(kept.iter().all(|m| m.unix_ms == 7));
    assert_eq!(last, 7);
}

#[test]
fn a_continuation_line_past_a_block_boundary_keeps_its_entrys_stamp() {
    let re = compile("Caused by").unwrap();
    let entry = to_ms(2026, 11, 29, 5, 0, 1, 0).unwrap();
    let mut text =
        b"2026-11-29 05:00:00,000 INFO before\n2026-11-29 05:00:01,000 ERROR x\n".to_vec();
    // More than a block of stack trace, then the line searched for, then a new entry.
    while text.len() < BLOCK + BLOCK / 2 {
        text.extend_from_slice(b"\tat org.gluu.Foo.bar(Foo.java:12)\n");
    }
    text.extend_from_slice(b"Caused by: java.io.IOException\n2026-11-29 05:00:09,000 INFO after\n");
    for since in [0, entry, entry + 1] {
        let mut scan = scan_of(&re, since);
        let mut last = 0;
        let n = scan
            .read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
            .unwrap();
        assert_eq!(n as usize, text.len());
        let (kept, _, _) = scan.finish();
        let times: Vec<u64> = kept.iter().map(|m| m.unix_ms).collect();
        let want = if since > entry { vec![] } else { vec![entry] };
        assert_eq!(times, want, "since {since}");
    }
}

#[test]
fn patterns_are_bounded() {
    assert!(compile("(a+)+$").is_ok(), "no backtracking, so no blow-up");
    let e = compile("(").unwrap_err().to_string();
    assert!(e.contains("unclosed group"), "{e}");
    assert!(compile("\\w{1000}{1000}").is_err(), "too big to compile");
}

#[test]
fn sources_follow_the_gluu_container_and_rotated_files_are_read_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir
        .path()
        .join("opt/gluu-server/opt/gluu/jetty/oxauth/logs");
    std::fs::create_dir_all(&logs).unwrap();
    for (name, age) in [
        ("oxauth.log", 0),
        ("oxauth.log.1", 100),
        ("oxauth.log.2.gz", 200),
    ] {
        let p = logs.join(name);
        std::fs::write(&p, "x\n").unwrap();
        let t = std::time::SystemTime::now() - Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    std::fs::write(logs.join("other.log"), "x\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", logs.join("oxauth-link.log")).unwrap();
    let gluu = dir.path().join("opt/gluu-server");
    let srcs = sources(dir.path(), &gluu, &[LogType::Oxauth]);
    assert_eq!(srcs.len(), 1);
    let mut skipped = 0;
    let files: Vec<String> = files_of(&srcs[0], &mut skipped)
        .into_iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["oxauth.log.1", "oxauth.log"]);
    assert_eq!(skipped, 1);
    assert_eq!(sources(dir.path(), &gluu, &[]).len(), 10, "every type");
}

fn host(root: &Path) -> Host {
    Host {
        root: root.to_path_buf(),
        packages: PackageMode::System,
        format: Some(PackageFormat::Deb),
        runner: Runner::Real,
        proc: root.join("proc"),
    }
}

#[test]
fn gluu_logs_are_read_under_the_container_root_whatever_the_machine_does() {
    let d = tempfile::tempdir().unwrap();
    let h = host(d.path());
    // No Gluu at all: the host's own paths.
    assert_eq!(gluu_base(&h), d.path());
    // A 4.2.3 machine, stopped: its files are where they are when it runs.
    install(d.path(), Flavor::Machine);
    let container = d.path().join("opt/gluu-server");
    assert_eq!(gluu_base(&h), container);
    assert!(crate::health::gluu_stopped(&h));
    let srcs = sources(d.path(), &gluu_base(&h), &[LogType::Ldap, LogType::Agent]);
    let dirs: Vec<PathBuf> = srcs.iter().map(|s| s.dir.clone()).collect();
    assert_eq!(
        dirs,
        [
            container.join("opt/opendj/logs"),
            container.join("var/log/openldap"),
            d.path().join("var/log/clustermgr-agent"),
        ]
    );
    std::fs::create_dir_all(&h.proc).unwrap();
    start_machine(d.path(), &h.proc, 4242);
    assert_eq!(gluu_base(&h), container);
    assert!(!crate::health::gluu_stopped(&h));

    // Gluu on the host itself (nochroot): its paths are the host's.
    let d2 = tempfile::tempdir().unwrap();
    install(d2.path(), Flavor::NoChroot);
    assert_eq!(gluu_base(&host(d2.path())), d2.path());
    // A container whose packaging is not known: still its files.
    let d3 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d3.path().join("opt/gluu-server/opt/opendj/logs")).unwrap();
    assert_eq!(
        gluu_base(&host(d3.path())),
        d3.path().join("opt/gluu-server")
    );
}

#[test]
fn a_symlinked_log_directory_is_not_followed_and_a_fifo_is_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let gluu = dir.path().join("opt/gluu-server");
    let jetty = gluu.join("opt/gluu/jetty/oxauth");
    std::fs::create_dir_all(&jetty).unwrap();
    // The logs directory is a link to somewhere else with a file of the right name.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("oxauth.log"), "SECRET\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, jetty.join("logs")).unwrap();
    let srcs = sources(dir.path(), &gluu, &[LogType::Oxauth]);
    let mut skipped = 0;
    assert!(files_of(&srcs[0], &mut skipped).is_empty());
    assert!(open_plain(&srcs[0], OsStr::new("oxauth.log")).is_none());

    // A real directory in which a FIFO takes a log file's name after the listing.
    std::fs::remove_file(jetty.join("logs")).unwrap();
    std::fs::create_dir(jetty.join("logs")).unwrap();
    std::fs::write(jetty.join("logs/oxauth.log"), "x\n").unwrap();
    assert_eq!(files_of(&srcs[0], &mut skipped).len(), 1);
    std::fs::remove_file(jetty.join("logs/oxauth.log")).unwrap();
    nix::unistd::mkfifo(
        &jetty.join("logs/oxauth.log"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let src = srcs[0].clone();
    std::thread::spawn(move || {
        let _ = tx.send(open_plain(&src, OsStr::new("oxauth.log")).is_none());
    });
    let refused = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("opening a FIFO hung the search");
    assert!(refused, "a FIFO was opened as a log file");
    assert!(files_of(&srcs[0], &mut skipped).is_empty());
}
