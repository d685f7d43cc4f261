//! Debug for the messages that carry secrets: build.rs's `skip_debug` drops their derived Debug,
//! and the one written here shows every field, each secret as `<redacted, N bytes>`. This file
//! holds the helpers and the enrollment, cluster settings and health messages; the submodules
//! hold the others by area. (`skip_debug` also drops the derived Debug of the enums nested in
//! those messages: theirs is written beside them, as the derive writes it.)

use crate::v1;

mod backup;
mod cache;
mod certs;
mod directory;
mod files;
mod gluu;

#[cfg(test)]
pub(crate) mod tests;

pub(crate) struct Redacted(pub(crate) usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

/// An enumeration field shown as prost's own Debug shows it: the variant's name, or the number
/// when it is not a known variant.
pub(crate) struct EnumField<E>(i32, std::marker::PhantomData<E>);

pub(crate) fn enum_field<E>(value: i32) -> EnumField<E> {
    EnumField(value, std::marker::PhantomData)
}

impl<E: TryFrom<i32> + std::fmt::Debug> std::fmt::Debug for EnumField<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match E::try_from(self.0) {
            Ok(e) => e.fmt(f),
            Err(_) => self.0.fmt(f),
        }
    }
}

impl std::fmt::Debug for v1::EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &Redacted(self.token.len()))
            .field("csr_der", &Redacted(self.csr_der.len()))
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl std::fmt::Debug for v1::CreateTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token", &Redacted(self.token.len()))
            .field("token_id", &self.token_id)
            .field("expires_unix", &self.expires_unix)
            .finish()
    }
}

impl std::fmt::Debug for v1::ConfigureRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRequest")
            .field("gluu_version", &self.gluu_version)
            .field("lb_hostname", &self.lb_hostname)
            .field("lb_ip", &self.lb_ip)
            .field("external_lb", &self.external_lb)
            .field("ldap_cache", &self.ldap_cache)
            .field("offline", &self.offline)
            .field("ldap_check_period", &self.ldap_check_period)
            .field("manage_hosts", &self.manage_hosts)
            .field("org", &self.org)
            .field("country", &self.country)
            .field("city", &self.city)
            .field("state", &self.state)
            .field("admin_email", &self.admin_email)
            .field(
                "ldap_admin_password",
                &self.ldap_admin_password.as_ref().map(|p| Redacted(p.len())),
            )
            .field(
                "replication_password",
                &self
                    .replication_password
                    .as_ref()
                    .map(|p| Redacted(p.len())),
            )
            .field("https_port", &self.https_port)
            .field("gluu_repo_url", &self.gluu_repo_url)
            .field("gluu_repo_suite", &self.gluu_repo_suite)
            .field(
                "gluu_repo_key",
                &self.gluu_repo_key.as_ref().map(String::len),
            )
            .field("components", &self.components)
            .field(
                "external_lb_health_wait_secs",
                &self.external_lb_health_wait_secs,
            )
            .finish()
    }
}

impl std::fmt::Debug for v1::HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let check = match &self.check {
            Some(v1::health_probe::Check::Ldaps(b)) => {
                format!("ldaps {}:{} as {}", b.host, b.port, b.bind_dn)
            }
            Some(v1::health_probe::Check::Https(g)) => format!("https {}", g.url),
            Some(v1::health_probe::Check::Tcp(a)) => format!("tcp {a}"),
            Some(v1::health_probe::Check::Redis(r)) => format!("redis ping on port {}", r.port),
            None => "none".into(),
        };
        f.debug_struct("HealthProbe")
            .field("service", &self.service)
            .field("check", &check)
            .finish()
    }
}
