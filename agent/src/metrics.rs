//! Host metrics: one long-lived sampler (sysinfo) samples on the agent's interval; samples wait
//! in a bounded buffer until a session sends them, so a controller outage loses none of the
//! last [`BUFFER`] samples.
//!
//! On a sandbox host (its own root on a shared machine), only processes whose command line
//! names the host's root count as its services.

use clustermgr_proto::{HealthConfig, LdapsBind, MetricPoint, MetricsSample, health_probe};
use clustermgr_shared::exposition::label;
use clustermgr_shared::util::now_ms;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
use tokio::sync::Notify;

/// Samples kept while no session is up (an hour at 15 s; older ones are dropped first).
pub const BUFFER: usize = 240;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// The services whose processes are watched: name, and what identifies one of its processes
/// (program name or a command-line fragment).
const SERVICES: &[(&str, &[&str])] = &[
    (
        "oxauth",
        &["oxauth.war", "jetty/oxauth", "gluu-standin oxauth"],
    ),
    ("identity", &["identity.war", "jetty/identity"]),
    ("ldap", &["slapd", "opendj"]),
    ("httpd", &["apache2", "httpd"]),
    ("nginx", &["nginx"]),
    ("redis", &["redis-server"]),
    ("stunnel", &["stunnel"]),
    ("twemproxy", &["nutcracker"]),
];

/// What the session takes from.
#[derive(Default)]
pub struct Buffer {
    samples: Mutex<VecDeque<MetricsSample>>,
    pub ready: Notify,
    /// The directory whose operation counters are read, from the controller's latest health
    /// configuration (its `ldap` check: address, directory manager and password).
    directory: Mutex<Option<(crate::ops::Ctx, LdapsBind)>>,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, VecDeque<MetricsSample>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, s: MetricsSample) {
        let mut q = self.lock();
        if q.len() == BUFFER {
            q.pop_front();
        }
        q.push_back(s);
        drop(q);
        self.ready.notify_one();
    }

    /// Everything buffered, oldest first.
    pub fn take(&self) -> Vec<MetricsSample> {
        self.lock().drain(..).collect()
    }

    /// Puts back samples a session could not send (in front of newer ones).
    pub fn put_back(&self, samples: Vec<MetricsSample>) {
        let mut q = self.lock();
        for s in samples.into_iter().rev() {
            if q.len() == BUFFER {
                break;
            }
            q.push_front(s);
        }
    }

    /// The health configuration's LDAPS target (None: no directory on this node).
    pub fn set_directory(&self, ctx: &crate::ops::Ctx, config: &HealthConfig) {
        let target = config.probes.iter().find_map(|p| match &p.check {
            Some(health_probe::Check::Ldaps(b)) => Some(b.clone()),
            _ => None,
        });
        *self.directory.lock().unwrap_or_else(|e| e.into_inner()) =
            target.map(|t| (ctx.clone(), t));
    }

    fn directory(&self) -> Option<(crate::ops::Ctx, LdapsBind)> {
        self.directory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Sampler {
    sys: System,
    disks: Disks,
    nets: Networks,
    /// The host's root when it is a sandbox host (processes must name it).
    sandbox_root: Option<String>,
}

fn point(name: &str, labels: String, value: f64) -> MetricPoint {
    MetricPoint {
        name: name.to_string(),
        labels,
        value,
    }
}

/// CPU times (seconds) from /proc/stat's first line: user, nice, system, idle, iowait, irq,
/// softirq, steal (USER_HZ = 100 on Linux).
fn cpu_times() -> Vec<(&'static str, f64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    let Some(line) = stat.lines().next() else {
        return Vec::new();
    };
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    line.split_whitespace()
        .skip(1)
        .zip(MODES)
        .filter_map(|(v, m)| v.parse::<f64>().ok().map(|v| (m, v / 100.0)))
        .collect()
}

impl Sampler {
    pub fn new(root: &Path) -> Result<Self, sysinfo::Error> {
        let sandbox_root = (root != Path::new("/")).then(|| {
            std::fs::canonicalize(root)
                .unwrap_or_else(|_| PathBuf::from(root))
                .to_string_lossy()
                .into_owned()
        });
        let mut sys = System::new()?;
        sys.refresh_cpu_usage();
        Ok(Self {
            sys,
            disks: Disks::new_with_refreshed_list()?,
            nets: Networks::new_with_refreshed_list()?,
            sandbox_root,
        })
    }

    pub fn sample(&mut self) -> MetricsSample {
        let mut p = Vec::new();
        self.cpu_and_memory(&mut p);
        self.disks_and_networks(&mut p);
        self.services(&mut p);
        MetricsSample {
            unix_ms: now_ms(),
            points: p,
        }
    }

    /// CPU use and times, load averages, memory and swap.
    fn cpu_and_memory(&mut self, p: &mut Vec<MetricPoint>) {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        p.push(point(
            "cpu_usage_percent",
            String::new(),
            f64::from(self.sys.global_cpu_usage()),
        ));
        for (mode, secs) in cpu_times() {
            p.push(point("cpu_seconds_total", label("mode", mode), secs));
        }
        if let Ok(l) = System::load_average() {
            p.push(point("load1", String::new(), l.one));
            p.push(point("load5", String::new(), l.five));
            p.push(point("load15", String::new(), l.fifteen));
        }
        p.push(point(
            "memory_total_bytes",
            String::new(),
            self.sys.total_memory() as f64,
        ));
        p.push(point(
            "memory_used_bytes",
            String::new(),
            self.sys.used_memory() as f64,
        ));
        p.push(point(
            "memory_available_bytes",
            String::new(),
            self.sys.available_memory() as f64,
        ));
        p.push(point(
            "swap_used_bytes",
            String::new(),
            self.sys.used_swap() as f64,
        ));
    }

    /// Each mount's size and use, each network interface's byte counters.
    fn disks_and_networks(&mut self, p: &mut Vec<MetricPoint>) {
        self.disks.refresh(true);
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.disks {
            let mount = d.mount_point().to_string_lossy().into_owned();
            if !seen.insert(mount.clone()) {
                continue;
            }
            let total = d.total_space() as f64;
            let used = total - d.available_space() as f64;
            p.push(point("disk_total_bytes", label("mount", &mount), total));
            p.push(point("disk_used_bytes", label("mount", &mount), used));
        }
        self.nets.refresh(true);
        for (name, n) in &self.nets {
            let name = name.to_string_lossy();
            let name = name.as_ref();
            p.push(point(
                "network_receive_bytes_total",
                label("nic", name),
                n.total_received() as f64,
            ));
            p.push(point(
                "network_transmit_bytes_total",
                label("nic", name),
                n.total_transmitted() as f64,
            ));
        }
    }

    /// The Gluu services' processes: up, and their resident memory.
    fn services(&mut self, p: &mut Vec<MetricPoint>) {
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cmd(UpdateKind::OnlyIfNotSet),
        );
        let mut per: BTreeMap<&str, (u32, u64)> =
            SERVICES.iter().map(|(s, _)| (*s, (0, 0))).collect();
        for proc_ in self.sys.processes().values() {
            let name = proc_.name().to_string_lossy();
            let cmd: String = proc_
                .cmd()
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(root) = &self.sandbox_root
                && !cmd.contains(root.as_str())
            {
                continue;
            }
            // The program's own name first (stunnel's command line names a redis config),
            // then command-line markers (Java services, the stand-in).
            let by_name = SERVICES
                .iter()
                .find(|(_, marks)| marks.iter().any(|m| name.starts_with(m)));
            let found = by_name.or_else(|| {
                SERVICES
                    .iter()
                    .find(|(_, marks)| marks.iter().any(|m| cmd.contains(m)))
            });
            if let Some((svc, _)) = found {
                let e = per.entry(svc).or_default();
                e.0 += 1;
                e.1 += proc_.memory();
            }
        }
        for (svc, (count, rss)) in per {
            if count == 0 {
                continue;
            }
            p.push(point("process_up", label("service", svc), 1.0));
            p.push(point(
                "process_resident_bytes",
                label("service", svc),
                rss as f64,
            ));
        }
    }
}

/// Adds `ldap_operations_total{op=...}` from the directory the health configuration names.
fn add_directory_counters(
    rt: &tokio::runtime::Handle,
    (ctx, target): &(crate::ops::Ctx, LdapsBind),
    sample: &mut MetricsSample,
) {
    let read = rt.block_on(async {
        tokio::time::timeout(
            crate::ldap_stats::TIMEOUT,
            crate::ldap_stats::read(ctx, target),
        )
        .await
    });
    match read {
        Ok(Ok(ops)) => {
            for (op, n) in ops {
                sample
                    .points
                    .push(point("ldap_operations_total", label("op", op), n as f64));
            }
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "no directory operation counters"),
        Err(_) => tracing::debug!("no directory operation counters within 5 s"),
    }
}

/// Samples every `interval` into `buffer`, for the agent's whole life. Called inside the
/// agent's runtime (the directory's counters are read on it).
pub fn start(root: PathBuf, interval: Duration, buffer: Arc<Buffer>) {
    let rt = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut s = match Sampler::new(&root) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no metrics: cannot read the host's statistics");
                    return;
                }
            };
            // CPU usage needs two readings apart.
            std::thread::sleep(Duration::from_millis(200));
            loop {
                let mut sample = s.sample();
                if let (Some(rt), Some(dir)) = (&rt, buffer.directory()) {
                    add_directory_counters(rt, &dir, &mut sample);
                }
                buffer.push(sample);
                std::thread::sleep(interval);
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot start the metrics sampler"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_has_the_host_metrics() {
        let mut s = Sampler::new(Path::new("/")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let sample = s.sample();
        let names: std::collections::BTreeSet<&str> =
            sample.points.iter().map(|p| p.name.as_str()).collect();
        for n in [
            "cpu_usage_percent",
            "cpu_seconds_total",
            "load1",
            "load15",
            "memory_total_bytes",
            "memory_used_bytes",
            "disk_used_bytes",
            "network_receive_bytes_total",
        ] {
            assert!(names.contains(n), "{n} missing from {names:?}");
        }
        let total = sample
            .points
            .iter()
            .find(|p| p.name == "memory_total_bytes")
            .unwrap()
            .value;
        assert!(total > 1e6, "{total}");
        assert!(
            sample
                .points
                .iter()
                .any(|p| p.name == "cpu_seconds_total" && p.labels == "mode=\"idle\"")
        );
    }

    #[test]
    fn the_buffer_keeps_the_newest_and_puts_unsent_samples_back_in_order() {
        let b = Buffer::default();
        for i in 0..(BUFFER as u64 + 5) {
            b.push(MetricsSample {
                unix_ms: i,
                points: Vec::new(),
            });
        }
        assert_eq!(b.len(), BUFFER);
        let taken = b.take();
        assert_eq!(taken.first().unwrap().unix_ms, 5, "the oldest were dropped");
        assert!(b.is_empty());
        b.push(MetricsSample {
            unix_ms: 1000,
            points: Vec::new(),
        });
        b.put_back(taken[..3].to_vec());
        let again: Vec<u64> = b.take().iter().map(|s| s.unix_ms).collect();
        assert_eq!(again, vec![5, 6, 7, 1000]);
    }
}
