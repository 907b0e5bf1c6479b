use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer;

use crate::CoreError;

mod batch;

pub use batch::verify_batch;

/// An ed25519 public key. Weak (small-order) keys are rejected on construction: strict
/// verification refuses every signature under them. A key with a torsion component is
/// accepted, as `verify_strict` accepts it; [`verify_batch`] verifies its signatures singly.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CoreError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            CoreError::InvalidPublicKey(format!("expected 32 bytes, got {}", bytes.len()))
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|e| CoreError::InvalidPublicKey(e.to_string()))?;
        if key.is_weak() {
            return Err(CoreError::InvalidPublicKey("weak (small-order) key".into()));
        }
        Ok(Self(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Strict verification (rejects non-canonical and small-order components).
    /// [`verify_batch`] accepts exactly the same signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CoreError> {
        self.0
            .verify_strict(message, &signature.0)
            .map_err(|_| self.mismatch())
    }

    /// The key as a PEM SubjectPublicKeyInfo document (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> Result<String, CoreError> {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        self.0
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| CoreError::KeyEncoding(e.to_string()))
    }

    fn mismatch(&self) -> CoreError {
        CoreError::SignatureMismatch(hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.as_bytes()))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CoreError> {
        ed25519_dalek::Signature::from_slice(bytes)
            .map(Self)
            .map_err(|_| {
                CoreError::InvalidSignature(format!("expected 64 bytes, got {}", bytes.len()))
            })
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.to_bytes()))
    }
}

/// A member's ed25519 signing key.
pub struct KeyPair(ed25519_dalek::SigningKey);

impl KeyPair {
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }

    /// The key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`), the form JWT
    /// libraries and OpenSSL read.
    pub fn to_pkcs8_pem(&self) -> Result<String, CoreError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let pem = self
            .0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| CoreError::KeyEncoding(e.to_string()))?;
        Ok(pem.as_str().to_owned())
    }

    /// Reads a key written by [`KeyPair::write_file`]: the 32-byte seed as 64 hex digits.
    /// A file its group or others may access is refused (DESIGN §8).
    pub fn read_file(path: &Path) -> Result<Self, CoreError> {
        let err = |reason: String| CoreError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "its mode is {:03o}: group and others may access the key (chmod 600)",
                    mode & 0o777
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| err("expected the key's 32-byte seed as 64 hex digits".into()))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the seed as hex, readable by the owner only. Refuses to overwrite a key.
    pub fn write_file(&self, path: &Path) -> Result<(), CoreError> {
        use std::io::Write;
        let err = |reason: String| CoreError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        // Written in full to a private temporary file, then linked into place: the link
        // fails if the file exists, and a concurrent reader never sees it half-written.
        let name = path
            .file_name()
            .ok_or_else(|| err("names no file".into()))?
            .to_string_lossy();
        let tmp = path.with_file_name(format!(
            ".{name}.{}.tmp",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(&tmp).and_then(|mut f| {
            writeln!(f, "{}", hex::encode(self.0.to_bytes()))?;
            f.sync_all()
        });
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(|e| err(e.to_string()))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public: {:?})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = KeyPair::generate();
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig).is_ok());
        assert!(k.public().verify(b"hellO", &sig).is_err());
        let other = KeyPair::generate();
        assert!(other.public().verify(b"hello", &sig).is_err());
    }

    #[test]
    fn rejects_bad_keys_and_signatures() {
        assert!(PublicKey::from_bytes(&[0u8; 31]).is_err());
        // The identity point is a small-order (weak) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
        assert!(Signature::from_bytes(&[0u8; 63]).is_err());
    }

    #[test]
    fn key_file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        let k = KeyPair::generate();
        k.write_file(&path).unwrap();
        assert_eq!(KeyPair::read_file(&path).unwrap().public(), k.public());
        assert!(KeyPair::generate().write_file(&path).is_err());
        std::fs::write(&path, "not hex").unwrap();
        assert!(KeyPair::read_file(&path).is_err());
    }
}
