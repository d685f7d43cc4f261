//! `cache password set`: the new password (given, generated or cleared) and the workflow that rolls it.

use super::*;

/// What `cache password` asks for.
pub enum NewPassword {
    Random,
    Given(Secret<String>),
    None,
}

impl NewPassword {
    /// What a `SetCachePasswordRequest` asks for, with its audit action (the kind of change,
    /// never the value): clear, a random password (empty), or the one given (checked).
    pub fn of(
        r: &clustermgr_proto::SetCachePasswordRequest,
    ) -> (&'static str, Result<Self, CacheError>) {
        if r.clear {
            ("cache.password.clear", Ok(NewPassword::None))
        } else if r.password.is_empty() {
            ("cache.password.set", Ok(NewPassword::Random))
        } else {
            (
                "cache.password.set",
                check_password(&r.password).map(|s| NewPassword::Given(Secret::new(s))),
            )
        }
    }
}

/// `cache password set|clear`: Redis first, then every Gluu node, rolling.
pub async fn set_password(
    ctl: &Ctl,
    new: NewPassword,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, CacheError> {
    let rec = installed_record(ctl)?;
    let (_, primary) = gluu_servers(ctl)?;
    let (set, kept) = match new {
        NewPassword::Random => (PasswordChange::Set, vec![random_password().into_bytes()]),
        NewPassword::Given(p) => (PasswordChange::Set, vec![p.expose().as_bytes().to_vec()]),
        NewPassword::None => (PasswordChange::Clear, Vec::new()),
    };
    let clients = current_clients(ctl, &rec)?;
    let st = Start {
        action: Action::Password,
        servers: &rec.server_node_ids,
        clients: &clients,
        primary: &primary,
        with_servers: true,
        password: Some(set),
        kept: kept
            .into_iter()
            .map(|p| (NEW_PASSWORD.to_string(), p))
            .collect(),
    };
    start(ctl, st, dry_run, when_busy, audit).await
}
