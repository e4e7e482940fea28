//! Readings of the gateway process from `/proc`: CPU use over a span, the RSS peak while
//! something runs, and the periodic samples of the soak.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use morpheus_bench::procs;
use serde_json::{Value, json};

/// CPU used by a process between [`CpuMeter::start`] and [`CpuMeter::percent`], in percent of
/// one core.
pub struct CpuMeter {
    pid: u32,
    cpu: Duration,
    wall: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            cpu: procs::cpu_time(pid).unwrap_or_default(),
            wall: Instant::now(),
        }
    }

    pub fn percent(&self) -> f64 {
        let used = procs::cpu_time(self.pid)
            .unwrap_or_default()
            .saturating_sub(self.cpu);
        let pct = used.as_secs_f64() / self.wall.elapsed().as_secs_f64() * 100.0;
        (pct * 10.0).round() / 10.0
    }
}

/// Samples a process's RSS every 10 ms in the background until stopped; returns the peak (KiB).
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssPeak {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Relaxed) {
                peak = peak.max(procs::rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak.max(procs::rss_kib(pid).unwrap_or(0))
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// One reading of the soak.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_seconds: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

/// Readings of RSS making one sample, 10 ms apart.
const RSS_READINGS: usize = 20;

impl Sample {
    /// RSS is the least of [`RSS_READINGS`] readings over 0.2 s: a login's argon2 holds 19 MiB
    /// for the 25 ms it runs, and whether one happens to run at the moment of a single reading
    /// would swing the figure by 19 MiB. The floor is what stays.
    pub async fn take(pid: u32, since: Instant, db: &Path) -> Self {
        let mut rss_kib = u64::MAX;
        for _ in 0..RSS_READINGS {
            rss_kib = rss_kib.min(procs::rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            at_seconds: since.elapsed().as_secs_f64(),
            rss_kib,
            fds: procs::fd_count(pid).unwrap_or(0),
            threads: procs::threads(pid).unwrap_or(0),
            db_bytes: size(db),
            wal_bytes: size(Path::new(&wal)),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "at_s": (self.at_seconds * 10.0).round() / 10.0,
            "rss_kib": self.rss_kib,
            "fds": self.fds,
            "threads": self.threads,
            "db_bytes": self.db_bytes,
            "wal_bytes": self.wal_bytes,
        })
    }
}

/// The least-squares slope of `(x, y)` points, in y per x; 0 for fewer than two points.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line_and_of_noise_around_it() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        let s = slope(&[(0.0, 0.0), (1.0, 2.0), (2.0, 1.0), (3.0, 3.0)]);
        assert!((s - 0.8).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[(1.0, 7.0)]), 0.0);
    }
}

/// A process's open descriptors split by what they are: TCP connections accepted on
/// `listen_port`, TCP connections to `upstream_port`, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fds {
    pub inbound: u64,
    pub upstream: u64,
    pub other: u64,
}

impl Fds {
    pub fn total(&self) -> u64 {
        self.inbound + self.upstream + self.other
    }

    pub fn read(pid: u32, listen_port: u16, upstream_port: u16) -> anyhow::Result<Self> {
        let ports = tcp_ports(pid)?;
        let mut fds = Self {
            inbound: 0,
            upstream: 0,
            other: 0,
        };
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            let Ok(link) = std::fs::read_link(entry?.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok());
            match inode.and_then(|i| ports.get(&i)) {
                // The listening socket itself has no remote port; it stays in "other".
                Some(&(local, remote)) if local == listen_port && remote != 0 => fds.inbound += 1,
                Some(&(_, remote)) if remote == upstream_port => fds.upstream += 1,
                _ => fds.other += 1,
            }
        }
        Ok(fds)
    }
}

/// (local port, remote port) of every IPv4 TCP socket in the process's network namespace,
/// by inode.
fn tcp_ports(pid: u32) -> anyhow::Result<std::collections::HashMap<u64, (u16, u16)>> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))?;
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let inode = f.get(9)?.parse().ok()?;
            Some((inode, (port(f.get(1)?), port(f.get(2)?))))
        })
        .collect())
}
