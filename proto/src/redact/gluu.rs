//! Redacted Debug for Gluu's operations: setup.properties, oxAuth's configuration and keys, and
//! the directory password they use.

use super::{Redacted, enum_field};
use crate::v1;

impl std::fmt::Debug for v1::RunGluuSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGluuSetup")
            .field("properties", &Redacted(self.properties.len()))
            .field("no_data", &self.no_data)
            .finish()
    }
}

impl std::fmt::Debug for v1::ReadSetupProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSetupProperties")
            .field("password", &Redacted(self.password.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::ReadSetupPropertiesOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSetupPropertiesOutput")
            .field("content", &Redacted(self.content.len()))
            .field("was_encrypted", &self.was_encrypted)
            .finish()
    }
}

impl std::fmt::Debug for v1::SetOxAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetOxAuthConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("values", &self.values)
            .finish()
    }
}

impl std::fmt::Debug for v1::RenameGluuHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenameGluuHost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl std::fmt::Debug for v1::OxauthPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OxauthPrivateKey")
            .field("kid", &self.kid)
            .field("pkcs8_pem", &Redacted(self.pkcs8_pem.len()))
            .field("certificate_pem", &self.certificate_pem.len())
            .finish()
    }
}

impl std::fmt::Debug for v1::UpdateOxauthKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateOxauthKeystore")
            .field("kind", &enum_field::<v1::KeystoreKind>(self.kind))
            .field("add", &self.add)
            .field("keep_kids", &self.keep_kids)
            .field("keystore_password", &Redacted(self.keystore_password.len()))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::SetWebKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetWebKeys")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &Redacted(self.password.len()))
            .field("add_jwks", &self.add_jwks.len())
            .field("keep_kids", &self.keep_kids)
            .field("first_kids", &self.first_kids)
            .finish()
    }
}
