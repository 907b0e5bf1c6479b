//! Request bodies: JSON parsed into a request type whose errors name the offending field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// The request body's bytes; a body over the size limit is answered 413 in the API's shape.
pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the gateway's max_body_bytes".to_owned()
        } else {
            e.body_text()
        };
        ApiError::new(status, message)
    })
}

/// The body parsed as `T`; a malformed or ill-typed body is a 400 that names the field.
pub fn json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    parse(&bytes(body)?, "the request body")
}

/// `text` parsed as `T`, `what` naming it in the errors (`the request body`, `the first
/// message`); malformed or ill-typed JSON is a 400 that names the field.
pub fn parse<T: DeserializeOwned>(text: &[u8], what: &str) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("{what} is not JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("{what} is invalid: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid field `{path}`: {inner}"))
        }
    })
}

/// `field` must not be empty.
pub fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::bad_request(format!(
            "field `{field}` must not be empty"
        )))
    } else {
        Ok(())
    }
}

/// `field` must be a JSON object (a template's fields, a choice's argument).
pub fn object(field: &str, value: &Value) -> Result<(), ApiError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "field `{field}` must be a JSON object, got {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Req {
        #[allow(dead_code)]
        template_id: String,
    }

    fn err(body: &str) -> String {
        json::<Req>(Ok(Bytes::from(body.to_owned())))
            .unwrap_err()
            .message
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("{").contains("not JSON"), "{}", err("{"));
        assert!(err("{}").contains("templateId"), "{}", err("{}"));
        let typed = err(r#"{"templateId": 5}"#);
        assert!(typed.contains("`templateId`"), "{typed}");
        let unknown = err(r#"{"templateId": "a", "x": 1}"#);
        assert!(unknown.contains("`x`"), "{unknown}");
        assert!(required("choice", " ").is_err());
        assert!(object("payload", &Value::Null).is_err());
    }
}
