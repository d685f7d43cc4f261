//! Compiles the .proto files with the pure-Rust `protox` compiler: no system `protoc` needed.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/clustermgr/v1/agent.proto",
        "proto/clustermgr/v1/agent_upgrade.proto",
        "proto/clustermgr/v1/gluu.proto",
        "proto/clustermgr/v1/operator.proto",
        "proto/clustermgr/v1/store.proto",
        "proto/clustermgr/v1/ca.proto",
        "proto/clustermgr/v1/workflow.proto",
        "proto/clustermgr/v1/cluster.proto",
        "proto/clustermgr/v1/package.proto",
        "proto/clustermgr/v1/lb.proto",
        "proto/clustermgr/v1/cache.proto",
        "proto/clustermgr/v1/fsrep.proto",
        "proto/clustermgr/v1/logs.proto",
        "proto/clustermgr/v1/health.proto",
        "proto/clustermgr/v1/cache_api.proto",
        "proto/clustermgr/v1/metrics.proto",
        "proto/clustermgr/v1/certs.proto",
        "proto/clustermgr/v1/keys.proto",
        "proto/clustermgr/v1/schema.proto",
        "proto/clustermgr/v1/backup.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("clustermgr_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Messages that carry secrets get a hand-written Debug (src/redact.rs and src/redact/)
        // that redacts them.
        // Every message with a field marked `// Secret` in the .proto files must be listed here
        // (enforced by tests/secrets_redacted.rs).
        .skip_debug([
            ".clustermgr.v1.EnrollRequest",
            ".clustermgr.v1.CreateTokenResponse",
            ".clustermgr.v1.WriteFile",
            ".clustermgr.v1.ConfigureRequest",
            ".clustermgr.v1.HealthProbe",
            ".clustermgr.v1.ConfigureRedis",
            ".clustermgr.v1.ConfigureNutcracker",
            ".clustermgr.v1.CacheStatus",
            ".clustermgr.v1.SetCacheConfiguration",
            ".clustermgr.v1.SetCachePasswordRequest",
            ".clustermgr.v1.ConfigureNginx",
            ".clustermgr.v1.FsrepFile",
            ".clustermgr.v1.InstallHttpdCertificate",
            ".clustermgr.v1.InstallCertificateRequest",
            ".clustermgr.v1.OxauthPrivateKey",
            ".clustermgr.v1.UpdateOxauthKeystore",
            ".clustermgr.v1.SetWebKeys",
            ".clustermgr.v1.ApplyLdapSchema",
            ".clustermgr.v1.VerifyLdapSchema",
            ".clustermgr.v1.ReadFileOutput",
            ".clustermgr.v1.SubmitJobResponse",
            ".clustermgr.v1.RunGluuSetup",
            ".clustermgr.v1.ReadSetupProperties",
            ".clustermgr.v1.ReadSetupPropertiesOutput",
            ".clustermgr.v1.LdapsBind",
            ".clustermgr.v1.CertificateFile",
            ".clustermgr.v1.SetOxAuthConfig",
            ".clustermgr.v1.RenameGluuHost",
            ".clustermgr.v1.ConfigureReplication",
            ".clustermgr.v1.ReplicationStatus",
            ".clustermgr.v1.ReplicationProbe",
            ".clustermgr.v1.SetLdapServers",
            ".clustermgr.v1.RedisPing",
            ".clustermgr.v1.BackupChunk",
        ])
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
