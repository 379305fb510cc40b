//! A real PostgreSQL server for tests and benchmarks.
//!
//! [`Postgres::start`] runs Debian's `initdb` into a temporary folder, starts
//! `postgres` in the foreground on a free loopback port (TCP on 127.0.0.1 only, its
//! socket in the folder), waits until it accepts connections, and stops it and removes
//! the folder on `Drop`. The superuser is [`USER`] with [`PASSWORD`] (SCRAM), so a
//! client's password path is the one production uses.
//!
//! ```no_run
//! use abacsync_testkit::postgres::Postgres;
//!
//! let postgres = Postgres::start()?;
//! postgres.create_database("abacsync")?;
//! assert_eq!(postgres.psql("abacsync", "SELECT 1")?, "1");
//! let url = postgres.url("abacsync"); // postgres://abacsync:…@127.0.0.1:PORT/abacsync
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Durability is off (`fsync`, `synchronous_commit`, `full_page_writes`): the data
//! lives as long as the test. [`Postgres::restart`] stops the server (fast shutdown,
//! cutting connections) and starts it again on the same port and data, as a database
//! restarted under a running client would.
//!
//! PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
//! system user (which Debian's package creates), owning the folder. Needs the
//! `postgresql` package (`initdb`, `postgres`, `pg_isready`, `psql`); when one is
//! missing, [`Postgres::start`] says so, and that `scripts/setup.sh` installs it.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The superuser's name.
pub const USER: &str = "abacsync";
/// The superuser's password: fixed, since the fixture only ever listens on loopback.
pub const PASSWORD: &str = "abacsync-postgres";

/// How long a start waits for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a start is retried when another process took the port in between.
const PORT_ATTEMPTS: usize = 5;

/// What can go wrong setting up, starting or driving the fixture.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// A program the fixture needs is not installed.
    #[error("{what} not found (looked in {looked_in}); scripts/setup.sh installs postgresql")]
    MissingPrerequisite {
        /// What is missing.
        what: String,
        /// Where the fixture looked.
        looked_in: String,
    },
    /// A file operation in the fixture's folder, or spawning a program, failed.
    #[error("{action}: {source}")]
    Io {
        /// What the fixture was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        /// The program.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// The TLS certificates could not be made.
    #[error(transparent)]
    Certificates(#[from] crate::certificates::CertificateError),
    /// The server did not come up.
    #[error("postgres did not accept connections within {timeout:?}; its log:\n{log}")]
    NotReady {
        /// How long the fixture waited.
        timeout: Duration,
        /// The end of the server's log.
        log: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> PostgresError {
    let action = action.into();
    move |source| PostgresError::Io { action, source }
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    url.replace(&format!(":{PASSWORD}@"), "@")
}

/// The unprivileged account the server runs as when the caller is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running PostgreSQL server in a temporary folder; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    run_as: Option<RunAs>,
    child: Option<Child>,
    /// The server's certificate and its CA, when it speaks TLS.
    tls: Option<crate::certificates::Certificates>,
}

impl Postgres {
    /// Initialises a cluster and starts a server on a free loopback port.
    ///
    /// # Errors
    /// [`PostgresError`] when a program is missing, `initdb` fails, or the server does
    /// not come up.
    pub fn start() -> Result<Self, PostgresError> {
        Self::start_with(false)
    }

    /// [`Postgres::start`], the server also speaking TLS with a certificate for
    /// `127.0.0.1` and `localhost` from a private CA ([`Postgres::ca_file`]); plain
    /// connections are still accepted.
    ///
    /// # Errors
    /// As [`Postgres::start`], and when the certificates cannot be made (`openssl`).
    pub fn start_tls() -> Result<Self, PostgresError> {
        Self::start_with(true)
    }

    /// The CA that signed the server's certificate, when it speaks TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca.as_path())
    }

    fn start_with(tls: bool) -> Result<Self, PostgresError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("abacsync-postgres.")
            .tempdir()
            .map_err(io_error("creating the fixture's folder"))?;
        let run_as = run_as()?;
        let password_file = dir.path().join("password");
        fs::write(&password_file, PASSWORD).map_err(io_error("writing the password file"))?;
        if let Some(user) = run_as {
            for path in [dir.path(), password_file.as_path()] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(io_error(format!("handing {} to postgres", path.display())))?;
            }
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "--username",
                USER,
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
            ])
            .args(["--locale", "C", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(initdb, "initdb", run_as)?;
        let tls = if tls {
            let made = crate::certificates::generate(Path::new("openssl"), dir.path())?;
            if let Some(user) = run_as {
                // The server reads its key, which must be its own and private.
                for path in [&made.cert, &made.key] {
                    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                        .map_err(io_error(format!("handing {} to postgres", path.display())))?;
                }
            }
            std::fs::set_permissions(
                &made.key,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .map_err(io_error("making the server key private"))?;
            Some(made)
        } else {
            None
        };
        let mut postgres = Self {
            bin,
            dir,
            port: 0,
            run_as,
            child: None,
            tls,
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            postgres.port = free_port()?;
            match postgres.spawn() {
                Ok(()) => return Ok(postgres),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or(PostgresError::NotReady {
            timeout: START_TIMEOUT,
            log: String::new(),
        }))
    }

    /// One server for the whole test binary, started on first use. Statics are never
    /// dropped, so a watchdog process stops the server and removes its folder once the
    /// test binary has exited (however it ended).
    ///
    /// # Errors
    /// [`PostgresError`] as [`Postgres::start`], for every caller once it failed.
    pub fn shared() -> Result<&'static Postgres, String> {
        static SHARED: std::sync::OnceLock<Result<Postgres, String>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let postgres = Postgres::start().map_err(|err| err.to_string())?;
                postgres.stop_with_this_process();
                Ok(postgres)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A new, empty database on this server, named uniquely within the process; its URL.
    ///
    /// # Errors
    /// [`PostgresError::Tool`] when `psql` fails.
    pub fn fresh_database(&self) -> Result<String, PostgresError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        self.create_database(&name)?;
        Ok(self.url(&name))
    }

    /// Starts a watchdog that stops the server and removes its folder once this
    /// process is gone.
    fn stop_with_this_process(&self) {
        let Some(child) = &self.child else { return };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -QUIT {server} 2>/dev/null; \
             sleep 2; rm -rf '{dir}'",
            me = std::process::id(),
            server = child.id(),
            dir = self.dir.path().display(),
        );
        let spawned = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Err(err) = spawned {
            eprintln!(
                "cannot start the PostgreSQL watchdog ({err}); the server outlives the tests"
            );
        }
    }

    /// The server's process id (its backends are its children), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database`, with the superuser's name and password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Creates database `name`.
    ///
    /// # Errors
    /// [`PostgresError::Tool`] when `psql` fails (for example, it exists).
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    /// Runs `sql` in `database` with `psql` as the superuser; its output, unaligned,
    /// without headers, trimmed.
    ///
    /// # Errors
    /// [`PostgresError::Tool`] when `psql` fails.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, PostgresError> {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", database, "-c", sql])
            .env("PGPASSWORD", PASSWORD);
        let output = command.output().map_err(io_error("running psql"))?;
        if !output.status.success() {
            return Err(PostgresError::Tool {
                program: "psql".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the server (fast shutdown: open connections are cut) and starts it again
    /// on the same port and data.
    ///
    /// # Errors
    /// [`PostgresError`] when the server does not come up again.
    pub fn restart(&mut self) -> Result<(), PostgresError> {
        self.stop();
        self.spawn()
    }

    /// Stops the server (fast shutdown); [`Postgres::restart`] starts it again.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown: roll back, cut clients, stop.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn spawn(&mut self) -> Result<(), PostgresError> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_error("opening the server's log"))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(self.log_path(), Some(user.uid), Some(user.gid))
                .map_err(io_error("handing the log to postgres"))?;
        }
        let stderr = log
            .try_clone()
            .map_err(io_error("opening the server's log"))?;
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(self.tls.iter().flat_map(|tls| {
                [
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", tls.cert.display()),
                    "-c".to_owned(),
                    format!("ssl_key_file={}", tls.key.display()),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = command.spawn().map_err(io_error("starting postgres"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(PostgresError::NotReady {
                    timeout: START_TIMEOUT,
                    log: tail(&self.log()),
                });
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PostgresError::NotReady {
                    timeout: START_TIMEOUT,
                    log: tail(&self.log()),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the data is thrown away with the folder.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A port free on loopback now.
fn free_port() -> Result<u16, PostgresError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_error("finding a free port"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(io_error("finding a free port"))
}

/// Where the server's programs are: `ABACSYNC_POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else the folder of `pg_ctl` on PATH.
fn bin_dir() -> Result<PathBuf, PostgresError> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_isready", "psql"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    if let Some(dir) = std::env::var_os("ABACSYNC_POSTGRES_BIN").map(PathBuf::from) {
        return if complete(&dir) {
            Ok(dir)
        } else {
            Err(PostgresError::MissingPrerequisite {
                what: "initdb, postgres, pg_isready and psql".into(),
                looked_in: dir.display().to_string(),
            })
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .find(|dir| complete(dir))
        .ok_or_else(|| PostgresError::MissingPrerequisite {
            what: "the PostgreSQL server programs (initdb, postgres, pg_isready, psql)".into(),
            looked_in: "ABACSYNC_POSTGRES_BIN, /usr/lib/postgresql/*/bin and PATH".into(),
        })
}

/// As root, the `postgres` system user (PostgreSQL refuses to run as root).
fn run_as() -> Result<Option<RunAs>, PostgresError> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(io_error("running id"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
        .and_then(|fields| {
            Some(RunAs {
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
        .map(Some)
        .ok_or_else(|| PostgresError::MissingPrerequisite {
            what: "the postgres system user (PostgreSQL does not run as root)".into(),
            looked_in: "/etc/passwd".into(),
        })
}

/// Runs `command` (as `run_as`, when set) and fails with its standard error.
fn run(mut command: Command, program: &str, run_as: Option<RunAs>) -> Result<(), PostgresError> {
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    let output = command
        .output()
        .map_err(io_error(format!("running {program}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(PostgresError::Tool {
            program: program.into(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_takes_passwords_restarts_and_keeps_its_data() {
        let mut postgres = Postgres::start().expect("start postgres");
        postgres.create_database("abacsync").unwrap();
        postgres
            .psql(
                "abacsync",
                "CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)",
            )
            .unwrap();
        assert_eq!(
            postgres.psql("abacsync", "SELECT sum(n) FROM t").unwrap(),
            "42"
        );
        assert!(postgres.url("abacsync").starts_with("postgres://abacsync:"));
        // Only the password opens it.
        let wrong = Command::new(postgres.bin.join("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p", &postgres.port().to_string()])
            .args(["-U", USER, "-d", "abacsync", "-c", "SELECT 1"])
            .env("PGPASSWORD", "wrong")
            .output()
            .unwrap();
        assert!(!wrong.status.success());
        postgres.restart().unwrap();
        assert!(postgres.is_running());
        assert_eq!(
            postgres.psql("abacsync", "SELECT count(*) FROM t").unwrap(),
            "2"
        );
        postgres.stop();
        assert!(!postgres.is_running());
        assert!(postgres.psql("abacsync", "SELECT 1").is_err());
    }
}
