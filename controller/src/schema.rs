//! Custom LDAP schema: `schema add FILE` parses and validates the operator's file here (see
//! [`parse`]) before any node is touched, then starts the `schema-add` workflow (see
//! `clustermgr_workflow::schema`): the directory of every installed Gluu node checks it first,
//! then each installs it in turn, then each verifies it. `schema list` shows the schema added
//! so far: the last successful schema-add of each name.

pub mod parse;

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::settings;
use crate::settings::ClusterError;
use crate::store::StoreError;
use crate::workflows::{self, WhenBusy, WorkflowError};
use clustermgr_proto::{
    AddSchemaRequest, AddedSchema, CustomSchema, SchemaList, SchemaWorkflowStarted, Workflow,
    WorkflowStatus,
};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::new_workflow;
use clustermgr_workflow::schema::{Inputs, KIND, STEPS, SchemaAdd};
use parse::ParseError;
use std::collections::BTreeMap;

/// How long a restarted directory has to answer on LDAPS.
const WITHIN_MS: u32 = 2 * 60_000;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{file}: {err}")]
    Parse { file: String, err: ParseError },
    #[error(
        "{0:?} is not a schema name: lower-case letters, digits, - and _ (at most 64, starting \
         with a letter or digit); give one with --name"
    )]
    BadName(String),
    #[error("the file name {0:?} has a control character or is longer than 255 bytes")]
    BadFileName(String),
    #[error("no Gluu server is installed yet (clustermgr gluu install)")]
    NoGluu,
    #[error(
        "{element} is already defined by schema {schema:?} (added by workflow {workflow}); add \
         it under that name to change it"
    )]
    Taken {
        element: String,
        schema: String,
        workflow: String,
    },
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for SchemaError {
    fn kind(&self) -> Kind {
        match self {
            Self::Parse { .. } | Self::BadName(_) | Self::BadFileName(_) => Kind::InvalidArgument,
            Self::NoGluu | Self::Taken { .. } => Kind::FailedPrecondition,
            Self::Workflow(e) => e.kind(),
            Self::Cluster(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
        }
    }
}

/// The operator's file name without its directories: no control character (it is recorded in
/// the schema files' header and the audit log), at most 255 bytes.
pub fn file_name_of(raw: &str) -> Result<String, SchemaError> {
    let file = raw.rsplit('/').next().unwrap_or(raw).to_string();
    if file.len() > 255 || file.chars().any(char::is_control) {
        return Err(SchemaError::BadFileName(file.chars().take(80).collect()));
    }
    Ok(file)
}

/// The schema's name: `--name`, else the file's stem, lower-cased.
pub fn name_of(file_name: &str, given: &str) -> Result<String, SchemaError> {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let stem = base
        .rsplit_once('.')
        .map_or(base, |(s, _)| s)
        .to_ascii_lowercase();
    let name = if given.is_empty() {
        stem
    } else {
        given.to_string()
    };
    if clustermgr_shared::util::is_schema_name(&name) {
        Ok(name)
    } else {
        Err(SchemaError::BadName(name))
    }
}

/// The definition of a schema-add workflow from its inputs and the settings now.
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<SchemaAdd, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let inputs = Inputs::decode(&wf.inputs).map_err(WorkflowError::from)?;
    Ok(SchemaAdd {
        inputs,
        admin_password: settings::ldap_admin_password(ctl, &s)?,
        within_ms: WITHIN_MS,
        balancer: crate::drain::balancer(ctl)?,
    })
}

/// The schema added so far: the last successful schema-add of each name, by name.
pub fn list(ctl: &Ctl) -> Result<SchemaList, SchemaError> {
    let mut by_name: BTreeMap<String, AddedSchema> = BTreeMap::new();
    for w in ctl.store.workflows()? {
        if w.kind != KIND || w.status() != WorkflowStatus::Succeeded {
            continue;
        }
        let Ok(inputs) = Inputs::decode(&w.inputs) else {
            continue;
        };
        by_name.insert(
            inputs.schema.name.clone(),
            AddedSchema {
                schema: Some(inputs.schema),
                workflow_id: w.id.clone(),
                added_unix_ms: w.finished_unix_ms,
                added_by: w.started_by.clone(),
            },
        );
    }
    Ok(SchemaList {
        schemas: by_name.into_values().collect(),
    })
}

/// An element of `new` that another added schema already defines (same OID or name).
fn clash(existing: &SchemaList, new: &CustomSchema) -> Option<SchemaError> {
    for added in &existing.schemas {
        let Some(other) = &added.schema else { continue };
        if other.name == new.name {
            continue;
        }
        for e in &new.elements {
            let hit = other.elements.iter().find(|o| {
                o.kind == e.kind
                    && (o.oid == e.oid
                        || o.names
                            .iter()
                            .any(|n| e.names.iter().any(|m| m.eq_ignore_ascii_case(n))))
            });
            if hit.is_some() {
                return Some(SchemaError::Taken {
                    element: format!(
                        "{} ({})",
                        e.names.first().cloned().unwrap_or_default(),
                        e.oid
                    ),
                    schema: other.name.clone(),
                    workflow: added.workflow_id.clone(),
                });
            }
        }
    }
    None
}

/// `schema add FILE [--name N] [--dry-run]`.
pub async fn add(
    ctl: &Ctl,
    req: &AddSchemaRequest,
    audit: &Audit,
) -> Result<SchemaWorkflowStarted, SchemaError> {
    let file = file_name_of(&req.file_name)?;
    let elements = parse::parse(&file, &req.content).map_err(|err| SchemaError::Parse {
        file: file.clone(),
        err,
    })?;
    let name = name_of(&file, &req.name)?;
    let schema = CustomSchema {
        name,
        elements,
        source_sha256: {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&req.content))
        },
        source_file: file,
    };
    if let Some(e) = clash(&list(ctl)?, &schema) {
        return Err(e);
    }
    let nodes = settings::installed_gluu_nodes(ctl)?;
    if nodes.is_empty() {
        return Err(SchemaError::NoGluu);
    }
    let inputs = Inputs {
        order: nodes.iter().map(|(n, _)| n.id.clone()).collect(),
        name: schema.name.clone(),
        schema: schema.clone(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut wf = new_workflow(
        &id,
        KIND,
        &audit.who,
        clustermgr_shared::util::now_ms(),
        nodes
            .iter()
            .map(|(n, _)| (n.id.clone(), n.hostname.clone(), STEPS.to_vec()))
            .collect(),
    );
    wf.inputs = inputs.encode().into_iter().collect();
    let def = definition(ctl, &wf)?;
    if req.dry_run {
        let obs = workflows::observe(ctl, &wf, &def)?;
        let plan = workflows::plan_of(clustermgr_workflow::dry_run(&wf, &def, &obs));
        return Ok(SchemaWorkflowStarted {
            workflow: None,
            plan,
            schema: Some(schema),
        });
    }
    let _admitted = workflows::admit_new(ctl, &mut wf, WhenBusy::from_no_wait(req.no_wait)).await?;
    let servers = settings::servers_pointing_at(ctl, &nodes, &id)?;
    let row = audit.on(id.clone()).ok(format!(
        "kind={KIND} schema={} file={} sha256={} elements={} nodes={}",
        schema.name,
        schema.source_file,
        schema.source_sha256,
        schema.elements.len(),
        nodes.len()
    ));
    ctl.store
        .put_workflow(wf.clone(), servers, Some(row))
        .await?;
    ctl.workflows.kick();
    Ok(SchemaWorkflowStarted {
        workflow: Some(wf),
        plan: Vec::new(),
        schema: Some(schema),
    })
}

/// The `schema add` workflow kind: its plan only.
pub fn kind() -> std::sync::Arc<dyn crate::ctl::WorkflowKind> {
    crate::ctl::plan_only(&[clustermgr_workflow::schema::KIND], |ctl, wf| {
        Ok(Box::new(definition(ctl, wf)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_with_control_characters_are_refused() {
        assert_eq!(file_name_of("/tmp/a/acme.schema").unwrap(), "acme.schema");
        for bad in [
            "x\npidfile /etc/passwd\n#.schema",
            "a\r.ldif",
            &"a".repeat(256),
        ] {
            assert!(
                matches!(file_name_of(bad), Err(SchemaError::BadFileName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_come_from_the_file_or_the_flag() {
        assert_eq!(name_of("Acme.schema", "").unwrap(), "acme");
        assert_eq!(name_of("/tmp/x/99-user.ldif", "").unwrap(), "99-user");
        assert_eq!(name_of("acme.schema", "acme_v2").unwrap(), "acme_v2");
        assert!(matches!(
            name_of("my.acme.schema", ""),
            Err(SchemaError::BadName(_))
        ));
        assert!(name_of("a.schema", "../etc").is_err());
        assert!(name_of("a.schema", "-x").is_err());
    }

    #[test]
    fn an_element_of_another_schema_is_refused() {
        let el = |oid: &str, name: &str| clustermgr_proto::SchemaElement {
            kind: 1,
            oid: oid.into(),
            names: vec![name.into()],
            ..Default::default()
        };
        let existing = SchemaList {
            schemas: vec![AddedSchema {
                schema: Some(CustomSchema {
                    name: "acme".into(),
                    elements: vec![el("1.2.3", "acmeBadge")],
                    ..Default::default()
                }),
                workflow_id: "w1".into(),
                ..Default::default()
            }],
        };
        let mut new = CustomSchema {
            name: "other".into(),
            elements: vec![el("1.2.4", "ACMEBADGE")],
            ..Default::default()
        };
        assert!(matches!(
            clash(&existing, &new),
            Some(SchemaError::Taken { .. })
        ));
        // The same schema again (a new version of it) is fine.
        new.name = "acme".into();
        assert!(clash(&existing, &new).is_none());
        new.name = "other".into();
        new.elements = vec![el("1.2.5", "otherThing")];
        assert!(clash(&existing, &new).is_none());
    }
}
