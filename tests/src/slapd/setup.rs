//! Everything [`super::SlapdBuilder::start`] does before slapd runs: finding the
//! programs, schemas and modules, generating certificates, writing `slapd.conf`,
//! loading the initial entries with `slapadd`, and picking free ports.

use super::{ADMIN_PASSWORD, SlapdError, io_error};
use crate::certificates::{CA_CERT, SERVER_CERT, SERVER_KEY};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

/// Where distributions put slapd and its tools besides the `PATH` (which often lacks
/// `sbin` for non-root users).
const PROGRAM_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/libexec/openldap",
];

/// Where distributions put OpenLDAP's schema files.
const SCHEMA_DIRS: &[&str] = &[
    "/etc/ldap/schema",
    "/etc/openldap/schema",
    "/usr/local/etc/openldap/schema",
];

/// Where distributions put slapd's dynamically loaded modules.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/ldap",
    "/usr/lib64/openldap",
    "/usr/lib/openldap",
    "/usr/libexec/openldap",
    "/usr/local/libexec/openldap",
];

/// The programs the fixture runs.
pub(super) struct Tools {
    pub slapd: PathBuf,
    pub slapadd: PathBuf,
    pub ldapsearch: PathBuf,
    pub ldapadd: PathBuf,
    pub ldapmodify: PathBuf,
    pub ldapdelete: PathBuf,
    pub ldapwhoami: PathBuf,
    /// Only looked for when TLS is on.
    pub openssl: Option<PathBuf>,
}

/// Everything installed that one fixture needs.
pub(super) struct Prerequisites {
    pub tools: Tools,
    /// Resolved schema files, in load order.
    pub schema_files: Vec<PathBuf>,
    /// The module folder and the modules to load from it (those not built in).
    pub modules: Option<(PathBuf, Vec<&'static str>)>,
}

impl Prerequisites {
    /// Find the programs, `schemas` and modules, or say which is missing.
    pub fn find(
        schemas: &[String],
        memberof: bool,
        syncprov: bool,
        tls: bool,
    ) -> Result<Self, SlapdError> {
        let tools = Tools {
            slapd: find_program("slapd")?,
            slapadd: find_program("slapadd")?,
            ldapsearch: find_program("ldapsearch")?,
            ldapadd: find_program("ldapadd")?,
            ldapmodify: find_program("ldapmodify")?,
            ldapdelete: find_program("ldapdelete")?,
            ldapwhoami: find_program("ldapwhoami")?,
            openssl: if tls {
                Some(find_program("openssl")?)
            } else {
                None
            },
        };
        let schema_files = find_schemas(schemas)?;
        let modules = find_modules(&tools.slapd, memberof, syncprov)?;
        Ok(Self {
            tools,
            schema_files,
            modules,
        })
    }
}

/// `name` on the `PATH` or in [`PROGRAM_DIRS`].
fn find_program(name: &str) -> Result<PathBuf, SlapdError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(PROGRAM_DIRS.iter().map(PathBuf::from));
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| SlapdError::MissingPrerequisite {
            what: format!("the {name} program"),
            looked_in: format!("PATH and {}", PROGRAM_DIRS.join(", ")),
        })
}

/// Resolve schema names (`nis`, `nis.schema`) in the first schema folder holding
/// `core.schema`; names with a `/` are paths.
fn find_schemas(schemas: &[String]) -> Result<Vec<PathBuf>, SlapdError> {
    let schema_dir = SCHEMA_DIRS
        .iter()
        .map(Path::new)
        .find(|dir| dir.join("core.schema").is_file());
    schemas
        .iter()
        .map(|name| {
            let path = if name.contains('/') {
                PathBuf::from(name)
            } else {
                let file = if name.ends_with(".schema") {
                    name.clone()
                } else {
                    format!("{name}.schema")
                };
                schema_dir.map(|dir| dir.join(&file)).unwrap_or_default()
            };
            if path.is_file() {
                Ok(path)
            } else {
                Err(SlapdError::MissingPrerequisite {
                    what: format!("schema file {name}"),
                    looked_in: match schema_dir {
                        Some(dir) => dir.display().to_string(),
                        None => SCHEMA_DIRS.join(", "),
                    },
                })
            }
        })
        .collect()
}

/// The modules to `moduleload`: `back_mdb`, plus `memberof` and `refint` when asked,
/// unless slapd has them built in (`slapd -VVV` lists those).
fn find_modules(
    slapd: &Path,
    memberof: bool,
    syncprov: bool,
) -> Result<Option<(PathBuf, Vec<&'static str>)>, SlapdError> {
    let output = Command::new(slapd)
        .arg("-VVV")
        .output()
        .map_err(|source| io_error(format!("running {} -VVV", slapd.display()), source))?;
    // slapd prints its version and built-in backends and overlays to standard error.
    let built_in: BTreeSet<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with(char::is_whitespace))
        .map(|line| line.trim().to_owned())
        .collect();
    let mut wanted = vec![("back_mdb", "mdb")];
    if memberof {
        wanted.extend([("memberof", "memberof"), ("refint", "refint")]);
    }
    if syncprov {
        wanted.push(("syncprov", "syncprov"));
    }
    let needed: Vec<&'static str> = wanted
        .into_iter()
        .filter(|(_, name)| !built_in.contains(*name))
        .map(|(module, _)| module)
        .collect();
    let Some(first) = needed.first() else {
        return Ok(None);
    };
    let has = |dir: &Path, module: &str| {
        dir.join(format!("{module}.so")).is_file() || dir.join(format!("{module}.la")).is_file()
    };
    let dir = MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| has(dir, first))
        .ok_or_else(|| SlapdError::MissingPrerequisite {
            what: format!("slapd module {first}"),
            looked_in: MODULE_DIRS.join(", "),
        })?;
    if let Some(missing) = needed.iter().find(|module| !has(&dir, module)) {
        return Err(SlapdError::MissingPrerequisite {
            what: format!("slapd module {missing}"),
            looked_in: dir.display().to_string(),
        });
    }
    Ok(Some((dir, needed)))
}

/// Matching rules for the syntaxes (OIDs or `msuser.schema`'s macros) that
/// `msuser.schema` leaves without any: without an `EQUALITY` rule slapd can neither
/// index an attribute nor match it in a filter, so `(sAMAccountName=…)`,
/// `(memberOf=…)` or `(uSNChanged>=…)` would never match.
const MATCHING_RULES: &[(&[&str], &str)] = &[
    (
        &["1.3.6.1.4.1.1466.115.121.1.12"],
        "EQUALITY distinguishedNameMatch",
    ),
    (
        &["1.3.6.1.4.1.1466.115.121.1.15"],
        "EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch",
    ),
    (
        &["1.3.6.1.4.1.1466.115.121.1.24"],
        "EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch",
    ),
    (
        &["1.3.6.1.4.1.1466.115.121.1.26"],
        "EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch",
    ),
    (
        &["1.3.6.1.4.1.1466.115.121.1.27", "MSADlargeInteger"],
        "EQUALITY integerMatch ORDERING integerOrderingMatch",
    ),
    (
        &[
            "1.3.6.1.4.1.1466.115.121.1.40",
            "MSADdnWithOctetString",
            "MSADdnWithString",
            "MSADsecDesc",
        ],
        "EQUALITY octetStringMatch",
    ),
    (&["1.3.6.1.4.1.1466.115.121.1.7"], "EQUALITY booleanMatch"),
    (
        &["1.3.6.1.4.1.1466.115.121.1.38"],
        "EQUALITY objectIdentifierMatch",
    ),
];

/// The schema files to include: `schema_files`, except that `msuser.schema` is
/// replaced by a copy in `dir` with [`MATCHING_RULES`] added.
pub(super) fn prepare_schemas(
    schema_files: &[PathBuf],
    dir: &Path,
) -> Result<Vec<PathBuf>, SlapdError> {
    schema_files
        .iter()
        .map(|path| {
            if path.file_name().is_none_or(|name| name != "msuser.schema") {
                return Ok(path.clone());
            }
            let text = std::fs::read_to_string(path)
                .map_err(|source| io_error(format!("reading {}", path.display()), source))?;
            let copy = dir.join("msuser.schema");
            std::fs::write(&copy, add_matching_rules(&text))
                .map_err(|source| io_error(format!("writing {}", copy.display()), source))?;
            Ok(copy)
        })
        .collect()
}

/// `schema` with an `EQUALITY` (and `ORDERING`/`SUBSTR` where they make sense) rule
/// added to every `attributetype` that has none and a syntax in [`MATCHING_RULES`].
fn add_matching_rules(schema: &str) -> String {
    let mut out = String::with_capacity(schema.len() + schema.len() / 8);
    let mut lines = schema.lines().peekable();
    while let Some(line) = lines.next() {
        let mut block = line.to_owned();
        if line.to_ascii_lowercase().starts_with("attributetype") {
            // A definition continues on lines starting with white space.
            while let Some(next) = lines.next_if(|next| next.starts_with([' ', '\t'])) {
                block.push('\n');
                block.push_str(next);
            }
            block = with_matching_rules(block);
        }
        out.push_str(&block);
        out.push('\n');
    }
    out
}

/// One `attributetype` definition, with matching rules if it lacks them.
fn with_matching_rules(definition: String) -> String {
    if definition.contains("EQUALITY") {
        return definition;
    }
    let Some(at) = definition.find("SYNTAX") else {
        return definition;
    };
    let syntax = definition[at + "SYNTAX".len()..]
        .trim_start()
        .trim_start_matches('\'')
        .split(|c: char| c == '\'' || c == '{' || c.is_whitespace())
        .next()
        .unwrap_or_default();
    match MATCHING_RULES
        .iter()
        .find(|(syntaxes, _)| syntaxes.contains(&syntax))
    {
        Some((_, rules)) => format!("{}{rules} {}", &definition[..at], &definition[at..]),
        None => definition,
    }
}

/// What [`render_config`] needs.
pub(super) struct ConfigInput<'a> {
    pub suffix: &'a str,
    /// The fixture's folder: data, pid file and TLS material live there.
    pub dir: &'a Path,
    pub prerequisites: &'a Prerequisites,
    /// The schema files to include, from [`prepare_schemas`].
    pub schemas: &'a [PathBuf],
    pub memberof: bool,
    /// The `syncprov` overlay's session log size, when it is loaded.
    pub syncprov: Option<usize>,
    /// `syncprov-reloadhint TRUE`.
    pub syncprov_reload_hint: bool,
    pub tls: bool,
    pub require_tls: bool,
    pub size_limit: Option<usize>,
    pub paged_total_limit: Option<usize>,
    pub time_limit: Option<u32>,
}

/// The `slapd.conf`. Ports are not in it (they are slapd's `-h` argument), so the
/// same file serves every restart.
pub(super) fn render_config(input: &ConfigInput<'_>) -> Result<String, SlapdError> {
    let suffix = input.suffix;
    if suffix.is_empty() || !suffix.contains('=') || suffix.contains(['"', '\\', '\n']) {
        return Err(SlapdError::InvalidConfig(format!(
            "suffix `{suffix}` must be a DN like dc=example,dc=org, without quotes or escapes"
        )));
    }
    let quote = |path: &Path| format!("\"{}\"", path.display());
    let dir = input.dir;
    let mut lines =
        vec!["# Written by abacsync-testkit (tests/src/slapd) for one test.".to_owned()];
    // Schemas before modules: the memberof module defines `memberOf`, and a schema
    // defining it afterwards (msuser) is a duplicate; the other way round it is shared.
    for schema in input.schemas {
        lines.push(format!("include {}", quote(schema)));
    }
    if let Some((module_dir, modules)) = &input.prerequisites.modules {
        lines.push(format!("modulepath {}", quote(module_dir)));
        lines.extend(modules.iter().map(|module| format!("moduleload {module}")));
    }
    lines.push(format!("pidfile {}", quote(&dir.join("slapd.pid"))));
    lines.push(format!("argsfile {}", quote(&dir.join("slapd.args"))));
    let paged_total = input
        .paged_total_limit
        .map_or_else(|| "unlimited".to_owned(), |total| total.to_string());
    lines.push(match input.size_limit {
        Some(limit) => {
            format!("sizelimit size.soft={limit} size.hard={limit} size.prtotal={paged_total}")
        }
        None => "sizelimit unlimited".to_owned(),
    });
    lines.push(match input.time_limit {
        Some(seconds) => format!("timelimit time.soft={seconds} time.hard={seconds}"),
        None => "timelimit unlimited".to_owned(),
    });
    if input.tls {
        lines.push(format!(
            "TLSCACertificateFile {}",
            quote(&dir.join(CA_CERT))
        ));
        lines.push(format!(
            "TLSCertificateFile {}",
            quote(&dir.join(SERVER_CERT))
        ));
        lines.push(format!(
            "TLSCertificateKeyFile {}",
            quote(&dir.join(SERVER_KEY))
        ));
    }
    if input.require_tls {
        lines.push("security tls=1".to_owned());
    }
    lines.extend([
        "access to attrs=userPassword by self write by anonymous auth by * none".to_owned(),
        "access to * by * read".to_owned(),
        String::new(),
        "database mdb".to_owned(),
        format!("suffix \"{suffix}\""),
        format!("rootdn \"cn=admin,{suffix}\""),
        format!("rootpw \"{ADMIN_PASSWORD}\""),
        format!("directory {}", quote(&dir.join("data"))),
        // A sparse map: room for far more than 100,000 entries, costs nothing.
        "maxsize 4294967296".to_owned(),
        // Tests survive a killed slapd (the page cache keeps the data), not a power cut.
        "dbnosync".to_owned(),
        "index objectClass eq".to_owned(),
        "index uid eq".to_owned(),
        "index member eq".to_owned(),
        "index entryUUID eq".to_owned(),
        "index entryCSN eq".to_owned(),
        "index modifyTimestamp eq".to_owned(),
    ]);
    if let Some(session_log) = input.syncprov {
        lines.extend([
            "overlay syncprov".to_owned(),
            "syncprov-checkpoint 100 1".to_owned(),
            format!("syncprov-sessionlog {session_log}"),
        ]);
        if input.syncprov_reload_hint {
            lines.push("syncprov-reloadhint TRUE".to_owned());
        }
    }
    if input.memberof {
        lines.extend([
            "index memberOf eq".to_owned(),
            "overlay memberof".to_owned(),
            "memberof-group-oc groupOfNames".to_owned(),
            "memberof-member-ad member".to_owned(),
            "memberof-memberof-ad memberOf".to_owned(),
            "memberof-refint TRUE".to_owned(),
            "overlay refint".to_owned(),
            "refint_attributes member".to_owned(),
        ]);
    }
    lines.push(String::new());
    Ok(lines.join("\n"))
}

/// A CA and a server certificate in `dir` ([`crate::certificates`]); returns the CA's
/// file.
pub(super) fn generate_certificates(tools: &Tools, dir: &Path) -> Result<PathBuf, SlapdError> {
    let Some(openssl) = &tools.openssl else {
        return Err(SlapdError::MissingPrerequisite {
            what: "the openssl program".to_owned(),
            looked_in: "PATH".to_owned(),
        });
    };
    crate::certificates::generate(openssl, dir)
        .map(|made| made.ca)
        .map_err(|err| SlapdError::InvalidConfig(err.to_string()))
}

/// Writes LDIF into `slapadd`'s standard input.
pub(super) type LdifWriter = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// Initial entries for `slapadd`.
pub(super) enum LdifSource {
    /// LDIF text.
    Text(String),
    /// An LDIF file.
    File(PathBuf),
    /// A function writing LDIF into `slapadd`'s standard input.
    Writer(LdifWriter),
}

impl std::fmt::Debug for LdifSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(text) => write!(f, "Text({} bytes)", text.len()),
            Self::File(path) => write!(f, "File({})", path.display()),
            Self::Writer(_) => f.write_str("Writer"),
        }
    }
}

/// Load the base entry (unless a text or file source has it) and `sources`, in order,
/// with `slapadd -q` (no consistency checks: fast, and the database is new).
pub(super) fn load(
    tools: &Tools,
    config: &Path,
    suffix: &str,
    sources: Vec<LdifSource>,
) -> Result<(), SlapdError> {
    let wanted = normalize_dn(suffix);
    let mut has_base = false;
    for source in &sources {
        has_base = has_base
            || match source {
                LdifSource::Text(text) => contains_dn(text.as_bytes(), &wanted)
                    .map_err(|source| io_error("reading LDIF text", source))?,
                LdifSource::File(path) => {
                    let file = File::open(path).map_err(|source| {
                        io_error(format!("opening {}", path.display()), source)
                    })?;
                    contains_dn(BufReader::new(file), &wanted)
                        .map_err(|source| io_error(format!("reading {}", path.display()), source))?
                }
                LdifSource::Writer(_) => false,
            };
    }
    if !has_base {
        slapadd(
            tools,
            config,
            LdifSource::Text(base_entry(suffix)?),
            "the base entry",
        )?;
    }
    for (number, source) in sources.into_iter().enumerate() {
        let target = match &source {
            LdifSource::File(path) => path.display().to_string(),
            _ => format!("initial LDIF #{}", number + 1),
        };
        slapadd(tools, config, source, &target)?;
    }
    Ok(())
}

/// One `slapadd` run.
fn slapadd(
    tools: &Tools,
    config: &Path,
    source: LdifSource,
    target: &str,
) -> Result<(), SlapdError> {
    let mut command = Command::new(&tools.slapadd);
    command.arg("-f").arg(config).arg("-q");
    if let LdifSource::File(path) = &source {
        command.arg("-l").arg(path);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|source| io_error(format!("running {}", tools.slapadd.display()), source))?;
    // slapadd prints nothing per entry (no progress meter without a terminal, and it
    // stops at the first error), so writing all input before reading output is safe.
    let written = match (child.stdin.take(), source) {
        (Some(mut stdin), LdifSource::Text(text)) => stdin.write_all(text.as_bytes()),
        (Some(stdin), LdifSource::Writer(write)) => {
            let mut stdin = BufWriter::new(stdin);
            write(&mut stdin).and_then(|()| stdin.flush())
        }
        _ => Ok(()),
    };
    let output = child
        .wait_with_output()
        .map_err(|source| io_error("waiting for slapadd", source))?;
    if !output.status.success() {
        return Err(SlapdError::Tool {
            program: "slapadd".to_owned(),
            target: target.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    // A write error with a successful slapadd means the LDIF was cut short.
    written.map_err(|source| io_error(format!("writing {target} to slapadd"), source))
}

/// The base entry for `suffix`, from its first RDN's attribute.
fn base_entry(suffix: &str) -> Result<String, SlapdError> {
    let first = suffix.split(',').next().unwrap_or_default();
    let (attribute, value) = first
        .split_once('=')
        .map(|(attribute, value)| (attribute.trim().to_ascii_lowercase(), value.trim()))
        .unwrap_or_default();
    let body = match attribute.as_str() {
        "dc" => {
            format!("objectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}")
        }
        "o" => format!("objectClass: organization\no: {value}"),
        "ou" => format!("objectClass: organizationalUnit\nou: {value}"),
        "c" => format!("objectClass: country\nc: {value}"),
        "l" => format!("objectClass: locality\nl: {value}"),
        "cn" => format!("objectClass: organizationalRole\ncn: {value}"),
        _ => {
            return Err(SlapdError::InvalidConfig(format!(
                "cannot create a base entry for suffix `{suffix}`: its first RDN must be dc, o, ou, c, l or cn (or put the base entry in the LDIF)"
            )));
        }
    };
    Ok(format!("dn: {suffix}\n{body}\n\n"))
}

/// Whether LDIF from `reader` has an entry whose (plain, not base64) `dn:` is `wanted`.
fn contains_dn(reader: impl BufRead, wanted: &str) -> io::Result<bool> {
    for line in reader.lines() {
        let line = line?;
        if let Some(dn) = line.strip_prefix("dn:")
            && !dn.starts_with(':')
            && normalize_dn(dn) == wanted
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Lower-cased, without spaces around `,` and `=`: enough to compare suffixes.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

/// A loopback port nobody listens on now, never handed out before in this process, so
/// a stopped fixture's port stays its own for [`super::Slapd::restart`]. Another
/// process may still take it before slapd binds; the caller retries then.
pub(super) fn free_port() -> Result<u16, SlapdError> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|source| io_error("binding a free loopback port", source))?
            .port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(io_error(
        "finding a loopback port not used before",
        io::Error::new(io::ErrorKind::AddrInUse, "100 attempts gave used ports"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_entries_follow_the_first_rdn() {
        assert_eq!(
            base_entry("dc=example,dc=org").unwrap(),
            "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n"
        );
        assert!(
            base_entry("o=acme")
                .unwrap()
                .contains("objectClass: organization\no: acme")
        );
        assert!(matches!(
            base_entry("uid=x,dc=y"),
            Err(SlapdError::InvalidConfig(_))
        ));
    }

    #[test]
    fn the_base_entry_is_found_whatever_its_spacing_and_case() {
        let wanted = normalize_dn("dc=example,dc=org");
        let ldif = "dn: ou=people,dc=example,dc=org\nou: people\n\ndn:DC=Example, dc=org\n";
        assert!(contains_dn(ldif.as_bytes(), &wanted).unwrap());
        assert!(!contains_dn("dn: ou=people,dc=example,dc=org\n".as_bytes(), &wanted).unwrap());
    }

    #[test]
    fn msuser_attributes_get_matching_rules() {
        let schema = "# comment\nattributetype ( MSADat2:102\n\tNAME 'memberOf'\n\tSYNTAX '1.3.6.1.4.1.1466.115.121.1.12' )\n\
                      attributetype ( x NAME 'uSNChanged' SYNTAX 'MSADlargeInteger' SINGLE-VALUE )\n\
                      attributetype ( y NAME 'kept' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n";
        assert_eq!(
            add_matching_rules(schema),
            "# comment\nattributetype ( MSADat2:102\n\tNAME 'memberOf'\n\tEQUALITY distinguishedNameMatch SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' )\n\
             attributetype ( x NAME 'uSNChanged' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 'MSADlargeInteger' SINGLE-VALUE )\n\
             attributetype ( y NAME 'kept' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n"
        );
    }

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 20);
    }
}
