//! A real OpenLDAP `slapd` for tests and benchmarks.
//!
//! [`Slapd::builder`] writes a `slapd.conf` and the initial entries (loaded with
//! `slapadd` before the server starts, so 100,000 users take seconds, not minutes)
//! into a temporary folder, starts slapd in the foreground on free loopback ports,
//! waits until the admin can bind, and kills it and removes the folder on `Drop`.
//!
//! ```no_run
//! use abacsync_testkit::directory::{PeopleOptions, people_ldif};
//! use abacsync_testkit::slapd::Slapd;
//!
//! let ldif = people_ldif("dc=example,dc=org", 10, &PeopleOptions::default())?;
//! let slapd = Slapd::builder().ldif(ldif).start()?;
//! assert_eq!(slapd.search_count("(objectClass=inetOrgPerson)")?, 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The server:
//! - one `back_mdb` database for the suffix (4 GiB map, `dbnosync`), whose base entry
//!   is created unless the initial LDIF has it; root DN `cn=admin,<suffix>` with
//!   [`Slapd::admin_password`]. The root DN bypasses ACLs **and size limits**.
//! - anonymous users may read everything but `userPassword`.
//! - equality indexes on `objectClass`, `uid`, `member`, `entryUUID`, `entryCSN` and
//!   `modifyTimestamp` (which also serves `>=` filters), so incremental queries are
//!   fast. `entryUUID`, `entryCSN`, `createTimestamp` and `modifyTimestamp` are set on
//!   every entry, by `slapadd` too. `modifyTimestamp` has a one-second resolution:
//!   incremental tests must compare with `>=` or wait a second.
//! - paged results (RFC 2696), as back_mdb always offers them.
//!
//! Gotchas:
//! - `slapadd` bypasses overlays: groups in the initial LDIF do not give their members
//!   `memberOf`; write it in the LDIF ([`crate::directory::PeopleOptions::member_of`])
//!   or add groups with [`Slapd::add`] after the start.
//! - the `memberof` overlay makes `memberOf` operational: searches return it only when
//!   asked for by name (or `+`).
//! - the `msuser` schema (Active Directory's attributes) defines `memberOf` as a user
//!   attribute, as in AD: returned with `*`, but only allowed on its AD classes
//!   (`user`, `group`, `computer`) and `extensibleObject`, so the overlay cannot set
//!   it on a plain `inetOrgPerson` (slapd logs `failed err=65`). Schemas are included
//!   before the overlay is loaded, since the other order is a duplicate definition.
//! - `msuser.schema` gives no attribute a matching rule, so no filter on
//!   `sAMAccountName`, `uSNChanged`, `objectGUID`… could match; the fixture loads a
//!   copy with rules by syntax (DN, case-ignore string, integer and generalized time
//!   with ordering, octet string…). Its `user` class requires `instanceType`,
//!   `nTSecurityDescriptor` and `objectCategory` and does not allow `sAMAccountName`:
//!   add `objectClass: extensibleObject` to AD-like entries. slapd does not maintain
//!   `uSNChanged` or `whenChanged`; tests set them.
//! - `groupOfNames` needs a member: removing the last one is an object class
//!   violation.
//!
//! Needs `slapd`, `slapadd`, the `ldap-utils` clients and, for TLS, `openssl`; when one
//! is missing, [`SlapdBuilder::start`] says which, and that `scripts/setup.sh` installs
//! it. Set `ABACSYNC_SLAPD_DEBUG` (for example to `stats`) for a verbose slapd log.

mod setup;
#[cfg(test)]
mod tests;

use setup::{LdifSource, Tools};
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The admin's password: fixed, since the fixture only ever listens on loopback.
const ADMIN_PASSWORD: &str = "abacsync-admin";

/// How long [`SlapdBuilder::start`] and [`Slapd::restart`] wait for an admin bind.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a start is retried when another process took a port in between.
const PORT_ATTEMPTS: usize = 5;

/// The schemas loaded when [`SlapdBuilder::schemas`] is not called.
const DEFAULT_SCHEMAS: &[&str] = &["core", "cosine", "inetorgperson", "nis"];

/// What can go wrong setting up, starting or driving the fixture.
#[derive(Debug, thiserror::Error)]
pub enum SlapdError {
    /// A program, schema file or module the fixture needs is not installed.
    #[error(
        "{what} not found (looked in {looked_in}); scripts/setup.sh installs slapd, ldap-utils and openssl"
    )]
    MissingPrerequisite {
        /// What is missing: `the slapd program`, `schema file msuser.schema`…
        what: String,
        /// Where the fixture looked.
        looked_in: String,
    },
    /// The builder was given something the fixture cannot serve.
    #[error("invalid slapd fixture configuration: {0}")]
    InvalidConfig(String),
    /// A file operation in the fixture's folder, or spawning a program, failed.
    #[error("{action}: {source}")]
    Io {
        /// What the fixture was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A helper program (`slapadd`, `ldapadd`, `openssl`…) ran and failed.
    #[error("{program} failed on {target} ({status}): {stderr}")]
    Tool {
        /// The program.
        program: String,
        /// What it worked on: a DN, a filter, an LDIF source.
        target: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, and the last line of its standard output.
        stderr: String,
    },
    /// slapd exited or did not accept an admin bind in time.
    #[error("slapd on {url} did not start: {reason}\n--- slapd log {} ---\n{log}", log_path.display())]
    Start {
        /// The `ldap://` URL it was to serve.
        url: String,
        /// Why the fixture gave up.
        reason: String,
        /// The log file; it goes with the fixture's folder, so `log` holds what matters.
        log_path: PathBuf,
        /// What slapd wrote during this start.
        log: String,
    },
}

/// Builds and starts a [`Slapd`]. Defaults: suffix `dc=example,dc=org`; schemas
/// `core`, `cosine`, `inetorgperson`, `nis`; no `memberof` overlay; no TLS; no size
/// limit; no entries but the base.
pub struct SlapdBuilder {
    suffix: String,
    schemas: Vec<String>,
    memberof: bool,
    syncprov: Option<usize>,
    syncprov_reload_hint: bool,
    tls: bool,
    require_tls: bool,
    size_limit: Option<usize>,
    paged_total_limit: Option<usize>,
    time_limit: Option<u32>,
    sources: Vec<LdifSource>,
}

impl Default for SlapdBuilder {
    fn default() -> Self {
        Self {
            suffix: "dc=example,dc=org".to_owned(),
            schemas: DEFAULT_SCHEMAS
                .iter()
                .map(|&name| name.to_owned())
                .collect(),
            memberof: false,
            syncprov: None,
            syncprov_reload_hint: false,
            tls: false,
            require_tls: false,
            size_limit: None,
            paged_total_limit: None,
            time_limit: None,
            sources: Vec::new(),
        }
    }
}

impl std::fmt::Debug for SlapdBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlapdBuilder")
            .field("suffix", &self.suffix)
            .field("schemas", &self.schemas)
            .field("memberof", &self.memberof)
            .field("syncprov", &self.syncprov)
            .field("syncprov_reload_hint", &self.syncprov_reload_hint)
            .field("tls", &self.tls)
            .field("require_tls", &self.require_tls)
            .field("size_limit", &self.size_limit)
            .field("paged_total_limit", &self.paged_total_limit)
            .field("time_limit", &self.time_limit)
            .field("sources", &self.sources)
            .finish()
    }
}

impl SlapdBuilder {
    /// The database suffix, such as `dc=corp,dc=example`. Its first RDN must be `dc`,
    /// `o`, `ou`, `c`, `l` or `cn`, so the base entry can be created.
    pub fn suffix(mut self, suffix: &str) -> Self {
        self.suffix = suffix.to_owned();
        self
    }

    /// The schemas to load, in order, replacing the defaults: names of files in the
    /// system's schema folder (`msuser` or `msuser.schema`), or paths.
    pub fn schemas(mut self, schemas: &[&str]) -> Self {
        self.schemas = schemas.iter().map(|&name| name.to_owned()).collect();
        self
    }

    /// Load the `memberof` overlay (with `refint`), so adding a user to a
    /// `groupOfNames` `member` sets `memberOf` on the user, and deleting or renaming
    /// either side keeps both consistent.
    pub fn memberof(mut self, enabled: bool) -> Self {
        self.memberof = enabled;
        self
    }

    /// Load the `syncprov` overlay, so the server offers RFC 4533 content
    /// synchronization (syncrepl) and keeps `contextCSN`, with a session log of
    /// `session_log` changes: a refresh from a cookie the log covers sends the deleted
    /// entries' ids, an older cookie gets a present phase.
    pub fn syncprov(mut self, session_log: Option<usize>) -> Self {
        self.syncprov = session_log;
        self
    }

    /// With [`Self::syncprov`]: honour a client's reload hint (`syncprov-reloadhint`):
    /// a client that does not ask for a reload (abacsync never does) gets
    /// `e-syncRefreshRequired` for a cookie older than the session log, not a present
    /// phase.
    pub fn syncprov_reload_hint(mut self, enabled: bool) -> Self {
        self.syncprov_reload_hint = enabled;
        self
    }

    /// Generate a CA and a server certificate for `127.0.0.1` and `localhost` with
    /// `openssl`, offer StartTLS on the `ldap://` port and listen on an `ldaps://`
    /// port too. Clients trust [`Slapd::ca_file`].
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// Refuse every operation, simple binds included, on a connection without TLS
    /// (`security tls=1`). Implies [`Self::tls`].
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Limit searches by anyone but the root DN to `limit` entries: a search without
    /// paging that matches more ends with `sizeLimitExceeded` after `limit` entries,
    /// while a paged search still returns everything (`size.prtotal=unlimited`), as
    /// Active Directory's `MaxPageSize` behaves. `None` (the default) is unlimited.
    pub fn size_limit(mut self, limit: Option<usize>) -> Self {
        self.size_limit = limit;
        self
    }

    /// Also limit paged searches by anyone but the root DN to `limit` entries in all
    /// (`size.prtotal`): a paged search that matches more ends with
    /// `sizeLimitExceeded`. Needs [`SlapdBuilder::size_limit`] set at or above it.
    pub fn paged_total_limit(mut self, limit: Option<usize>) -> Self {
        self.paged_total_limit = limit;
        self
    }

    /// Limit each search operation by anyone but the root DN to `seconds` (`timelimit
    /// time.soft time.hard`): a search still sending entries when it runs out ends with
    /// `timeLimitExceeded`. slapd counts whole seconds, so the limit strikes between
    /// `seconds` and `seconds + 1` after the operation began. `None` (the default) is
    /// unlimited.
    pub fn time_limit(mut self, seconds: Option<u32>) -> Self {
        self.time_limit = seconds;
        self
    }

    /// Entries to load with `slapadd` before the start, after those given earlier.
    pub fn ldif(mut self, ldif: impl Into<String>) -> Self {
        self.sources.push(LdifSource::Text(ldif.into()));
        self
    }

    /// An LDIF file to load with `slapadd` before the start.
    pub fn ldif_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.push(LdifSource::File(path.into()));
        self
    }

    /// Entries written by `write` straight into `slapadd`'s standard input, for
    /// directories too large to hold in memory. The output must not contain the base
    /// entry: the fixture cannot look for it there, so it always creates it.
    pub fn ldif_writer<F>(mut self, write: F) -> Self
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    {
        self.sources.push(LdifSource::Writer(Box::new(write)));
        self
    }

    /// Write the configuration, load the entries and start slapd; returns once the
    /// admin can bind.
    ///
    /// # Errors
    /// [`SlapdError::MissingPrerequisite`] when a program, schema or module is not
    /// installed; [`SlapdError::Tool`] when `slapadd` or `openssl` fails;
    /// [`SlapdError::Start`], with slapd's log, when it does not come up.
    pub fn start(self) -> Result<Slapd, SlapdError> {
        let tls = self.tls || self.require_tls;
        let prerequisites =
            setup::Prerequisites::find(&self.schemas, self.memberof, self.syncprov.is_some(), tls)?;
        let dir = tempfile::Builder::new()
            .prefix("abacsync-slapd-")
            .tempdir()
            .map_err(|source| io_error("creating the slapd fixture's folder", source))?;
        let ca_file = if tls {
            Some(setup::generate_certificates(
                &prerequisites.tools,
                dir.path(),
            )?)
        } else {
            None
        };
        let schemas = setup::prepare_schemas(&prerequisites.schema_files, dir.path())?;
        let config = setup::render_config(&setup::ConfigInput {
            suffix: &self.suffix,
            dir: dir.path(),
            prerequisites: &prerequisites,
            schemas: &schemas,
            memberof: self.memberof,
            syncprov: self.syncprov,
            syncprov_reload_hint: self.syncprov_reload_hint,
            tls,
            require_tls: self.require_tls,
            size_limit: self.size_limit,
            paged_total_limit: self.paged_total_limit,
            time_limit: self.time_limit,
        })?;
        let config_path = dir.path().join("slapd.conf");
        fs::write(&config_path, config).map_err(|source| io_error("writing slapd.conf", source))?;
        fs::create_dir(dir.path().join("data"))
            .map_err(|source| io_error("creating slapd's data folder", source))?;
        setup::load(
            &prerequisites.tools,
            &config_path,
            &self.suffix,
            self.sources,
        )?;

        let mut slapd = Slapd {
            tools: prerequisites.tools,
            config_path,
            log_path: dir.path().join("slapd.log"),
            admin_dn: format!("cn=admin,{}", self.suffix),
            suffix: self.suffix,
            ca_file,
            port: 0,
            ldaps_port: None,
            child: None,
            changes: AtomicU64::new(0),
            dir,
        };
        let mut attempt = 1;
        loop {
            slapd.port = setup::free_port()?;
            slapd.ldaps_port = match slapd.ca_file {
                Some(_) => Some(setup::free_port()?),
                None => None,
            };
            match slapd.launch() {
                Ok(()) => return Ok(slapd),
                Err(Launch::PortTaken(_)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(Launch::PortTaken(err) | Launch::Failed(err)) => return Err(err),
            }
        }
    }
}

/// A running (or deliberately stopped) slapd; killed, and its folder removed, on
/// `Drop`.
pub struct Slapd {
    tools: Tools,
    config_path: PathBuf,
    log_path: PathBuf,
    suffix: String,
    admin_dn: String,
    ca_file: Option<PathBuf>,
    port: u16,
    ldaps_port: Option<u16>,
    child: Option<Child>,
    /// Numbers the LDIF files handed to `ldapadd` and `ldapmodify`.
    changes: AtomicU64,
    // Last: the folder goes after the process is killed (see `Drop`).
    dir: TempDir,
}

/// Why one launch of slapd failed.
enum Launch {
    /// Another process bound one of the ports first: try others.
    PortTaken(SlapdError),
    /// Anything else.
    Failed(SlapdError),
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("url", &self.url())
            .field("ldaps_url", &self.ldaps_url())
            .field("suffix", &self.suffix)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Slapd {
    /// A builder with the defaults listed on [`SlapdBuilder`].
    pub fn builder() -> SlapdBuilder {
        SlapdBuilder::default()
    }

    /// `ldap://127.0.0.1:<port>`: plain LDAP, with StartTLS when TLS is on.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:<port>` when TLS is on.
    pub fn ldaps_url(&self) -> Option<String> {
        self.ldaps_port
            .map(|port| format!("ldaps://127.0.0.1:{port}"))
    }

    /// The `ldap://` port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `ldaps://` port when TLS is on.
    pub fn ldaps_port(&self) -> Option<u16> {
        self.ldaps_port
    }

    /// The suffix, which is also the base entry's DN.
    pub fn base_dn(&self) -> &str {
        &self.suffix
    }

    /// The root DN, `cn=admin,<suffix>`: not an entry, and exempt from ACLs and limits.
    pub fn admin_dn(&self) -> &str {
        &self.admin_dn
    }

    /// The root DN's password.
    pub fn admin_password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// The PEM file of the CA that signed the server's certificate, when TLS is on.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// slapd's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// slapd's log (its standard error, appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether slapd is still running: false after [`Self::stop`] or a crash.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill slapd with `SIGKILL` and wait for it, as when a directory dies mid-sync.
    /// The data stays; [`Self::restart`] serves it again. Does nothing when stopped.
    ///
    /// # Errors
    /// [`SlapdError::Io`] when the process cannot be waited for.
    pub fn stop(&mut self) -> Result<(), SlapdError> {
        if let Some(mut child) = self.child.take() {
            // Fails only when the process has already exited, which is what we want.
            let _ = child.kill();
            child.wait().map_err(|source| {
                io_error(format!("waiting for slapd on {}", self.url()), source)
            })?;
        }
        Ok(())
    }

    /// Stop slapd if it runs, then start it again on the same ports and data, and wait
    /// for an admin bind.
    ///
    /// # Errors
    /// [`SlapdError::Start`] when it does not come up, for example because another
    /// process took the port meanwhile.
    pub fn restart(&mut self) -> Result<(), SlapdError> {
        self.stop()?;
        self.launch()
            .map_err(|(Launch::PortTaken(err) | Launch::Failed(err))| err)
    }

    /// Add the entries of `ldif` with `ldapadd`, bound as the admin.
    ///
    /// # Errors
    /// [`SlapdError::Tool`] with `ldapadd`'s error output.
    pub fn add(&self, ldif: &str) -> Result<(), SlapdError> {
        self.apply("ldapadd", &self.tools.ldapadd, ldif)
    }

    /// Apply the change records of `ldif` (`changetype: modify`, `add`, `delete`,
    /// `modrdn`) with `ldapmodify`, bound as the admin.
    ///
    /// # Errors
    /// [`SlapdError::Tool`] with `ldapmodify`'s error output.
    pub fn modify(&self, ldif: &str) -> Result<(), SlapdError> {
        self.apply("ldapmodify", &self.tools.ldapmodify, ldif)
    }

    /// Delete the entry `dn` (a leaf) with `ldapdelete`, bound as the admin.
    ///
    /// # Errors
    /// [`SlapdError::Tool`] with `ldapdelete`'s error output.
    pub fn delete(&self, dn: &str) -> Result<(), SlapdError> {
        let mut command = self.client(&self.tools.ldapdelete);
        command.arg(dn);
        run(command, "ldapdelete", dn).map(drop)
    }

    /// Search the whole suffix as the admin and return the entries as LDIF without
    /// comments or line wrapping (`ldapsearch -LLL`). `attributes` are names, `+` for
    /// all operational ones, or `1.1` for none.
    ///
    /// # Errors
    /// [`SlapdError::Tool`] with `ldapsearch`'s error output.
    pub fn search(&self, filter: &str, attributes: &[&str]) -> Result<String, SlapdError> {
        let mut command = self.client(&self.tools.ldapsearch);
        command
            .args(["-LLL", "-o", "ldif_wrap=no", "-b", &self.suffix, filter])
            .args(attributes);
        let output = run(command, "ldapsearch", filter)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// How many entries under the suffix match `filter`.
    ///
    /// # Errors
    /// [`SlapdError::Tool`] with `ldapsearch`'s error output.
    pub fn search_count(&self, filter: &str) -> Result<usize, SlapdError> {
        let ldif = self.search(filter, &["1.1"])?;
        Ok(ldif.lines().filter(|line| line.starts_with("dn:")).count())
    }

    /// A command for one of the `ldap-utils` clients: admin simple bind on
    /// [`Self::url`], with StartTLS required whenever TLS is on.
    fn client(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                &self.admin_dn,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(["-o", "nettimeout=10"])
            .stdin(Stdio::null());
        if let Some(ca_file) = &self.ca_file {
            command
                .arg("-ZZ")
                .env("LDAPTLS_CACERT", ca_file)
                .env("LDAPTLS_REQCERT", "demand");
        }
        command
    }

    /// Run `ldapadd` or `ldapmodify` on `ldif`, through a file: their progress output
    /// could fill a pipe while we still write to their input.
    fn apply(&self, name: &str, program: &Path, ldif: &str) -> Result<(), SlapdError> {
        let number = self.changes.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("change-{number}.ldif"));
        fs::write(&path, ldif)
            .map_err(|source| io_error(format!("writing {}", path.display()), source))?;
        let mut command = self.client(program);
        command.arg("-f").arg(&path);
        let target = first_dn(ldif);
        let result = run(command, name, &target).map(drop);
        // A leftover file is harmless: the folder goes on `Drop`.
        let _ = fs::remove_file(&path);
        result
    }

    /// Spawn slapd on the current ports and wait until the admin can bind.
    fn launch(&mut self) -> Result<(), Launch> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|source| Launch::Failed(io_error("opening slapd's log", source)))?;
        let log_start = log.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(port) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{port}/"));
        }
        let debug = std::env::var("ABACSYNC_SLAPD_DEBUG").unwrap_or_else(|_| "none".to_owned());
        // `-d` keeps slapd in the foreground, as our child; level `none` still logs
        // start-up errors to its standard error, our log file.
        let child = Command::new(&self.tools.slapd)
            .arg("-f")
            .arg(&self.config_path)
            .args(["-h", &urls, "-d", &debug, "-s", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| {
                Launch::Failed(io_error(
                    format!("running {}", self.tools.slapd.display()),
                    source,
                ))
            })?;
        self.child = Some(child);
        self.wait_until_ready(log_start)
    }

    /// Poll until an admin bind works, slapd exits, or [`START_TIMEOUT`] passes.
    fn wait_until_ready(&mut self, log_start: u64) -> Result<(), Launch> {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut last_attempt = "no TCP connection yet".to_owned();
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(format!("slapd exited ({status})")),
                Some(Ok(None)) => None,
                Some(Err(err)) => Some(format!("waiting for slapd: {err}")),
                None => Some("slapd is not running".to_owned()),
            };
            if let Some(reason) = exited {
                self.child = None;
                let error = self.start_error(reason, log_start);
                let port_taken = matches!(&error, SlapdError::Start { log, .. }
                    if log.contains("Address already in use") || log.contains("errno=98"));
                return Err(if port_taken {
                    Launch::PortTaken(error)
                } else {
                    Launch::Failed(error)
                });
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                match self.probe() {
                    Ok(()) => return Ok(()),
                    Err(err) => last_attempt = err,
                }
            }
            if Instant::now() >= deadline {
                // Best effort: the error below is what matters.
                let _ = self.stop();
                let reason = format!(
                    "no admin bind within {} s; last attempt: {last_attempt}",
                    START_TIMEOUT.as_secs()
                );
                return Err(Launch::Failed(self.start_error(reason, log_start)));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// One admin bind with `ldapwhoami`, killed after [`PROBE_TIMEOUT`]: whatever
    /// accepted the connection (another process on a taken port, a slapd still
    /// starting) may never answer, and `nettimeout` only bounds the connect.
    fn probe(&mut self) -> Result<(), String> {
        let mut child = self
            .client(&self.tools.ldapwhoami)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("running ldapwhoami: {err}"))?;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let status = loop {
            // A slapd that exited (say, its port was taken) will not answer: stop
            // waiting, and let the caller read its log.
            let slapd_exited = self
                .child
                .as_mut()
                .is_none_or(|slapd| !matches!(slapd.try_wait(), Ok(None)));
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline && !slapd_exited => {
                    thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    // Best effort: the probe failed either way; `wait` reaps it.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("ldapwhoami got no answer within {PROBE_TIMEOUT:?}"));
                }
                Err(err) => return Err(format!("waiting for ldapwhoami: {err}")),
            }
        };
        if status.success() {
            return Ok(());
        }
        // It has exited: its few lines of error output are all in the pipe.
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        Err(format!("ldapwhoami {status}: {}", stderr.trim()))
    }

    /// A [`SlapdError::Start`] with what slapd logged since `log_start`.
    fn start_error(&self, reason: String, log_start: u64) -> SlapdError {
        let log = match fs::read(&self.log_path) {
            Ok(bytes) => {
                let start = usize::try_from(log_start).unwrap_or(0).min(bytes.len());
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            }
            Err(err) => format!("(unreadable: {err})"),
        };
        SlapdError::Start {
            url: self.url(),
            reason,
            log_path: self.log_path.clone(),
            log,
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // Nothing to report from a destructor; a failure only leaves a zombie until the
        // test process exits. The temporary folder is removed after this.
        let _ = self.stop();
    }
}

/// Shorthand for [`SlapdError::Io`].
fn io_error(action: impl Into<String>, source: io::Error) -> SlapdError {
    SlapdError::Io {
        action: action.into(),
        source,
    }
}

/// Run `command` to completion; a non-zero exit is a [`SlapdError::Tool`].
fn run(mut command: Command, program: &str, target: &str) -> Result<Output, SlapdError> {
    let output = command
        .output()
        .map_err(|source| io_error(format!("running {program}"), source))?;
    if output.status.success() {
        return Ok(output);
    }
    let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(last) = stdout.lines().rev().find(|line| !line.trim().is_empty()) {
        stderr.push_str(&format!(" (last output: {})", last.trim()));
    }
    Err(SlapdError::Tool {
        program: program.to_owned(),
        target: target.to_owned(),
        status: output.status,
        stderr,
    })
}

/// The first `dn:` of an LDIF text, to name it in errors.
fn first_dn(ldif: &str) -> String {
    ldif.lines()
        .find_map(|line| line.strip_prefix("dn:"))
        .map_or_else(|| "LDIF without a dn".to_owned(), |dn| dn.trim().to_owned())
}
