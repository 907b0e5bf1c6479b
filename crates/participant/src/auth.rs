//! Ledger API bearer tokens (JWT) and the rights they grant.
//!
//! Claims, at the top level or, as in Daml, under `"https://daml.com/ledger-api"`:
//! `actAs` (parties the caller may submit as, and read as), `readAs` (parties the caller
//! may read as), `readAsAnyParty` (Daml's `CanReadAsAnyParty` right: read as any party,
//! and read every party's projection with a filter naming none), `admin` (party and
//! package management), `applicationId` (when set, the only application id the caller may
//! submit or read completions as). `exp` and `nbf` are checked when present (and a stream
//! opened with a token ends when it expires); `aud` and `iss` when the configuration names
//! an audience or an issuer.

use std::collections::BTreeSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ordo_core::PartyId;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::config::{AuthConfig, ConfigError, NODE};
use crate::error::ParticipantError;
use ordo_node::config::Invalid;

const DAML_NAMESPACE: &str = "https://daml.com/ledger-api";

/// The claims ordo reads from a Ledger API token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerClaims {
    #[serde(rename = "actAs", default, skip_serializing_if = "Vec::is_empty")]
    pub act_as: Vec<String>,
    #[serde(rename = "readAs", default, skip_serializing_if = "Vec::is_empty")]
    pub read_as: Vec<String>,
    /// Read as any party (Daml's `CanReadAsAnyParty` user right).
    #[serde(
        rename = "readAsAnyParty",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_as_any_party: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    #[serde(
        rename = "applicationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub application_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(flatten)]
    top: LedgerClaims,
    #[serde(rename = "https://daml.com/ledger-api", default)]
    daml: Option<LedgerClaims>,
    /// Seconds since the epoch after which the token is no longer valid.
    #[serde(default)]
    exp: Option<u64>,
}

/// What a verified token allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    pub act_as: BTreeSet<PartyId>,
    pub read_as: BTreeSet<PartyId>,
    /// Read as any party: a filter naming no party reads every party's projection.
    pub read_as_any_party: bool,
    pub admin: bool,
    pub application_id: Option<String>,
    /// When the token expires (its `exp`): a stream opened with it ends then.
    pub expires_at: Option<std::time::SystemTime>,
}

impl Rights {
    /// The parties named in the token whose projection the caller may read: actAs ∪
    /// readAs (with `read_as_any_party`, any other party too).
    pub fn readable(&self) -> BTreeSet<PartyId> {
        self.act_as.union(&self.read_as).cloned().collect()
    }

    pub fn require_admin(&self) -> Result<(), ParticipantError> {
        if self.admin {
            Ok(())
        } else {
            Err(ParticipantError::PermissionDenied(
                "this call needs a token with the `admin` claim".into(),
            ))
        }
    }

    pub fn require_act_as<'a>(
        &self,
        parties: impl IntoIterator<Item = &'a PartyId>,
    ) -> Result<(), ParticipantError> {
        for p in parties {
            if !self.act_as.contains(p) {
                return Err(ParticipantError::PermissionDenied(format!(
                    "the token does not allow acting as party {p} (not in its actAs claim)"
                )));
            }
        }
        Ok(())
    }

    pub fn require_read_as<'a>(
        &self,
        parties: impl IntoIterator<Item = &'a PartyId>,
    ) -> Result<(), ParticipantError> {
        if self.read_as_any_party {
            return Ok(());
        }
        for p in parties {
            if !self.act_as.contains(p) && !self.read_as.contains(p) {
                return Err(ParticipantError::PermissionDenied(format!(
                    "the token does not allow reading as party {p} (not in its actAs or readAs claims)"
                )));
            }
        }
        Ok(())
    }

    pub fn require_application(&self, application_id: &str) -> Result<(), ParticipantError> {
        match &self.application_id {
            Some(a) if a != application_id => Err(ParticipantError::PermissionDenied(format!(
                "the token is for application {a}, not {application_id}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Verifies bearer tokens with the configured key.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let bad = |field: &'static str, reason: String| Invalid::new(field, reason).of(NODE);
        let (key, algorithm) = match config.algorithm.as_str() {
            "HS256" => (
                DecodingKey::from_secret(config.secret.as_bytes()),
                Algorithm::HS256,
            ),
            "EdDSA" => (
                DecodingKey::from_ed_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| bad("auth.public_key_pem", e.to_string()))?,
                Algorithm::EdDSA,
            ),
            "RS256" => (
                DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes())
                    .map_err(|e| bad("auth.public_key_pem", e.to_string()))?,
                Algorithm::RS256,
            ),
            other => {
                return Err(bad(
                    "auth.algorithm",
                    format!("{other:?}: use HS256, EdDSA or RS256"),
                ));
            }
        };
        let mut validation = Validation::new(algorithm);
        // `exp` is validated when present but not required: operators mint long-lived
        // tokens for services; short-lived ones carry `exp`. `nbf` is checked when present.
        validation.required_spec_claims.clear();
        validation.leeway = 5;
        validation.validate_nbf = true;
        if config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[config.audience.as_str()]);
        }
        if !config.issuer.is_empty() {
            validation.set_issuer(&[config.issuer.as_str()]);
            validation.required_spec_claims.insert("iss".into());
        }
        Ok(Self { key, validation })
    }

    /// The rights of the request's `authorization: Bearer …` token.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Rights, ParticipantError> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                ParticipantError::Unauthenticated(
                    "missing `authorization: Bearer <token>` metadata".into(),
                )
            })?
            .to_str()
            .map_err(|_| {
                ParticipantError::Unauthenticated("authorization metadata is not ASCII".into())
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ParticipantError::Unauthenticated(
                    "authorization metadata must be `Bearer <token>`".into(),
                )
            })?;
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Rights, ParticipantError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|e| ParticipantError::Unauthenticated(format!("invalid token: {e}")))?;
        let expires_at = data
            .claims
            .exp
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let claims = data.claims.daml.unwrap_or(data.claims.top);
        let parties = |names: &[String], claim: &str| {
            names
                .iter()
                .map(|n| {
                    PartyId::new(n).map_err(|_| {
                        ParticipantError::Unauthenticated(format!(
                            "invalid token: claim {claim} names an invalid party {n:?}"
                        ))
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()
        };
        Ok(Rights {
            act_as: parties(&claims.act_as, "actAs")?,
            read_as: parties(&claims.read_as, "readAs")?,
            read_as_any_party: claims.read_as_any_party,
            admin: claims.admin,
            application_id: claims.application_id,
            expires_at,
        })
    }
}

/// Mints an HS256 token with `claims` (and `exp` when given, seconds since the epoch):
/// for tests and the `ordo token` tool.
pub fn mint_hs256(secret: &str, claims: &LedgerClaims, exp: Option<u64>) -> String {
    #[derive(Serialize)]
    struct WithExp<'a> {
        #[serde(flatten)]
        claims: &'a LedgerClaims,
        #[serde(skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &WithExp { claims, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// The namespace Daml tokens put the ledger claims under (also accepted here).
pub fn daml_namespace() -> &'static str {
    DAML_NAMESPACE
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-0123456789";

    fn auth() -> Authenticator {
        Authenticator::new(&AuthConfig {
            secret: SECRET.into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn metadata(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    fn party(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    #[test]
    fn reads_rights_from_top_level_claims() {
        let token = mint_hs256(
            SECRET,
            &LedgerClaims {
                act_as: vec!["alice".into()],
                read_as: vec!["bank".into()],
                application_id: Some("app".into()),
                ..Default::default()
            },
            None,
        );
        let rights = auth().authenticate(&metadata(&token)).unwrap();
        assert!(rights.require_act_as([&party("alice")]).is_ok());
        let e = rights.require_act_as([&party("bank")]).unwrap_err();
        assert!(matches!(e, ParticipantError::PermissionDenied(m) if m.contains("bank")));
        assert!(
            rights
                .require_read_as([&party("bank"), &party("alice")])
                .is_ok()
        );
        assert!(rights.require_read_as([&party("carol")]).is_err());
        assert!(rights.require_admin().is_err());
        assert!(!rights.read_as_any_party);
        assert!(rights.require_application("app").is_ok());
        assert!(rights.require_application("other").is_err());
        assert_eq!(rights.readable().len(), 2);
    }

    #[test]
    fn reads_daml_namespaced_claims() {
        let claims = serde_json::json!({
            DAML_NAMESPACE: {"actAs": ["bob"], "admin": true, "readAsAnyParty": true},
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let rights = auth().verify(&token).unwrap();
        assert!(rights.admin);
        assert!(rights.act_as.contains(&party("bob")));
        assert!(rights.read_as_any_party);
    }

    #[test]
    fn read_as_any_party_reads_as_every_party() {
        let claims = LedgerClaims {
            read_as_any_party: true,
            ..Default::default()
        };
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json, serde_json::json!({"readAsAnyParty": true}));
        let token = mint_hs256(SECRET, &claims, None);
        let rights = auth().verify(&token).unwrap();
        assert!(rights.read_as_any_party);
        assert!(rights.readable().is_empty());
        assert!(rights.require_read_as([&party("carol")]).is_ok());
        assert!(rights.require_act_as([&party("carol")]).is_err());
        assert!(rights.require_admin().is_err());
    }

    #[test]
    fn refuses_missing_forged_and_expired_tokens() {
        let a = auth();
        let unauthenticated = |r: Result<Rights, ParticipantError>| {
            matches!(r, Err(ParticipantError::Unauthenticated(_)))
        };
        assert!(unauthenticated(a.authenticate(&MetadataMap::new())));
        assert!(unauthenticated(a.verify("not-a-jwt")));
        let forged = mint_hs256("another-secret-0123456", &LedgerClaims::default(), None);
        assert!(unauthenticated(a.verify(&forged)));
        let expired = mint_hs256(SECRET, &LedgerClaims::default(), Some(1_000_000));
        assert!(unauthenticated(a.verify(&expired)));
        let bad_party = mint_hs256(
            SECRET,
            &LedgerClaims {
                act_as: vec!["not a party".into()],
                ..Default::default()
            },
            None,
        );
        assert!(unauthenticated(a.verify(&bad_party)));
    }

    #[test]
    fn checks_not_before_issuer_and_audience_and_reports_the_expiry() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        let strict = Authenticator::new(&AuthConfig {
            secret: SECRET.into(),
            issuer: "https://issuer.example".into(),
            audience: "ordo".into(),
            ..Default::default()
        })
        .unwrap();
        let good = serde_json::json!({
            "actAs": ["alice"], "iss": "https://issuer.example", "aud": "ordo", "exp": now + 60
        });
        let rights = strict.verify(&sign(good.clone())).unwrap();
        assert_eq!(
            rights.expires_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(now + 60))
        );
        for (change, why) in [
            (
                ("iss", serde_json::json!("https://other.example")),
                "wrong issuer",
            ),
            (("aud", serde_json::json!("elsewhere")), "wrong audience"),
            (("nbf", serde_json::json!(now + 3600)), "not valid yet"),
            (("exp", serde_json::json!(now - 3600)), "expired"),
        ] {
            let mut claims = good.clone();
            claims[change.0] = change.1;
            let e = strict.verify(&sign(claims)).unwrap_err();
            assert!(
                matches!(e, ParticipantError::Unauthenticated(_)),
                "{why}: {e:?}"
            );
        }
        let mut no_issuer = good.clone();
        no_issuer.as_object_mut().unwrap().remove("iss");
        assert!(
            strict.verify(&sign(no_issuer)).is_err(),
            "a token without iss"
        );
        // Without an issuer or audience configured, neither is required.
        let token = sign(serde_json::json!({"actAs": ["alice"]}));
        assert_eq!(auth().verify(&token).unwrap().expires_at, None);
    }
}
