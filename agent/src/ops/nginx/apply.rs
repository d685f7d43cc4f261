//! A configuration written the one way every configuration is: certificate, key and trust
//! bundle under a new generation, the candidate checked with `nginx -t`, then put in place and
//! nginx reloaded (or started); a failing check leaves the running configuration serving.

use super::{
    Applied, Layout, NGINX, TEMPLATE, TEMPLATE_OVERRIDE, check_pair, io, ours, path_str,
    prune_generations, read_applied, render_trusting, trust_file,
};
use crate::host::Command;
use crate::ops::{Ctx, Log, OpError, run_checked};
use clustermgr_proto::{ConfigureNginx, ConfigureNginxOutput, OxauthBalancing};
use clustermgr_shared::fsutil::write_atomic;
use std::path::Path;

/// Writes the configuration `req` (with `also_trust` trusted on the backends too), checked
/// with `nginx -t` before it replaces the running one, then reloads or starts nginx.
pub(crate) async fn apply(
    ctx: &Ctx,
    req: ConfigureNginx,
    also_trust: Vec<String>,
    log: &mut Log,
) -> Result<ConfigureNginxOutput, OpError> {
    let key_text = String::from_utf8_lossy(&req.key_pem).into_owned();
    log.secret(&key_text);
    if !Path::new(NGINX).exists() {
        return Err(OpError(format!(
            "{NGINX} does not exist: install the nginx package first"
        )));
    }
    check_pair(&req.certificate_pem, key_text)?;
    let layout = Layout::of(&ctx.host);
    let (generation, same_files) = generation(&layout, &req);
    let template = template(ctx, log)?;
    let trust = trust_file(&layout, &generation, &also_trust);
    let text = render_trusting(
        &template,
        &req,
        &layout,
        &generation,
        trust.as_deref().unwrap_or(&layout.cert(&generation)),
    )?;
    let applied = applied(&req, &also_trust, &generation);
    let d = layout.daemon();
    let running = d.state(&ctx.host, log).await?.running();
    let unchanged =
        same_files && std::fs::read_to_string(&layout.conf).ok().as_deref() == Some(text.as_str());
    if unchanged && running {
        log.line(format!(
            "{}: unchanged, nginx running",
            layout.conf.display()
        ));
        write_state(&layout, &applied)?;
        return Ok(ConfigureNginxOutput {
            changed: false,
            started: false,
            config_path: path_str(&layout.conf),
        });
    }
    create_dirs(&layout)?;
    let files = Generation {
        layout: &layout,
        name: &generation,
        same_files,
    };
    files.write(&req, trust.as_deref(), &also_trust, log)?;
    files.check_candidate(ctx, &text, log).await?;
    put_in_place(&layout, &applied, &req, log)?;
    if running {
        d.reload(&ctx.host, log).await?;
    } else {
        d.ensure_started(&ctx.host, log).await?;
    }
    prune_generations(&layout, &generation, trust.as_deref());
    Ok(ConfigureNginxOutput {
        changed: true,
        started: !running,
        config_path: path_str(&layout.conf),
    })
}

/// The certificate and key files' generation, and whether they are the running one's: the same
/// certificate and key as the running generation keep it; else a new one.
fn generation(layout: &Layout, req: &ConfigureNginx) -> (String, bool) {
    let previous = read_applied(layout).filter(|_| ours(&layout.conf));
    let same_files = previous.as_ref().is_some_and(|p| {
        std::fs::read(layout.cert(&p.generation)).ok().as_deref()
            == Some(req.certificate_pem.as_bytes())
            && std::fs::read(layout.key(&p.generation)).ok().as_deref()
                == Some(req.key_pem.as_slice())
    });
    let generation = match (&previous, same_files) {
        (Some(p), true) => p.generation.clone(),
        _ => clustermgr_shared::util::now_ms().to_string(),
    };
    (generation, same_files)
}

/// The operator's template on the node when there is one, else the built-in one.
fn template(ctx: &Ctx, log: &mut Log) -> Result<String, OpError> {
    let custom = ctx.host.path(TEMPLATE_OVERRIDE);
    match std::fs::read_to_string(&custom) {
        Ok(t) => {
            log.line(format!("using the template {}", custom.display()));
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TEMPLATE.to_string()),
        Err(e) => Err(io(&custom)(e)),
    }
}

/// What is recorded beside the configuration for `req`.
fn applied(req: &ConfigureNginx, also_trust: &[String], generation: &str) -> Applied {
    Applied {
        drained: req.drained.clone(),
        also_trust: also_trust.to_vec(),
        server_name: req.server_name.clone(),
        backends: req
            .backends
            .iter()
            .map(|b| (b.address.clone(), b.port, b.name.clone()))
            .collect(),
        sticky_oxauth: OxauthBalancing::try_from(req.oxauth_balancing)
            != Ok(OxauthBalancing::RoundRobin),
        listen_address: req.listen_address.clone(),
        https_port: req.https_port,
        http_port: req.http_port,
        generation: generation.to_string(),
    }
}

fn write_state(layout: &Layout, applied: &Applied) -> Result<(), OpError> {
    write_atomic(
        &layout.state,
        &serde_json::to_vec_pretty(applied).unwrap_or_default(),
        0o644,
    )
    .map_err(io(&layout.state))
}

/// The directories nginx's files go in (on a sandbox host, its log and pid directories too).
fn create_dirs(layout: &Layout) -> Result<(), OpError> {
    for dir in [
        Some(&layout.dir),
        Some(&layout.ssl),
        layout.temp_dir.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if !layout.system {
        for p in [&layout.error_log, &layout.pid] {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
        }
    }
    Ok(())
}

/// The files of one certificate generation.
struct Generation<'a> {
    layout: &'a Layout,
    name: &'a str,
    /// The certificate and key are the running generation's (already on disk).
    same_files: bool,
}

impl Generation<'_> {
    /// The trust bundle (when the backends are trusted on more than the balancer's own
    /// certificate), and the certificate and key (the key 0600) unless they are on disk already.
    fn write(
        &self,
        req: &ConfigureNginx,
        trust: Option<&Path>,
        also_trust: &[String],
        log: &mut Log,
    ) -> Result<(), OpError> {
        let (cert, key) = (self.layout.cert(self.name), self.layout.key(self.name));
        if let Some(t) = trust {
            let mut bundle = req.certificate_pem.trim_end().to_string();
            for c in also_trust {
                bundle.push('\n');
                bundle.push_str(c.trim_end());
            }
            bundle.push('\n');
            write_atomic(t, bundle.as_bytes(), 0o644).map_err(io(t))?;
            log.line(format!(
                "the backends' certificates trusted: {} ({} besides the balancer's own)",
                t.display(),
                also_trust.len()
            ));
        }
        if !self.same_files {
            write_atomic(&cert, req.certificate_pem.as_bytes(), 0o644).map_err(io(&cert))?;
            write_atomic(&key, &req.key_pem, 0o600).map_err(io(&key))?;
            log.line(format!(
                "certificate {} and key {} (0600) written",
                cert.display(),
                key.display()
            ));
        }
        Ok(())
    }

    /// Writes `text` as the candidate and checks it with `nginx -t`; a failing check removes
    /// the candidate and this generation's new files, and the running configuration stays.
    async fn check_candidate(&self, ctx: &Ctx, text: &str, log: &mut Log) -> Result<(), OpError> {
        let candidate = self.layout.candidate();
        write_atomic(&candidate, text.as_bytes(), 0o644).map_err(io(&candidate))?;
        let check = run_checked(
            &ctx.host,
            &Command::new(self.layout.argv(&candidate, &["-t", "-q"])),
            log,
            "nginx -t (the new configuration)",
        )
        .await;
        if let Err(e) = check {
            let _ = std::fs::remove_file(&candidate);
            if !self.same_files {
                let _ = std::fs::remove_file(self.layout.cert(self.name));
                let _ = std::fs::remove_file(self.layout.key(self.name));
            }
            log.line("the running configuration is unchanged");
            return Err(e);
        }
        Ok(())
    }
}

/// The checked candidate replaces the running configuration (the distribution's own is kept,
/// once, for `lb remove`), and what it applies is recorded beside it.
fn put_in_place(
    layout: &Layout,
    applied: &Applied,
    req: &ConfigureNginx,
    log: &mut Log,
) -> Result<(), OpError> {
    if layout.conf.exists() && !ours(&layout.conf) && !layout.original().exists() {
        std::fs::rename(&layout.conf, layout.original()).map_err(io(&layout.conf))?;
        log.line(format!(
            "the existing {} kept as {}",
            layout.conf.display(),
            layout.original().display()
        ));
    }
    std::fs::rename(layout.candidate(), &layout.conf).map_err(io(&layout.conf))?;
    write_state(layout, applied)?;
    log.line(format!(
        "{} in place: {} backend(s){}, /oxauth {}",
        layout.conf.display(),
        req.backends.len(),
        if req.drained.is_empty() {
            String::new()
        } else {
            format!(" ({} out of rotation)", req.drained.join(", "))
        },
        if applied.sticky_oxauth {
            "sticky"
        } else {
            "round robin"
        }
    ));
    Ok(())
}
