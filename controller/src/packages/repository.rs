//! The repository on disk: packages stored by content, an upload streamed to a temporary file while hashed, the type by magic bytes, the name, version and architecture read with dpkg-deb or rpm.

use super::*;

/// Package file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Deb,
    Rpm,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Rpm => "rpm",
        }
    }

    /// The format a file's first bytes show, if any.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(RPM_LEAD) {
            return Some(Self::Rpm);
        }
        if head.starts_with(DEB_MAGIC) && head.len() >= 8 + 13 && &head[8..21] == b"debian-binary" {
            return Some(Self::Deb);
        }
        None
    }
}

/// The repository directory and its size cap.
pub struct Repository {
    pub(super) dir: PathBuf,
    max_bytes: u64,
}

impl Repository {
    /// Opens (creating) the directory and removes uploads a previous run left unfinished.
    pub fn open(dir: PathBuf) -> Result<Self, PackageError> {
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Self {
            dir,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where a stored package file lives.
    pub fn file(&self, rec: &PackageRecord) -> PathBuf {
        self.dir.join(format!("{}.{}", rec.sha256, rec.format))
    }

    /// Starts an upload of `size` bytes into a new temporary file of the repository.
    pub fn begin(&self, file_name: &str, size: u64) -> Result<Upload, PackageError> {
        if size > self.max_bytes {
            return Err(PackageError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let tmp = self
            .dir
            .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        Ok(Upload {
            file_name: crate::audit::clean(file_name, 200),
            declared: size,
            max: self.max_bytes,
            tmp,
            file: Some(file),
            whole: Sha256::new(),
            chunk: Sha256::new(),
            in_chunk: 0,
            chunks: Vec::new(),
            received: 0,
            head: Vec::with_capacity(HEAD_LEN),
        })
    }
}

/// An upload in progress: a temporary file, the whole file's hash and the chunk hashes. Dropped
/// before it is finished, its temporary file is removed.
pub struct Upload {
    file_name: String,
    declared: u64,
    max: u64,
    pub(super) tmp: PathBuf,
    pub(super) file: Option<std::fs::File>,
    whole: Sha256,
    chunk: Sha256,
    in_chunk: u32,
    chunks: Vec<String>,
    pub(super) received: u64,
    head: Vec<u8>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Upload {
    /// Appends data (blocking I/O: call from a blocking task).
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), PackageError> {
        self.received += data.len() as u64;
        if self.received > self.declared || self.received > self.max {
            return Err(if self.received > self.max {
                PackageError::TooLarge {
                    size: self.received,
                    max: self.max,
                }
            } else {
                PackageError::SizeMismatch {
                    declared: self.declared,
                    received: self.received,
                }
            });
        }
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            if self.head.len() >= HEAD_LEN && Format::sniff(&self.head).is_none() {
                return Err(PackageError::NotAPackage(self.file_name.clone()));
            }
        }
        let file = self.file.as_mut().ok_or(PackageError::BadUpload)?;
        file.write_all(data)?;
        self.whole.update(data);
        while !data.is_empty() {
            let room = (CHUNK_SIZE - self.in_chunk) as usize;
            let n = room.min(data.len());
            self.chunk.update(&data[..n]);
            self.in_chunk += n as u32;
            data = &data[n..];
            if self.in_chunk == CHUNK_SIZE {
                let h = std::mem::take(&mut self.chunk);
                self.chunks.push(hex::encode(h.finalize()));
                self.in_chunk = 0;
            }
        }
        Ok(())
    }

    /// Checks the whole upload and syncs it; returns its format, SHA-256 and chunk hashes.
    pub(super) fn seal(&mut self) -> Result<(Format, String, Vec<String>), PackageError> {
        if self.received != self.declared {
            return Err(PackageError::SizeMismatch {
                declared: self.declared,
                received: self.received,
            });
        }
        let format = Format::sniff(&self.head)
            .ok_or_else(|| PackageError::NotAPackage(self.file_name.clone()))?;
        let file = self.file.as_mut().ok_or(PackageError::BadUpload)?;
        file.sync_all()?;
        if self.in_chunk > 0 {
            let h = std::mem::take(&mut self.chunk);
            self.chunks.push(hex::encode(h.finalize()));
            self.in_chunk = 0;
        }
        let sha = hex::encode(std::mem::take(&mut self.whole).finalize());
        Ok((format, sha, std::mem::take(&mut self.chunks)))
    }
}

/// Name, version and architecture as the package file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Reads a package's metadata with its format's tool (argv, never a shell).
pub async fn read_meta(format: Format, file: &Path) -> Result<Meta, PackageError> {
    let f = file.as_os_str();
    let (tool, hint, mut cmd) = match format {
        Format::Deb => {
            let mut c = tokio::process::Command::new("dpkg-deb");
            c.arg("--field")
                .arg(f)
                .args(["Package", "Version", "Architecture"]);
            ("dpkg-deb", "the dpkg package", c)
        }
        Format::Rpm => {
            let mut c = tokio::process::Command::new("rpm");
            c.args([
                "-qp",
                "--nosignature",
                "--nodigest",
                "--queryformat",
                "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
            ])
            .arg(f);
            ("rpm", "the rpm package", c)
        }
    };
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            PackageError::ToolMissing {
                tool,
                format: format.as_str(),
                hint,
            }
        } else {
            PackageError::Io(e)
        }
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(PackageError::Metadata(format!(
            "{tool} exited with {}: {}",
            out.status
                .code()
                .map_or("a signal".into(), |c| c.to_string()),
            crate::audit::clean(err.trim(), 300)
        )));
    }
    let meta = match format {
        Format::Deb => parse_deb_fields(&stdout),
        Format::Rpm => parse_rpm_line(&stdout),
    }
    .ok_or_else(|| {
        PackageError::Metadata(format!(
            "unexpected {tool} output {:?}",
            crate::audit::clean(&stdout, 200)
        ))
    })?;
    for (what, v) in [
        ("name", &meta.name),
        ("version", &meta.version),
        ("architecture", &meta.arch),
    ] {
        if !valid_field(v) {
            return Err(PackageError::Metadata(format!(
                "the package's {what} {:?} is not a valid one",
                crate::audit::clean(v, 100)
            )));
        }
    }
    Ok(meta)
}

pub(super) fn parse_deb_fields(s: &str) -> Option<Meta> {
    let mut m = HashMap::new();
    for l in s.lines() {
        if let Some((k, v)) = l.split_once(':') {
            m.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Some(Meta {
        name: m.remove("Package")?,
        version: m.remove("Version")?,
        arch: m.remove("Architecture")?,
    })
}

pub(super) fn parse_rpm_line(s: &str) -> Option<Meta> {
    let mut it = s.lines().next()?.split('\t');
    Some(Meta {
        name: it.next()?.trim().to_string(),
        version: it.next()?.trim().to_string(),
        arch: it.next()?.trim().to_string(),
    })
}

/// Name, version and architecture: 1-128 characters a package manager allows (no '=', no
/// whitespace, no control characters).
pub(super) fn valid_field(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~:".contains(&b))
}
