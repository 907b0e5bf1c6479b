//! A local certificate authority and the certificates it issues: what `ordo up` (and the
//! test networks) run on. Production deployments bring their own CA (docs/security.md).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::{TlsError, member_uri};

/// How long a minted certificate is valid.
const VALID_DAYS: i64 = 365;

fn error(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("minting a certificate: {e}"))
}

/// A CA: its certificate and the key that signs what it issues.
pub struct LocalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// What a certificate is for.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// The certificate's common name (for people reading it).
    pub common_name: String,
    /// Host names it serves as.
    pub dns: Vec<String>,
    /// Addresses it serves as.
    pub ips: Vec<IpAddr>,
    /// The member it may act for (`urn:ordo:member:<name>`).
    pub member: Option<String>,
}

impl Subject {
    /// A node serving on loopback (`localhost`, 127.0.0.1, ::1), acting for `member` if
    /// given.
    pub fn loopback(common_name: &str, member: Option<&str>) -> Self {
        Self {
            common_name: common_name.to_owned(),
            dns: vec!["localhost".into()],
            ips: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()],
            member: member.map(str::to_owned),
        }
    }
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ordo");
    dn.push(DnType::CommonName, "ordo local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl LocalCa {
    /// A new CA with a fresh ECDSA P-256 key, valid for ten years.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(error)?;
        let mut params = ca_params();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10 * 365);
        let cert_pem = params.self_signed(&key).map_err(error)?.pem();
        Ok(Self {
            cert_pem,
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA that [`LocalCa::generate`] made, from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(error)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// [`LocalCa::from_pem`] from the files `cert` and `key`.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| TlsError::File {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        super::check_private(key)?;
        Self::from_pem(&read(cert)?, &read(key)?)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `subject` (server and client use), with a fresh key.
    pub fn issue(&self, subject: &Subject) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, subject.common_name.as_str());
        let mut sans = Vec::new();
        for d in &subject.dns {
            sans.push(SanType::DnsName(d.as_str().try_into().map_err(error)?));
        }
        sans.extend(subject.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        if let Some(m) = &subject.member {
            sans.push(SanType::URI(member_uri(m).try_into().map_err(error)?));
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(VALID_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
