//! A real Active Directory domain controller for tests: Samba's AD DC.
//!
//! [`SambaDc::start`] provisions a domain (`samba-tool domain provision`, about four
//! seconds) into a temporary folder and runs `samba` in the foreground with only its
//! LDAP service, speaking LDAPS (and StartTLS) with a certificate from a private CA
//! ([`SambaDc::ca_file`]) that names the server's address, as a client checking names
//! needs (Samba's own self-signed certificate names none).
//!
//! ```no_run
//! use abacsync_testkit::samba::SambaDc;
//!
//! let dc = SambaDc::shared()?;
//! dc.add("dn: OU=People,DC=abac,DC=test\nobjectClass: organizationalUnit\n")?;
//! let guid = dc.guid("OU=People,DC=abac,DC=test")?; // objectGUID, 16 bytes
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Samba's LDAP ports are fixed (389, 636, 3268, 3269), so each DC gets a loopback
//! address of its own rather than free ports: `127.0.0.N`, added to `lo` for its
//! lifetime (`ip addr add`, which needs root, as `samba` does). Where no address can be
//! added, it falls back to `127.0.0.1` when port 389 is free there.
//!
//! Needs Debian's `samba`, `samba-ad-provision`, `ldap-utils`, `openssl` and `iproute2`
//! (`scripts/setup.sh` installs them), and root.

use std::fs;
use std::io::{self, Read as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::certificates::{self, Certificates};

/// The domain's DNS name.
pub const REALM: &str = "abac.test";
/// The domain's naming context.
pub const DOMAIN_DN: &str = "DC=abac,DC=test";
/// The built-in administrator.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=abac,DC=test";
/// Its password: fixed, since the fixture only ever listens on loopback. Meets the
/// domain's default complexity rules.
pub const ADMIN_PASSWORD: &str = "Abacsync-Samba-1";

/// How long a start waits for the server to answer LDAP.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong setting up, starting or driving the domain controller.
#[derive(Debug, thiserror::Error)]
pub enum SambaError {
    /// A program or a privilege the fixture needs is missing.
    #[error("{0}; scripts/setup.sh installs what the Samba AD DC needs")]
    MissingPrerequisite(String),
    /// A file operation, or spawning a program, failed.
    #[error("{action}: {source}")]
    Io {
        /// What the fixture was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {output}")]
    Tool {
        /// The program (and what it was given).
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error (or output).
        output: String,
    },
    /// The TLS certificates could not be made.
    #[error(transparent)]
    Certificates(#[from] certificates::CertificateError),
    /// The server did not come up.
    #[error("samba did not answer LDAP within {timeout:?}; its log:\n{log}")]
    NotReady {
        /// How long the fixture waited.
        timeout: Duration,
        /// The end of the server's log.
        log: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> SambaError {
    let action = action.into();
    move |source| SambaError::Io { action, source }
}

/// A running Samba AD DC in a temporary folder; stopped, its address removed and its
/// folder deleted on drop.
#[derive(Debug)]
pub struct SambaDc {
    dir: TempDir,
    address: Ipv4Addr,
    /// Whether the address was added to `lo` for this DC (and is removed after it).
    own_address: bool,
    tls: Certificates,
    child: Option<Child>,
    /// Numbers the LDIF files handed to the clients.
    changes: AtomicU64,
}

impl SambaDc {
    /// Provisions a domain and starts its domain controller.
    ///
    /// # Errors
    /// [`SambaError`] when a program or root is missing, provisioning fails, or the
    /// server does not come up.
    pub fn start() -> Result<Self, SambaError> {
        for program in ["samba", "samba-tool", "ldapmodify", "ldapsearch", "openssl"] {
            if which(program).is_none() {
                return Err(SambaError::MissingPrerequisite(format!(
                    "{program} not found on PATH"
                )));
            }
        }
        if !is_root() {
            return Err(SambaError::MissingPrerequisite(
                "the Samba AD DC runs as root, and these tests do not".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("abacsync-samba.")
            .tempdir()
            .map_err(io_error("creating the fixture's folder"))?;
        let (address, own_address) = claim_address()?;
        let mut dc = Self {
            tls: Certificates {
                ca: PathBuf::new(),
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            dir,
            address,
            own_address,
            child: None,
            changes: AtomicU64::new(0),
        };
        // From here on, `Drop` gives the address back whatever fails.
        let tls_dir = dc.dir.path().join("tls");
        fs::create_dir(&tls_dir).map_err(io_error("creating the TLS folder"))?;
        dc.tls = certificates::generate_for(
            Path::new("openssl"),
            &tls_dir,
            &[&format!("IP:{address}"), &format!("DNS:dc1.{REALM}")],
        )?;
        fs::set_permissions(
            &dc.tls.key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(io_error("making the server key private"))?;
        dc.provision()?;
        dc.spawn()?;
        Ok(dc)
    }

    /// One domain controller for the whole test binary, started on first use (a
    /// provision takes seconds). Statics are never dropped, so a watchdog process stops
    /// the server, gives its address back and removes its folder once the test binary
    /// has exited (however it ended). Tests sharing it keep to an OU of their own.
    ///
    /// # Errors
    /// [`SambaError`] as [`SambaDc::start`], for every caller once it failed.
    pub fn shared() -> Result<&'static SambaDc, String> {
        static SHARED: std::sync::OnceLock<Result<SambaDc, String>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let dc = SambaDc::start().map_err(|err| err.to_string())?;
                dc.stop_with_this_process();
                Ok(dc)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn provision(&self) -> Result<(), SambaError> {
        let target = self.dir.path().join("dc");
        let tls = &self.tls;
        let mut command = Command::new("samba-tool");
        command
            .args([
                "domain",
                "provision",
                "--server-role=dc",
                "--dns-backend=NONE",
            ])
            .arg(format!("--realm={}", REALM.to_uppercase()))
            .arg("--domain=ABAC")
            .arg("--host-name=dc1")
            .arg(format!("--host-ip={}", self.address))
            .arg(format!("--adminpass={ADMIN_PASSWORD}"))
            .arg(format!("--targetdir={}", target.display()))
            .arg(format!(
                "--option=interfaces = {}",
                if self.own_address {
                    self.address.to_string()
                } else {
                    "lo".into()
                }
            ))
            .arg("--option=bind interfaces only = yes")
            // LDAP only: no DNS, Kerberos, SMB, NetBIOS or replication servers.
            .arg("--option=server services = ldap")
            .arg("--option=tls enabled = yes")
            .arg(format!("--option=tls keyfile = {}", tls.key.display()))
            .arg(format!("--option=tls certfile = {}", tls.cert.display()))
            .arg(format!("--option=tls cafile = {}", tls.ca.display()))
            .arg(format!(
                "--option=log file = {}",
                self.dir.path().join("log.%m").display()
            ))
            .stdin(Stdio::null());
        run(command, "samba-tool domain provision")?;
        // Simple binds over plain LDAP, as the plain-LDAP tests do; the pid file and
        // sockets in the folder, so that DCs of several test runs do not meet
        // (provision does not keep these options in the file it writes).
        let config = fs::read_to_string(self.config()).map_err(io_error("reading smb.conf"))?;
        let private = target.display();
        let config = config.replacen(
            "[global]\n",
            &format!(
                "[global]\n\tldap server require strong auth = no\n\tpid directory = {private}/run\n\
                 \tncalrpc dir = {private}/ncalrpc\n\twinbindd socket directory = {private}/winbindd\n"
            ),
            1,
        );
        for sub in ["run", "ncalrpc", "winbindd"] {
            fs::create_dir_all(target.join(sub)).map_err(io_error("creating samba's folders"))?;
        }
        fs::write(self.config(), config).map_err(io_error("writing smb.conf"))?;
        // Complexity off: tests give users short passwords.
        let mut settings = Command::new("samba-tool");
        settings
            .args(["domain", "passwordsettings", "set", "--complexity=off"])
            .args(["--min-pwd-length=1", "--min-pwd-age=0"])
            .arg(format!("--configfile={}", self.config().display()))
            .arg(format!("-H{}", target.join("private/sam.ldb").display()));
        run(settings, "samba-tool domain passwordsettings set")?;
        Ok(())
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("dc/etc/smb.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("samba.log")
    }

    fn spawn(&mut self) -> Result<(), SambaError> {
        let log = fs::File::create(self.log_path()).map_err(io_error("creating samba's log"))?;
        let err_log = log.try_clone().map_err(io_error("opening samba's log"))?;
        let child = Command::new("samba")
            .args(["--interactive", "--debug-stdout", "--debuglevel=1"])
            .arg(format!("--configfile={}", self.config().display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            // Its own process group: the watchdog stops the workers with the master.
            .process_group(0)
            .spawn()
            .map_err(io_error("starting samba"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(SambaError::NotReady {
                    timeout: START_TIMEOUT,
                    log: format!("(samba exited: {status})\n{}", self.log()),
                });
            }
            let listening = TcpStream::connect_timeout(
                &SocketAddr::from((self.address, 636)),
                Duration::from_millis(200),
            )
            .is_ok();
            if listening
                && self
                    .search(DOMAIN_DN, "base", "(objectClass=*)", &["1.1"])
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SambaError::NotReady {
                    timeout: START_TIMEOUT,
                    log: self.log(),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a watchdog that stops the server, gives its address back and removes its
    /// folder once this process is gone.
    fn stop_with_this_process(&self) {
        let Some(child) = &self.child else { return };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM -{server} 2>/dev/null; \
             sleep 2; kill -KILL -{server} 2>/dev/null; {unclaim} rm -rf '{dir}'",
            me = std::process::id(),
            server = child.id(),
            unclaim = if self.own_address {
                format!("ip addr del {}/32 dev lo 2>/dev/null;", self.address)
            } else {
                String::new()
            },
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
            eprintln!("cannot start the Samba watchdog ({err}); the DC outlives the tests");
        }
    }

    /// The server's loopback address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// `ldap://ADDRESS:389`: plain LDAP (simple binds allowed), StartTLS offered.
    pub fn url(&self) -> String {
        format!("ldap://{}:389", self.address)
    }

    /// `ldaps://ADDRESS:636`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:636", self.address)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.tls.ca
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(8_000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// Adds the entries of `ldif` with `ldapadd` over LDAPS, as the administrator (so
    /// that `unicodePwd` may be set).
    ///
    /// # Errors
    /// [`SambaError::Tool`] with `ldapadd`'s error output.
    pub fn add(&self, ldif: &str) -> Result<(), SambaError> {
        self.apply(&["-a"], ldif)
    }

    /// Applies the change records of `ldif` (`changetype: modify`, `add`, `delete`,
    /// `modrdn`) with `ldapmodify` over LDAPS, as the administrator.
    ///
    /// # Errors
    /// [`SambaError::Tool`] with `ldapmodify`'s error output.
    pub fn modify(&self, ldif: &str) -> Result<(), SambaError> {
        self.apply(&[], ldif)
    }

    /// Deletes the entry `dn` (a leaf), which becomes a tombstone.
    ///
    /// # Errors
    /// [`SambaError::Tool`] with `ldapmodify`'s error output.
    pub fn delete(&self, dn: &str) -> Result<(), SambaError> {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n"))
    }

    fn apply(&self, flags: &[&str], ldif: &str) -> Result<(), SambaError> {
        let n = self.changes.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("change-{n}.ldif"));
        fs::write(&path, ldif).map_err(io_error("writing an LDIF file"))?;
        let mut command = self.client("ldapmodify");
        command.args(flags).arg("-f").arg(&path);
        run(command, "ldapmodify").map(drop)
    }

    /// Searches below `base` (`scope`: `base`, `one` or `sub`) as the administrator:
    /// the entries as LDIF without comments or line wrapping (`ldapsearch -LLL`).
    ///
    /// # Errors
    /// [`SambaError::Tool`] with `ldapsearch`'s error output.
    pub fn search(
        &self,
        base: &str,
        scope: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<String, SambaError> {
        let mut command = self.client("ldapsearch");
        command
            .args([
                "-LLL",
                "-o",
                "ldif_wrap=no",
                "-b",
                base,
                "-s",
                scope,
                filter,
            ])
            .args(attributes);
        let output = run(command, "ldapsearch")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The `objectGUID` of the entry `dn`, as the DC stores it (16 bytes).
    ///
    /// # Errors
    /// [`SambaError::Tool`] when the search fails or the entry has none.
    pub fn guid(&self, dn: &str) -> Result<[u8; 16], SambaError> {
        let ldif = self.search(dn, "base", "(objectClass=*)", &["objectGUID"])?;
        let value = ldif
            .lines()
            .find_map(|line| line.strip_prefix("objectGUID:: "))
            .and_then(|encoded| base64_decode(encoded.trim()))
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
        value.ok_or_else(|| SambaError::Tool {
            program: format!("ldapsearch of {dn}"),
            status: ExitStatus::default(),
            output: format!("no objectGUID in:\n{ldif}"),
        })
    }

    /// A command for one of the `ldap-utils` clients: the administrator's simple bind
    /// over LDAPS, trusting the fixture's CA.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .args([
                "-x",
                "-H",
                &self.ldaps_url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .env("LDAPTLS_CACERT", &self.tls.ca)
            .env("LDAPTLS_REQCERT", "demand")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The master and its workers.
            let group = i32::try_from(child.id()).unwrap_or(0);
            if group > 0 {
                let _ = Command::new("kill")
                    .args(["-TERM", &format!("-{group}")])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.own_address {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{}/32", self.address), "dev", "lo"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A loopback address whose port 389 is free: one added to `lo` for this DC when it
/// can be (`true`), else `127.0.0.1`.
fn claim_address() -> Result<(Ipv4Addr, bool), SambaError> {
    let free = |address: Ipv4Addr| {
        [389, 636, 3268, 3269]
            .iter()
            .all(|port| TcpListener::bind((address, *port)).is_ok())
    };
    if which("ip").is_some() {
        let start = std::process::id() as usize;
        for attempt in 0..50 {
            let host = 20 + (start + attempt * 7) % 230;
            let address = Ipv4Addr::new(127, 0, 0, host as u8);
            if !free(address) {
                continue;
            }
            let added = Command::new("ip")
                .args(["addr", "add", &format!("{address}/32"), "dev", "lo"])
                .stdin(Stdio::null())
                .output()
                .map_err(io_error("running ip addr add"))?;
            if added.status.success() {
                return Ok((address, true));
            }
            let stderr = String::from_utf8_lossy(&added.stderr);
            if !stderr.contains("File exists") {
                // No privilege to add addresses: the fallback below.
                break;
            }
        }
    }
    if free(Ipv4Addr::LOCALHOST) {
        return Ok((Ipv4Addr::LOCALHOST, false));
    }
    Err(SambaError::MissingPrerequisite(
        "no loopback address with port 389 free for the DC (Samba's LDAP ports are fixed), \
         and `ip addr add` cannot add one"
            .into(),
    ))
}

fn run(mut command: Command, program: &str) -> Result<std::process::Output, SambaError> {
    let output = command
        .output()
        .map_err(io_error(format!("running {program}")))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(SambaError::Tool {
            program: program.into(),
            status: output.status,
            output: text,
        });
    }
    Ok(output)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Decodes standard base64 (as `ldapsearch` prints binary values).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_as_ldapsearch_prints() {
        assert_eq!(base64_decode("/qV8SQ==").unwrap(), [0xfe, 0xa5, 0x7c, 0x49]);
        assert_eq!(base64_decode("TcO8").unwrap(), "Mü".as_bytes());
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("a!b="), None);
    }
}
