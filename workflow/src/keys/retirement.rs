//! `key-retirement`: the old oxAuth keys leave every node once a rotation's overlap is over.
//!
//! The controller starts it on its own schedule (the rotation's last switch plus the overlap,
//! kept in its keys record), so no workflow holds the nodes during the overlap. Every node:
//! 1. `retire` — only the kept kids (the newest rotation's) stay in oxAuthConfWebKeys
//!    (oxRevision bumped);
//! 2. `retired` — the node's own /jwks serves only those kids;
//! 3. `keystore-retire` — the other private keys leave the keystore.
//!
//! Signing moved to the kept keys on every node before the rotation ended, so a retirement
//! never removes a key some node signs with.

use super::{Directory, JWKS_PATH, job, set_web_keys, update_keystore};
use crate::engine::{Definition, JobView, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use crate::readiness::web_url;
use clustermgr_proto::{ProbeJwks, operation};

pub const KIND: &str = "key-retirement";
pub const STEPS: [&str; 3] = ["retire", "retired", "keystore-retire"];

#[derive(Debug, Clone)]
pub struct KeyRetirement {
    pub dir: Directory,
    pub https_port: Option<u16>,
    /// The kids that stay (the newest rotation's); every other one goes.
    pub keep_kids: Vec<String>,
    /// How long a JWKS probe keeps trying.
    pub probe_within_ms: u32,
    /// Why this retirement may no longer run ([`superseded`]): its steps fail with it.
    pub superseded: Option<String>,
}

/// Whether the retirement left by `rotation` may still run, given the rotation whose
/// retirement the keys record holds now (`None`: none is pending). Its kept kids are that
/// rotation's: once a newer rotation replaced it, they are no longer the signing keys, so
/// running it (a `workflow retry` of a failed one, or one queued behind the newer rotation)
/// would remove the keys every node signs with. `None` when it may run, else why not.
pub fn superseded(rotation: &str, pending: Option<&str>) -> Option<String> {
    match pending {
        Some(p) if p == rotation => None,
        Some(p) => Some(format!(
            "superseded: rotation {p}'s retirement replaced this one (it retires these keys too, keeping the newer ones); nothing to retry"
        )),
        None => Some(
            "superseded: the keys record holds no pending retirement of this rotation any more; nothing to retry"
                .into(),
        ),
    }
}

/// The retirement's inputs (no secrets): the kids that stay, and the rotation that scheduled it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub keep_kids: Vec<String>,
    pub rotation: String,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

impl Definition for KeyRetirement {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let Some(ip) = ctx.address(&ctx.node.node_id) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        if let Some(why) = &self.superseded {
            return StepPlan::Fail(why.clone());
        }
        if self.keep_kids.is_empty() {
            return StepPlan::Fail("no kid to keep: nothing is retired".into());
        }
        let keep = || self.keep_kids.clone();
        let jwks = web_url(&ip, self.https_port, JWKS_PATH);
        match ctx.step().name.as_str() {
            "retire" => job(
                operation::Kind::SetWebKeys(set_web_keys(
                    &self.dir,
                    &ip,
                    Vec::new(),
                    keep(),
                    Vec::new(),
                )),
                120_000,
                "retire the old keys: only the new kids stay in oxAuthConfWebKeys; bump oxRevision"
                    .into(),
            ),
            "retired" => job(
                operation::Kind::ProbeJwks(ProbeJwks {
                    url: jwks.clone(),
                    expect_kids: keep(),
                    only_expected: true,
                    within_ms: self.probe_within_ms,
                }),
                self.probe_within_ms.saturating_add(30_000),
                format!("wait until {jwks} serves only the new kids"),
            ),
            "keystore-retire" => job(
                operation::Kind::UpdateOxauthKeystore(update_keystore(
                    &self.dir,
                    &ip,
                    Vec::new(),
                    keep(),
                )),
                120_000,
                "remove the old private keys from oxAuth's keystore".into(),
            ),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        use clustermgr_proto::operation_output::Kind as O;
        match (
            ctx.step().name.as_str(),
            job.output.as_ref().and_then(|o| o.kind.as_ref()),
        ) {
            ("retired", Some(O::ProbeJwks(p))) => {
                match super::absent(&p.served_kids, &self.keep_kids) {
                    old if old.is_empty() => Ok(()),
                    old => Err(format!("the node still serves {}", old.join(", "))),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
