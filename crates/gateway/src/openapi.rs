//! The OpenAPI document of `/v1`, generated from the handlers' `#[utoipa::path]`s and the
//! request and answer types, served at `GET /v1/openapi.json` without a token.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{commands, packages, parties, query, stream, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ordo JSON API",
        description = "HTTP/JSON in front of ordo's sharded Ledger API. Every answer is \
            `{\"status\": 200, \"result\": …}` or `{\"status\": N, \"errors\": [\"…\"]}`; \
            decimals travel as strings. See docs/gateway.md.",
    ),
    paths(
        parties::allocate,
        parties::list,
        packages::upload,
        packages::list,
        commands::create,
        commands::exercise,
        commands::create_and_exercise,
        query::query,
        query::query_all,
        query::fetch,
        stream::stream,
        stream::stream_fetch,
        users::own_user,
        users::user,
        users::create,
        users::delete,
        users::list,
        users::own_rights,
        users::rights,
        users::grant,
        users::revoke,
        document,
    ),
    // The stream's messages, which no HTTP answer refers to.
    components(schemas(
        stream::StreamRequest,
        stream::QuerySpec,
        stream::FetchSpec,
        stream::Events,
        stream::StreamEvent,
        stream::Live
    )),
    modifiers(&BearerToken),
    tags(
        (name = "parties", description = "Parties and the shards hosting them (admin tokens)"),
        (name = "packages", description = "Packages (admin tokens)"),
        (name = "commands", description = "Commands, submitted as the token's first actAs party"),
        (name = "query", description = "The active contracts the token's parties see"),
        (name = "users", description = "Users and their rights, domain-wide (admin tokens; a user token reads its own)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme the paths name: the Ledger API's JWT.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "The Ledger API's token: `actAs`, `readAs` and `admin` claims, or a user \
                 token (`sub` = the user, `scope` = `daml_ledger_api`) standing for the user's \
                 current rights",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json")),
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_named_once_and_needs_the_bearer_token_but_this_one() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "{id} twice");
                let secured = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                assert_eq!(secured, path != "/v1/openapi.json", "{method} {path}");
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
