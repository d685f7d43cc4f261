//! A real browser for the web console's tests: headless Chromium driven through chromedriver's
//! W3C WebDriver endpoint (plain HTTP on loopback, spoken here with a few lines of HTTP/1.1 over
//! a `TcpStream`: no client library). Screenshots go to `target/console-screens/` so a person
//! can look at each screen after a run.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    pub shots: PathBuf,
}

/// Where chromedriver is, if installed (Debian's `chromium-driver`).
pub fn driver_path() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connect to chromedriver")?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut buf = Vec::new();
    match len {
        Some(n) => {
            buf.resize(n, 0);
            r.read_exact(&mut buf)?;
        }
        None => {
            r.read_to_end(&mut buf)?;
        }
    }
    let v: Value = serde_json::from_slice(&buf)
        .with_context(|| format!("{method} {path}: {status}: not JSON"))?;
    if let Some(e) = v["value"]["error"].as_str() {
        bail!("{method} {path}: {e}: {}", v["value"]["message"]);
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session that accepts the test controller's
    /// certificate (issued by its own CA).
    pub fn start(name: &str) -> Result<Self> {
        Self::start_with(name, &[])
    }

    /// [`Browser::start`] with more Chromium arguments (e.g. `--host-resolver-rules=MAP ...`
    /// for an OpenID Provider known by a name the host does not resolve).
    pub fn start_with(name: &str, extra_args: &[&str]) -> Result<Self> {
        let path = driver_path().ok_or_else(|| anyhow!("chromedriver is not installed"))?;
        let port = crate::free_port();
        let driver = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match http(port, "GET", "/status", None) {
                Ok(v) if v["ready"] == true => break,
                _ if Instant::now() > deadline => bail!("chromedriver did not become ready"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
        ];
        args.extend_from_slice(extra_args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"args": args}
        }}});
        let mut b = Self {
            driver,
            port,
            session: String::new(),
            shots: crate::bin_dir().join("console-screens").join(name),
        };
        let v = http(port, "POST", "/session", Some(&caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id: {v}"))?
            .to_string();
        std::fs::create_dir_all(&b.shots)?;
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    pub fn go(&self, url: &str) -> Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .map(|_| ())
    }

    pub fn url(&self) -> Result<String> {
        Ok(self
            .call("GET", "/url", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub fn source(&self) -> Result<String> {
        Ok(self
            .call("GET", "/source", None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    fn find(&self, css: &str) -> Result<String> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{css}: no element in {v}"))
    }

    /// Whether an element matches `css` now.
    pub fn has(&self, css: &str) -> Result<bool> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array().is_some_and(|a| !a.is_empty()))
    }

    /// Types `text` into the field `css` (cleared first).
    pub fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})))?;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})))?;
        Ok(())
    }

    /// The element's text. A live part of the page may replace the element between finding it
    /// and reading it (a stale reference): it is found again.
    pub fn text(&self, css: &str) -> Result<String> {
        let mut tries = 0;
        loop {
            let e = self.find(css)?;
            match self.call("GET", &format!("/element/{e}/text"), None) {
                Ok(v) => return Ok(v.as_str().unwrap_or_default().to_string()),
                Err(err) if tries < 10 && err.to_string().contains("stale element") => {
                    tries += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Accepts the open dialog (a `data-confirm` button's question).
    pub fn accept_dialog(&self) -> Result<()> {
        self.call("POST", "/alert/accept", Some(json!({})))?;
        Ok(())
    }

    /// Runs `js` (a function body; `return` gives the value) in the page. WebDriver's scripts
    /// are not the page's: the CSP does not apply to them.
    pub fn script(&self, js: &str) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }

    /// The text of every element matching `css`, in document order.
    pub fn texts(&self, css: &str) -> Result<Vec<String>> {
        let v = self.script(&format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.textContent.trim());",
            serde_json::to_string(css)?
        ))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Saves the page as `NAME.png` in [`Browser::shots`].
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .context("screenshot: not base64")?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The browser's console messages since the last call (CSP violations show here).
    pub fn console(&self) -> Result<Vec<String>> {
        let v = self.call("POST", "/se/log", Some(json!({"type": "browser"})))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits (up to `within`) until `f` holds of the page, checked as the page changes.
    pub fn wait_until(
        &self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if f(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {within:?}; page:\n{}", self.source()?);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
