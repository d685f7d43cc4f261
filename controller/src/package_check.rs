//! Whole-archive checks of a package file before the repository keeps it: a file cut short or
//! damaged in transit is refused with the reason, instead of being stored under the name and
//! version its intact front declares.
//!
//! - `.deb`: the ar structure (magic, every member header well formed, every member's declared
//!   size present, the members `debian-binary`, `control.tar*`, `data.tar*` in that order, nothing
//!   after the last member but its padding), then `dpkg-deb --info` (the control member unpacked)
//!   and `dpkg-deb --contents` (the data member decompressed to its end and its tar listed: a
//!   cut or corrupted compression stream fails there).
//! - `.rpm`: `rpm -K --nosignature` (the header and payload digests: a cut or flipped payload
//!   fails them) and the header's payload size against what follows it.

use std::io::Read;
use std::path::Path;

/// Why a package file is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    #[error("the package is damaged: {0}")]
    Damaged(String),
    #[error("{0} is not installed on the controller; it is needed to check the package")]
    ToolMissing(&'static str),
    #[error("cannot read the package: {0}")]
    Io(String),
}

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

/// One ar member: its name and where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

/// The members of an ar archive, every header and declared size checked against the file.
fn ar_members(file: &Path) -> Result<Vec<Member>, CheckError> {
    let io = |e: std::io::Error| CheckError::Io(e.to_string());
    let total = std::fs::metadata(file).map_err(io)?.len();
    let mut f = std::fs::File::open(file).map_err(io)?;
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|_| CheckError::Damaged("shorter than the ar magic".into()))?;
    if magic != AR_MAGIC {
        return Err(CheckError::Damaged("no ar magic at the start".into()));
    }
    let mut members = Vec::new();
    let mut pos = AR_MAGIC.len() as u64;
    while pos < total {
        if total - pos < AR_HEADER as u64 {
            return Err(CheckError::Damaged(format!(
                "the archive ends inside a member header at byte {pos} ({} of {AR_HEADER} bytes)",
                total - pos
            )));
        }
        let mut h = [0u8; AR_HEADER];
        f.read_exact(&mut h).map_err(io)?;
        if &h[58..60] != b"`\n" {
            return Err(CheckError::Damaged(format!(
                "member header at byte {pos} is malformed"
            )));
        }
        let name = String::from_utf8_lossy(&h[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                CheckError::Damaged(format!("member {name:?} has no valid size in its header"))
            })?;
        let offset = pos + AR_HEADER as u64;
        let padded = size + size % 2;
        if offset + size > total {
            return Err(CheckError::Damaged(format!(
                "member {name:?} declares {size} bytes but only {} are present (the file is cut short)",
                total - offset
            )));
        }
        if size == 0 {
            return Err(CheckError::Damaged(format!("member {name:?} is empty")));
        }
        members.push(Member { name, offset, size });
        pos = (offset + padded).min(total);
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(pos)).map_err(io)?;
    }
    Ok(members)
}

/// The .deb's ar structure: debian-binary, control.tar*, data.tar*, all whole.
fn deb_structure(file: &Path) -> Result<(), CheckError> {
    let members = ar_members(file)?;
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let ok = names.len() >= 3
        && names[0] == "debian-binary"
        && names[1].starts_with("control.tar")
        && names[2].starts_with("data.tar");
    if !ok {
        return Err(CheckError::Damaged(format!(
            "a .deb holds debian-binary, control.tar*, data.tar*; this one holds {names:?}"
        )));
    }
    Ok(())
}

/// Runs a checking tool; its failure is the package's damage, told in the tool's words.
async fn tool(program: &'static str, args: &[&str], file: &Path) -> Result<(), CheckError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                CheckError::ToolMissing(program)
            } else {
                CheckError::Io(e.to_string())
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    Err(CheckError::Damaged(format!(
        "{program} {} says: {}",
        args.join(" "),
        crate::audit::clean(first, 300)
    )))
}

/// Checks a whole .deb.
pub async fn deb(file: &Path) -> Result<(), CheckError> {
    deb_structure(file)?;
    tool("dpkg-deb", &["--info"], file).await?;
    tool("dpkg-deb", &["--contents"], file).await
}

/// Checks a whole .rpm (its digests cover the header and the payload).
pub async fn rpm(file: &Path) -> Result<(), CheckError> {
    tool("rpm", &["-K", "--nosignature"], file).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A small real .deb (dpkg-deb) with some incompressible content.
    fn build_deb(dir: &Path) -> std::path::PathBuf {
        let stage = dir.join("stage");
        std::fs::create_dir_all(stage.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(stage.join("usr/share/blob")).unwrap();
        std::fs::write(
            stage.join("DEBIAN/control"),
            "Package: cm-blob\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@localhost>\n\
             Description: test\n",
        )
        .unwrap();
        let blob: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(stage.join("usr/share/blob/data"), blob).unwrap();
        let deb = dir.join("cm-blob.deb");
        let o = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&stage)
            .arg(&deb)
            .output()
            .expect("dpkg-deb is needed for this test");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        deb
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[tokio::test]
    async fn a_whole_deb_passes_and_damaged_ones_say_why() {
        let d = tempfile::tempdir().unwrap();
        let good = build_deb(d.path());
        deb(&good).await.unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let members = ar_members(&good).unwrap();
        let data = members
            .iter()
            .find(|m| m.name.starts_with("data.tar"))
            .unwrap();

        // Cut short: inside the data member (its declared size is not there).
        let cut = write(d.path(), "cut.deb", &bytes[..bytes.len() - 1000]);
        let e = deb(&cut).await.unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        // Cut inside a header, and only the front (what a 100 KB head of a big file looks like).
        let head = write(d.path(), "head.deb", &bytes[..(data.offset as usize - 20)]);
        assert!(deb(&head).await.unwrap_err().to_string().contains("header"));

        // One bit flipped in the middle of the compressed data: the stream's check fails.
        let mut flipped = bytes.clone();
        flipped[(data.offset + data.size / 2) as usize] ^= 0x10;
        let f = write(d.path(), "flipped.deb", &flipped);
        let e = deb(&f).await.unwrap_err();
        assert!(
            matches!(&e, CheckError::Damaged(m) if m.contains("dpkg-deb")),
            "{e}"
        );

        // A zero-length data member (header rewritten to size 0, content dropped).
        let mut zero = bytes[..data.offset as usize].to_vec();
        let h = zero.len() - AR_HEADER;
        zero[h + 48..h + 58].copy_from_slice(b"0         ");
        let z = write(d.path(), "zero.deb", &zero);
        assert!(deb(&z).await.unwrap_err().to_string().contains("is empty"));

        // Bytes that are not an ar archive, and an ar without the .deb members.
        let e = deb(&write(d.path(), "x.deb", b"!<arch>"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("ar magic"), "{e}");
        let mut other = AR_MAGIC.to_vec();
        other.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                "a.txt", 0, 0, 0, 644, 2
            )
            .as_bytes(),
        );
        other.extend_from_slice(b"hi");
        let e = deb(&write(d.path(), "o.deb", &other)).await.unwrap_err();
        assert!(e.to_string().contains("debian-binary"), "{e}");
    }

    /// A tiny noarch .rpm built with rpmbuild (installed with the rpm tools by scripts/test).
    fn build_rpm(dir: &Path) -> Option<std::path::PathBuf> {
        if Command::new("rpmbuild").arg("--version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "rpmbuild is required under CI"
            );
            return None;
        }
        let top = dir.join("rpmtop");
        let spec = dir.join("blob.spec");
        std::fs::write(
            &spec,
            "Name: cm-blob\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n\
             %description\nt\n%install\nmkdir -p %{buildroot}/usr/share/blob\n\
             head -c 200000 /dev/urandom > %{buildroot}/usr/share/blob/data\n\
             %files\n/usr/share/blob/data\n",
        )
        .unwrap();
        let o = Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["-bb", "--quiet"])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rpms = top.join("RPMS/noarch");
        let f = std::fs::read_dir(rpms)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        Some(f)
    }

    #[tokio::test]
    async fn a_whole_rpm_passes_and_damaged_ones_fail_their_digests() {
        let d = tempfile::tempdir().unwrap();
        let Some(good) = build_rpm(d.path()) else {
            return;
        };
        rpm(&good).await.unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = write(d.path(), "cut.rpm", &bytes[..bytes.len() - 5000]);
        assert!(matches!(rpm(&cut).await, Err(CheckError::Damaged(_))));
        let mut flipped = bytes.clone();
        let i = bytes.len() - 20_000;
        flipped[i] ^= 0x01;
        let f = write(d.path(), "flipped.rpm", &flipped);
        assert!(matches!(rpm(&f).await, Err(CheckError::Damaged(_))));
        let head = write(d.path(), "head.rpm", &bytes[..4096.min(bytes.len() / 2)]);
        assert!(matches!(rpm(&head).await, Err(CheckError::Damaged(_))));
    }
}
