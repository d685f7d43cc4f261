//! `clustermgr schema add|list`: custom LDAP schema on every Gluu node's directory. `add`
//! sends the file to the controller, which validates it before any node is touched and starts
//! the schema-add workflow (checked on every node, installed one node at a time, verified), and
//! follows it like every starting command (exit 0 succeeded, 1 failed or cancelled, 2 not
//! started; `--detach`, `--dry-run`).

use crate::args::SchemaCmd;
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::{Context, Result};
use clustermgr_proto::schema_client::SchemaClient;
use clustermgr_proto::{AddSchemaRequest, ListSchemaRequest, SchemaElementKind, SchemaList};
use clustermgr_shared::util::fmt_ms;
use serde_json::Value;
use std::io::Write;

/// Largest file sent (the controller refuses larger ones too).
const MAX_FILE: u64 = 256 * 1024;

struct Listed<'a>(&'a SchemaList);

impl Render for Listed<'_> {
    fn json(&self) -> Value {
        crate::view::schema_list(self.0)
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.0.schemas.is_empty() {
            return writeln!(out, "no custom schema added (clustermgr schema add FILE)");
        }
        let mut t = table(&["SCHEMA", "KIND", "NAME", "OID", "FILE", "ADDED", "BY"]);
        for a in &self.0.schemas {
            let Some(s) = &a.schema else { continue };
            for e in &s.elements {
                t.add_row(vec![
                    s.name.clone(),
                    crate::view::kind_name(e.kind()).to_string(),
                    e.names.join(", "),
                    e.oid.clone(),
                    s.source_file.clone(),
                    fmt_ms(a.added_unix_ms),
                    a.added_by.clone(),
                ]);
            }
        }
        writeln!(out, "{t}")
    }
}

pub async fn run(cmd: SchemaCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = SchemaClient::new(channel(&ctx.target).await?);
    match cmd {
        SchemaCmd::Add { file, name, start } => {
            let size = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            if size > MAX_FILE {
                anyhow::bail!(
                    "{} is {size} bytes; a schema file is at most {MAX_FILE} bytes",
                    file.display()
                );
            }
            let content =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let r = c
                .add_schema(AddSchemaRequest {
                    file_name,
                    content,
                    name: name.unwrap_or_default(),
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(s) = &r.schema {
                let count =
                    |k: SchemaElementKind| s.elements.iter().filter(|e| e.kind() == k).count();
                eprintln!(
                    "schema {:?} from {}: {} attribute type(s), {} object class(es); valid",
                    s.name,
                    s.source_file,
                    count(SchemaElementKind::AttributeType),
                    count(SchemaElementKind::ObjectClass)
                );
            }
            let started = clustermgr_proto::StartWorkflowResponse {
                workflow: r.workflow,
                plan: r.plan,
            };
            let mut cl = ctx.cluster().await?;
            crate::workflow::started(&mut cl, started, start.detach, ctx).await
        }
        SchemaCmd::List => {
            let l = c
                .list_schema(ListSchemaRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Listed(&l))?;
            Ok(Exit::Ok)
        }
    }
}
