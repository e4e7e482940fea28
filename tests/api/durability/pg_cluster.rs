//! A throwaway PostgreSQL cluster of our own, on a free port, so F2 can crash and stop it
//! without touching the shared server on 5432. Needs root (initdb runs as `postgres`).

use std::path::PathBuf;
use std::process::Command;

use diesel::{Connection, PgConnection, RunQueryDsl};

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<major>/bin`).
fn server_binaries() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("F2 needs a PostgreSQL server installed under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        let major = bin.parent().and_then(|p| p.file_name());
        major.and_then(|m| m.to_str()?.parse::<u32>().ok())
    });
    found.pop().expect("F2 needs initdb (Debian: postgresql)")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl PgCluster {
    /// initdb (trust authentication) and start, with `synchronous_commit=on`: a commit is
    /// acknowledged only once its WAL is flushed.
    pub fn start() -> PgCluster {
        assert!(
            Command::new("id").arg("-u").output().ok().map(|o| o.stdout) == Some(b"0\n".to_vec()),
            "F2 needs root: initdb must run as the postgres user"
        );
        let bin = server_binaries();
        let dir = tempfile::Builder::new()
            .prefix("durability-pg-")
            .tempdir()
            .expect("a cluster directory");
        run("chown", &["postgres:postgres", path_str(dir.path())]);
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
        };
        let initdb = cluster.bin.join("initdb");
        let data = cluster.data();
        as_postgres(
            &initdb,
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        cluster.start_server();
        cluster
    }

    fn data(&self) -> String {
        format!("{}/data", path_str(self.dir.path()))
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on",
            self.port,
            path_str(self.dir.path())
        );
        let log = format!("{}/server.log", path_str(self.dir.path()));
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        as_postgres(
            &pg_ctl,
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// `pg_ctl stop -m immediate`: every server process exits at once, without a checkpoint,
    /// as in a crash; the next start replays the WAL.
    pub fn crash(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        as_postgres(&pg_ctl, &["-D", &data, "-m", "immediate", "stop"]);
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let mut conn = PgConnection::establish(&admin).expect("connect to the private cluster");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .expect("create a database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Even when a check failed half-way: no server may outlive its test.
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// initdb and the server refuse to run as root.
fn as_postgres(program: &std::path::Path, args: &[&str]) {
    let mut all = vec!["-u", "postgres", "--", path_str(program)];
    all.extend_from_slice(args);
    run("runuser", &all);
}
