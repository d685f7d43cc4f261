//! The setup and certificate steps of a gluu-install: setup.py's command line and properties
//! on a node, and the primary's certificate set installed on the others.

use super::*;

impl GluuInstall {
    /// setup.py on a node: its exact command line and properties (secrets masked), or why it
    /// does not run.
    pub(super) fn setup_step(&self, ctx: &StepCtx<'_>, ip: &str, is_primary: bool) -> StepPlan {
        if installed(ctx) {
            return StepPlan::Skip(if self.force {
                "setup has run on this node (its setup.properties.last exists): --force does not run setup.py again (4.2.3's setup refuses a configured node); it reinstalls the package and applies the steps after setup again".into()
            } else {
                "setup has run on this node (its setup.properties.last exists): setup.py is not run"
                    .into()
            });
        }
        let props = if is_primary {
            self.primary_properties(ip)
        } else {
            let Some(last) = ctx.observed.kept.get(PRIMARY_PROPERTIES) else {
                return StepPlan::Wait("waiting for the primary's setup.properties.last".into());
            };
            match self.secondary_properties(&String::from_utf8_lossy(last), ip) {
                Ok(p) => p,
                Err(e) => return StepPlan::Fail(e.to_string()),
            }
        };
        self.job(
            operation::Kind::RunGluuSetup(RunGluuSetup {
                properties: props.text.into_bytes(),
                no_data: !is_primary,
            }),
            format!(
                "run {} on {ip} (components {}); {}",
                clustermgr_proto::gluu::setup_command_line(!is_primary),
                self.components,
                props.summary
            ),
            60 * 60_000,
        )
    }

    /// The primary's certificate set on another node: the files it holds (or, before the
    /// primary's set is read, the rule that makes it) and the trust-store imports.
    pub(super) fn certificates_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        use clustermgr_proto::gluu::{CERTS_DIR, DIRECTORY_IDENTITY, EXTRA_FILES, TRUSTED};
        if self.settled(ctx) {
            return StepPlan::Skip("installed by an earlier run".into());
        }
        let (set, read) = match kept_certificates(ctx, PRIMARY_CERTIFICATES) {
            Ok(x) => x,
            Err(plan) => return *plan,
        };
        let files = if !read {
            // Not read yet (a dry run): the rule the primary's set is read by.
            format!(
                "every file of /{CERTS_DIR} but the directory's own {}, and {}, as read from the primary",
                DIRECTORY_IDENTITY.join(", "),
                EXTRA_FILES
                    .iter()
                    .map(|f| format!("/{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            set.files
                .iter()
                .map(|f| format!("/{}", f.path))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let summary = format!(
            "install the primary's certificates ({files}; each checked by SHA-256) and import {} into the JRE trust store as {}_*",
            TRUSTED.join(", "),
            self.lb_hostname
        );
        self.job(
            operation::Kind::InstallGluuCertificates(InstallGluuCertificates {
                files: set.files,
                alias_prefix: self.lb_hostname.clone(),
            }),
            summary,
            10 * 60_000,
        )
    }
}

/// The primary's certificate set a step kept under `key`, and whether it was read (empty: a
/// plan's placeholder, what the primary holds not read yet); else the step waits or fails.
pub(crate) fn kept_certificates(
    ctx: &StepCtx<'_>,
    key: &str,
) -> Result<(GluuCertificates, bool), Box<StepPlan>> {
    let Some(bytes) = ctx.observed.kept.get(key) else {
        return Err(Box::new(StepPlan::Wait(
            "waiting for the primary's certificates".into(),
        )));
    };
    GluuCertificates::decode(bytes.as_slice())
        .map(|set| (set, !bytes.is_empty()))
        .map_err(|e| {
            Box::new(StepPlan::Fail(format!(
                "the primary's certificate set cannot be read: {e}"
            )))
        })
}
