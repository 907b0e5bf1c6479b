//! `ordo token`: a Ledger API bearer token for the local network, signed (HS256) with the
//! secret the participants of `ordo up` verify with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ordo_core::PartyId;
use ordo_participant::auth::LedgerClaims;

use crate::Failure;
use crate::cli::TokenArgs;
use crate::network::NetworkFile;

pub fn main(args: &TokenArgs) -> Result<(), Failure> {
    let claims = claims(args).map_err(Failure::Usage)?;
    let network = NetworkFile::read(&args.network).map_err(Failure::Usage)?;
    let token =
        mint(&network, &claims, args.expires_in, SystemTime::now()).map_err(Failure::Usage)?;
    println!("{token}");
    Ok(())
}

/// The claims the flags ask for, with every party name checked.
fn claims(args: &TokenArgs) -> anyhow::Result<LedgerClaims> {
    if args.act_as.is_empty() && args.read_as.is_empty() && !args.admin {
        anyhow::bail!("a token needs a right: give --act-as PARTY, --read-as PARTY or --admin");
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
    network: &NetworkFile,
    claims: &LedgerClaims,
    expires_in: u64,
    now: SystemTime,
) -> anyhow::Result<String> {
    if network.auth.algorithm != "HS256" || network.auth.secret.is_empty() {
        anyhow::bail!(
            "the network verifies tokens with {:?} and no shared secret is known; `ordo token` \
             mints HS256 tokens only",
            network.auth.algorithm
        );
    }
    let exp = match expires_in {
        0 => None,
        secs => Some(
            (now + Duration::from_secs(secs))
                .duration_since(UNIX_EPOCH)
                .map_err(|e| anyhow::anyhow!("the system clock is before 1970: {e}"))?
                .as_secs(),
        ),
    };
    Ok(ordo_participant::auth::mint_hs256(
        &network.auth.secret,
        claims,
        exp,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use ordo_participant::AuthConfig;
    use ordo_participant::auth::Authenticator;

    use super::*;
    use crate::network::{Auth, ControlEntry, PostgresEntry};

    fn args(act_as: &[&str]) -> TokenArgs {
        TokenArgs {
            act_as: act_as.iter().map(|s| (*s).to_owned()).collect(),
            read_as: vec![],
            admin: false,
            application_id: None,
            expires_in: 60,
            network: PathBuf::from("ordo-data/network.json"),
        }
    }

    fn network(secret: &str) -> NetworkFile {
        NetworkFile {
            postgres: PostgresEntry {
                url: "postgres://ordo@127.0.0.1:1/x".into(),
                managed: true,
            },
            sequencers: vec![],
            topology: vec![],
            mediators: vec![],
            participants: vec![],
            gateways: vec![],
            control: ControlEntry {
                http: "http://127.0.0.1:2".into(),
            },
            auth: Auth {
                algorithm: "HS256".into(),
                secret: secret.into(),
                sequencer_admin_token: "s".into(),
                topology_admin_token: "t".into(),
                replica_admin_token: "r".into(),
            },
            tls: None,
        }
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
    fn bad_requests_are_named() {
        let err = claims(&args(&[])).unwrap_err().to_string();
        assert!(err.contains("--act-as"), "{err}");
        let err = claims(&args(&["not a party"])).unwrap_err().to_string();
        assert!(err.contains("not a party"), "{err}");
        let err = NetworkFile::read(Path::new("/nonexistent/network.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/network.json"), "{err}");
        assert!(err.contains("ordo up"), "{err}");
    }
}
