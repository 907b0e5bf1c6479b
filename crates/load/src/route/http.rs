//! The JSON API route: each connection is its own `reqwest::Client` (its own connection
//! pool to the gateway) with a bearer token acting as its one party; the gateway submits
//! as the token's party on that party's shard (docs/gateway.md).

use ordo_ledger_client::DisclosedContract;
use serde_json::{Value, json};

use super::{Exercised, Failure};

/// The gateway at `base` through one HTTP client.
#[derive(Clone)]
pub(crate) struct HttpApi {
    http: reqwest::Client,
    base: String,
}

impl HttpApi {
    /// A client of its own: connections are not shared with any other `HttpApi`.
    pub(crate) fn new(base: &str) -> Result<Self, Failure> {
        let mut builder = reqwest::Client::builder().tcp_nodelay(true);
        // An https:// gateway is verified with the network's CA (network.json).
        if let Some(tls) = ordo_tls::trusted() {
            builder = builder.use_preconfigured_tls(tls.rustls_http1());
        }
        let http = builder.build().map_err(|e| transport(&e))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// POSTs `body` (JSON, or raw bytes) to `path` with `token`; the answer's `result`, or
    /// the failure its status and `errors` describe.
    pub(crate) async fn post(
        &self,
        path: &str,
        token: &str,
        body: Body<'_>,
    ) -> Result<Value, Failure> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        let request = match body {
            Body::Json(v) => request.json(v),
            Body::Raw(bytes) => request.body(bytes.to_vec()),
        };
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| transport(&e))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(answer["result"].clone());
        }
        let message = match answer["errors"].as_array() {
            Some(errors) => errors
                .iter()
                .map(|e| e.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; "),
            None => text,
        };
        Err(Failure {
            kind: format!("HTTP_{status}"),
            message,
            // 408 and 5xx: the gateway gave up or failed while the command may be in
            // flight on its shard.
            definite: !(status == 408 || status >= 500),
        })
    }
}

pub(crate) enum Body<'a> {
    Json(&'a Value),
    Raw(&'a [u8]),
}

fn transport(e: &reqwest::Error) -> Failure {
    Failure {
        kind: "HTTP_TRANSPORT".into(),
        message: ordo_ledger_client::source_chain(e),
        // Refused before anything was sent; any later break leaves the outcome open.
        definite: e.is_connect(),
    }
}

/// A contract as the gateway shows it (`ContractView`), as a disclosure.
pub(crate) fn from_view(view: &Value) -> Option<DisclosedContract> {
    let strings = |field: &str| -> Vec<String> {
        view[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(DisclosedContract {
        contract_id: view["contractId"].as_str()?.to_owned(),
        template_id: view["templateId"].as_str()?.to_owned(),
        payload: view.get("payload")?.clone(),
        signatories: strings("signatories"),
        observers: strings("observers"),
    })
}

/// A disclosure as the gateway takes it (`disclosedContracts[i]`).
pub(crate) fn to_view(c: &DisclosedContract) -> Value {
    json!({
        "contractId": c.contract_id, "templateId": c.template_id, "payload": c.payload,
        "signatories": c.signatories, "observers": c.observers,
    })
}

pub(crate) struct HttpConn {
    party: String,
    token: String,
    api: HttpApi,
}

impl HttpConn {
    pub(crate) fn new(base: &str, party: &str, token: String) -> Result<Self, Failure> {
        Ok(Self {
            party: party.to_owned(),
            token,
            api: HttpApi::new(base)?,
        })
    }

    pub(crate) fn party(&self) -> &str {
        &self.party
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        self.api.post(path, &self.token, Body::Json(body)).await
    }

    pub(crate) async fn create(
        &self,
        template_id: &str,
        payload: Value,
        command_id: &str,
    ) -> Result<String, Failure> {
        let body = json!({"templateId": template_id, "payload": payload, "commandId": command_id});
        let created = self.post("/v1/create", &body).await?;
        created["contractId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::bad_answer("/v1/create answered no contractId", &created))
    }

    pub(crate) async fn exercise(
        &self,
        template_id: &str,
        contract_id: &str,
        choice: &str,
        argument: Value,
        disclosed: Option<&DisclosedContract>,
        command_id: &str,
    ) -> Result<Exercised, Failure> {
        let mut body = json!({
            "templateId": template_id, "contractId": contract_id, "choice": choice,
            "argument": argument, "commandId": command_id,
        });
        if let Some(d) = disclosed {
            body["disclosedContracts"] = json!([to_view(d)]);
        }
        let answer = self.post("/v1/exercise", &body).await?;
        let created = answer["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| from_view(&e["created"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Exercised {
            result: answer["exerciseResult"].clone(),
            created,
        })
    }

    /// The active contracts of `template_id` this party sees whose fields equal `query`'s.
    pub(crate) async fn query(
        &self,
        template_id: &str,
        query: Value,
    ) -> Result<Vec<DisclosedContract>, Failure> {
        let body = json!({"templateIds": [template_id], "query": query});
        let found = self.post("/v1/query", &body).await?;
        let list = found
            .as_array()
            .ok_or_else(|| Failure::bad_answer("/v1/query answered no list", &found))?;
        Ok(list.iter().filter_map(from_view).collect())
    }

    /// The contract `cid` if it is active and this party sees it.
    pub(crate) async fn fetch(&self, cid: &str) -> Result<Option<DisclosedContract>, Failure> {
        let found = self
            .post("/v1/fetch", &json!({ "contractId": cid }))
            .await?;
        Ok(from_view(&found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_view_round_trips_as_a_disclosure() {
        let view = json!({
            "contractId": "c1", "templateId": "iou:Iou",
            "payload": {"issuer": "i", "owner": "o", "currency": "USD", "amount": "10"},
            "signatories": ["i"], "observers": ["o"],
        });
        let d = from_view(&view).unwrap();
        assert_eq!(
            (d.contract_id.as_str(), d.signatories.as_slice()),
            ("c1", &["i".to_owned()][..])
        );
        assert_eq!(to_view(&d), view);
        assert!(from_view(&Value::Null).is_none());
    }
}
