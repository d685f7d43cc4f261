//! `hosts`: the cluster's hostnames in every node's /etc/hosts (and the Gluu chroot's), in a
//! marked block; one step per node, safe to run again.

use crate::engine::{Definition, JobSpec, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use clustermgr_proto::{HostEntry, Operation, SetHosts, operation};

pub const KIND: &str = "hosts";
pub const STEPS: [&str; 1] = ["hosts"];

#[derive(Debug, Clone)]
pub struct Hosts {
    pub entries: Vec<HostEntry>,
}

/// The workflow's inputs (no secrets): each address with its names.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub address: String,
    pub names: Vec<String>,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;

    fn read_legacy(m: &mut std::collections::BTreeMap<String, String>) {
        crate::inputs::upgrade_entry(m, "entries", legacy_entries);
    }
}

/// The entries as the previous release wrote them: `address=name name;address=name`.
fn legacy_entries(s: &str) -> serde_json::Value {
    let entries: Vec<Entry> = s
        .split(';')
        .filter_map(|e| {
            let (a, n) = e.split_once('=')?;
            Some(Entry {
                address: a.to_string(),
                names: n.split_whitespace().map(str::to_string).collect(),
            })
        })
        .collect();
    serde_json::json!(entries)
}

impl Inputs {
    pub fn new(entries: &[HostEntry]) -> Self {
        Self {
            entries: entries
                .iter()
                .map(|e| Entry {
                    address: e.address.clone(),
                    names: e.names.clone(),
                })
                .collect(),
        }
    }
}

impl Hosts {
    /// The definition of a workflow with these inputs.
    pub fn of(inputs: Inputs) -> Self {
        Self {
            entries: inputs
                .entries
                .into_iter()
                .map(|e| HostEntry {
                    address: e.address,
                    names: e.names,
                })
                .collect(),
        }
    }
}

impl Definition for Hosts {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, _ctx: &StepCtx<'_>) -> StepPlan {
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::SetHosts(SetHosts {
                    entries: self.entries.clone(),
                })),
            },
            timeout_ms: 60_000,
            summary: format!(
                "write the cluster's hosts into /etc/hosts: {}",
                self.entries
                    .iter()
                    .map(|e| format!("{} {}", e.address, e.names.join(" ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            rerunnable: true,
            keep_output_as: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::*;

    #[test]
    fn every_node_gets_the_same_entries_and_they_round_trip() {
        let entries = vec![
            HostEntry {
                address: "10.0.0.1".into(),
                names: vec!["gluu1.example.org".into()],
            },
            HostEntry {
                address: "10.0.0.5".into(),
                names: vec!["idp.example.org".into(), "lb".into()],
            },
        ];
        let m = Inputs::new(&entries).encode().into_iter().collect();
        assert_eq!(Hosts::of(Inputs::decode(&m).unwrap()).entries, entries);
        let d = Hosts { entries };
        let mut wf = new_workflow(
            "w",
            KIND,
            "operator:a",
            1,
            vec![
                ("a".into(), "a".into(), STEPS.to_vec()),
                ("b".into(), "b".into(), STEPS.to_vec()),
            ],
        );
        let mut obs = Observed::default();
        for n in ["a", "b"] {
            obs.nodes.insert(
                n.into(),
                NodeView {
                    online: true,
                    approved: true,
                    ..Default::default()
                },
            );
        }
        let dec = advance(&mut wf, &d, &obs);
        assert_eq!(dec.dispatch.len(), 2, "every node at once");
        for disp in &dec.dispatch {
            assert!(matches!(
                &disp.job.operation.kind,
                Some(operation::Kind::SetHosts(s)) if s.entries.len() == 2
            ));
        }
    }
}
