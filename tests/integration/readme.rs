//! The README's shell blocks, run as shown on a sandbox (a doc test for the shell), and the
//! tables a sandbox's cluster prints, fitted to an 80-column terminal.
//!
//! Every ```sh block of README.md is run (`bash -euo pipefail`) after `clustermgr sandbox up`,
//! unless its fence says `sh no-test` (the commands that bring up the sandbox or run the tests,
//! reference lists with placeholders, benchmarks). The sandbox lives in a directory of the test's
//! own: `~/.clustermgr-sandbox` in a block stands for it, and `target/release/clustermgr` for the
//! binary under test.

use clustermgr_tests::{Sandbox, clustermgr_bin, text};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

/// The sandbox directory the README's commands name.
const README_SANDBOX: &str = "~/.clustermgr-sandbox";
/// The binary the README's commands name.
const README_BINARY: &str = "target/release/clustermgr";

/// A fenced shell block of a Markdown text: its first line number and its lines.
#[derive(Debug)]
struct Block {
    line: usize,
    script: String,
}

/// The shell blocks of `markdown` meant to be run (those whose fence does not say `no-test`).
fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, bool, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = fence.strip_prefix("```") {
                    let mut words = info.split_whitespace();
                    let shell = matches!(words.next(), Some("sh" | "bash" | "shell"));
                    let run = shell && !info.split_whitespace().any(|w| w == "no-test");
                    open = Some((i + 1, run, String::new()));
                }
            }
            Some((start, run, script)) => {
                if fence.starts_with("```") {
                    if *run {
                        out.push(Block {
                            line: *start,
                            script: std::mem::take(script),
                        });
                    }
                    open = None;
                } else {
                    script.push_str(line);
                    script.push('\n');
                }
            }
        }
    }
    out
}

/// Runs each block with bash (-euo pipefail) in `cwd`; every failure, with its block and output.
fn run_blocks(blocks: &[Block], cwd: &Path, sandbox: &Path, binary: &Path) -> Result<(), String> {
    let mut failed = Vec::new();
    for b in blocks {
        let script = b
            .script
            .replace(README_SANDBOX, &sandbox.display().to_string())
            .replace(README_BINARY, &binary.display().to_string());
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        // Shown with the test's output (`--no-capture`, or when it fails).
        eprintln!(
            "README.md line {} ({}):\n{}{}",
            b.line,
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        if !o.status.success() {
            failed.push(format!(
                "README.md line {} ({}):\n{script}--- stdout\n{}--- stderr\n{}",
                b.line,
                o.status,
                text(&o.stdout),
                text(&o.stderr)
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

#[test]
fn readme_blocks_are_found_and_a_failing_block_fails() {
    let md = "text\n```sh\necho one\n```\n```sh no-test\nexit 9\n```\n```toml\nx = 1\n```\n\
              ```sh\necho out; echo err >&2; false\necho never\n```\n";
    let blocks = runnable_blocks(md);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0].line, 2);
    let tmp = tempfile::tempdir().unwrap();
    let err = run_blocks(&blocks, tmp.path(), tmp.path(), Path::new("true")).unwrap_err();
    assert!(err.contains("README.md line 11"), "{err}");
    assert!(err.contains("false\necho never"), "{err}");
    assert!(err.contains("out\n") && err.contains("err\n"), "{err}");
    assert!(!err.contains("line 2 "), "{err}");
    // The README itself has blocks to run, and none left that names the operator's sandbox
    // once the test's directory stands in for it.
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 3, "{blocks:?}");
    // The commands a block runs: not those given by a path or a variable.
    let cmds = commands(
        "LEADER=$($ROOT/sbin/x status | awk '/L:/ {print $2}')\n\
         nsenter --target \"$LEADER\" -- systemctl is-active a \\\n    b\n\
         A=1 target/release/clustermgr status   # every node\n\
         curl -s x && jq . # y\n\
         ldapadd -x <<'EOF'\ndn: uid=a\nuserPassword: $(cat f)\nEOF\nhead -1 f\n\
         (umask 077 && openssl rand 4 > f)\ncat f | grep -F 'a (b) (c)'\n",
    );
    assert_eq!(
        cmds.into_iter().collect::<Vec<_>>(),
        [
            "awk", "cat", "curl", "grep", "head", "jq", "ldapadd", "nsenter", "openssl", "umask"
        ],
    );
}

fn readme_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

#[test]
fn readme_commands_run_on_a_sandbox_and_its_tables_fit_80_columns() {
    let sbx = Sandbox::new(2);
    let dir = &sbx.dir;
    sbx.up();

    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let blocks = runnable_blocks(&readme);
    for b in &blocks {
        let left = b
            .script
            .replace(README_SANDBOX, "")
            .replace(README_BINARY, "");
        assert!(
            !left.contains(".clustermgr-sandbox") && !left.contains("target/release"),
            "README.md line {}: a path the test cannot stand in for:\n{}",
            b.line,
            b.script
        );
    }
    let ran = run_blocks(
        &blocks,
        &readme_path().with_file_name(""),
        dir,
        &clustermgr_bin(),
    );

    let tables = tables_fit(&dir.join("controller"));
    let down = sbx.run(&["down"]);
    if let Err(e) = ran {
        panic!("README shell blocks failed on the sandbox:\n{e}");
    }
    tables.unwrap_or_else(|e| panic!("{e}"));
    assert!(down.status.success(), "{}", text(&down.stderr));
}

/// The cluster's tables at COLUMNS=80: no line wider; ids short in tables, whole in JSON, and a
/// short id shown is accepted back.
fn tables_fit(data: &Path) -> Result<(), String> {
    let cli = |args: &[&str]| {
        let o = Command::new(clustermgr_bin())
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("COLUMNS", "80")
            .stdin(Stdio::null())
            .output()
            .expect("run clustermgr");
        (o.status.success(), text(&o.stdout), text(&o.stderr))
    };
    let mut problems = Vec::new();
    for args in [
        &["audit"][..],
        &["workflow", "list"],
        &["node", "list"],
        &["replication", "status"],
        &["server", "list"],
        &["job", "list"],
        &["status"],
        &["cache", "status"],
        &["lb", "status"],
        &["token", "list"],
    ] {
        let (ok, out, err) = cli(args);
        eprintln!("COLUMNS=80 clustermgr {}:\n{out}", args.join(" "));
        if !ok {
            problems.push(format!("clustermgr {args:?} failed: {err}"));
        }
        if out.lines().count() < 3 {
            problems.push(format!("clustermgr {args:?} printed no table:\n{out}"));
        }
        for l in out.lines().filter(|l| l.chars().count() > 80) {
            problems.push(format!(
                "clustermgr {args:?}: a line of {} columns:\n{l}",
                l.chars().count()
            ));
        }
    }
    // JSON keeps whole ids; a table's short id names the same workflow and job.
    for (kind, list) in [("workflow", "list"), ("job", "list")] {
        let (_, json, _) = cli(&["--output", "json", kind, list]);
        let v: Value = serde_json::from_str(&json).map_err(|e| format!("{e}: {json}"))?;
        let (_, table, _) = cli(&[kind, list]);
        let listed = v.as_array().map(Vec::as_slice).unwrap_or_default();
        if listed.is_empty() {
            problems.push(format!("{kind} list --output json is empty"));
        }
        // Every record of the list (ids made in the same millisecond show as start…end).
        for r in listed {
            let id = r["id"].as_str().unwrap_or_default();
            if id.len() != 36 {
                problems.push(format!("{kind} list --output json: id {id:?} is not whole"));
                continue;
            }
            if table.contains(id) {
                problems.push(format!("{kind} list shows the whole id {id}:\n{table}"));
            }
            let Some(short) = table.split_whitespace().find(|w| names(id, w)) else {
                problems.push(format!("{kind} list shows no short form of {id}:\n{table}"));
                continue;
            };
            let (ok, shown, err) = cli(&["--output", "json", kind, "show", short]);
            let shown: Value = serde_json::from_str(&shown).unwrap_or_default();
            if !ok || shown["id"] != id {
                problems.push(format!("{kind} show {short}: {err}{shown}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The commands a shell block runs (the first word of each command, after variable
/// assignments), leaving out those given by a path or a variable (`target/...`, `$ROOT/...`)
/// and the lines of a here-document.
fn commands(script: &str) -> std::collections::BTreeSet<String> {
    let joined = script.replace("\\\n", " ");
    let mut out = std::collections::BTreeSet::new();
    // The word ending a here-document being read (its lines are data, not commands).
    let mut heredoc: Option<String> = None;
    for line in joined.lines() {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        heredoc = line
            .split_once("<<")
            .filter(|(_, rest)| !rest.starts_with('<'))
            .map(|(_, rest)| {
                let word = rest.trim_start_matches('-').split_whitespace().next();
                word.unwrap_or_default()
                    .trim_matches(['\'', '"'])
                    .to_string()
            });
        let code = without_single_quoted(line);
        // A comment: after " #", or the whole line.
        let code = format!(" {code}");
        let code = code.split(" #").next().unwrap_or_default();
        let code = code
            .replace("$(", ";")
            .replace(['|', ')'], ";")
            .replace("&&", ";");
        for part in code.split(';') {
            let first = part.split_whitespace().find(|w| {
                !w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            });
            // A subshell's first command: `(umask 077 && ...)`.
            if let Some(cmd) = first.map(|w| w.trim_start_matches('('))
                && !cmd.is_empty()
                && !cmd.starts_with('#')
                && !cmd.starts_with('$')
                && !cmd.contains('/')
            {
                out.insert(cmd.to_string());
            }
        }
    }
    out
}

/// `line` with the text between single quotes left out (a `grep -F 'a (b)'` pattern or an awk
/// program names no command).
fn without_single_quoted(line: &str) -> String {
    let mut quoted = false;
    line.chars()
        .filter(|&c| {
            if c == '\'' {
                quoted = !quoted;
            }
            !quoted && c != '\''
        })
        .collect()
}

/// The Debian packages `scripts/sandbox up` installs (its `scripts/apt-need` arguments).
fn sandbox_packages() -> std::collections::BTreeSet<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sandbox");
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("\\\n", " ");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("scripts/apt-need"))
        .flat_map(|args| args.split_whitespace().map(str::to_string))
        .collect()
}

#[test]
fn the_readme_blocks_commands_come_from_packages_the_sandbox_installs() {
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for b in runnable_blocks(&readme) {
        used.extend(commands(&b.script));
    }
    assert!(
        used.contains("ldapwhoami") && used.contains("curl"),
        "{used:?}"
    );
    let installed = sandbox_packages();
    assert!(installed.contains("ldap-utils"), "{installed:?}");
    let mut missing = Vec::new();
    for cmd in &used {
        let sh = |c: &str| {
            let o = Command::new("bash")
                .args(["-c", c])
                .output()
                .expect("run bash");
            (o.status.success(), text(&o.stdout).trim().to_string())
        };
        // A shell builtin (export, umask) comes with bash.
        if matches!(
            sh(&format!("type -t {cmd}")).1.as_str(),
            "builtin" | "keyword"
        ) {
            continue;
        }
        // The package that holds it (through symbolic links such as awk's alternative; with
        // /usr merged, dpkg may know /usr/bin/grep as /bin/grep).
        let (found, pkg) = sh(&format!(
            "p=$(readlink -f \"$(command -v {cmd})\") && \
             {{ dpkg -S \"$p\" 2>/dev/null || dpkg -S \"${{p#/usr}}\"; }} | head -1 | cut -d: -f1"
        ));
        if !found || pkg.is_empty() {
            missing.push(format!("{cmd}: not installed here, or in no package"));
            continue;
        }
        // Installed by scripts/sandbox, or on every Debian system (essential or required).
        let (_, essential) = sh(&format!("dpkg-query -W -f='${{Essential}}' {pkg}"));
        let (_, priority) = sh(&format!(
            "apt-cache show {pkg} 2>/dev/null | sed -n 's/^Priority: //p' | head -1"
        ));
        if !(installed.contains(&pkg) || essential == "yes" || priority == "required") {
            missing.push(format!(
                "{cmd} (package {pkg}, priority {priority:?}) is not installed by scripts/sandbox"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Whether `short` is how a table shows `id`: 8 characters or more of its start, or
/// `START…END`.
fn names(id: &str, short: &str) -> bool {
    let (head, tail) = short.split_once('…').unwrap_or((short, ""));
    head.len() >= 8 && id.starts_with(head) && id[head.len()..].ends_with(tail)
}
