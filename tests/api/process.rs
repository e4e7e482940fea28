//! The gateway as a separate process (the real binary), for what only a process can show:
//! signals, and two replicas that share nothing but the database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use morpheus_gateway::configuration::Settings;
use serde_json::Value;

use crate::helpers::{JWT_SECRET, MASTER_KEY_HEX, PEPPER, TestApp};

pub struct GatewayProcess {
    pub child: Child,
    pub address: String,
    /// The process's log lines (JSON), as they arrive.
    pub logs: std::sync::mpsc::Receiver<String>,
}

impl GatewayProcess {
    /// Starts the binary on the same database, secrets and proxy-router as `app`, on a port of
    /// its own, and waits until it listens.
    pub async fn beside(app: &TestApp, extra_env: &[(&str, &str)]) -> GatewayProcess {
        GatewayProcess::start(&app.settings, extra_env).await
    }

    /// Starts the binary on the database, data directory and proxy-router of `settings`, with
    /// the test secrets, and waits until it listens.
    pub async fn start(settings: &Settings, extra_env: &[(&str, &str)]) -> GatewayProcess {
        GatewayProcess::launch(settings, extra_env, None).await
    }

    /// [`GatewayProcess::start`], with the process's open-file limit (`RLIMIT_NOFILE`, soft and
    /// hard) lowered to `open_files`.
    pub async fn start_with_open_files(
        settings: &Settings,
        extra_env: &[(&str, &str)],
        open_files: u64,
    ) -> GatewayProcess {
        GatewayProcess::launch(settings, extra_env, Some(open_files)).await
    }

    async fn launch(
        settings: &Settings,
        extra_env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_morpheus-gateway"));
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: between fork and exec the closure only calls setrlimit, which is
            // async-signal-safe, on a struct it owns.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MORPHEUS_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &settings.database_url)
            .env("MORPHEUS_DATA_DIR", &settings.data_dir)
            .env("MORPHEUS_JWT_SECRET", JWT_SECRET)
            .env("MORPHEUS_API_KEY_PEPPER", PEPPER)
            .env("MORPHEUS_WALLET_MASTER_KEY", MASTER_KEY_HEX)
            .env("MORPHEUS_LOG_FORMAT", "json")
            .env("MORPHEUS_WORKERS", "1")
            // As in the in-process harness: no load shedding in a debug build's tests.
            .env("MORPHEUS_CHAT_SHED_LATENESS_MS", "0")
            .env("RUST_LOG", "info");
        if let Some(url) = &settings.proxy_router_url {
            command
                .env("MORPHEUS_PROXY_ROUTER_URL", url)
                .env("MORPHEUS_PROXY_ROUTER_USER", "morpheus")
                .env("MORPHEUS_PROXY_ROUTER_PASSWORD", "sim-password");
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        GatewayProcess::spawn(command).await
    }

    /// Starts `command` (the gateway binary, logging JSON on stdout) and waits until it
    /// listens.
    pub async fn spawn(mut command: Command) -> GatewayProcess {
        command
            .stdout(Stdio::piped())
            // Only a panic writes there: it belongs in the test's output.
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the gateway binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Polled, not blocked on: the test's runtime also runs the simulator this process
        // talks to while it starts.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let address = loop {
            let line = match logs.try_recv() {
                Ok(line) => line,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the gateway did not log that it listens"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    panic!("the gateway exited before listening")
                }
            };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "morpheus-gateway listening" {
                let bound = event["fields"]["address"].as_str().expect("address");
                break format!("http://{bound}");
            }
        };
        GatewayProcess {
            child,
            address,
            logs,
        }
    }

    /// The process's resident memory (`VmRSS`) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.child.id())
    }

    /// How many file descriptors the process has open.
    pub fn open_fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .ok()
            .map(Iterator::count)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends `signal` (`TERM`, `INT`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The log lines received so far.
    pub fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory (`VmRSS`) in KiB (callable from a sampling thread).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
