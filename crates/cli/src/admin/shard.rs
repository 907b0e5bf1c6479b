//! `ordo admin shard add --name shard-3 [--replicas N]`: adds a participant shard to the
//! network that `ordo up` runs. `ordo up` owns the node processes, so it does the work: this
//! calls its control API (`control.http` in the network file, `POST /shards`) with the
//! bearer token in the `control-token` file next to the network file, and reports the
//! answer: the new shard's replicas, or why it was refused.

use std::path::PathBuf;
use std::time::Duration;

use ordo_ledger_client::Network;
use ordo_node::http_client::{self, HttpError, Method};
use serde_json::{Value, json};

use crate::Failure;
use crate::up::CONTROL_TOKEN;

/// How long `ordo up` may take to provision, register and start the shard (its replicas
/// alone may take a minute to become ready).
const ADD_TIMEOUT: Duration = Duration::from_secs(180);

/// What `ordo up` answered to an add that succeeded: its whole answer (`message`,
/// `shard`, `participant`, `replicas`).
pub struct Added(pub Value);

impl Added {
    pub fn message(&self) -> &str {
        self.0["message"].as_str().unwrap_or_default()
    }
}

pub async fn add(network: &Network, name: &str, replicas: usize) -> Result<Added, Failure> {
    let usage = |m: String| Failure::Usage(anyhow::anyhow!(m));
    let file = network.path.display();
    if network.control.http.is_empty() {
        return Err(usage(format!(
            "{file} names no control API (`control.http`); restart the network with this \
             version of `ordo up`"
        )));
    }
    let token = read_token(&token_file(network)).map_err(usage)?;
    let url = http_client::url(&network.control.http, "/shards")
        .map_err(|e| usage(format!("{file}: control.http: {e}")))?;
    let body = json!({ "name": name, "replicas": replicas });
    let sent =
        http_client::request_json(Method::POST, &url, Some(&token), &body, ADD_TIMEOUT).await;
    let answer = match sent {
        Ok(a) => a,
        Err(HttpError::Unreachable { reason, .. }) => {
            return Err(usage(format!(
                "no `ordo up` answers for {file}: {url} refused the connection (the \
                 network is not running; start it with `ordo up`): {reason}"
            )));
        }
        Err(HttpError::Timeout { .. }) => {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "`ordo up` did not answer within {ADD_TIMEOUT:?}; the add goes on there: see \
                 its output and `ordo admin status`"
            )));
        }
        Err(e) => return Err(Failure::Runtime(e.into())),
    };
    let status = answer.status;
    let body: Value = serde_json::from_str(&answer.body).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "{url} answered HTTP {status} without a JSON body: {e}"
        ))
    })?;
    if status.is_success() {
        return Ok(Added(body));
    }
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    let refused = anyhow::anyhow!("`ordo up` refused to add {name} (HTTP {status}): {message}");
    Err(if status.is_client_error() {
        Failure::Usage(refused)
    } else {
        Failure::Runtime(refused)
    })
}

fn token_file(network: &Network) -> PathBuf {
    network
        .path
        .parent()
        .map_or_else(|| PathBuf::from(CONTROL_TOKEN), |d| d.join(CONTROL_TOKEN))
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the control API's token {}: {e} (`ordo up` writes it next to \
             network.json)",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_token_is_read_next_to_the_network_file() {
        let n = Network::parse("{}", Path::new("/data/net/network.json")).unwrap();
        assert_eq!(token_file(&n), Path::new("/data/net/control-token"));
        let n = Network::parse("{}", Path::new("network.json")).unwrap();
        assert_eq!(token_file(&n), Path::new("control-token"));
        let e = read_token(Path::new("/nonexistent/control-token")).unwrap_err();
        assert!(e.contains("/nonexistent/control-token"), "{e}");
    }

    #[tokio::test]
    async fn a_network_without_ordo_up_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let file = dir.path().join("network.json");
        let n = Network::parse(
            &format!(r#"{{"control": {{"http": "http://127.0.0.1:{port}"}}}}"#),
            &file,
        )
        .unwrap();
        let Err(Failure::Usage(e)) = add(&n, "shard-3", 2).await else {
            panic!("no token file must be a usage error");
        };
        assert!(e.to_string().contains("control-token"), "{e}");
        std::fs::write(dir.path().join("control-token"), "t").unwrap();
        let Err(Failure::Usage(e)) = add(&n, "shard-3", 2).await else {
            panic!("connection refused must be a usage error");
        };
        assert!(e.to_string().contains("refused the connection"), "{e}");
        let n = Network::parse("{}", &file).unwrap();
        let Err(Failure::Usage(e)) = add(&n, "shard-3", 2).await else {
            panic!("no control API must be a usage error");
        };
        assert!(e.to_string().contains("control.http"), "{e}");
    }
}
