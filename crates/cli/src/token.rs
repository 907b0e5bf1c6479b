//! `ordo token`: a Ledger API bearer token for the local network, signed with the key
//! network.json names (`ordo up`: an Ed25519 key whose public half the participants and
//! gateways verify with).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ordo_core::PartyId;
use ordo_participant::auth::LedgerClaims;

use ordo_ledger_client::Network;

use crate::Failure;
use crate::cli::TokenArgs;

pub fn main(args: &TokenArgs) -> Result<(), Failure> {
    if let Some(user) = &args.user {
        ordo_protocol::topology::validate_user_id(user)
            .map_err(|e| Failure::Usage(anyhow::anyhow!("--user: {e}")))?;
        let network = Network::load(&args.network).map_err(|e| Failure::Usage(e.into()))?;
        let token = mint_user(&network, user, args.expires_in, SystemTime::now())
            .map_err(Failure::Usage)?;
        println!("{token}");
        return Ok(());
    }
    let claims = claims(args).map_err(Failure::Usage)?;
    let network = Network::load(&args.network).map_err(|e| Failure::Usage(e.into()))?;
    let token =
        mint(&network, &claims, args.expires_in, SystemTime::now()).map_err(Failure::Usage)?;
    println!("{token}");
    Ok(())
}

/// The claims the flags ask for, with every party name checked.
fn claims(args: &TokenArgs) -> anyhow::Result<LedgerClaims> {
    if args.act_as.is_empty() && args.read_as.is_empty() && !args.admin {
        anyhow::bail!(
            "a token needs a right: give --act-as PARTY, --read-as PARTY, --admin or --user ID"
        );
    }
    let parties = |names: &[String], flag: &str| -> anyhow::Result<Vec<String>> {
        names
            .iter()
            .map(|n| {
                PartyId::new(n)
                    .map(|p| p.as_str().to_owned())
                    .map_err(|e| anyhow::anyhow!("{flag} {n:?}: {e}"))
            })
            .collect()
    };
    if let Some(id) = args.application_id.as_deref()
        && id.trim().is_empty()
    {
        anyhow::bail!("--application-id must not be empty");
    }
    Ok(LedgerClaims {
        act_as: parties(&args.act_as, "--act-as")?,
        read_as: parties(&args.read_as, "--read-as")?,
        admin: args.admin,
        application_id: args.application_id.clone(),
        ..Default::default()
    })
}

fn mint(
    network: &Network,
    claims: &LedgerClaims,
    expires_in: u64,
    now: SystemTime,
) -> anyhow::Result<String> {
    let exp = (now + Duration::from_secs(expires_in))
        .duration_since(UNIX_EPOCH)
        .map_err(|e| anyhow::anyhow!("the system clock is before 1970: {e}"))?
        .as_secs();
    network
        .token_signer()?
        .mint(claims, exp)
        .map_err(anyhow::Error::msg)
}

/// A user token for `user` (Daml's form), expiring in `expires_in` seconds.
fn mint_user(
    network: &Network,
    user: &str,
    expires_in: u64,
    now: SystemTime,
) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct UserClaims<'a> {
        sub: &'a str,
        scope: &'a str,
        exp: u64,
    }
    let exp = (now + Duration::from_secs(expires_in))
        .duration_since(UNIX_EPOCH)
        .map_err(|e| anyhow::anyhow!("the system clock is before 1970: {e}"))?
        .as_secs();
    network
        .token_signer()?
        .sign(&UserClaims {
            sub: user,
            scope: ordo_participant::auth::USER_SCOPE,
            exp,
        })
        .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use ordo_participant::AuthConfig;
    use ordo_participant::auth::Authenticator;

    use super::*;

    fn args(act_as: &[&str]) -> TokenArgs {
        TokenArgs {
            act_as: act_as.iter().map(|s| (*s).to_owned()).collect(),
            read_as: vec![],
            admin: false,
            application_id: None,
            user: None,
            expires_in: 60,
            network: PathBuf::from("ordo-data/network.json"),
        }
    }

    fn network(secret: &str) -> Network {
        let mut n = Network::default();
        n.auth.algorithm = "HS256".into();
        n.auth.secret = secret.into();
        n
    }

    #[test]
    fn minted_token_is_accepted_by_a_participant_with_the_secret() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut a = args(&["alice", "bob"]);
        a.read_as = vec!["carol".into()];
        a.application_id = Some("app-1".into());
        let token = mint(
            &network(secret),
            &claims(&a).unwrap(),
            60,
            SystemTime::now(),
        )
        .unwrap();
        let auth = Authenticator::new(&AuthConfig {
            algorithm: "HS256".into(),
            secret: secret.into(),
            ..Default::default()
        })
        .unwrap();
        let rights = auth.verify(&token).unwrap();
        let names = |s: &std::collections::BTreeSet<PartyId>| {
            s.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(names(&rights.act_as), ["alice", "bob"]);
        assert_eq!(names(&rights.read_as), ["carol"]);
        assert!(!rights.admin);
        assert_eq!(rights.application_id.as_deref(), Some("app-1"));

        // Another network's secret does not verify it; an expired one is refused.
        let other = Authenticator::new(&AuthConfig {
            algorithm: "HS256".into(),
            secret: "another-secret-0123456789".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(other.verify(&token).is_err());
        let past = SystemTime::now() - Duration::from_secs(3600);
        let old = mint(&network(secret), &claims(&a).unwrap(), 60, past).unwrap();
        assert!(auth.verify(&old).is_err(), "an expired token was accepted");
    }

    #[test]
    fn a_user_token_names_the_user_and_verifies() {
        let secret = "0123456789abcdef0123456789abcdef";
        let token = mint_user(&network(secret), "app-1", 60, SystemTime::now()).unwrap();
        let auth = Authenticator::new(&AuthConfig {
            algorithm: "HS256".into(),
            secret: secret.into(),
            ..Default::default()
        })
        .unwrap();
        let rights = auth.verify(&token).unwrap();
        assert_eq!(rights.user.as_deref(), Some("app-1"));
        assert!(rights.act_as.is_empty() && !rights.admin);
    }

    #[test]
    fn bad_requests_are_named() {
        let err = claims(&args(&[])).unwrap_err().to_string();
        assert!(err.contains("--act-as"), "{err}");
        let err = claims(&args(&["not a party"])).unwrap_err().to_string();
        assert!(err.contains("not a party"), "{err}");
        let err = Network::load(Path::new("/nonexistent/network.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/network.json"), "{err}");
        assert!(err.contains("ordo up"), "{err}");
    }
}
