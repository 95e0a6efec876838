//! `TestPostgres` (feature `testing`): a real, throwaway PostgreSQL server for the tests of
//! this crate and of the node's cluster — `initdb` into a temporary directory, `pg_ctl
//! start` on a free loopback port (its unix socket in the same directory), databases
//! created on demand, restarted or crashed on request, stopped (immediate) on drop.
//! Debian's server binaries are found through `pg_config --bindir` or
//! `/usr/lib/postgresql/*/bin` (`scripts/setup.sh` installs them). PostgreSQL refuses to
//! run as root, so as root (CI containers) every server command runs as `postgres`.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// See the module doc.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    root: bool,
}

impl TestPostgres {
    /// Initialises and starts a fresh server on a free loopback port.
    pub fn start() -> TestPostgres {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        TestPostgres::start_on(port)
    }

    /// Initialises and starts a fresh server on `port` (a free one: see the cluster
    /// harness's port allocator); panics with the server log if it does not come up.
    pub fn start_on(port: u16) -> TestPostgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("minotaur-pg-")
            .tempdir()
            .expect("temp dir");
        let root = is_root();
        if root {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the test database directory to postgres");
        }
        let pg = TestPostgres {
            dir,
            bin,
            port,
            root,
        };
        let data = pg.data();
        // `--no-sync` and `fsync=off` below: a crash here is a process crash, never an OS
        // one, so what a commit wrote reaches the page cache and survives either way.
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_server();
        pg
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (create `db` with [`Self::create_db`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`; returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(name)
    }

    /// Runs `sql` in database `db` with psql; rows as lines, columns separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .psql_command(db, sql)
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Like [`Self::psql`], without blocking the async runtime.
    pub async fn query(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = tokio::process::Command::from(self.psql_command(db, sql))
            .output()
            .await
            .map_err(|e| format!("running psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn psql_command(&self, db: &str, sql: &str) -> Command {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let mut c = Command::new(psql);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-d",
            db,
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .stdin(Stdio::null());
        c
    }

    /// A clean restart (`pg_ctl restart -m fast`: connections are cut, then the server is
    /// back on the same data and port).
    pub fn restart(&self) {
        let opts = self.server_options();
        let log = self.log_path();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ],
        );
    }

    /// A crash and a restart: `-m immediate` (no checkpoint; recovery replays the WAL).
    pub fn crash_restart(&self) {
        self.stop();
        self.start_server();
    }

    /// Stops the server as a crash would (`-m immediate`).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts the server (again, after [`Self::stop`]).
    pub fn start_server(&self) {
        let opts = self.server_options();
        let log = self.log_path();
        if !self.try_run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        ) {
            panic!("the test PostgreSQL did not start:\n{}", self.log_tail(40));
        }
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.path().display()
        )
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_path(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        assert!(
            self.try_run(tool, args),
            "{tool} {args:?} failed; server log:\n{}",
            self.log_tail(20)
        );
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool);
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The server's own output goes to its log (`-l`): with pg_ctl's stdout piped, the
        // daemon would hold the pipe open.
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.try_run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory of `initdb`, `pg_ctl` and `postgres`.
fn bindir() -> PathBuf {
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.join("initdb").exists() {
            return p;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| Path::new(p).join("initdb").exists());
    found.sort();
    found
        .pop()
        .expect("PostgreSQL server binaries (initdb, pg_ctl): `apt-get install postgresql` (scripts/setup.sh does)")
}
