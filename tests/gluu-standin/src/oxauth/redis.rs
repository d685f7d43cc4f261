//! A minimal Redis (RESP2) client: enough for AUTH, SET with expiry and GET.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const IO_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BULK: i64 = 16 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connect to `host:port` and authenticate when a password is given.
    pub async fn connect(addr: &str, password: Option<&str>) -> Result<Client> {
        let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to redis at {addr}: timed out"))?
            .with_context(|| format!("connecting to redis at {addr}"))?;
        let mut client = Client {
            stream: BufReader::new(stream),
        };
        if let Some(pw) = password {
            client
                .command(&[b"AUTH", pw.as_bytes()])
                .await
                .context("redis AUTH")?;
        }
        Ok(client)
    }

    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        timeout(IO_TIMEOUT, self.stream.get_mut().write_all(&buf))
            .await
            .map_err(|_| anyhow!("redis write timed out"))?
            .context("redis write")?;
        timeout(IO_TIMEOUT, read_reply(&mut self.stream))
            .await
            .map_err(|_| anyhow!("redis read timed out"))?
    }
}

async fn read_line(r: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).await.context("redis read")?;
    if n == 0 {
        bail!("redis closed the connection");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(
    r: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => bail!("redis error: {rest}"),
            ":" => Ok(Reply::Int(rest.parse().context("redis integer")?)),
            "$" => {
                let len: i64 = rest.parse().context("redis bulk length")?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                if len > MAX_BULK {
                    bail!("redis reply too large ({len} bytes)");
                }
                let mut data = vec![0u8; len as usize + 2];
                r.read_exact(&mut data).await.context("redis read")?;
                data.truncate(len as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let len: i64 = rest.parse().context("redis array length")?;
                let mut items = Vec::new();
                for _ in 0..len.max(0) {
                    items.push(read_reply(r).await?);
                }
                Ok(Reply::Array(items))
            }
            other => bail!("unexpected redis reply type {other:?}"),
        }
    })
}
