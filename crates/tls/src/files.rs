//! Reading PEM files, and refusing a private key that others can read.

use std::path::Path;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The certificates in the PEM file `path`, at least one.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    certs_in(&bytes, path)
}

/// The certificates of PEM text read from `path` (for messages), at least one.
pub(crate) fn certs_in(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// When the leaf certificate (the first of `certs`) expires, in seconds since the Unix
/// epoch; `None` when it cannot be parsed (rustls has accepted it, so this only loses the
/// metric).
pub(crate) fn not_after(certs: &[CertificateDer<'_>]) -> Option<i64> {
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The private key in the PEM file `path`, which only its owner may read.
pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_error(path, format!("not a PEM private key: {e}")))
}

/// The CA certificates of the PEM bundle `path` as trust anchors.
pub(crate) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_of(certs(path)?, path)
}

/// `certs` (read from `path`, for messages) as trust anchors.
pub(crate) fn roots_of(
    certs: Vec<CertificateDer<'static>>,
    path: &Path,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Refuses a file holding a secret or a private key that its group or others may read or
/// write (DESIGN §8): `chmod 600` it.
pub fn check_private(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| file_error(path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(file_error(
                path,
                format!(
                    "holds a secret but its mode is {:03o}: group and others may access it (chmod 600)",
                    mode & 0o777
                ),
            ));
        }
    }
    Ok(())
}

/// The modification times of `paths` (`None` for a file that cannot be read), to tell
/// when one changed.
pub(crate) fn stamps(paths: &[&Path]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}
