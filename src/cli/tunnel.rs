//! `adit tunnel create/route/list/info/delete/cleanup`: clients of the admin API.
//!
//! The admin URL and token come from `--admin`/`--token`, else `ADIT_ADMIN`/`ADIT_TOKEN`,
//! else the client config file (`--client-config`, default `~/.adit/config.yml`, keys
//! `admin` and `token`); the URL defaults to the edge's default admin address. An error
//! from the API becomes this command's error, so `main` prints `error: <message>` and exits 1.
//! The tables and pages printed without `--output json` are formatted in [`output`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::builder::PossibleValue;
use clap::ValueEnum;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use self::output::{tunnel_table, write_info};
use super::admin_client::AdminClient;
use super::{AdminArgs, ListFilterArgs, OutputFormat, RouteCommand, TunnelCommand};
use crate::control::api;
use crate::tunnel::credentials::{Credentials, CredentialsError};

mod output;

const DEFAULT_ADMIN: &str = "http://127.0.0.1:7070";

pub fn run(cmd: TunnelCommand) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();
    match cmd {
        TunnelCommand::Create {
            name,
            cred_file,
            output,
            admin,
        } => create(&client(&admin)?, &name, cred_file.as_deref(), output, out)?,
        TunnelCommand::Route(RouteCommand::Dns {
            tunnel,
            hostname,
            output,
            admin,
        }) => route_dns(&client(&admin)?, &tunnel, &hostname, output, out)?,
        TunnelCommand::List {
            filter,
            output,
            admin,
        } => list(&client(&admin)?, &filter, output, out)?,
        TunnelCommand::Info {
            tunnel,
            output,
            admin,
        } => info(&client(&admin)?, &tunnel, output, out)?,
        TunnelCommand::Delete {
            tunnel,
            force,
            output,
            admin,
        } => delete(&client(&admin)?, &tunnel, force, output, out)?,
        TunnelCommand::Cleanup {
            tunnel,
            output,
            admin,
        } => cleanup(&client(&admin)?, &tunnel, output, out)?,
        TunnelCommand::Ready { metrics } => return super::ready::run(&metrics),
        TunnelCommand::Run(_) | TunnelCommand::Ingress(_) => {
            bail!("this tunnel subcommand is not an admin API client")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The client config file's contents. An unknown key is refused: a misspelt `token:` would
/// otherwise be ignored and the token looked for elsewhere.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    admin: Option<String>,
    token: Option<String>,
}

fn client(args: &AdminArgs) -> anyhow::Result<AdminClient> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let (url, token) = resolve(args, home.as_deref())?;
    Ok(AdminClient::new(&url, token)?)
}

/// The admin URL and token: flags and environment first (clap merges those), then the
/// client config file, then the default URL. A missing token is an error saying where to
/// find one.
fn resolve(args: &AdminArgs, home: Option<&Path>) -> anyhow::Result<(String, String)> {
    let mut admin = args.admin.clone();
    let mut token = args.token.clone();
    if admin.is_none() || token.is_none() {
        let file = match &args.client_config {
            Some(path) => Some(load_client_config(path)?),
            None => {
                let path = home.map(|home| home.join(".adit").join("config.yml"));
                match path.filter(|p| p.exists()) {
                    Some(path) => Some(load_client_config(&path)?),
                    None => None,
                }
            }
        };
        if let Some(file) = file {
            admin = admin.or(file.admin);
            token = token.or(file.token);
        }
    }

    let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow!(
            "no admin token: pass --token, set ADIT_TOKEN, or put `token: ...` in \
             ~/.adit/config.yml (or the file given by --client-config); the edge writes its \
             token to DIR/admin.token, where DIR is its --data-dir"
        )
    })?;
    let admin = admin.unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
    Ok((admin, token.trim().to_owned()))
}

fn load_client_config(path: &Path) -> anyhow::Result<ClientConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read client config {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ClientConfig::default());
    }
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("client config {} is not valid", path.display()))
}

/// Sends a request and returns the JSON answer, or the API's error message as the error.
fn call(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let response = client.request(method, path, body)?;
    let value: Option<Value> = serde_json::from_slice(&response.body).ok();
    if response.status >= 400 {
        let message = value
            .and_then(|v| serde_json::from_value::<api::Error>(v).ok())
            .map(|e| e.error)
            .unwrap_or_else(|| format!("admin API answered status {}", response.status));
        bail!(message);
    }
    let value = value.ok_or_else(|| anyhow!("admin API answered with invalid JSON"))?;
    Ok((response.status, value))
}

fn typed<T: DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    T::deserialize(value).context("admin API answered with an unexpected JSON shape")
}

fn print_json(out: &mut dyn Write, value: &Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A tunnel name or id as typed, refused when empty: the path would name another endpoint.
fn tunnel_key(tunnel: &str) -> anyhow::Result<String> {
    if tunnel.trim().is_empty() {
        bail!("the tunnel name or id must not be empty");
    }
    Ok(segment(tunnel))
}

/// A tunnel name or id as a path segment. Names and ids need no escaping; anything else
/// is percent-encoded so the request line stays well-formed and the edge answers 404.
/// Query values are encoded the same way.
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn create(
    client: &AdminClient,
    name: &str,
    cred_file: Option<&Path>,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // Refuse before creating anything, so a tunnel never exists without its credentials.
    if let Some(path) = cred_file.filter(|p| p.exists()) {
        return Err(CredentialsError::Exists {
            path: path.to_owned(),
        }
        .into());
    }

    let (_, mut value) = call(
        client,
        "POST",
        "/v1/tunnels",
        Some(&json!({ "name": name })),
    )?;
    let created: api::CreatedTunnel = typed(&value)?;
    let path = match cred_file {
        Some(path) => path.to_owned(),
        None => PathBuf::from(format!("{}.json", created.id)),
    };
    let credentials = Credentials {
        tunnel_id: created.id,
        tunnel_name: created.name.clone(),
        tunnel_secret: created.secret,
        edge_addr: created.edge_addr,
        edge_ca: created.edge_ca,
    };
    credentials.write_new(&path).with_context(|| {
        format!(
            "tunnel {} ({}) was created but its credentials were not written; \
             delete it with `adit tunnel delete {}` and try again",
            created.name, created.id, created.name
        )
    })?;

    match output {
        // The secret lives in the 0600 credentials file, not on stdout.
        OutputFormat::Json => {
            if let Some(object) = value.as_object_mut() {
                object.remove("secret");
            }
            print_json(out, &value)
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "Created tunnel {} with id {}",
                created.name, created.id
            )?;
            writeln!(out, "Credentials written to {}", path.display())?;
            Ok(())
        }
    }
}

fn route_dns(
    client: &AdminClient,
    tunnel: &str,
    hostname: &str,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = format!("/v1/tunnels/{}/routes", tunnel_key(tunnel)?);
    let (status, value) = call(
        client,
        "POST",
        &path,
        Some(&json!({ "hostname": hostname })),
    )?;
    if output == OutputFormat::Json {
        return print_json(out, &value);
    }

    let added: api::RouteAdded = typed(&value)?;
    // The user may have typed an id; messages read better with the name.
    let name = if uuid::Uuid::parse_str(tunnel).is_ok() {
        let (_, info) = call(
            client,
            "GET",
            &format!("/v1/tunnels/{}", segment(tunnel)),
            None,
        )?;
        typed::<api::TunnelInfo>(&info)?.name
    } else {
        tunnel.to_owned()
    };
    if status == 201 {
        writeln!(
            out,
            "Added route {} -> tunnel {name} ({})",
            added.hostname, added.tunnel_id
        )?;
    } else {
        writeln!(out, "Route {} already points to {name}", added.hostname)?;
    }
    Ok(())
}

/// Refuses an empty `--name`, `--name-prefix` or `--search`: the API reads an empty value as
/// no filter at all, which is never what typing one meant.
fn check_filter(filter: &ListFilterArgs) -> anyhow::Result<()> {
    let texts = [
        ("--name", &filter.name),
        ("--name-prefix", &filter.name_prefix),
        ("--search", &filter.search),
    ];
    for (flag, value) in texts {
        if value.as_deref().is_some_and(str::is_empty) {
            bail!("{flag} must not be empty");
        }
    }
    Ok(())
}

/// The `GET /v1/tunnels` query for `filter` (without paging), every value encoded.
fn list_query(filter: &ListFilterArgs) -> String {
    let name = |value: Option<PossibleValue>| value.map(|v| v.get_name().to_owned());
    let status = filter.status.and_then(|s| name(s.to_possible_value()));
    let sort_by = filter.sort_by.and_then(|s| name(s.to_possible_value()));
    let pairs = [
        ("name", filter.name.clone()),
        ("name_prefix", filter.name_prefix.clone()),
        ("status", status),
        ("created_after", filter.created_after.clone()),
        ("created_before", filter.created_before.clone()),
        (
            "min_uptime",
            filter.min_uptime.map(|d| format!("{}s", d.as_secs())),
        ),
        ("search", filter.search.clone()),
        ("sort_by", sort_by),
        ("invert_sort", filter.invert_sort.then(|| "true".to_owned())),
        (
            "show_deleted",
            filter.show_deleted.then(|| "true".to_owned()),
        ),
    ];
    pairs
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key}={}", segment(&v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Tunnels asked for per page: the most the API allows.
const PER_PAGE: u32 = 1000;

/// Every page of the listing, as one list: `page` 1, `per_page` the size each page was
/// asked for ([`PER_PAGE`], a value the API accepts, even when nothing matched), `total`
/// from the last answer. `tunnels` holds every page, so past 1000 tunnels it holds more
/// than `per_page`.
fn fetch_all(client: &AdminClient, query: &str) -> anyhow::Result<api::TunnelList> {
    let mut tunnels = Vec::new();
    let mut total = 0;
    for page in 1u32.. {
        let separator = if query.is_empty() { "" } else { "&" };
        let path = format!("/v1/tunnels?{query}{separator}page={page}&per_page={PER_PAGE}");
        let (_, value) = call(client, "GET", &path, None)?;
        let answer: api::TunnelList = typed(&value)?;
        total = answer.total;
        // An empty page ends the loop even if tunnels were deleted meanwhile.
        let empty = answer.tunnels.is_empty();
        tunnels.extend(answer.tunnels);
        if empty || tunnels.len() as u64 >= total {
            break;
        }
    }
    Ok(api::TunnelList {
        per_page: PER_PAGE,
        tunnels,
        page: 1,
        total,
    })
}

fn list(
    client: &AdminClient,
    filter: &ListFilterArgs,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    check_filter(filter)?;
    let listed = fetch_all(client, &list_query(filter))?;
    if output == OutputFormat::Json {
        return print_json(out, &serde_json::to_value(&listed)?);
    }
    if listed.tunnels.is_empty() {
        let filtered = !list_query(filter).is_empty();
        match filtered {
            true => writeln!(out, "No tunnels match")?,
            false => writeln!(
                out,
                "No tunnels yet; create one with `adit tunnel create NAME`"
            )?,
        }
        return Ok(());
    }
    write!(out, "{}", tunnel_table(listed.tunnels))?;
    Ok(())
}

fn cleanup(
    client: &AdminClient,
    tunnel: &str,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = format!("/v1/tunnels/{}/connections", tunnel_key(tunnel)?);
    let (_, value) = call(client, "DELETE", &path, None)?;
    if output == OutputFormat::Json {
        return print_json(out, &value);
    }
    let cleaned: api::CleanedUp = typed(&value)?;
    writeln!(
        out,
        "Removed {} connection record(s) of tunnel {tunnel}",
        cleaned.removed
    )?;
    Ok(())
}

fn info(
    client: &AdminClient,
    tunnel: &str,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (_, value) = call(
        client,
        "GET",
        &format!("/v1/tunnels/{}", tunnel_key(tunnel)?),
        None,
    )?;
    if output == OutputFormat::Json {
        return print_json(out, &value);
    }
    write_info(out, typed(&value)?)
}

fn delete(
    client: &AdminClient,
    tunnel: &str,
    force: bool,
    output: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let query = if force { "?force=true" } else { "" };
    let path = format!("/v1/tunnels/{}{query}", tunnel_key(tunnel)?);
    let (_, value) = call(client, "DELETE", &path, None)?;
    if output == OutputFormat::Json {
        return print_json(out, &value);
    }
    let deleted: api::Deleted = typed(&value)?;
    writeln!(out, "Deleted tunnel {tunnel} ({})", deleted.deleted)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{self, ControlConfig};
    use std::time::Duration;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("adit-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn args(admin: Option<&str>, token: Option<&str>, config: Option<PathBuf>) -> AdminArgs {
        AdminArgs {
            admin: admin.map(str::to_owned),
            token: token.map(str::to_owned),
            client_config: config,
        }
    }

    #[test]
    fn admin_settings_precedence() {
        let dir = temp_dir();
        let resolved = resolve(&args(Some("http://h:1"), Some("t"), None), Some(&dir)).unwrap();
        assert_eq!(resolved, ("http://h:1".to_owned(), "t".to_owned()));

        let err = resolve(&args(None, None, None), Some(&dir)).unwrap_err();
        assert!(err.to_string().starts_with("no admin token: pass --token"));
        assert!(err.to_string().contains("DIR/admin.token"));

        std::fs::create_dir_all(dir.join(".adit")).unwrap();
        std::fs::write(dir.join(".adit/config.yml"), "token: fromhome\n").unwrap();
        let resolved = resolve(&args(None, None, None), Some(&dir)).unwrap();
        assert_eq!(resolved, (DEFAULT_ADMIN.to_owned(), "fromhome".to_owned()));

        let explicit = dir.join("client.yml");
        std::fs::write(&explicit, "admin: http://127.0.0.1:9\ntoken: fromfile\n").unwrap();
        let resolved = resolve(&args(None, Some("flag"), Some(explicit)), Some(&dir)).unwrap();
        assert_eq!(
            resolved,
            ("http://127.0.0.1:9".to_owned(), "flag".to_owned())
        );

        let misspelt = dir.join("misspelt.yml");
        std::fs::write(&misspelt, "tokn: fromfile\n").unwrap();
        let err = resolve(&args(None, None, Some(misspelt.clone())), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("client config {} is not valid", misspelt.display())
        );
        assert!(
            format!("{err:#}").contains("unknown field `tokn`"),
            "{err:#}"
        );

        let missing = dir.join("missing.yml");
        let err = resolve(&args(None, None, Some(missing.clone())), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read client config {}", missing.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("web-1.x_y"), "web-1.x_y");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn list_queries() {
        assert_eq!(list_query(&ListFilterArgs::default()), "");
        let filter = ListFilterArgs {
            name: Some("a b".into()),
            name_prefix: Some("we&b".into()),
            status: Some(super::super::StatusArg::Degraded),
            created_after: Some("2026-01-31T12:00:00+00:00".into()),
            created_before: Some("2026-02-01T00:00:00Z".into()),
            min_uptime: Some(Duration::from_secs(600)),
            search: Some("Ü".into()),
            sort_by: Some(super::super::SortArg::Connections),
            invert_sort: true,
            show_deleted: true,
        };
        assert_eq!(
            list_query(&filter),
            "name=a%20b&name_prefix=we%26b&status=degraded\
             &created_after=2026-01-31T12%3A00%3A00%2B00%3A00\
             &created_before=2026-02-01T00%3A00%3A00Z&min_uptime=600s&search=%C3%9C\
             &sort_by=connections&invert_sort=true&show_deleted=true"
        );
    }

    #[test]
    fn commands_against_a_running_edge() {
        let dir = temp_dir();
        let edge = control::start(ControlConfig {
            data_dir: dir.join("edge"),
            listen_admin: "127.0.0.1:0".parse().unwrap(),
            tunnel_addr: "127.0.0.1:7844".parse().unwrap(),
            workers: 2,
        })
        .unwrap();
        let url = format!("http://{}", edge.admin_addr());
        let client = AdminClient::new(&url, edge.admin_token()).unwrap();
        let table = OutputFormat::Table;
        let mut out = Vec::new();

        let cred_path = dir.join("web.json");
        create(&client, "web", Some(&cred_path), table, &mut out).unwrap();
        let creds = Credentials::load(&cred_path).unwrap();
        assert_eq!(creds.tunnel_name, "web");
        assert_eq!(creds.edge_ca, edge.ca_pem());
        let id = creds.tunnel_id;
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            format!(
                "Created tunnel web with id {id}\nCredentials written to {}\n",
                cred_path.display()
            )
        );

        // An existing file is refused before the API is asked: no second tunnel appears.
        let err = create(&client, "web2", Some(&cred_path), table, &mut out).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("already exists; remove it or pass another --cred-file"));
        let other = dir.join("other.json");
        let err = create(&client, "web", Some(&other), table, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "a tunnel named \"web\" already exists");

        route_dns(&client, "web", "App.Test", table, &mut out).unwrap();
        route_dns(&client, &id.to_string(), "app.test", table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            format!(
                "Added route app.test -> tunnel web ({id})\nRoute app.test already points to web\n"
            )
        );

        let all = ListFilterArgs::default();
        list(&client, &all, OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&std::mem::take(&mut out)).unwrap();
        let created = value["tunnels"][0]["created_at"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(value["total"], 1);
        assert_eq!(value["tunnels"][0]["status"], "inactive");
        assert_eq!(
            (&value["page"], &value["per_page"]),
            (&json!(1), &json!(1000))
        );

        list(&client, &all, table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            format!(
                "ID                                    NAME  STATUS    CONNECTIONS  UPTIME  \
                 CREATED\n{id}  web   inactive  0            -       {created}\n"
            )
        );
        let search = ListFilterArgs {
            search: Some("WE".into()),
            ..ListFilterArgs::default()
        };
        list(&client, &search, OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&std::mem::take(&mut out)).unwrap();
        assert_eq!(value["tunnels"][0]["name"], "web");
        let active = ListFilterArgs {
            status: Some(super::super::StatusArg::Active),
            ..ListFilterArgs::default()
        };
        list(&client, &active, table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            "No tunnels match\n"
        );
        list(&client, &active, OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&std::mem::take(&mut out)).unwrap();
        assert_eq!(
            value,
            json!({"tunnels": [], "page": 1, "per_page": 1000, "total": 0})
        );
        let offset = ListFilterArgs {
            created_after: Some("2000-01-01T01:00:00+01:00".into()),
            ..ListFilterArgs::default()
        };
        list(&client, &offset, OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&std::mem::take(&mut out)).unwrap();
        assert_eq!(value["tunnels"][0]["name"], "web");
        for (flag, filter) in [
            (
                "--name",
                ListFilterArgs {
                    name: Some(String::new()),
                    ..ListFilterArgs::default()
                },
            ),
            (
                "--name-prefix",
                ListFilterArgs {
                    name_prefix: Some(String::new()),
                    ..ListFilterArgs::default()
                },
            ),
            (
                "--search",
                ListFilterArgs {
                    search: Some(String::new()),
                    ..ListFilterArgs::default()
                },
            ),
        ] {
            let err = list(&client, &filter, table, &mut out).unwrap_err();
            assert_eq!(err.to_string(), format!("{flag} must not be empty"));
        }
        assert!(out.is_empty());

        // An empty tunnel would make the path name another endpoint.
        let empty = "the tunnel name or id must not be empty";
        assert_eq!(
            info(&client, "", table, &mut out).unwrap_err().to_string(),
            empty
        );
        assert_eq!(
            cleanup(&client, " ", table, &mut out)
                .unwrap_err()
                .to_string(),
            empty
        );
        assert_eq!(
            delete(&client, "", true, table, &mut out)
                .unwrap_err()
                .to_string(),
            empty
        );
        assert_eq!(
            route_dns(&client, "", "a.test", table, &mut out)
                .unwrap_err()
                .to_string(),
            empty
        );

        info(&client, "web", table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            format!(
                "NAME:     web\nID:       {id}\nCREATED:  {created}\nSTATUS:   inactive\n\
                 UPTIME:   - (never active)\nROUTES:   app.test\n\n\
                 Tunnel web has no live connections\n"
            )
        );

        cleanup(&client, "web", table, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(&mut out)).unwrap(),
            "Removed 0 connection record(s) of tunnel web\n"
        );
        let err = cleanup(&client, "nope", table, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "tunnel nope does not exist");

        delete(&client, "web", false, OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, json!({ "deleted": id }));
        out.clear();
        // A deleted tunnel still answers info, by name while no live tunnel has it.
        info(&client, "web", OutputFormat::Json, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&std::mem::take(&mut out)).unwrap();
        assert_eq!(
            (&value["id"], &value["status"]),
            (&json!(id), &json!("deleted"))
        );
        assert!(value["deleted_at"].is_string());
        let err = info(&client, "gone", table, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "tunnel gone does not exist");

        let bad = AdminClient::new(&url, "wrong".into()).unwrap();
        let err = list(&bad, &all, table, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing or wrong admin token (send Authorization: Bearer <token>)"
        );

        edge.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
