//! `ordo up`'s certificates (DESIGN §8): a local CA in `DIR/tls` (made once, kept across
//! runs) and, at every start, a fresh certificate for each node and one for the operator,
//! all keys 0600 in a 0700 directory. Nodes acting for a member get a certificate naming it
//! (`urn:ordo:member:<name>`), which the sequencers hold them to.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ordo_ledger_client::network::TlsEntry;
use ordo_node::tls::{ClientAuth, LocalCa, Subject, TlsConfig};

use super::{write_atomically, write_private};

pub struct Pki {
    dir: PathBuf,
    ca: LocalCa,
}

impl Pki {
    /// The CA of `data_dir/tls`, made when missing.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("tls");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let ca = match (
            std::fs::read_to_string(&cert),
            std::fs::read_to_string(&key),
        ) {
            (Ok(c), Ok(k)) => {
                ordo_node::tls::check_private(&key)?;
                LocalCa::from_pem(&c, &k)
                    .with_context(|| format!("the local CA in {}", dir.display()))?
            }
            _ => {
                let ca = LocalCa::generate()?;
                write_private(&key, ca.key_pem().as_bytes())?;
                write_atomically(&cert, ca.cert_pem().as_bytes())?;
                ca
            }
        };
        Ok(Self { dir, ca })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A fresh certificate for node `name` (serving on loopback, acting for `member`), as
    /// its `[tls]` section.
    pub fn node(
        &self,
        name: &str,
        member: Option<&str>,
        client_auth: ClientAuth,
    ) -> anyhow::Result<TlsConfig> {
        let (cert, key) = self.issue(name, member)?;
        Ok(TlsConfig {
            cert,
            key,
            ca: self.ca(),
            client_auth,
        })
    }

    /// The operator's certificate (`ordo` commands, the tools reading network.json).
    pub fn operator(&self) -> anyhow::Result<TlsEntry> {
        let (cert, key) = self.issue("operator", None)?;
        Ok(TlsEntry {
            ca: self.ca(),
            cert,
            key,
        })
    }

    fn issue(&self, name: &str, member: Option<&str>) -> anyhow::Result<(PathBuf, PathBuf)> {
        let issued = self.ca.issue(&Subject::loopback(name, member))?;
        let (cert, key) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        write_private(&key, issued.key_pem.as_bytes())?;
        write_atomically(&cert, issued.cert_pem.as_bytes())?;
        Ok((cert, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_every_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let node = pki
            .node("shard-1-a", Some("participant-1"), ClientAuth::Optional)
            .unwrap();
        let operator = pki.operator().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("tls")), 0o700);
        for key in [&node.key, &operator.key, &dir.path().join("tls/ca.key")] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        let ca = std::fs::read_to_string(pki.ca()).unwrap();
        let again = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.ca()).unwrap(),
            ca,
            "the CA is kept"
        );
        // The kept CA still issues certificates that load with their key.
        let reissued = again
            .node("shard-1-a", Some("participant-1"), ClientAuth::Optional)
            .unwrap();
        ordo_node::tls::ServerTls::load(&reissued).unwrap();
        ordo_node::tls::ClientTls::load(&node.ca, Some((&reissued.cert, &reissued.key))).unwrap();
    }
}
