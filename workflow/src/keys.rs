//! `key-rotation`: oxAuth's keys replaced with an overlap window, so that no token fails.
//!
//! Every node runs the same steps; the phases are gated on every node:
//! 1. `keystore-add` — the new private keys join the node's keystore (the old ones stay);
//! 2. `publish` — once every node has them: the new public keys are appended to
//!    oxAuthConfWebKeys in the node's directory (oxRevision bumped, keyRegenerationEnabled=false);
//!    the old signing key stays first, so nothing signs with a new key yet;
//! 3. `served` — the node's own /jwks serves every new kid;
//! 4. `switch` — once every node serves them: the new signing kids move first (oxRevision
//!    bumped), so the nodes sign with a key every node already publishes.
//!
//! The rotation ends there: every node's configuration signs with the new keys (oxAuth uses
//! them from its next reload, on the bumped oxRevision; no step waits for it). The old keys
//! stay published for the overlap (the longest token lifetime); the controller then starts
//! `key-retirement` ([`retirement`]) on its own schedule, so no workflow holds the nodes
//! meanwhile.
//!
//! A step that fails stops its node; the gates turn any failure before the switch into a failure
//! of every node's gated step, so signing never moves while a node may not publish the new keys.
//!
//! The private keys are never inputs: the controller keeps them sealed under [`KEPT_KEYS`]
//! (a [`NewOxauthKeys`]), and [`KeyRotation::plan_step`] reads them from `Observed::kept`.

use crate::engine::{Definition, JobSpec, StepCtx, StepPlan, StepStatus, Workflow};
use crate::inputs::KindInputs;
use crate::readiness::web_url;
use clustermgr_proto::{
    KeystoreKind, NewOxauthKeys, OxauthPrivateKey, ProbeJwks, SetWebKeys, UpdateOxauthKeystore,
    operation,
};
use prost::Message;

pub const KIND: &str = "key-rotation";

/// The rotation's inputs (no secrets): every new kid, the new signing kids in the order they
/// go first, and how long the old keys stay once every node switched.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub new_kids: Vec<String>,
    pub signing_kids: Vec<String>,
    pub overlap_ms: u64,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}
pub const STEPS: [&str; 4] = ["keystore-add", "publish", "served", "switch"];
/// The kept output holding the new keys (sealed by the controller).
pub const KEPT_KEYS: &str = "new-keys";
/// The path of oxAuth's JWKS on a node.
pub const JWKS_PATH: &str = "/oxauth/restv1/jwks";

#[derive(Debug, Clone)]
pub struct KeyRotation {
    pub dir: Directory,
    pub https_port: Option<u16>,
    /// Every new kid, and the new signing kids in the order they go first.
    pub new_kids: Vec<String>,
    pub signing_kids: Vec<String>,
    /// How long a JWKS probe keeps trying.
    pub probe_within_ms: u32,
}

/// The steps before the switch: a failure in one of them stops the rotation.
const BEFORE_SWITCH: [&str; 3] = ["keystore-add", "publish", "served"];

impl KeyRotation {
    /// When the old keys may go, once every node switched: the last switch plus the overlap
    /// (the workflow's input).
    pub fn retirement_due(wf: &Workflow) -> Option<u64> {
        let overlap = Inputs::decode(&wf.inputs).ok()?.overlap_ms;
        let mut last = 0;
        for n in &wf.nodes {
            let s = n.steps.iter().find(|s| s.name == "switch")?;
            if s.status() != StepStatus::Succeeded {
                return None;
            }
            last = last.max(s.finished_unix_ms);
        }
        Some(last.saturating_add(overlap))
    }

    /// `Some(hostname: step)` of the first node whose step `name` failed (or was cancelled).
    fn failed(ctx: &StepCtx<'_>, names: &[&str]) -> Option<String> {
        ctx.workflow.nodes.iter().find_map(|n| {
            n.steps
                .iter()
                .find(|s| {
                    names.contains(&s.name.as_str())
                        && matches!(s.status(), StepStatus::Failed | StepStatus::Cancelled)
                })
                .map(|s| format!("{}: {}", n.hostname, s.name))
        })
    }

    /// The first node whose step `name` is not done yet.
    fn not_done<'a>(ctx: &'a StepCtx<'_>, name: &str) -> Option<&'a str> {
        ctx.workflow
            .nodes
            .iter()
            .find(|n| !ctx.done(&n.node_id, name))
            .map(|n| n.hostname.as_str())
    }

    /// Waits until every node's `name` is done; fails when a step before the switch failed.
    fn gate(ctx: &StepCtx<'_>, name: &str) -> Option<StepPlan> {
        if let Some(f) = Self::failed(ctx, &BEFORE_SWITCH) {
            return Some(StepPlan::Fail(format!(
                "{f} failed: the rotation stops (signing keys unchanged)"
            )));
        }
        Self::not_done(ctx, name).map(|h| StepPlan::Wait(format!("waiting for {h}'s {name}")))
    }
}

/// A change of oxAuthConfWebKeys in the node's own directory at `ip`.
pub(crate) fn set_web_keys(
    dir: &Directory,
    ip: &str,
    add: Vec<String>,
    keep: Vec<String>,
    first: Vec<String>,
) -> SetWebKeys {
    SetWebKeys {
        host: ip.to_string(),
        port: dir.ldaps_port,
        password: dir.ldap_password.as_bytes().to_vec(),
        add_jwks: add,
        keep_kids: keep,
        first_kids: first,
    }
}

/// The node decides which keystore it has (JKS on Gluu, JSON on the stand-in) and, for
/// JKS, reads its password (oxAuth's keyStoreSecret) from its own directory at `ip`.
pub(crate) fn update_keystore(
    dir: &Directory,
    ip: &str,
    add: Vec<OxauthPrivateKey>,
    keep: Vec<String>,
) -> UpdateOxauthKeystore {
    UpdateOxauthKeystore {
        kind: KeystoreKind::Detect as i32,
        add,
        keep_kids: keep,
        keystore_password: Vec::new(),
        host: ip.to_string(),
        port: dir.ldaps_port,
        password: dir.ldap_password.as_bytes().to_vec(),
    }
}

/// How a node's own directory is reached (for oxAuthConfWebKeys and keyStoreSecret).
#[derive(Debug, Clone)]
pub struct Directory {
    /// Secret: the directory manager's password.
    pub ldap_password: String,
    pub ldaps_port: u32,
}

pub(crate) fn job(kind: operation::Kind, timeout_ms: u32, summary: String) -> StepPlan {
    // Every step sets a state (adds, orders, keeps) rather than applying a delta.
    JobSpec::rerunnable(kind, timeout_ms, summary).into()
}

impl Definition for KeyRotation {
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
        let new = || self.new_kids.clone();
        let kept = || {
            ctx.observed
                .kept
                .get(KEPT_KEYS)
                .and_then(|b| NewOxauthKeys::decode(b.as_slice()).ok())
        };
        let jwks = web_url(&ip, self.https_port, JWKS_PATH);
        let probe_timeout = self.probe_within_ms.saturating_add(30_000);
        match ctx.step().name.as_str() {
            "keystore-add" => {
                let Some(keys) = kept() else {
                    return StepPlan::Fail(
                        "the new keys are not kept (start a new rotation)".into(),
                    );
                };
                let add: Vec<OxauthPrivateKey> = keys.private;
                let n = add.len();
                job(
                    operation::Kind::UpdateOxauthKeystore(update_keystore(
                        &self.dir,
                        &ip,
                        add,
                        Vec::new(),
                    )),
                    120_000,
                    format!("add {n} new private keys to oxAuth's keystore (the old ones stay)"),
                )
            }
            "publish" => {
                if let Some(p) = Self::gate(ctx, "keystore-add") {
                    return p;
                }
                let Some(keys) = kept() else {
                    return StepPlan::Fail(
                        "the new keys are not kept (start a new rotation)".into(),
                    );
                };
                job(
                    operation::Kind::SetWebKeys(set_web_keys(
                        &self.dir,
                        &ip,
                        keys.jwks,
                        Vec::new(),
                        Vec::new(),
                    )),
                    120_000,
                    format!(
                        "publish {} new public keys beside the current ones in oxAuthConfWebKeys; bump oxRevision",
                        self.new_kids.len()
                    ),
                )
            }
            "served" => job(
                operation::Kind::ProbeJwks(ProbeJwks {
                    url: jwks.clone(),
                    expect_kids: new(),
                    only_expected: false,
                    within_ms: self.probe_within_ms,
                }),
                probe_timeout,
                format!("wait until {jwks} serves every new kid"),
            ),
            "switch" => {
                if let Some(p) = Self::gate(ctx, "served") {
                    return p;
                }
                job(
                    operation::Kind::SetWebKeys(set_web_keys(
                        &self.dir,
                        &ip,
                        Vec::new(),
                        Vec::new(),
                        self.signing_kids.clone(),
                    )),
                    120_000,
                    format!(
                        "sign with the new keys: {} first in oxAuthConfWebKeys; bump oxRevision",
                        self.signing_kids.join(", ")
                    ),
                )
            }
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &crate::engine::JobView) -> Result<(), String> {
        use clustermgr_proto::operation_output::Kind as O;
        let out = job.output.as_ref().and_then(|o| o.kind.as_ref());
        match (ctx.step().name.as_str(), out) {
            ("served", Some(O::ProbeJwks(p))) => match absent(&self.new_kids, &p.served_kids) {
                missing if missing.is_empty() => Ok(()),
                missing => Err(format!("the node does not serve {}", missing.join(", "))),
            },
            _ => Ok(()),
        }
    }
}

/// The key ids of `kids` not in `from`, in order.
pub(crate) fn absent(kids: &[String], from: &[String]) -> Vec<String> {
    kids.iter().filter(|k| !from.contains(k)).cloned().collect()
}

pub mod retirement;

#[cfg(test)]
mod tests;
