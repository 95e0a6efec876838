//! A throwaway PostgreSQL server for tests (feature `testing`): `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port (and a unix socket in the same
//! directory), databases created on demand, stopped (immediate) on drop. Debian's server
//! binaries are found through `pg_config --bindir` or `/usr/lib/postgresql/*/bin`. As
//! root (CI) the server runs as the `postgres` user, since PostgreSQL refuses root.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

/// See the module doc.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl TestPostgres {
    /// Starts a fresh server; panics with the server's log if it does not come up.
    pub fn start() -> TestPostgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("minotaur-pg-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the test database directory to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = TestPostgres { dir, bin, port };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        pg.start_server();
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (create `db` with [`Self::create_db`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (idempotent).
    pub fn create_db(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                "postgres",
                "-qtc",
                &format!("CREATE DATABASE \"{name}\""),
            ])
            .output()
            .expect("psql");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("already exists"),
            "CREATE DATABASE {name}: {err}"
        );
        self.url(name)
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint) and starts it
    /// again on the same data and port.
    pub fn crash_restart(&self) {
        self.stop();
        self.start_server();
    }

    /// Stops the server (immediate).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Starts the server again after [`Self::stop`].
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let ok = self.try_run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if !ok {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the test PostgreSQL did not start:\n{log}");
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        assert!(self.try_run(tool, args), "{tool} {args:?} failed");
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
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
    found.sort();
    found
        .pop()
        .filter(|p| Path::new(p).join("initdb").exists())
        .expect("PostgreSQL server binaries (apt-get install postgresql)")
}
