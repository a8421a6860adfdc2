//! `adit quick`: an edge, a connector and an ephemeral tunnel in one process.

use std::net::SocketAddr;
use std::process::ExitCode;

use rand::seq::SliceRandom;

use super::QuickArgs;
use crate::connector::{self, ingress::Ingress, ConnectorConfig};
use crate::edge::{self, EdgeConfig};
use crate::runtime;

/// How long `adit quick` lets requests in flight finish on Ctrl-C: the edge goes with it, so
/// there is no other connection to move new requests to; this only spares the ones started.
const QUICK_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "clever", "copper", "crisp", "daring", "eager", "fancy", "gentle",
    "golden", "happy", "hidden", "humble", "jolly", "keen", "lively", "lucky", "mellow", "misty",
    "nimble", "proud", "quiet", "rapid", "rustic", "silver", "sunny", "swift", "tidy", "witty",
];
const NOUNS: &[&str] = &[
    "badger", "beacon", "canyon", "cedar", "comet", "falcon", "fjord", "harbor", "heron", "island",
    "lantern", "maple", "meadow", "otter", "pebble", "pine", "quarry", "raven", "river", "summit",
    "thistle", "tunnel", "valley", "walrus", "willow", "zephyr",
];

/// Three random words joined by dashes, e.g. `brave-otter-lantern`.
pub fn random_name() -> String {
    let mut rng = rand::thread_rng();
    let pick = |list: &[&'static str], rng: &mut rand::rngs::ThreadRng| {
        *list.choose(rng).unwrap_or(&"adit")
    };
    let first = pick(ADJECTIVES, &mut rng);
    let second = pick(NOUNS, &mut rng);
    let third = pick(NOUNS, &mut rng);
    format!("{first}-{second}-{third}")
}

/// The URL a browser on this machine reaches the hostname at through `listener`.
pub fn public_url(hostname: &str, listener: SocketAddr) -> String {
    match listener.port() {
        80 => format!("http://{hostname}/"),
        port => format!("http://{hostname}:{port}/"),
    }
}

pub fn quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let ingress = match &args.url {
        Some(url) => {
            Ingress::single(url).map_err(|err| anyhow::anyhow!("--url: {}", err.message))?
        }
        None => Ingress::single("hello_world").map_err(|err| anyhow::anyhow!("{}", err.message))?,
    };
    let workers = args.workers.unwrap_or_else(runtime::default_workers);
    let name = random_name();
    let data_dir = std::env::temp_dir().join(format!("adit-quick-{name}-{}", std::process::id()));

    let edge = edge::start(EdgeConfig {
        data_dir: data_dir.clone(),
        listen_tunnel: args.listen_tunnel,
        listen_http: args.listen_http,
        listen_https: "127.0.0.1:0".parse()?,
        listen_admin: "127.0.0.1:0".parse()?,
        workers,
        pin_cpus: args.pin_cpus,
        limits: Default::default(),
        tls: Vec::new(),
    })?;
    let hostname = format!("{name}.localhost");
    let credentials = edge.control.create_tunnel(&name)?;
    edge.control.route(&name, &hostname)?;

    let connector = connector::start(ConnectorConfig {
        credentials,
        ingress,
        ha_connections: 4,
        workers,
        pin_cpus: args.pin_cpus,
        edge: Some(edge.tunnel_addr),
    })?;

    let target = args
        .url
        .as_deref()
        .unwrap_or("the built-in hello-world origin");
    // A closed standard output must not stop the tunnel: the URL is in the log as well.
    let url = public_url(&hostname, edge.http_addr);
    tracing::info!(%url, "quick tunnel ready");
    let _ = outln!(
        "\nYour quick tunnel to {target} is ready:\n\n    {url}\n\n\
         It lasts as long as this process; press Ctrl-C to stop it."
    );
    let result = super::roles::run_connector(connector, QUICK_GRACE);
    edge.shutdown();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let name = random_name();
        assert_eq!(name.split('-').count(), 3);
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(public_url("a.localhost", addr), "http://a.localhost:8080/");
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(public_url("a.localhost", addr), "http://a.localhost/");
    }
}
