//! A handler's target: an endpoint to call (`http`) or a script of the
//! bundle to run (`script`), with their headers, secrets and environment.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::time::Duration;

use http::header::HeaderName;
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use url::Url;

use super::read::{Cx, Val, one_of, type_name};
use crate::config::diagnostics::Diag;
use crate::config::model::{
    ClientCertificate, HttpTarget, ScriptTarget, SecretRef, Target, TlsSettings, TrustSource,
    ValueSource, is_reserved_secret,
};

/// The longest timeout a handler may have: a Lambda invocation cannot run longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The keys of an http target.
const HTTP_KEYS: &[&str] = &["url", "headers", "secret", "timeout", "tls"];
/// The keys of an http target's `tls`.
const TLS_KEYS: &[&str] = &["client_cert", "client_key", "ca"];
/// The largest CA bundle file read (a bundle of a few hundred certificates).
const MAX_CA_FILE_BYTES: u64 = 1 << 20;
/// The keys of a script target.
const SCRIPT_KEYS: &[&str] = &["command", "timeout", "env"];
/// The keys of a secret reference.
const SECRET_KEYS: &[&str] = &["env"];

/// Headers the service sets itself; a handler cannot override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "traceparent",
    "tracestate",
];

/// Headers whose value is a credential: a literal value there is a secret in the file.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
];

impl Cx<'_> {
    /// A handler's target: exactly one of `http` and `script` (when both
    /// are set, each is still checked so that its own mistakes show now).
    pub(super) fn target(&mut self, t: &DeTable<'_>, span: &Range<usize>) -> Option<Target> {
        match (t.get("http"), t.get("script")) {
            (Some(h), Some(s)) => {
                let (first, second) = if h.span().start <= s.span().start {
                    (h, s)
                } else {
                    (s, h)
                };
                self.push(
                    Diag::new(
                        second.span(),
                        "a handler has exactly one target, found both `http` and `script`",
                    )
                    .label("second target")
                    .related(first.span(), "first target")
                    .help("keep one; to call an endpoint and run a script, define two handlers"),
                );
                // Still check both, so their own mistakes are reported now.
                self.http(h);
                self.script(s);
                None
            }
            (Some(h), None) => self.http(h).map(Target::Http),
            (None, Some(s)) => self.script(s).map(Target::Script),
            (None, None) => {
                self.push(
                    Diag::new(span.clone(), "handler has no target")
                        .label("neither `http` nor `script`")
                        .help("add `http = { url = \"https://…\" }` or `script = { command = [\"scripts/…\"] }`"),
                );
                None
            }
        }
    }

    /// `http = { url, headers, secret, timeout }`: an endpoint to call.
    fn http(&mut self, v: &Val<'_>) -> Option<HttpTarget> {
        let t = self.table(
            "http",
            v,
            "write `http = { url = \"https://crm.example.com/hooks\" }`",
        )?;
        self.unknown_keys(t, HTTP_KEYS, "an http target");
        let url = match t.get("url") {
            None => {
                self.push(
                    Diag::new(v.span(), "http target is missing `url`")
                        .label("no url")
                        .help("add `url = \"https://…\"`"),
                );
                None
            }
            Some(u) => self.url(u),
        };
        let mut ok = true;
        let mut headers = Vec::new();
        if let Some(hv) = t.get("headers") {
            match self.table(
                "headers",
                hv,
                "write `headers = { \"X-Tenant\" = \"acme\" }`",
            ) {
                None => ok = false,
                Some(ht) => {
                    for (k, val) in ht.iter() {
                        match self.header(k, val) {
                            Some(h) => headers.push(h),
                            None => ok = false,
                        }
                    }
                }
            }
        }
        let secret = self.optional(t, "secret", |cx, v| cx.secret_ref("secret", v));
        let timeout = self.optional(t, "timeout", |cx, v| cx.duration("timeout", v, MAX_TIMEOUT));
        let tls = self.optional(t, "tls", |cx, v| cx.tls(v));
        if let (Some(u), Some(tv)) = (&url, t.get("tls"))
            && u.scheme() != "https"
        {
            self.push(
                Diag::new(tv.span(), "`tls` needs an https:// URL")
                    .label("the URL is plain http")
                    .help("a client certificate or a private CA applies to TLS: write the endpoint as `https://…`"),
            );
            ok = false;
        }
        let (Ok(secret), Ok(timeout), Ok(tls), Some(url), true) = (secret, timeout, tls, url, ok)
        else {
            return None;
        };
        Some(HttpTarget {
            url,
            headers,
            secret,
            timeout,
            tls,
        })
    }

    /// `tls = { client_cert, client_key, ca }`: a client certificate and its
    /// key (secret references, both or neither) and the CA bundle to trust
    /// (a secret reference or a PEM file of the bundle).
    fn tls(&mut self, v: &Val<'_>) -> Option<TlsSettings> {
        let t = self.table(
            "tls",
            v,
            "write `tls = { client_cert = { env = \"CRM_CLIENT_CERT\" }, client_key = { env = \"CRM_CLIENT_KEY\" } }`",
        )?;
        self.unknown_keys(t, TLS_KEYS, "`tls`");
        let cert = self.optional(t, "client_cert", |cx, v| cx.secret_ref("client_cert", v));
        let key = self.optional(t, "client_key", |cx, v| cx.secret_ref("client_key", v));
        let ca = self.optional(t, "ca", |cx, v| cx.trust(v));
        let (Ok(cert), Ok(key), Ok(ca)) = (cert, key, ca) else {
            return None;
        };
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some(ClientCertificate { cert, key }),
            (None, None) => None,
            (cert, _) => {
                let (has, lacks) = if cert.is_some() {
                    ("client_cert", "client_key")
                } else {
                    ("client_key", "client_cert")
                };
                self.push(
                    Diag::new(v.span(), format!("`{has}` without `{lacks}`"))
                        .label(format!("no `{lacks}`"))
                        .help("a client certificate is presented with its private key: give both, each a secret reference"),
                );
                return None;
            }
        };
        if client.is_none() && ca.is_none() {
            self.push(
                Diag::new(v.span(), "`tls` sets nothing")
                    .label("empty")
                    .help("give `client_cert` and `client_key` (mutual TLS), `ca` (a private CA), or remove `tls`"),
            );
            return None;
        }
        Some(TlsSettings { client, ca })
    }

    /// `ca = { env = "VAR" }` or `ca = { file = "scripts/certs/ca.pem" }`.
    fn trust(&mut self, v: &Val<'_>) -> Option<TrustSource> {
        let file = match v.get_ref() {
            DeValue::Table(t) => t.get("file"),
            _ => None,
        };
        let Some(fv) = file else {
            if matches!(v.get_ref(), DeValue::String(_)) {
                self.push(
                    Diag::new(v.span(), "`ca` must name where the CA bundle is")
                        .label("a literal value")
                        .help("write `ca = { file = \"scripts/certs/crm-ca.pem\" }` (a PEM file of the bundle) or `ca = { env = \"CRM_CA\" }` (a value of the secret store)"),
                );
                return None;
            }
            return self.secret_ref("ca", v).map(TrustSource::Secret);
        };
        if let DeValue::Table(t) = v.get_ref() {
            self.unknown_keys(t, &["file"], "`ca`");
        }
        let path = self.string("file", fv)?;
        let p = Path::new(path);
        let inside = p.is_relative()
            && !path.is_empty()
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            self.push(
                Diag::new(fv.span(), format!("`{path}` is not a file of the bundle"))
                    .label("not a path inside the scripts folder")
                    .help("write the PEM file's path relative to the scripts folder, e.g. `scripts/certs/crm-ca.pem`"),
            );
            return None;
        }
        // Only `scripts/` ships with the functions (the scripts layer): a
        // file elsewhere in the bundle is found here and missing on AWS.
        if !p.starts_with("scripts") {
            self.push(
                Diag::new(fv.span(), format!("`{path}` is not in the scripts folder"))
                    .label("not under scripts/")
                    .help("only `scripts/` ships with the functions (the scripts layer): put the PEM file there, e.g. `scripts/certs/crm-ca.pem`"),
            );
            return None;
        }
        if let Some(dir) = self.scripts_dir {
            self.ca_file(fv, dir, path)?;
        }
        Some(TrustSource::File(path.to_owned()))
    }

    /// A CA file of the scripts folder `dir`: inside it (links followed),
    /// at most [`MAX_CA_FILE_BYTES`], holding PEM certificates only.
    fn ca_file(&mut self, v: &Val<'_>, dir: &Path, path: &str) -> Option<()> {
        let file = dir.join(path);
        let problem = match (std::fs::canonicalize(&file), std::fs::canonicalize(dir)) {
            (Ok(real), Ok(d)) if !real.starts_with(&d) => {
                Some("leads outside the scripts folder (through a link)".to_owned())
            }
            (Err(_), _) => Some("not found".to_owned()),
            _ => match std::fs::metadata(&file) {
                Ok(m) if !m.is_file() => Some("is not a file".to_owned()),
                Ok(m) if m.len() > MAX_CA_FILE_BYTES => {
                    Some(format!("is larger than {MAX_CA_FILE_BYTES} bytes"))
                }
                Ok(_) => std::fs::read(&file)
                    .map_err(|e| format!("cannot be read: {e}"))
                    .and_then(|pem| {
                        crate::config::pem::trust_anchors(&pem)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                    .err(),
                Err(e) => Some(format!("cannot be read: {e}")),
            },
        };
        if let Some(what) = problem {
            self.push(
                Diag::new(v.span(), format!("CA file `{path}` {what}"))
                    .label("not a CA bundle of the bundle")
                    .help(format!(
                        "CA files are resolved against {}; it must hold PEM certificates (`-----BEGIN CERTIFICATE-----`)",
                        dir.display()
                    )),
            );
            return None;
        }
        Some(())
    }

    /// An endpoint's URL: absolute, https (http for a loopback host
    /// only), without credentials in it.
    fn url(&mut self, v: &Val<'_>) -> Option<Url> {
        let s = self.string("url", v)?;
        let url = match Url::parse(s) {
            Ok(u) => u,
            Err(e) => {
                self.push(
                    Diag::new(v.span(), format!("invalid URL: {e}"))
                        .label("not a URL")
                        .help("write an absolute URL, e.g. \"https://crm.example.com/hooks\""),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.push(
                Diag::new(v.span(), "the URL carries credentials")
                    .label("user or password in the URL")
                    .help("never write secrets in the file: send them as a header that references a secret, e.g. `headers = { Authorization = { env = \"CRM_TOKEN\" } }`"),
            );
            return None;
        }
        match url.scheme() {
            "https" => Some(url),
            "http" if is_loopback_host(&url) => Some(url),
            "http" => {
                self.push(
                    Diag::new(v.span(), "plain http is allowed only for loopback hosts")
                        .label("not https")
                        .help("use https:// (http:// is accepted for 127.0.0.1, [::1] and localhost, for local development)"),
                );
                None
            }
            other => {
                self.push(
                    Diag::new(v.span(), format!("unsupported URL scheme `{other}`"))
                        .label("not https")
                        .help("handlers are called over https://"),
                );
                None
            }
        }
    }

    /// A header sent to the endpoint: a valid name the service does not
    /// set itself, and a literal value only when it is no credential.
    fn header(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        v: &Val<'_>,
    ) -> Option<(String, ValueSource)> {
        let name: &str = key.get_ref();
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.push(
                Diag::new(key.span(), format!("`{name}` is not a valid header name"))
                    .label("invalid header name")
                    .help("header names are letters, digits and `-`, e.g. \"X-Tenant\""),
            );
            return None;
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            self.push(
                Diag::new(key.span(), format!("header `{name}` is set by the service"))
                    .label("cannot be overridden")
                    .help(format!(
                        "remove it; the service sets {}",
                        one_of(RESERVED_HEADERS)
                    )),
            );
            return None;
        }
        match v.get_ref() {
            DeValue::String(s)
                if CREDENTIAL_HEADERS.contains(&lower.as_str()) || looks_secret(name) =>
            {
                let _ = s;
                self.push(
                    Diag::new(v.span(), format!("literal secret in header `{name}`"))
                        .label("a credential written in the file")
                        .help(format!(
                            "reference it instead: `{name} = {{ env = \"{}\" }}`, and let the deployment fill that variable from the secret store",
                            suggested_env_name(name)
                        )),
                );
                None
            }
            DeValue::String(s) => Some((name.to_owned(), ValueSource::Literal(s.to_string()))),
            DeValue::Table(_) => self
                .secret_ref(name, v)
                .map(|r| (name.to_owned(), ValueSource::Secret(r))),
            other => {
                self.push(
                    Diag::new(
                        v.span(),
                        format!("header `{name}` must be a string or a secret reference"),
                    )
                    .label(format!("this is {}", type_name(other)))
                    .help(format!(
                        "write `{name} = \"value\"` or `{name} = {{ env = \"VAR\" }}`"
                    )),
                );
                None
            }
        }
    }

    /// `{ env = "VAR" }`: a secret the deployment fills in; a literal
    /// value where a secret is expected is refused.
    fn secret_ref(&mut self, key: &str, v: &Val<'_>) -> Option<SecretRef> {
        let t = match v.get_ref() {
            DeValue::Table(t) => t,
            DeValue::String(_) => {
                self.push(
                    Diag::new(v.span(), format!("literal secret in `{key}`"))
                        .label("secrets are never written in the file")
                        .help(format!(
                            "reference an environment variable that the deployment fills from the secret store: `{key} = {{ env = \"{}\" }}`",
                            suggested_env_name(key)
                        )),
                );
                return None;
            }
            other => {
                self.push(
                    Diag::new(v.span(), format!("`{key}` must be a secret reference"))
                        .label(format!("this is {}", type_name(other)))
                        .help(format!("write `{key} = {{ env = \"VAR\" }}`")),
                );
                return None;
            }
        };
        self.unknown_keys(t, SECRET_KEYS, "a secret reference");
        let Some(ev) = t.get("env") else {
            self.push(
                Diag::new(v.span(), format!("`{key}` names no source"))
                    .label("missing `env`")
                    .help(format!("write `{key} = {{ env = \"VAR\" }}`")),
            );
            return None;
        };
        let name = self.string("env", ev)?;
        if !is_env_name(name) {
            self.push(
                Diag::new(
                    ev.span(),
                    format!("`{name}` is not an environment variable name"),
                )
                .label("invalid name")
                .help("use letters, digits and `_`, not starting with a digit, e.g. \"CRM_TOKEN\""),
            );
            return None;
        }
        if is_reserved_secret(name) {
            self.push(
                Diag::new(ev.span(), format!("`{name}` is not a handler's secret"))
                    .label("reserved name")
                    .help("names starting with HOOKS_ or AWS_ are the deployment's own settings and credentials (billing's tokens among them) and are never sent to a handler; give the handler's secret a name of its own, e.g. \"CRM_TOKEN\""),
            );
            return None;
        }
        Some(SecretRef::Env(name.to_owned()))
    }

    /// `script = { command, timeout, env }`: a program of the bundle to run.
    fn script(&mut self, v: &Val<'_>) -> Option<ScriptTarget> {
        let t = self.table(
            "script",
            v,
            "write `script = { command = [\"scripts/crm-audit.sh\"] }`",
        )?;
        self.unknown_keys(t, SCRIPT_KEYS, "a script target");
        let command = match t.get("command") {
            None => {
                self.push(
                    Diag::new(v.span(), "script target is missing `command`")
                        .label("no command")
                        .help("add `command = [\"scripts/crm-audit.sh\", \"--flag\"]`"),
                );
                None
            }
            Some(cv) => self.command(cv),
        };
        let timeout = self.optional(t, "timeout", |cx, v| cx.duration("timeout", v, MAX_TIMEOUT));
        let env = match t.get("env") {
            None => Some(BTreeMap::new()),
            Some(ev) => self.script_env(ev),
        };
        let (Some(command), Ok(timeout), Some(env)) = (command, timeout, env) else {
            return None;
        };
        Some(ScriptTarget {
            command,
            timeout,
            env,
        })
    }

    /// A script's `env = { NAME = value }`: the variables set for it, each
    /// checked; `None` when any is invalid (every one is still reported).
    fn script_env(&mut self, ev: &Val<'_>) -> Option<BTreeMap<String, ValueSource>> {
        let et = self.table("env", ev, "write `env = { MODE = \"audit\" }`")?;
        let mut ok = true;
        let mut env = BTreeMap::new();
        for (k, val) in et.iter() {
            match self.env_var(k, val) {
                Some(s) => {
                    env.insert(k.get_ref().to_string(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(env)
    }

    /// One variable of a script's environment: a valid name that is not
    /// the fixed `PATH` or the loader's, and a literal value only when its
    /// name does not say it is a secret.
    fn env_var(
        &mut self,
        k: &Spanned<std::borrow::Cow<'_, str>>,
        val: &Val<'_>,
    ) -> Option<ValueSource> {
        let name: &str = k.get_ref();
        if !is_env_name(name) {
            self.push(
                Diag::new(
                    k.span(),
                    format!("`{name}` is not an environment variable name"),
                )
                .label("invalid name")
                .help("use letters, digits and `_`, not starting with a digit"),
            );
            return None;
        }
        if name == "PATH" || name.starts_with("LD_") {
            self.push(
                Diag::new(k.span(), format!("`{name}` cannot be set for a script"))
                    .label("reserved")
                    .help("scripts get a fixed PATH (/usr/local/bin:/usr/bin:/bin); ship what they need in the scripts folder"),
            );
            return None;
        }
        match val.get_ref() {
            DeValue::String(_) if looks_secret(name) => {
                self.push(
                    Diag::new(val.span(), format!("literal secret in `{name}`"))
                        .label("the name says this is a secret")
                        .help(format!(
                            "reference it instead: `{name} = {{ env = \"{name}\" }}`; if it is no secret, choose a name without TOKEN, SECRET, PASSWORD or KEY"
                        )),
                );
                None
            }
            DeValue::String(s) => Some(ValueSource::Literal(s.to_string())),
            _ => self.secret_ref(name, val).map(ValueSource::Secret),
        }
    }

    /// A script's `command`: the program, a file inside the scripts folder,
    /// and its arguments.
    fn command(&mut self, v: &Val<'_>) -> Option<Vec<String>> {
        let out = self.command_words(v)?;
        let program = self.program(v, &out)?;
        if let Some(dir) = self.scripts_dir {
            self.script_file(v, dir, program)?;
        }
        Some(out)
    }

    /// `command`'s list of strings; a single string is answered with the
    /// list it should have been.
    fn command_words(&mut self, v: &Val<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            let help = match v.get_ref() {
                DeValue::String(s) => format!(
                    "write the program and its arguments as a list: `command = [{}]`",
                    s.split_whitespace()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "write `command = [\"scripts/crm-audit.sh\"]`".to_owned(),
            };
            self.push(
                Diag::new(v.span(), "`command` must be a list of strings")
                    .label(format!("this is {}", type_name(v.get_ref())))
                    .help(help),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            out.push(self.string("command", item).map(str::to_owned));
        }
        out.into_iter().collect::<Option<_>>()
    }

    /// The command's program, its first word: a relative path inside the
    /// bundle (a bare name would be looked up in `PATH`, outside it).
    fn program<'c>(&mut self, v: &Val<'_>, command: &'c [String]) -> Option<&'c str> {
        let Some(program) = command.first() else {
            self.push(
                Diag::new(v.span(), "`command` is empty")
                    .label("no program")
                    .help("name the program first: `command = [\"scripts/crm-audit.sh\"]`"),
            );
            return None;
        };
        if program.trim().is_empty() {
            self.push(
                Diag::new(v.span(), "the program name is empty")
                    .label("empty program")
                    .help("name the program first: `command = [\"scripts/crm-audit.sh\"]`"),
            );
            return None;
        }
        let path = Path::new(program);
        let inside = path.is_relative()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || !program.contains('/') {
            self.push(
                Diag::new(v.span(), format!("`{program}` is not a script of the bundle"))
                    .label("not a path inside the scripts folder")
                    .help("a script handler runs a file shipped with the bundle: write its path relative to the scripts folder, e.g. `scripts/crm-audit.sh` (start it with a #! line to choose its interpreter)"),
            );
            return None;
        }
        Some(program)
    }

    /// The program as a file of the scripts folder `dir`: it exists, is a
    /// file, is executable, and does not lead outside the folder.
    fn script_file(&mut self, v: &Val<'_>, dir: &Path, program: &str) -> Option<()> {
        let file = dir.join(program);
        // Links are followed: the file must be inside the folder.
        let escapes = match (std::fs::canonicalize(&file), std::fs::canonicalize(dir)) {
            (Ok(real), Ok(dir)) => !real.starts_with(dir),
            _ => false,
        };
        let problem = match std::fs::metadata(&file) {
            _ if escapes => Some((
                "leads outside the scripts folder (through a link)",
                "outside the scripts folder",
            )),
            Err(_) => Some(("not found", "no such file")),
            Ok(m) if !m.is_file() => Some(("is not a file", "not a file")),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                Some(("is not executable", "not executable"))
            }
            Ok(_) => None,
        };
        if let Some((what, label)) = problem {
            self.push(
                Diag::new(v.span(), format!("script `{program}` {what}"))
                    .label(label)
                    .help(format!(
                        "scripts are resolved against {}; add the file to the repository with its executable bit (`git update-index --chmod=+x {program}`) or fix the path",
                        dir.display()
                    )),
            );
            return None;
        }
        Some(())
    }
}

/// `http://` is accepted for these hosts only (local development).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether a header or variable name says its value is a credential.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "APIKEY",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper == "KEY"
        || upper.ends_with("_KEY")
}

/// Whether `s` can name an environment variable: letters, digits and `_`,
/// not starting with a digit.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable a diagnostic suggests for a secret written under `key`.
fn suggested_env_name(key: &str) -> String {
    let base: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    match base.as_str() {
        "SECRET" => "HANDLER_SECRET".to_owned(),
        "AUTHORIZATION" => "HANDLER_TOKEN".to_owned(),
        _ => base,
    }
}
