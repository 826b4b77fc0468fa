//! A real PostgreSQL server on a free loopback port, in a data directory of its own, for as
//! long as the test holds it.
//!
//! The binaries are looked for on `PATH`, then where Debian's `postgresql` package puts them
//! (`/usr/lib/postgresql/<version>/bin`). Without them the tests print why and skip, unless
//! `PERF_REQUIRE_POSTGRES=1` (set by `.ci/run`). PostgreSQL refuses to run as root: as root,
//! the server runs as the `postgres` user (or `nobody`), which owns its data directory.

use std::{
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub(crate) struct PostgresServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl PostgresServer {
    /// Starts a server with an empty `postgres` database, or returns `None` (having said
    /// why) when there are no binaries and PostgreSQL is not required.
    pub(crate) fn start() -> Option<Self> {
        let Some(bin) = binaries() else {
            let required = std::env::var("PERF_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "PERF_REQUIRE_POSTGRES=1 but no initdb and postgres binaries were found"
            );
            eprintln!("skipping: no PostgreSQL binaries (install postgresql to run)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free loopback port");
        let dir = std::env::temp_dir().join(format!("perf-postgres-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("the data directory made private");
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("the data directory given");
        }
        let data = dir.join("data");

        let initdb = as_user(Command::new(bin.join("initdb")), user)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );

        let log = std::fs::File::create(dir.join("server.log")).expect("a log file");
        let child = as_user(Command::new(bin.join("postgres")), user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            // A test's database: durability off, for speed.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let mut server = Self { port, dir, child };
        server.wait_ready();
        Some(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.log().contains("ready to accept connections") {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("waitable") {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate shutdown: the server and its backends end, nothing is written.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb` and `postgres`: on `PATH`, else the newest of
/// `/usr/lib/postgresql/*/bin`.
fn binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            let mut dirs: Vec<PathBuf> = versions
                .filter_map(Result::ok)
                .map(|version| version.path().join("bin"))
                .collect();
            // Newest first: "16" after "15" as numbers, not as text.
            dirs.sort_by_key(|dir| {
                std::cmp::Reverse(
                    dir.parent()
                        .and_then(Path::file_name)
                        .and_then(|name| name.to_str())
                        .and_then(|name| name.parse::<u32>().ok())
                        .unwrap_or(0),
                )
            });
            dirs
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// As root, the user the server runs as: `postgres` if it exists, else `nobody`.
fn server_user() -> Option<(u32, u32)> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    Some(ids("postgres").unwrap_or((65_534, 65_534)))
}

fn as_user(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}
