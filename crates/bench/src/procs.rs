//! Child processes (killed on drop), CPU pinning, RSS, free ports, the fd limit and the
//! machine's description.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// A child process that is killed (SIGKILL) and reaped when dropped: on success, error and
/// panic alike. The kernel also kills it if the bench dies first (`PR_SET_PDEATHSIG`).
pub struct ChildGuard {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error, with the end of its log, when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 30)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid())?;
        // SAFETY: kill(2) with our own child's pid; it has not been reaped (we hold it).
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// The exit status, once the process has exited.
    pub fn try_exit(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Spawns `bin args` with `env` set (and the caller's `MORPHEUS_*`, `DATABASE_URL` and
/// `RUST_LOG` removed), stdout and stderr to `log`, pinned to `cpu` when given.
pub fn spawn(
    name: &str,
    bin: &Path,
    args: &[&str],
    env: &[(&str, String)],
    cpu: Option<usize>,
    log: PathBuf,
) -> Result<ChildGuard> {
    let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("MORPHEUS_") || k == "DATABASE_URL" || k == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let set = cpu.map(cpu_set);
    // SAFETY: the closure runs between fork and exec and makes only two raw system calls,
    // both async-signal-safe; `set` is a plain value copied into it.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(set) = &set
                && libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(ChildGuard {
        name: name.to_owned(),
        child,
        log,
    })
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array: all zeroes is the empty set, and CPU_SET sets
    // one bit of it (`cpu` is below the set's 1024 bits on any machine this runs on).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread (and every thread and process it creates afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    let set = cpu_set(cpu);
    // SAFETY: a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
    }
    Ok(())
}

/// `Cpus_allowed_list` of a process, as the kernel reports it ("0", "1", "0-1").
pub fn allowed_cpus(pid: u32) -> String {
    status_field(pid, "Cpus_allowed_list:").unwrap_or_else(|| "?".to_owned())
}

/// Resident set size of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let v = status_field(pid, "VmRSS:").with_context(|| format!("no VmRSS for pid {pid}"))?;
    let kib = v.trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> Result<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("fds of {pid}"))?;
    Ok(dir.count() as u64)
}

/// Threads of a process.
pub fn threads(pid: u32) -> Result<u64> {
    let v = status_field(pid, "Threads:").with_context(|| format!("no Threads for pid {pid}"))?;
    Ok(v.parse()?)
}

/// CPU time a process has used so far (user + system, `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Result<std::time::Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .context("odd /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Ok(std::time::Duration::from_secs_f64(
        ticks as f64 / per_second.max(1) as f64,
    ))
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// Raises the soft open-files limit to the hard one (children inherit it); returns it.
pub fn raise_nofile() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill / to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit");
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error()).context("setrlimit");
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// CPU model, core count, kernel, memory and load when the run started.
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_mib: u64,
    pub load_at_start: String,
    /// How an idle core waits, which sets the price of every cross-core wake-up (see
    /// [`idle_policy`]).
    pub idle_policy: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| format!("Linux {}", k.trim()));
        let memory_mib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        Self {
            cpu_model,
            cores,
            kernel,
            memory_mib,
            load_at_start: load_average(),
            idle_policy: idle_policy(),
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{} × {} cores, {}, {} MiB RAM, idle: {}, load average at start {}",
            self.cpu_model,
            self.cores,
            self.kernel,
            self.memory_mib,
            self.idle_policy,
            self.load_at_start
        )
    }
}

/// The cpuidle driver and, under a hypervisor's `haltpoll` driver, how long an idle virtual
/// core polls before it halts. At 0 every idle wait is a halt, so waking the core is an exit to
/// the host: the gateway lane pays four such wake-ups per request at c=1 (load generator →
/// gateway → simulator → gateway → load generator, across the pinned cores), the direct lane
/// none. On our CI machines (`haltpoll.guest_halt_poll_ns=0`) that is most of the added p50.
pub fn idle_policy() -> String {
    let read = |path: &str| fs::read_to_string(path).ok().map(|v| v.trim().to_owned());
    let driver =
        read("/sys/devices/system/cpu/cpuidle/current_driver").unwrap_or_else(|| "none".to_owned());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if driver == "haltpoll" => format!("{driver}, guest_halt_poll_ns {ns}"),
        _ => driver,
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
