//! `test-directory`: runs a command next to a real, throw-away OpenLDAP directory.
//!
//! ```sh
//! test-directory --users 1000 --plugin openldap.wasm --dir demo -- sh -c 'abacsync sync'
//! ```
//!
//! Starts slapd on a free loopback port with `--users` generated people (with groups
//! and `memberOf`), writes `<dir>/abacsync.toml` with one tenant for it, runs the
//! command with `ABACSYNC_CONFIG`, `LDAP_URL`, `LDAP_BIND_DN`, `LDAP_BIND_PASSWORD`
//! and `LDAP_BASE_DN` set, then stops the directory and exits with the command's
//! status. Used by `scripts/demo.sh`.
//!
//! With `--postgres`, it also starts a throw-away PostgreSQL server on a free loopback
//! port and points the configuration's `[store]` at a database on it, so that several
//! `abacsync serve` replicas can share it (`scripts/cluster-demo.sh`); its URL is in
//! `ABACSYNC_STORE_URL` and `PG_URL` too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use abacsync_testkit::directory::{PeopleOptions, write_people_ldif};
use abacsync_testkit::slapd::Slapd;

struct Args {
    users: usize,
    plugin: PathBuf,
    dir: PathBuf,
    postgres: bool,
    command: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut users = 1000;
    let mut plugin = None;
    let mut dir = None;
    let mut postgres = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--users" => {
                users = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--users needs a number")?;
            }
            "--plugin" => plugin = Some(PathBuf::from(args.next().ok_or("--plugin needs a path")?)),
            "--dir" => dir = Some(PathBuf::from(args.next().ok_or("--dir needs a path")?)),
            "--postgres" => postgres = true,
            "--" => {
                let command: Vec<String> = args.collect();
                if command.is_empty() {
                    return Err("no command after --".into());
                }
                return Ok(Args {
                    users,
                    plugin: plugin.ok_or("--plugin is required")?,
                    dir: dir.ok_or("--dir is required")?,
                    postgres,
                    command,
                });
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Err("usage: test-directory --users N --plugin FILE --dir DIR [--postgres] -- COMMAND…".into())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("test-directory: {message}");
            return ExitCode::from(2);
        }
    };
    let base = "dc=example,dc=org";
    let users = args.users;
    let options = PeopleOptions {
        groups: (users / 50).clamp(1, 100).min(users.max(1)),
        nested_groups: true,
        member_of: true,
        ..PeopleOptions::default()
    };
    // Like a production provider: syncprov, so incremental syncs use RFC 4533 and see
    // deletions.
    let slapd = match Slapd::builder()
        .memberof(true)
        .syncprov(Some(100_000))
        .ldif_writer(move |out| write_people_ldif(out, base, users, &options))
        .start()
    {
        Ok(slapd) => slapd,
        Err(err) => {
            eprintln!("test-directory: cannot start slapd: {err}");
            return ExitCode::from(2);
        }
    };
    let postgres = if args.postgres {
        match abacsync_testkit::postgres::Postgres::start()
            .and_then(|server| server.create_database("abacsync").map(|()| server))
        {
            Ok(server) => Some(server),
            Err(err) => {
                eprintln!("test-directory: cannot start PostgreSQL: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let store_url = postgres.as_ref().map(|server| server.url("abacsync"));
    std::fs::create_dir_all(&args.dir).unwrap();
    let dir = std::fs::canonicalize(&args.dir).unwrap();
    let plugin = std::fs::canonicalize(&args.plugin).unwrap();
    let config = format!(
        r#"# Written by test-directory for a throw-away slapd at {url}.
data_dir = "data"

[[tenant]]
id = 1
name = "example"
default_language = "en"
plugin = {{ path = "{plugin}" }}

[tenant.ldap]
servers = ["{url}"]
tls = "plain"            # loopback only; use starttls or ldaps for real directories
bind_dn = "{admin}"
bind_password_env = "LDAP_BIND_PASSWORD"
base_dn = "ou=people,{base}"
user_filter = "(objectClass=inetOrgPerson)"
change_attribute = "entryCSN"

[tenant.removal]
policy = "deactivate"
max_percent = 10.0
"#,
        url = slapd.url(),
        plugin = plugin.display(),
        admin = slapd.admin_dn(),
    );
    let config = match &store_url {
        Some(url) => {
            format!("{config}\n[store]\nurl = \"{url}\"   # a throw-away server on loopback\n")
        }
        None => config,
    };
    let config_path = dir.join("abacsync.toml");
    std::fs::write(&config_path, config).unwrap();
    eprintln!(
        "test-directory: slapd at {} with {users} users; tenant config {}",
        slapd.url(),
        config_path.display()
    );
    let mut command = Command::new(&args.command[0]);
    if let Some(url) = &store_url {
        eprintln!(
            "test-directory: PostgreSQL at {}",
            abacsync_testkit::postgres::redacted(url)
        );
        command.env("ABACSYNC_STORE_URL", url).env("PG_URL", url);
    }
    let status = command
        .args(&args.command[1..])
        .env("ABACSYNC_CONFIG", &config_path)
        .env("LDAP_URL", slapd.url())
        .env("LDAP_BIND_DN", slapd.admin_dn())
        .env("LDAP_BIND_PASSWORD", slapd.admin_password())
        .env("LDAP_BASE_DN", base)
        .status();
    drop(slapd);
    drop(postgres);
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("test-directory: the command failed: {status}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("test-directory: cannot run {}: {err}", args.command[0]);
            ExitCode::from(2)
        }
    }
}
