use super::repository::{parse_deb_fields, parse_rpm_line, valid_field};
use super::*;

#[test]
fn formats_are_told_by_their_magic_bytes() {
    let mut deb =
        b"!<arch>\ndebian-binary   1342943816  0     0     100644  4         `\n".to_vec();
    deb.extend_from_slice(b"2.0\n");
    assert_eq!(Format::sniff(&deb), Some(Format::Deb));
    assert_eq!(
        Format::sniff(&[0xed, 0xab, 0xee, 0xdb, 3, 0]),
        Some(Format::Rpm)
    );
    assert_eq!(Format::sniff(b"!<arch>\nsomething-else   "), None);
    assert_eq!(Format::sniff(b"hello world, just text\n"), None);
}

#[test]
fn metadata_output_is_parsed() {
    let m = parse_deb_fields("Package: foo\nVersion: 1.2-3\nArchitecture: amd64\n").unwrap();
    assert_eq!(
        m,
        Meta {
            name: "foo".into(),
            version: "1.2-3".into(),
            arch: "amd64".into()
        }
    );
    let r = parse_rpm_line("bar\t4.5-1.el8\tx86_64\n").unwrap();
    assert_eq!(r.arch, "x86_64");
    assert!(parse_deb_fields("Package: foo\n").is_none());
    assert!(!valid_field("a b"));
    assert!(!valid_field("x=1"));
    assert!(valid_field("1:2.3~rc1+dfsg"));
}

#[test]
fn an_upload_hashes_whole_file_and_chunks_and_refuses_text() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::open(dir.path().to_path_buf()).unwrap();
    let mut content =
        b"!<arch>\ndebian-binary   1342943816  0     0     100644  4         `\n".to_vec();
    content.resize(CHUNK_SIZE as usize * 2 + 10, 7);
    let mut up = repo.begin("x.deb", content.len() as u64).unwrap();
    for part in content.chunks(300_000) {
        up.write(part).unwrap();
    }
    let (f, sha, chunks) = up.seal().unwrap();
    assert_eq!(f, Format::Deb);
    assert_eq!(sha, hex::encode(Sha256::digest(&content)));
    assert_eq!(chunks.len(), 3);
    assert_eq!(
        chunks[2],
        hex::encode(Sha256::digest(&content[2 * CHUNK_SIZE as usize..]))
    );
    let tmp = up.tmp.clone();
    drop(up);
    assert!(!tmp.exists(), "the temporary file is removed");

    let text = vec![b'a'; 100];
    let mut up = repo.begin("notes.txt", 100).unwrap();
    let e = up.write(&text).unwrap_err();
    assert!(e.to_string().contains("neither a .deb"), "{e}");
    let small = repo.with_max_bytes(10);
    assert!(matches!(
        small.begin("big.deb", 11),
        Err(PackageError::TooLarge { .. })
    ));
}
