//! `clustermgr completions` and `clustermgr man`: generated from the whole command line (the
//! local commands and the CLI crate's).

use super::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use clustermgr_cli::Exit;
use std::io::Write;
use std::path::PathBuf;

pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "clustermgr", &mut std::io::stdout());
    Ok(Exit::Ok)
}

/// Gives every subcommand without a one-line description its parent's, named, so each man page
/// has a NAME line `whatis`/`apropos` can index ("clustermgr-x-list - list: <what x is>").
fn described(cmd: clap::Command, parent: &str) -> clap::Command {
    let path = if parent.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{parent} {}", cmd.get_name())
    };
    let inherited = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(&name, |sub| {
            let sub = if sub.get_about().is_none() {
                let about = if inherited.is_empty() {
                    format!("{name} ({path})")
                } else {
                    format!("{name} ({path}: {inherited})")
                };
                sub.about(about)
            } else {
                sub
            };
            described(sub, &path)
        })
    })
}

pub fn man(dir: Option<PathBuf>) -> Result<Exit> {
    let cmd = described(Cli::command(), "");
    match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            clap_mangen::generate_to(cmd, &d)
                .with_context(|| format!("cannot write man pages to {}", d.display()))?;
            eprintln!("man pages written to {}", d.display());
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            std::io::stdout().write_all(&buf)?;
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    /// clustermgr-agent(1) belongs to the agent's package: the controller's pages for
    /// `clustermgr agent` must not take its name (both packages on one host would conflict).
    #[test]
    fn the_agent_commands_pages_do_not_take_the_agents_man_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::man(Some(dir.path().to_path_buf())).expect("man");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "clustermgr-agents-upgrade.1"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "clustermgr-agent.1"),
            "{names:?}"
        );
    }
}
