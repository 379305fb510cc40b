//! The HTTP API end to end: the real `abacsync serve` binary on a free loopback port,
//! a real slapd, the OpenLDAP plugin, real HTTP (and the seed documents' own `curl`
//! calls). Every documented status and body of the three triggers is checked here.
//!
//! - [`rocketchat`]: `ldap.syncNow`, `abac/users/sync`, logins, two-factor codes.
//! - [`grommunio`]: `ldap/downsync`, the cookie login, CSRF.
//! - [`grommunio_ldap`]: admin-web's LDAP pages: search, import, dump, orphan check.
//! - [`lifecycle`]: isolation, concurrency, crashes, graceful stops, limits, OpenAPI.
//! - [`replicas`]: several `abacsync serve` on one store: shared cookies, task leases.
//! - [`admin`]: plugins, tenants, schedules through the admin API.
//! - [`security`]: the attacks of the security review, replayed.
//! - [`faults`]: directory faults seen through tasks: limits, referrals, a directory
//!   that stops answering, large values, duplicate ids.
//! - [`watch`]: a watched directory's changes synced as they happen, one watcher per
//!   tenant across replicas.

mod admin;
mod bad_requests;
mod clients;
mod faults;
mod grommunio;
mod grommunio_ldap;
mod host_faults;
mod lifecycle;
mod neighbours;
mod replicas;
mod rocketchat;
mod security;
mod watch;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abacsync_testkit::directory::{PeopleOptions, people_ldif};
use abacsync_testkit::plugins;
use abacsync_testkit::slapd::Slapd;
use serde_json::{Value, json};

use crate::sync::tenant_toml;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// A running `abacsync serve`, killed on drop.
pub struct Server {
    child: Child,
    base: String,
    pub agent: ureq::Agent,
}

impl Server {
    pub fn start(config: &Path) -> Self {
        Self::start_wrapped(config, &[])
    }

    /// Starts `abacsync serve` through `wrapper` (a program and its arguments that
    /// end by running the command appended to them, such as `unshare … sh -c …`).
    pub fn start_wrapped(config: &Path, wrapper: &[&str]) -> Self {
        Self::spawn(config, wrapper, Stdio::inherit())
    }

    /// Starts `abacsync serve` with its standard error written to `log`.
    pub fn start_logging_to(config: &Path, log: &Path) -> Self {
        Self::start_logging_at(config, log, "warn")
    }

    /// Like [`Server::start_logging_to`], at log `level` (`debug`, …).
    pub fn start_logging_at(config: &Path, log: &Path, level: &str) -> Self {
        let file = std::fs::File::create(log).expect("create the server's log file");
        Self::spawn_at(config, &[], Stdio::from(file), level)
    }

    /// [`Server::start_logging_at`] with `args` added.
    pub fn start_logging_with_args(config: &Path, log: &Path, level: &str, args: &[&str]) -> Self {
        let file = std::fs::File::create(log).expect("create the server's log file");
        Self::spawn_full(config, &[], Stdio::from(file), level, args)
    }

    /// Starts `abacsync serve` with `args` added (e.g. `--store PATH`).
    pub fn start_with_args(config: &Path, args: &[&str]) -> Self {
        Self::spawn_full(config, &[], Stdio::inherit(), "warn", args)
    }

    fn spawn(config: &Path, wrapper: &[&str], stderr: Stdio) -> Self {
        Self::spawn_at(config, wrapper, stderr, "warn")
    }

    fn spawn_at(config: &Path, wrapper: &[&str], stderr: Stdio, level: &str) -> Self {
        Self::spawn_full(config, wrapper, stderr, level, &[])
    }

    fn spawn_full(
        config: &Path,
        wrapper: &[&str],
        stderr: Stdio,
        level: &str,
        args: &[&str],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_abacsync");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(args)
            .env("ABACSYNC_ADMIN_USER", ADMIN)
            .env("ABACSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ABACSYNC_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start abacsync serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("abacsync listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { child, base, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request; returns status and JSON body (Null when the body is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        abacsync_testkit::http::call_json(
            &self.agent,
            method,
            &self.url(path),
            headers,
            body.as_ref(),
        )
    }

    /// grommunio's downsync of `tenant` with import, waiting up to 60 s for the answer.
    pub fn downsync(&self, auth: &RcAuth, tenant: u64) -> (u16, Value) {
        self.post(
            &format!("/api/v1/domains/{tenant}/ldap/downsync?import=true&timeout=60"),
            &auth.step_up(),
            None,
        )
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
        self.call("POST", path, headers, body)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.call("GET", path, headers, None)
    }

    /// `GET /metrics` (Prometheus text, no login).
    pub fn metrics(&self) -> String {
        self.agent
            .get(&self.url("/metrics"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// Rocket.Chat login: (userId, authToken).
    pub fn login(&self, user: &str, password: &str) -> RcAuth {
        let (status, body) = self.post(
            "/api/v1/login",
            &[],
            Some(json!({"user": user, "password": password})),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "success");
        RcAuth {
            user_id: body["data"]["userId"].as_str().unwrap().to_owned(),
            token: body["data"]["authToken"].as_str().unwrap().to_owned(),
            password_digest: abacsync::auth::token::sha256_hex(password),
        }
    }

    /// grommunio login: (jwt, csrf), checking the cookie is set.
    pub fn form_login(&self, user: &str, password: &str) -> (String, String) {
        let mut response = self
            .agent
            .post(&self.url("/api/v1/login"))
            .send_form([("user", user), ("pass", password)])
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let cookie = response
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.body_mut().read_json().unwrap();
        let jwt = body["grommunioAuthJwt"].as_str().unwrap().to_owned();
        assert!(
            cookie.starts_with(&format!("grommunioAuthJwt={jwt};")),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly"));
        (jwt, body["csrf"].as_str().unwrap().to_owned())
    }

    /// Uploads the component of `package` through the admin API; status and body.
    pub fn upload(&self, auth: &RcAuth, package: &str) -> (u16, Value) {
        let bytes = plugins::bytes(package);
        self.send_raw(
            "POST",
            &format!("/api/v1/admin/plugins?name={package}.wasm"),
            &auth.headers(),
            "application/wasm",
            &bytes,
        )
    }

    /// A request with a body of any content type; returns status and JSON body (Null
    /// when the body is not JSON).
    pub fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("content-type", content_type);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = self
            .agent
            .run(request.body(body.to_vec()).unwrap())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Tenant 1's sync runs as (start, end), sorted, checked never to overlap.
    pub fn runs_never_overlapping(&self, auth: &RcAuth) -> Vec<(String, String)> {
        let (_, runs) = self.get("/api/v1/admin/tenants/1/runs", &auth.headers());
        let mut spans: Vec<(String, String)> = runs["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["started"].as_str().unwrap().to_owned(),
                    r["finished"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
        }
        spans
    }

    /// Creates an account through the admin API.
    pub fn create_account(&self, admin: &RcAuth, body: Value) {
        let (status, answer) = self.post("/api/v1/admin/accounts", &admin.headers(), Some(body));
        assert_eq!(status, 201, "{answer}");
    }

    /// Polls a task until it ends.
    pub fn wait_task(&self, auth: &RcAuth, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, task) = self.get(&format!("/api/v1/tasq/tasks/{id}"), &auth.headers());
            assert_eq!(status, 200, "{task}");
            if !matches!(task["stateName"].as_str(), Some("queued" | "running")) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} did not end: {task}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn tasks(&self, auth: &RcAuth) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/tasq/tasks?level=2&limit=1000", &auth.headers());
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_term();
        self.wait_exit()
    }

    /// Sends SIGTERM.
    pub fn send_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to 60 s for the process to end; its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "abacsync did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct RcAuth {
    pub user_id: String,
    pub token: String,
    /// The password's SHA-256 hex digest: Rocket.Chat's `password` two-factor code.
    pub password_digest: String,
}

impl RcAuth {
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![("x-user-id", &self.user_id), ("x-auth-token", &self.token)]
    }

    /// The headers with the password method's two-factor code: what a full-sync
    /// trigger asks of a Rocket.Chat token (for an account without TOTP or email).
    pub fn step_up(&self) -> Vec<(&str, &str)> {
        let mut headers = self.headers();
        headers.push(("x-2fa-code", &self.password_digest));
        headers
    }
}

/// A directory of `count` people and a configuration with tenant 1 on it and tenant 2
/// with LDAP and ABAC disabled.
pub struct Setup {
    pub slapd: Slapd,
    dir: tempfile::TempDir,
    /// The store's URL when it is a PostgreSQL database (else the data folder's file).
    postgres: Option<String>,
}

/// Which backend a test's store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The file in the data folder.
    Sqlite,
    /// A fresh database of the test binary's PostgreSQL server.
    Postgres,
}

/// One `#[test]` per backend for a test function taking the [`Backend`]: a module of
/// its name with `sqlite` and `postgres`.
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::api::Backend::Sqlite);
                }
                #[test]
                fn postgres() {
                    super::$name($crate::api::Backend::Postgres);
                }
            }
        )+
    };
}
pub(crate) use on_every_store;

impl Setup {
    pub fn new(count: usize) -> Self {
        Self::with_server(count, "")
    }

    /// With `server` appended to the configuration (e.g. a `[server.smtp]` table).
    pub fn with_server(count: usize, server: &str) -> Self {
        Self::custom(people_slapd(count), "", "", server)
    }

    /// Tenant 1 on `slapd` with `ldap_extra` lines in its `[tenant.ldap]` and
    /// `tenant_extra` in `[tenant]`.
    pub fn custom(slapd: Slapd, ldap_extra: &str, tenant_extra: &str, server: &str) -> Self {
        Self::custom_on(Backend::Sqlite, slapd, ldap_extra, tenant_extra, server)
    }

    /// [`Setup::with_server`] with its store on `backend`.
    pub fn with_server_on(backend: Backend, count: usize, server: &str) -> Self {
        Self::custom_on(backend, people_slapd(count), "", "", server)
    }

    /// Tenant 1 on a slapd with `count` people, its store the PostgreSQL database at
    /// `url`.
    pub fn on_database(url: String, count: usize) -> Self {
        let setup = Self {
            slapd: people_slapd(count),
            dir: tempfile::tempdir().unwrap(),
            postgres: Some(url),
        };
        setup.write_config("", "", "");
        setup
    }

    /// [`Setup::custom`] with its store on `backend`.
    pub fn custom_on(
        backend: Backend,
        slapd: Slapd,
        ldap_extra: &str,
        tenant_extra: &str,
        server: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let postgres = (backend == Backend::Postgres).then(|| {
            let server = abacsync_testkit::postgres::Postgres::shared()
                .unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
            server.fresh_database().unwrap()
        });
        let setup = Self {
            slapd,
            dir,
            postgres,
        };
        setup.write_config(ldap_extra, tenant_extra, server);
        setup
    }

    fn write_config(&self, ldap_extra: &str, tenant_extra: &str, server: &str) {
        let plugin = plugins::component("openldap-mapping");
        let one = tenant_toml(&self.slapd, &plugin, ldap_extra, tenant_extra);
        let two = tenant_toml(
            &self.slapd,
            &plugin,
            "",
            "ldap_enabled = false\nabac_enabled = false",
        )
        .replace("id = 1", "id = 2")
        .replace("name = \"example\"", "name = \"other\"");
        let mut text = format!(
            "data_dir = \"{}\"\n{one}\n{two}\n{server}",
            self.dir.path().join("data").display()
        );
        if let Some(url) = &self.postgres {
            text.push_str(&format!("\n[store]\nurl = \"{url}\"\n"));
        }
        std::fs::write(self.config(), text).unwrap();
    }

    pub fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("abacsync.toml")
    }

    /// Gives tenant 1 the component of `package` with `settings` (the body of a TOML
    /// inline table).
    pub fn set_plugin(&self, package: &str, settings: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let start = text.find("plugin = { path = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let plugin = plugins::component(package);
        let line = format!(
            "plugin = {{ path = \"{}\", settings = {{ {settings} }} }}",
            plugin.display()
        );
        let replaced = format!("{}{line}{}", &text[..start], &text[end..]);
        std::fs::write(self.config(), replaced).unwrap();
    }

    /// The server's data folder (store, JWT key, plugin cache).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The configuration of another replica: the same tenants, its own data folder
    /// (`data-NAME`). Start it with `--store` naming [`Setup::data_dir`]'s store to
    /// share the first one's.
    pub fn replica_config(&self, name: &str) -> std::path::PathBuf {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let data = self.data_dir().display().to_string();
        let replica = self.dir.path().join(format!("data-{name}"));
        let path = self.dir.path().join(format!("abacsync-{name}.toml"));
        std::fs::write(
            &path,
            text.replace(
                &format!("data_dir = \"{data}\""),
                &format!("data_dir = \"{}\"", replica.display()),
            ),
        )
        .unwrap();
        path
    }

    /// The key that signs the grommunio cookies, as the server keeps it in its store.
    pub fn jwt_secret(&self) -> Vec<u8> {
        let db = rusqlite::Connection::open(self.data_dir().join("abacsync.db")).unwrap();
        db.query_row(
            "SELECT value FROM shared_secrets WHERE name = 'grommunio-jwt'",
            [],
            |row| row.get(0),
        )
        .unwrap()
    }

    /// The store of the first replica, to share through `--store`.
    pub fn store_path(&self) -> String {
        if let Some(url) = &self.postgres {
            return url.clone();
        }
        self.data_dir().join("abacsync.db").display().to_string()
    }
}

/// A slapd holding `count` generated people under `dc=example,dc=org`.
pub fn people_slapd(count: usize) -> Slapd {
    let ldif = people_ldif("dc=example,dc=org", count, &PeopleOptions::default()).unwrap();
    Slapd::builder().ldif(ldif).start().unwrap()
}

/// A `[[tenant]]` on `slapd` with id `id`, named `tenant {id}`, reading pages of 500
/// through the component at `plugin` with `settings` (the body of a TOML inline table;
/// empty for none).
pub fn numbered_tenant(slapd: &Slapd, id: u64, plugin: &Path, settings: &str) -> String {
    tenant_toml(slapd, plugin, "", "")
        .replace("id = 1", &format!("id = {id}"))
        .replace("name = \"example\"", &format!("name = \"tenant {id}\""))
        .replace("page_size = 7", "page_size = 500")
        .replace(
            &format!("plugin = {{ path = \"{}\" }}", plugin.display()),
            &format!(
                "plugin = {{ path = \"{}\", settings = {{ {settings} }} }}",
                plugin.display()
            ),
        )
}
