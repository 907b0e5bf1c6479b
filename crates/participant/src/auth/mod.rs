//! Ledger API bearer tokens (JWT) and the rights they grant.
//!
//! Claims, at the top level or, as in Daml, under `"https://daml.com/ledger-api"`:
//! `actAs` (parties the caller may submit as, and read as), `readAs` (parties the caller
//! may read as), `readAsAnyParty` (Daml's `CanReadAsAnyParty` right: read as any party,
//! and read every party's projection with a filter naming none), `admin` (party and
//! package management), `applicationId` (when set, the only application id the caller may
//! submit or read completions as). Every token must carry `exp` (and a stream opened with
//! it ends when it expires); `nbf` is checked when present; `aud` and `iss` when the
//! configuration names an audience or an issuer. Keys: an HS256 secret, or EdDSA / RS256
//! public keys given inline or in a PEM or JWKS file that is re-read when it changes.

use std::collections::BTreeSet;

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use ordo_core::PartyId;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::config::{AuthConfig, ConfigError, NODE};
use crate::error::ParticipantError;
use ordo_node::config::Invalid;

mod keys;
mod signer;

use keys::{KeySet, Keys};
pub use signer::{TokenSigner, expiry_in, mint_hs256};

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
    /// A user token's user id (with `scope` naming [`USER_SCOPE`]).
    #[serde(default)]
    sub: Option<String>,
    /// Space-separated scopes.
    #[serde(default)]
    scope: Option<String>,
}

/// The scope of Daml's user tokens: `{"sub": "<user id>", "scope": "daml_ledger_api"}`.
pub const USER_SCOPE: &str = "daml_ledger_api";

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
    /// A user token's user: the rights above are that user's as of the request
    /// ([`Rights::of_user`]), not claims of the token.
    pub user: Option<String>,
}

impl Rights {
    /// The rights of a user token resolved against the user's current rights (`None`: no
    /// such user, which is refused).
    pub fn of_user(self, user: Option<&ordo_protocol::User>) -> Result<Rights, ParticipantError> {
        use ordo_protocol::UserRight as R;
        let id = self.user.clone().unwrap_or_default();
        let user = user.ok_or_else(|| {
            ParticipantError::PermissionDenied(format!(
                "the token's user {id} does not exist (deleted, or never created)"
            ))
        })?;
        let mut rights = Rights {
            user: Some(id),
            expires_at: self.expires_at,
            ..Rights::default()
        };
        for r in &user.rights {
            match r {
                R::CanActAs(p) => {
                    rights.act_as.insert(p.clone());
                }
                R::CanReadAs(p) => {
                    rights.read_as.insert(p.clone());
                }
                R::CanReadAsAnyParty => rights.read_as_any_party = true,
                R::ParticipantAdmin => rights.admin = true,
            }
        }
        Ok(rights)
    }

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

/// Verifies bearer tokens with the configured keys.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let bad = |field: &'static str, reason: String| Invalid::new(field, reason).of(NODE);
        let algorithm = match config.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "EdDSA" => Algorithm::EdDSA,
            "RS256" => Algorithm::RS256,
            other => {
                return Err(bad(
                    "auth.algorithm",
                    format!("{other:?}: use EdDSA, RS256 or HS256"),
                ));
            }
        };
        let keys = match (algorithm, &config.key_file) {
            (Algorithm::HS256, _) => Keys::fixed(KeySet::secret(&config.secret)),
            (_, Some(file)) => {
                Keys::from_file(file, algorithm).map_err(|e| bad("auth.key_file", e))?
            }
            (_, None) => Keys::fixed(
                KeySet::parse(&config.public_key_pem, algorithm)
                    .map_err(|e| bad("auth.public_key_pem", e))?,
            ),
        };
        let mut validation = Validation::new(algorithm);
        // Every token expires (`exp` is required); `nbf` is checked when present.
        validation.required_spec_claims = ["exp".to_owned()].into();
        validation.leeway = LEEWAY_SECS;
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
        Ok(Self {
            inner: Arc::new(Inner { keys, validation }),
        })
    }

    #[cfg(test)]
    fn checking_keys_every(self, every: std::time::Duration) -> Self {
        let inner = Arc::into_inner(self.inner).expect("not shared yet");
        Self {
            inner: Arc::new(Inner {
                keys: inner.keys.checking_every(every),
                validation: inner.validation,
            }),
        }
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
        let invalid =
            |reason: String| ParticipantError::Unauthenticated(format!("invalid token: {reason}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(reason(&e, &self.inner.validation)))?;
        let keys = self.inner.keys.get();
        let mut refusal = None;
        let mut data = None;
        for key in keys.candidates(header.kid.as_deref()) {
            match jsonwebtoken::decode::<RawClaims>(token, key, &self.inner.validation) {
                Ok(d) => {
                    data = Some(d);
                    break;
                }
                // Another key may have signed it; any other refusal is about the token.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                    refusal.get_or_insert(e);
                }
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
        let data = match (data, refusal) {
            (Some(d), _) => d,
            (None, Some(e)) => return Err(invalid(reason(&e, &self.inner.validation))),
            (None, None) => {
                return Err(invalid(format!(
                    "no verification key has the token's key id {:?}",
                    header.kid.unwrap_or_default()
                )));
            }
        };
        let expires_at = data
            .claims
            .exp
            .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let user_token = data.claims.daml.is_none()
            && data.claims.top == LedgerClaims::default()
            && data
                .claims
                .scope
                .as_deref()
                .is_some_and(|s| s.split_whitespace().any(|s| s == USER_SCOPE));
        if user_token {
            let user = data.claims.sub.filter(|s| !s.is_empty()).ok_or_else(|| {
                invalid(format!("a {USER_SCOPE} token must name its user in `sub`"))
            })?;
            return Ok(Rights {
                user: Some(user),
                expires_at,
                ..Rights::default()
            });
        }
        let claims = data.claims.daml.unwrap_or(data.claims.top);
        let parties = |names: &[String], claim: &str| {
            names
                .iter()
                .map(|n| {
                    PartyId::new(n)
                        .map_err(|_| invalid(format!("claim {claim} names an invalid party {n:?}")))
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
            user: None,
        })
    }
}

/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// Why a token was refused, in words a client can act on.
fn reason(e: &jsonwebtoken::errors::Error, validation: &Validation) -> String {
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => format!(
            "wrong audience (aud): expected {:?}",
            validation.aud.iter().flatten().collect::<Vec<_>>()
        ),
        ErrorKind::InvalidIssuer => format!(
            "wrong issuer (iss): expected {:?}",
            validation.iss.iter().flatten().collect::<Vec<_>>()
        ),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("the token lacks the required claim `{claim}`")
        }
        ErrorKind::InvalidSignature => "the signature does not verify with this node's keys".into(),
        ErrorKind::InvalidAlgorithm => format!(
            "signed with another algorithm: this node accepts {:?}",
            validation.algorithms
        ),
        _ => e.to_string(),
    }
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
            algorithm: "HS256".into(),
            secret: SECRET.into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        expiry_in(std::time::Duration::from_secs(3600))
    }

    fn metadata(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    fn party(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_user_token_names_its_user_and_takes_the_users_current_rights() {
        use ordo_protocol::{User, UserRight};
        let exp = in_an_hour();
        let token = signed(serde_json::json!({
            "sub": "app-1", "scope": "openid daml_ledger_api", "exp": exp
        }));
        let rights = auth().verify(&token).unwrap();
        assert_eq!(rights.user.as_deref(), Some("app-1"));
        assert!(rights.act_as.is_empty() && !rights.admin);
        let user = User {
            id: "app-1".into(),
            primary_party: None,
            rights: [
                UserRight::CanActAs(party("alice")),
                UserRight::CanReadAs(party("bob")),
                UserRight::ParticipantAdmin,
            ]
            .into_iter()
            .collect(),
        };
        let resolved = rights.clone().of_user(Some(&user)).unwrap();
        assert_eq!(resolved.act_as, [party("alice")].into_iter().collect());
        assert_eq!(resolved.read_as, [party("bob")].into_iter().collect());
        assert!(resolved.admin && !resolved.read_as_any_party);
        assert_eq!(resolved.expires_at, rights.expires_at);
        // A deleted user's token is refused, naming the user.
        let gone = rights.of_user(None).unwrap_err();
        assert!(matches!(&gone, ParticipantError::PermissionDenied(m) if m.contains("app-1")));
        // The scope without `sub` is refused; a token with claims is no user token, and
        // neither is one without the scope.
        let no_sub = signed(serde_json::json!({ "scope": "daml_ledger_api", "exp": exp }));
        assert!(matches!(
            auth().verify(&no_sub),
            Err(ParticipantError::Unauthenticated(m)) if m.contains("`sub`")
        ));
        let with_claims = signed(serde_json::json!({
            "sub": "app-1", "scope": "daml_ledger_api", "actAs": ["alice"], "exp": exp
        }));
        assert_eq!(auth().verify(&with_claims).unwrap().user, None);
        let no_scope = signed(serde_json::json!({ "sub": "app-1", "exp": exp }));
        assert_eq!(auth().verify(&no_scope).unwrap().user, None);
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
            in_an_hour(),
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
            "exp": in_an_hour(),
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
        let token = mint_hs256(SECRET, &claims, in_an_hour());
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
        let forged = mint_hs256(
            "another-secret-0123456",
            &LedgerClaims::default(),
            in_an_hour(),
        );
        assert!(unauthenticated(a.verify(&forged)));
        let expired = mint_hs256(SECRET, &LedgerClaims::default(), 1_000_000);
        assert!(unauthenticated(a.verify(&expired)));
        let bad_party = mint_hs256(
            SECRET,
            &LedgerClaims {
                act_as: vec!["not a party".into()],
                ..Default::default()
            },
            in_an_hour(),
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
            algorithm: "HS256".into(),
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
                "wrong issuer (iss)",
            ),
            (
                ("aud", serde_json::json!("elsewhere")),
                "wrong audience (aud)",
            ),
            (
                ("nbf", serde_json::json!(now + 3600)),
                "not valid yet (nbf)",
            ),
            (("exp", serde_json::json!(now - 3600)), "has expired (exp)"),
        ] {
            let mut claims = good.clone();
            claims[change.0] = change.1;
            let e = strict.verify(&sign(claims)).unwrap_err();
            assert!(
                matches!(&e, ParticipantError::Unauthenticated(m) if m.contains(why)),
                "{why}: {e:?}"
            );
        }
        let mut no_issuer = good.clone();
        no_issuer.as_object_mut().unwrap().remove("iss");
        assert!(
            strict.verify(&sign(no_issuer)).is_err(),
            "a token without iss"
        );
        // Without an issuer or audience configured, neither is required; `exp` always is.
        let token = sign(serde_json::json!({"actAs": ["alice"], "exp": now + 60}));
        assert!(auth().verify(&token).is_ok());
        let forever = sign(serde_json::json!({"actAs": ["alice"]}));
        let e = auth().verify(&forever).unwrap_err();
        assert!(
            matches!(&e, ParticipantError::Unauthenticated(m) if m.contains("required claim `exp`")),
            "{e:?}"
        );
        let e = auth()
            .verify(&mint_hs256(
                "another-secret-0123456",
                &LedgerClaims::default(),
                now + 60,
            ))
            .unwrap_err();
        assert!(
            matches!(&e, ParticipantError::Unauthenticated(m) if m.contains("signature")),
            "{e:?}"
        );
    }

    fn ed25519() -> (TokenSigner, String) {
        let key = ordo_core::KeyPair::generate();
        let signer = TokenSigner::ed25519_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        (signer, key.public().to_pem().unwrap())
    }

    fn jwk(public_pem: &str, kid: &str) -> serde_json::Value {
        let key = jsonwebtoken::DecodingKey::from_ed_pem(public_pem.as_bytes()).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(Algorithm::EdDSA)).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).unwrap()
    }

    fn alice() -> LedgerClaims {
        LedgerClaims {
            act_as: vec!["alice".into()],
            ..Default::default()
        }
    }

    #[test]
    fn eddsa_keys_inline_or_from_a_pem_file() {
        let (signer, public) = ed25519();
        let (other, _) = ed25519();
        let inline = Authenticator::new(&AuthConfig {
            public_key_pem: public.clone(),
            ..Default::default()
        })
        .unwrap();
        let token = signer.mint(&alice(), in_an_hour()).unwrap();
        let rights = inline.verify(&token).unwrap();
        assert!(rights.act_as.contains(&party("alice")));
        let forged = other.mint(&alice(), in_an_hour()).unwrap();
        assert!(inline.verify(&forged).is_err());
        // An HS256 token made with the public key as its secret is refused.
        let confused = mint_hs256(&public, &alice(), in_an_hour());
        let e = inline.verify(&confused).unwrap_err();
        assert!(format!("{e:?}").contains("another algorithm"), "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.pem");
        let (_, third) = ed25519();
        std::fs::write(&file, format!("{third}{public}")).unwrap();
        let from_file = Authenticator::new(&AuthConfig {
            key_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert!(
            from_file.verify(&token).is_ok(),
            "any key of the file verifies"
        );
        std::fs::write(&file, "garbage").unwrap();
        let e = Authenticator::new(&AuthConfig {
            key_file: Some(file),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert_eq!(e.field, "auth.key_file");
    }

    #[test]
    fn a_jwks_file_rotates_keys_without_a_restart() {
        let (old, old_public) = ed25519();
        let (new, new_public) = ed25519();
        let old = old.with_key_id("k1");
        let new = new.with_key_id("k2");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.jwks");
        let write = |keys: Vec<serde_json::Value>| {
            std::fs::write(&file, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        };
        write(vec![jwk(&old_public, "k1")]);
        let auth = Authenticator::new(&AuthConfig {
            key_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap()
        .checking_keys_every(std::time::Duration::ZERO);
        let by_old = old.mint(&alice(), in_an_hour()).unwrap();
        let by_new = new.mint(&alice(), in_an_hour()).unwrap();
        assert!(auth.verify(&by_old).is_ok());
        let e = auth.verify(&by_new).unwrap_err();
        assert!(format!("{e:?}").contains("key id \\\"k2\\\""), "{e:?}");

        // Rotation: publish the new key beside the old, then retire the old.
        write(vec![jwk(&old_public, "k1"), jwk(&new_public, "k2")]);
        assert!(auth.verify(&by_new).is_ok());
        assert!(auth.verify(&by_old).is_ok());
        write(vec![jwk(&new_public, "k2")]);
        assert!(auth.verify(&by_new).is_ok());
        assert!(auth.verify(&by_old).is_err());
        // A broken file keeps the keys in use.
        std::fs::write(&file, "{ half a document").unwrap();
        assert!(auth.verify(&by_new).is_ok());
    }
}
