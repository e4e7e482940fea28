//! Several gateway replicas behind nginx, started as `deploy/` describes a deployment: each
//! replica from the systemd unit's `Environment=` and `ExecStart=` lines, nginx from the
//! rendered `deploy/nginx` template. For the tests that need replicas (and later ones: give
//! `extra_env`, e.g. a Redis URL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use morpheus_gateway::configuration::Settings;

use crate::helpers::{PASSWORD, unique_email};
use crate::process::GatewayProcess;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/morpheus-gateway@.service"
);
const RENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/render");

/// The replicas, nginx in front of them, and the secrets they share.
pub struct Replicas {
    pub gateways: Vec<GatewayProcess>,
    pub nginx: Nginx,
    /// Bearer token for each replica's `GET /metrics` (production mode).
    pub metrics_token: String,
    _dir: tempfile::TempDir,
}

/// A random secret: 32 bytes, hex.
fn random_hex() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Replicas {
    /// `count` replicas on the database and proxy-router of `settings`, with fresh secrets,
    /// behind nginx.
    pub async fn start(settings: &Settings, count: usize, extra_env: &[(&str, &str)]) -> Replicas {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics_token = random_hex();
        // What /etc/morpheus-gateway/gateway.env would hold.
        let mut env_file: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), settings.database_url.clone()),
            ("MORPHEUS_JWT_SECRET".into(), random_hex()),
            ("MORPHEUS_API_KEY_PEPPER".into(), random_hex()),
            ("MORPHEUS_WALLET_MASTER_KEY".into(), random_hex()),
            ("MORPHEUS_METRICS_TOKEN".into(), metrics_token.clone()),
            ("MORPHEUS_WORKERS".into(), "1".into()),
            ("MORPHEUS_CHAT_SHED_LATENESS_MS".into(), "0".into()),
        ];
        if let Some(url) = &settings.proxy_router_url {
            env_file.push(("MORPHEUS_PROXY_ROUTER_URL".into(), url.clone()));
            env_file.push(("MORPHEUS_PROXY_ROUTER_USER".into(), "morpheus".into()));
            env_file.push((
                "MORPHEUS_PROXY_ROUTER_PASSWORD".into(),
                "sim-password".into(),
            ));
        }
        let mut gateways = Vec::new();
        for i in 0..count {
            let data_dir = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir_all(&data_dir).unwrap();
            let mut command = unit_command(&data_dir);
            for (k, v) in &env_file {
                command.env(k, v);
            }
            for (k, v) in extra_env {
                command.env(k, v);
            }
            gateways.push(GatewayProcess::spawn(command).await);
        }
        let upstreams: Vec<String> = gateways
            .iter()
            .map(|g| g.address.trim_start_matches("http://").to_owned())
            .collect();
        let nginx = Nginx::start(&dir.path().join("nginx"), &upstreams).await;
        Replicas {
            gateways,
            nginx,
            metrics_token,
            _dir: dir,
        }
    }

    /// A URL through nginx.
    pub fn url(&self, path: &str) -> String {
        self.nginx.url(path)
    }

    /// A new account, registered and logged in through nginx: its id and access token.
    pub async fn sign_up(&self, client: &reqwest::Client) -> (i64, String) {
        let credentials = serde_json::json!({"email": unique_email(), "password": PASSWORD});
        let r = client
            .post(self.url("/api/v1/auth/register"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap();
        let tokens: serde_json::Value = client
            .post(self.url("/api/v1/auth/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (id, tokens["access_token"].as_str().unwrap().to_owned())
    }
}

/// The unit's command line and environment, `%i` (the port) set to 0: any free port.
fn unit_command(data_dir: &Path) -> Command {
    let unit = std::fs::read_to_string(UNIT).expect("the systemd unit");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has ExecStart=");
    let mut words = exec.split_whitespace().map(|w| w.replace("%i", "0"));
    let binary = words.next().expect("a program");
    assert!(binary.ends_with("/morpheus-gateway"), "{binary}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_morpheus-gateway"));
    command
        .args(words)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    for assignment in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (key, value) = assignment.split_once('=').expect("KEY=value");
        command.env(key, value);
    }
    // The unit's StateDirectory, here.
    command.env("MORPHEUS_DATA_DIR", data_dir);
    command
}

/// nginx (Debian's package), run by the test from the rendered template.
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// Renders `deploy/nginx` for `upstreams` (`host:port`) into `dir`, starts nginx on a free
    /// port and waits until it answers.
    pub async fn start(dir: &Path, upstreams: &[String]) -> Nginx {
        let nginx = which("nginx").expect(
            "nginx is needed for the replica tests: apt-get install nginx (.ci/run installs it)",
        );
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let port = free_port();
        let rendered = Command::new(RENDER)
            .arg(format!("127.0.0.1:{port}"))
            .args(upstreams)
            .output()
            .expect("deploy/nginx/render runs");
        assert!(rendered.status.success(), "{rendered:?}");
        std::fs::write(dir.join("morpheus-gateway.conf"), &rendered.stdout).unwrap();
        // The main file a distribution would have, with everything in `dir`. Workers run as
        // nobody when the test runs as root: they must be able to use the temp directories.
        let temp = dir.join("temp");
        std::fs::create_dir_all(&temp).unwrap();
        set_mode(dir, 0o755);
        set_mode(&temp, 0o777);
        let main = format!(
            "worker_processes 1;\n\
             error_log {dir}/logs/error.log warn;\n\
             pid {dir}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {temp}/body;\n\
               proxy_temp_path {temp}/proxy;\n\
               fastcgi_temp_path {temp}/fastcgi;\n\
               uwsgi_temp_path {temp}/uwsgi;\n\
               scgi_temp_path {temp}/scgi;\n\
               include {dir}/morpheus-gateway.conf;\n\
             }}\n",
            dir = dir.display(),
            temp = temp.display(),
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx does not listen; {}",
                std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&format!("{path}:/usr/sbin:/sbin"))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A port nothing listens on now (nginx cannot be asked to pick one and tell).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
