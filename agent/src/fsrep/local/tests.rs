use super::*;

pub(crate) fn cfg() -> FsrepConfig {
    FsrepConfig {
        enabled: true,
        paths: vec!["/etc/gluu/conf".into()],
        excludes: rules::DEFAULT_EXCLUDES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        backups: 2,
        max_file_bytes: 1024,
        ..Default::default()
    }
}

#[test]
fn a_large_file_is_only_hashed_and_its_unsent_change_is_found_again() {
    let base = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let d = base.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&d).unwrap();
    let big: Vec<u8> = (0..(rules::INLINE_MAX_BYTES as u32 + 10))
        .map(|i| (i % 7) as u8)
        .collect();
    std::fs::write(d.join("metadata.xml"), &big).unwrap();
    let mut c = cfg();
    c.max_file_bytes = 1 << 20;
    let sp = state.path().join("s");
    let mut l = Local::load(base.path(), base.path(), &sp, "n1", c.clone()).unwrap();
    let all = vec!["/etc/gluu/conf".to_string()];
    let ch = l.scan(&all);
    assert_eq!(ch.len(), 1);
    let f = ch[0].file.clone().unwrap();
    assert!(
        rules::streamed(&f),
        "hashed, not carried: {}",
        f.content.len()
    );
    assert_eq!(f.size, big.len() as u64);
    // Not sent yet: neither said nor saved; found again once the upload fails.
    assert!(l.known().is_empty());
    l.save().unwrap();
    assert!(
        Local::load(base.path(), base.path(), &sp, "n1", c.clone())
            .unwrap()
            .known()
            .is_empty()
    );
    assert!(l.scan(&all).is_empty());
    l.unsend("/etc/gluu/conf/metadata.xml");
    let again = l.scan(&all);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].base, None);
    // Sent: said from then on.
    l.sent("/etc/gluu/conf/metadata.xml");
    assert_eq!(l.known().len(), 1);
    // Over the limit: refused with the limit named, nothing read.
    std::fs::write(d.join("huge.xml"), vec![0u8; (1 << 20) + 1]).unwrap();
    assert!(l.scan(&all).is_empty());
    assert!(
        l.refused
            .iter()
            .any(|r| r.starts_with("/etc/gluu/conf/huge.xml: ")
                && r.contains("over the replication limit of 1048576 bytes")),
        "{:?}",
        l.refused
    );
}
