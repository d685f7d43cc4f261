//! Redacted Debug for the directory's messages: schema, replication, its servers and binds carry
//! the directory's passwords.

use super::{Redacted, enum_field};
use crate::v1;

impl std::fmt::Debug for v1::replication_probe::Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "Unspecified",
            Self::Write => "Write",
            Self::Read => "Read",
            Self::Remove => "Remove",
        })
    }
}

impl std::fmt::Debug for v1::LdapsBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapsBind")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("bind_dn", &self.bind_dn)
            .field("password", &Redacted(self.password.len()))
            .field("ca_pem", &self.ca_pem.len())
            .finish()
    }
}

impl std::fmt::Debug for v1::ApplyLdapSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyLdapSchema")
            .field("schemas", &self.schemas)
            .field("check_only", &self.check_only)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("within_ms", &self.within_ms)
            .field("only_missing", &self.only_missing)
            .finish()
    }
}

impl std::fmt::Debug for v1::VerifyLdapSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLdapSchema")
            .field("schema", &self.schema)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("base", &self.base)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureReplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureReplication")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field("peers", &self.peers)
            .field("bases", &self.bases)
            .field("replicator_dn", &self.replicator_dn)
            .field(
                "replicator_password",
                &Redacted(self.replicator_password.len()),
            )
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("ca_pem", &self.ca_pem.len())
            .field("primary", &self.primary)
            .field("admin_connectors", &self.admin_connectors.len())
            .field("admin_port", &self.admin_port)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReplicationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStatus")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("bases", &self.bases)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReplicationProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationProbe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .field("base", &self.base)
            .field("marker", &self.marker)
            .field(
                "action",
                &enum_field::<v1::replication_probe::Action>(self.action),
            )
            .field("within_ms", &self.within_ms)
            .field("also", &self.also)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetLdapServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetLdapServers")
            .field("servers", &self.servers)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_password", &Redacted(self.admin_password.len()))
            .finish()
    }
}
