//! OS seams, chosen once at start-up: where things live on this host (its root, the package
//! cache), which package format it uses, and how commands run. Operations stay OS-agnostic and
//! build argv through these; tests swap the real runner for one that records argv.

use clustermgr_shared::Secret;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Package format of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    Deb,
    Rpm,
}

impl PackageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Rpm => "rpm",
        }
    }
}

/// How packages are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageMode {
    /// The agent runs as root on the machine's own root: apt-get/dpkg or dnf/yum/rpm act on the
    /// system and resolve dependencies.
    System,
    /// A sandbox host (not root, or its own root directory): the package is unpacked under the
    /// root with its maintainer scripts run outside a chroot, as an unprivileged user can.
    UnderRoot,
}

/// What the operations need to know about the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// File-system root for every managed path ("/" on a real host).
    pub root: PathBuf,
    /// How packages are installed: with the system's package manager, or unpacked under the
    /// agent's root (a sandbox host).
    pub packages: PackageMode,
    pub format: Option<PackageFormat>,
    pub runner: Runner,
    /// Where processes are looked up (`/proc`; a fake tree in tests): the Gluu machine's leader.
    pub proc: PathBuf,
}

impl Host {
    /// Detects the host's facts for an agent acting under `root`.
    pub fn detect(root: &Path) -> Self {
        let format = if Path::new("/usr/bin/dpkg").exists() {
            Some(PackageFormat::Deb)
        } else if Path::new("/usr/bin/rpm").exists() {
            Some(PackageFormat::Rpm)
        } else {
            None
        };
        let system = root == Path::new("/") && nix::unistd::geteuid().is_root();
        Self {
            root: root.to_path_buf(),
            packages: if system {
                PackageMode::System
            } else {
                PackageMode::UnderRoot
            },
            format,
            runner: Runner::Real,
            proc: PathBuf::from("/proc"),
        }
    }

    /// A host path under the agent's root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// A sandbox host: not the machine's own root.
    pub fn is_sandbox(&self) -> bool {
        self.root != Path::new("/")
    }

    /// Where pushed packages are kept, by content (SHA-256).
    pub fn package_cache(&self) -> PathBuf {
        self.path("/var/cache/clustermgr/packages")
    }
}

/// One command: argv (never a shell), optional secret standard input, environment additions
/// (which may carry a store password: their values never print).
#[derive(Clone)]
pub struct Command {
    pub argv: Vec<String>,
    pub stdin: Option<Secret<Vec<u8>>>,
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self.env.iter().map(|(k, _)| format!("{k}=***")).collect();
        f.debug_struct("Command")
            .field("argv", &self.argv)
            .field("stdin", &self.stdin)
            .field("env", &env)
            .finish()
    }
}

impl Command {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
            env: Vec::new(),
        }
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(Secret::new(bytes));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// argv as one line for the job log (arguments are never secrets: secrets go on stdin or in
    /// 0600 files).
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// How a command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; None when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last `n` lines of stdout and stderr together, for errors and job logs.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let all: Vec<&str> = self.stdout.lines().chain(self.stderr.lines()).collect();
        all[all.len().saturating_sub(n)..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("an empty command line")]
    Empty,
    #[error("{program} did not finish within {} ms and was killed", limit.as_millis())]
    TimedOut { program: String, limit: Duration },
}

/// Most bytes of a command's stdout or stderr kept (the tail).
const MAX_CAPTURE: usize = 256 * 1024;

/// Runs commands: for real, or recording argv and answering from a script (tests).
#[derive(Debug, Clone)]
pub enum Runner {
    Real,
    Recording(Arc<Recorder>),
}

/// A test runner: records every command and answers with scripted outputs (exit 0 and no
/// output once the script is used up). A command can also have an effect (what the real program
/// would change on the host, e.g. a started machine's leader appearing), registered with
/// [`Recorder::on`].
#[derive(Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<Command>>,
    pub answers: Mutex<VecDeque<Output>>,
    effects: Mutex<Vec<Effect>>,
}

/// Which recorded command an effect is for (by its argv).
type Matcher = Box<dyn Fn(&[String]) -> bool + Send>;

/// A one-shot effect: runs at the first recorded command whose argv `when` accepts.
struct Effect {
    when: Matcher,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("calls", &self.calls)
            .field("answers", &self.answers)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.calls
            .lock()
            .map(|c| c.iter().map(|c| c.argv.clone()).collect())
            .unwrap_or_default()
    }
    pub fn answer(&self, code: i32, stdout: &str) {
        if let Ok(mut a) = self.answers.lock() {
            a.push_back(Output {
                code: Some(code),
                stdout: stdout.into(),
                stderr: String::new(),
            });
        }
    }
    /// Runs `then` once, when the first command whose argv `when` accepts is recorded (before
    /// it is answered).
    pub fn on(
        &self,
        when: impl Fn(&[String]) -> bool + Send + 'static,
        then: impl FnOnce() + Send + 'static,
    ) {
        if let Ok(mut e) = self.effects.lock() {
            e.push(Effect {
                when: Box::new(when),
                then: Some(Box::new(then)),
            });
        }
    }

    fn record(&self, cmd: &Command) -> Output {
        if let Ok(mut c) = self.calls.lock() {
            c.push(cmd.clone());
        }
        let due = self.effects.lock().ok().and_then(|mut effects| {
            effects
                .iter_mut()
                .find(|e| e.then.is_some() && (e.when)(&cmd.argv))
                .and_then(|e| e.then.take())
        });
        if let Some(then) = due {
            then();
        }
        let next = self.answers.lock().ok().and_then(|mut a| a.pop_front());
        next.unwrap_or(Output {
            code: Some(0),
            ..Default::default()
        })
    }
}

impl Runner {
    pub async fn run(&self, cmd: &Command) -> Result<Output, RunError> {
        match self {
            Self::Recording(r) => Ok(r.record(cmd)),
            Self::Real => run_real(cmd).await,
        }
    }

    /// Runs a command from synchronous code (the inventory), killed after `limit`: the caller's
    /// thread waits at most that long.
    pub fn run_blocking(&self, cmd: &Command, limit: Duration) -> Result<Output, RunError> {
        match self {
            Self::Recording(r) => Ok(r.record(cmd)),
            Self::Real => run_real_blocking(cmd, limit),
        }
    }
}

/// The process `cmd` runs: `program` with `args`, its output piped, its input piped when it
/// has some, the allocator's settings not inherited, its own environment added.
fn process(cmd: &Command, program: &str, args: &[String]) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.args(args)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in crate::allocator::not_inherited() {
        c.env_remove(k);
    }
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    c
}

fn run_real_blocking(cmd: &Command, limit: Duration) -> Result<Output, RunError> {
    use std::io::Write;
    let (program, args) = cmd.argv.split_first().ok_or(RunError::Empty)?;
    let spawn_err = |source| RunError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = process(cmd, program, args).spawn().map_err(spawn_err)?;
    let pid = child.id();
    let input = cmd.stdin.as_ref().map(|s| s.expose().clone());
    let mut stdin = child.stdin.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let (Some(input), Some(mut pipe)) = (input, stdin.take()) {
            // A program that exits without reading its input is its own error.
            let _ = pipe.write_all(&input);
        }
        drop(stdin);
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(r) => r.map_err(spawn_err)?,
        Err(_) => {
            // Killed by its PID, which the waiting thread has not reaped unless the program
            // ended in the instant between the timeout and this check (then the PID would have
            // to be reused at once to hit another process); that thread reaps it.
            if rx.try_recv().is_err()
                && let Ok(pid) = i32::try_from(pid)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(RunError::TimedOut {
                program: program.clone(),
                limit,
            });
        }
    };
    Ok(Output {
        code: out.status.code(),
        stdout: tail_text(&out.stdout),
        stderr: tail_text(&out.stderr),
    })
}

async fn run_real(cmd: &Command) -> Result<Output, RunError> {
    let (program, args) = cmd.argv.split_first().ok_or(RunError::Empty)?;
    let mut c = tokio::process::Command::from(process(cmd, program, args));
    // A cancelled or timed-out job drops the future: the command goes with it.
    c.kill_on_drop(true);
    let spawn_err = |source| RunError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = c.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
        // A program that exits without reading its input is its own error; ignore EPIPE here.
        let _ = stdin.write_all(input.expose()).await;
        drop(stdin);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    Ok(Output {
        code: out.status.code(),
        stdout: tail_text(&out.stdout),
        stderr: tail_text(&out.stderr),
    })
}

fn tail_text(b: &[u8]) -> String {
    let start = b.len().saturating_sub(MAX_CAPTURE);
    String::from_utf8_lossy(&b[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn real_runner_captures_exit_code_output_and_feeds_stdin() {
        let out = Runner::Real
            .run(
                &Command::new(["sh", "-c", "read x; echo got:$x; echo err >&2; exit 3"])
                    .stdin(b"s3cret\n".to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout.trim(), "got:s3cret");
        assert_eq!(out.tail(1), vec!["err".to_string()]);
        assert!(!out.success());
        let e = Runner::Real
            .run(&Command::new(["/nonexistent/program"]))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("cannot start /nonexistent/program"),
            "{e}"
        );
    }

    #[test]
    fn blocking_runs_are_bounded_and_killed() {
        let out = Runner::Real
            .run_blocking(
                &Command::new(["sh", "-c", "read x; echo got:$x"]).stdin(b"in\n".to_vec()),
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!((out.code, out.stdout.trim()), (Some(0), "got:in"));
        let started = std::time::Instant::now();
        let e = Runner::Real
            .run_blocking(
                &Command::new(["sh", "-c", "exec sleep 30"]),
                Duration::from_millis(200),
            )
            .unwrap_err();
        assert!(matches!(e, RunError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn recorded_commands_have_their_effects_once() {
        let r = Arc::new(Recorder::default());
        let hits = Arc::new(Mutex::new(0));
        let h = hits.clone();
        r.on(
            |argv| argv.last().is_some_and(|a| a == "start"),
            move || *h.lock().unwrap() += 1,
        );
        let runner = Runner::Recording(r.clone());
        for argv in [["x", "stop"], ["x", "start"], ["x", "start"]] {
            runner
                .run_blocking(&Command::new(argv), Duration::ZERO)
                .unwrap();
        }
        assert_eq!(*hits.lock().unwrap(), 1);
        assert_eq!(r.argvs().len(), 3);
    }

    #[test]
    fn secret_stdin_and_environment_values_are_not_printed_by_debug() {
        let c = Command::new(["openssl"])
            .stdin(b"hunter2".to_vec())
            .env("CLUSTERMGR_STOREPASS", "s3cr3t-pass");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cr3t-pass"), "{shown}");
        assert!(shown.contains("CLUSTERMGR_STOREPASS=***"), "{shown}");
    }
}
