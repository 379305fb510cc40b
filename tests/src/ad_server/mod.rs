//! An LDAP server on a free loopback port that answers like an Active Directory domain
//! controller where a sync client can tell the difference, for tests that cannot run a
//! real DC.
//!
//! Emulated: simple bind (wrong password → invalidCredentials 49 with AD's `data 52e`
//! text; an anonymous bind succeeds but its searches fail with operationsError 1), the
//! root DSE, base/one-level/subtree search under the base DN (noSuchObject 32 with
//! `matchedDN` for a missing base), filters with AD's matching (case-insensitive names and
//! text, octet-string `objectGUID`, normalised DNs, `objectCategory=person`, numbers and
//! GeneralizedTime ordered by value, the bit-and/bit-or and in-chain matching rules), the
//! attribute list (`*`, `1.1`, names, typesOnly), the paged results control capped at
//! MaxPageSize, MaxPageSize as a size limit for unpaged searches (sizeLimitExceeded 4),
//! range retrieval of large attributes (MaxValRange, `member;range=0-1499` … `…-*`), the
//! `member`/`memberOf` link pair, optional continuation references from the domain root,
//! and unavailableCriticalExtension 12 for critical controls it does not know.
//!
//! Not emulated: TLS/StartTLS, SASL (NTLM, Kerberos), UPN or `DOMAIN\user` bind names,
//! writes (refused with unwillingToPerform 53), DirSync and USN-based replication
//! controls, server-side sorting, VLV, deleted objects, the global catalog, time and admin
//! limits other than MaxPageSize and MaxValRange, and referral chasing.
//!
//! Tests can inject faults and observe the client: [`AdServerBuilder::fail_after_entries`]
//! drops the connection mid-search, and [`AdServer::searches`] lists every search
//! received.
//!
//! The server runs on its own thread with its own Tokio runtime, so both `#[tokio::test]`
//! and plain `#[test]` functions can use it; it stops when the [`AdServer`] is dropped.

mod attributes;
mod codec;
mod directory;
mod entry;
mod filter;
mod search;
mod session;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use self::directory::Directory;
pub use self::entry::{AdEntry, generalized_time};

/// AD's default MaxValRange policy (Windows Server 2003 and later).
pub const DEFAULT_MAX_VAL_RANGE: usize = 1500;
/// AD's default MaxPageSize policy.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 1000;
/// The base DN a builder starts with.
pub const DEFAULT_BASE_DN: &str = "DC=corp,DC=example";

/// A failure to start the server or to load an entry.
#[derive(Debug, thiserror::Error)]
pub enum AdServerError {
    /// An entry's DN is not under the server's base DN.
    #[error("entry {dn} is not under the base DN {base}")]
    OutsideBase {
        /// The entry's DN, made absolute.
        dn: String,
        /// The server's base DN.
        base: String,
    },
    /// Two entries given to the builder have the same DN.
    #[error("two entries have the DN {dn}")]
    DuplicateDn {
        /// The DN, made absolute.
        dn: String,
    },
    /// A system call failed while starting the server.
    #[error("AD test server: could not {action}")]
    Io {
        /// What the server was doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server thread ended before it reported that it was listening.
    #[error("AD test server: the server thread ended before it was ready")]
    ThreadGone,
}

fn io_error(action: &'static str) -> impl FnOnce(io::Error) -> AdServerError {
    move |source| AdServerError::Io { action, source }
}

/// The scope of a received search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope {
    /// The base object only.
    Base,
    /// The base's immediate children.
    OneLevel,
    /// The base and everything below it.
    Subtree,
}

/// A search request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSearch {
    /// The base DN as sent.
    pub base: String,
    /// The scope.
    pub scope: SearchScope,
    /// The filter in RFC 4515 form; binary values appear escaped (`\ab\cd`).
    pub filter: String,
    /// The requested attributes as sent.
    pub attributes: Vec<String>,
    /// The page size of a paged results control, if the search carried one.
    pub page_size: Option<i64>,
}

/// Builds an [`AdServer`].
///
/// Defaults: base DN [`DEFAULT_BASE_DN`]; no bind account, so every authenticated bind
/// fails until [`AdServerBuilder::bind`] sets one; MaxValRange [`DEFAULT_MAX_VAL_RANGE`];
/// MaxPageSize [`DEFAULT_MAX_PAGE_SIZE`]; no entries but the domain object; no injected
/// fault; no continuation references.
#[derive(Debug, Clone)]
pub struct AdServerBuilder {
    base_dn: String,
    bind: Option<(String, String)>,
    max_val_range: usize,
    max_page_size: usize,
    entries: Vec<AdEntry>,
    fail_after_entries: Option<usize>,
    referrals: bool,
}

impl AdServerBuilder {
    /// The domain's DN; relative entry DNs are completed with it.
    pub fn base_dn(mut self, base_dn: impl Into<String>) -> Self {
        self.base_dn = base_dn.into();
        self
    }

    /// The account that may bind, with its password.
    pub fn bind(mut self, dn: impl Into<String>, password: impl Into<String>) -> Self {
        self.bind = Some((dn.into(), password.into()));
        self
    }

    /// The most values of one attribute returned at once (at least 1).
    pub fn max_val_range(mut self, values: usize) -> Self {
        self.max_val_range = values.max(1);
        self
    }

    /// The most entries in one page, and in one unpaged search (at least 1).
    pub fn max_page_size(mut self, entries: usize) -> Self {
        self.max_page_size = entries.max(1);
        self
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: AdEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds entries.
    pub fn entries(mut self, entries: impl IntoIterator<Item = AdEntry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// Closes a connection once it has been sent `entries` search result entries in all
    /// (counted per connection, across the pages of a paged search), without the
    /// SearchResultDone: a directory dying mid-sync. Every connection fails this way until
    /// [`AdServer::set_fail_after_entries`] lifts it.
    pub fn fail_after_entries(mut self, entries: usize) -> Self {
        self.fail_after_entries = Some(entries);
        self
    }

    /// Whether a subtree search from the domain root also returns the continuation
    /// references a DC sends (ForestDnsZones, DomainDnsZones, Configuration).
    pub fn referrals(mut self, enabled: bool) -> Self {
        self.referrals = enabled;
        self
    }

    /// Loads the entries and starts serving on a free port of 127.0.0.1; returns once
    /// the server accepts connections.
    pub fn start(self) -> Result<AdServer, AdServerError> {
        let directory = Directory::new(&self.base_dn, self.entries)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_error("bind a loopback port"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("make the listener non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(io_error("read the listener's address"))?;
        let shared = Arc::new(Shared {
            config: Config {
                bind: self.bind,
                max_val_range: self.max_val_range,
                max_page_size: self.max_page_size,
                referrals: self.referrals,
            },
            directory: RwLock::new(directory),
            searches: Mutex::new(Vec::new()),
            fail_after_entries: AtomicUsize::new(self.fail_after_entries.unwrap_or(usize::MAX)),
        });
        let (shutdown, stop) = oneshot::channel();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("ad-server-{}", addr.port()))
            .spawn(move || serve(listener, serving, stop, ready_sender))
            .map_err(io_error("spawn the server thread"))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(AdServer {
                addr,
                shared,
                shutdown: Some(shutdown),
                thread: Some(thread),
            }),
            Ok(Err(source)) => {
                let _ = thread.join();
                Err(AdServerError::Io {
                    action: "start the server runtime",
                    source,
                })
            }
            Err(_) => {
                let _ = thread.join();
                Err(AdServerError::ThreadGone)
            }
        }
    }
}

/// The server's fixed settings.
struct Config {
    bind: Option<(String, String)>,
    max_val_range: usize,
    max_page_size: usize,
    referrals: bool,
}

/// State shared by the handle and the connections.
struct Shared {
    config: Config,
    directory: RwLock<Directory>,
    searches: Mutex<Vec<RecordedSearch>>,
    /// Entries per connection before it is dropped; `usize::MAX` for never.
    fail_after_entries: AtomicUsize,
}

impl Shared {
    fn record(&self, search: RecordedSearch) {
        self.searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(search);
    }

    fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server thread: a current-thread runtime accepting connections until shutdown.
fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        sessions.spawn(session::run(stream, Arc::clone(&shared)));
                    }
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        sessions.abort_all();
    });
}

/// A running AD emulation; stops, closing every connection, when dropped.
pub struct AdServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdServer {
    /// A builder with the defaults listed on [`AdServerBuilder`].
    pub fn builder() -> AdServerBuilder {
        AdServerBuilder {
            base_dn: DEFAULT_BASE_DN.to_owned(),
            bind: None,
            max_val_range: DEFAULT_MAX_VAL_RANGE,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            entries: Vec::new(),
            fail_after_entries: None,
            referrals: false,
        }
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base DN.
    pub fn base_dn(&self) -> String {
        self.shared.directory().base_dn().to_owned()
    }

    /// The DN and password that bind, if one was configured.
    pub fn bind_credentials(&self) -> Option<(&str, &str)> {
        self.shared
            .config
            .bind
            .as_ref()
            .map(|(dn, password)| (dn.as_str(), password.as_str()))
    }

    /// How many search requests the server has received (since the last
    /// [`AdServer::clear_searches`]), pages of a paged search counted one by one.
    pub fn search_count(&self) -> usize {
        self.shared
            .searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every search request received, oldest first.
    pub fn searches(&self) -> Vec<RecordedSearch> {
        self.shared
            .searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the searches received so far.
    pub fn clear_searches(&self) {
        self.shared
            .searches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Sets or lifts the fault of [`AdServerBuilder::fail_after_entries`]; connections
    /// count from the moment they were opened.
    pub fn set_fail_after_entries(&self, entries: Option<usize>) {
        self.shared
            .fail_after_entries
            .store(entries.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// Adds an entry or replaces the one with its DN, as a change on the DC would; set
    /// a higher `uSNChanged` ([`AdEntry::with_usn`]) for incremental syncs to see it.
    pub fn upsert_entry(&self, entry: AdEntry) -> Result<(), AdServerError> {
        self.shared
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .upsert(entry)
    }

    /// Deletes the entry with this DN (relative or absolute); whether it existed.
    pub fn remove_entry(&self, dn: &str) -> bool {
        self.shared
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(dn)
    }

    /// Removes several entries at once (links resolved once); returns how many existed.
    pub fn remove_entries(&self, dns: &[&str]) -> usize {
        self.shared
            .directory
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_many(dns)
    }

    /// The entry with this DN (relative or absolute) as the server serves it, links
    /// resolved.
    pub fn entry(&self, dn: &str) -> Option<AdEntry> {
        self.shared
            .directory()
            .find(dn)
            .map(|stored| stored.entry.clone())
    }
}

impl Drop for AdServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for AdServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
