//! The TLS listener's certificate, reloadable: certificates are renewed
//! every 60-90 days, and nobody should restart a proxy for that. `SIGHUP`
//! re-reads `server.tls_cert` and `server.tls_key` (the paths of the
//! running process); a pair that loads and matches is handed to every new
//! handshake, connections already open keep theirs. A pair that does not
//! load is refused with the reason, and the running certificate stays.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// The certificate every new TLS handshake gets.
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("ReloadableCert")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ReloadableCert {
    /// Loads the pair, or says what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadableCert, String> {
        let current = ArcSwap::from(load_pair(cert, key)?);
        Ok(ReloadableCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
        })
    }

    /// Reads the files again. `Ok(true)`: new handshakes get the new pair;
    /// `Ok(false)`: the files hold the running certificate already.
    pub fn reload(&self) -> Result<bool, String> {
        let fresh = load_pair(&self.cert, &self.key)?;
        if fresh.cert == self.current.load().cert {
            return Ok(false);
        }
        self.current.store(fresh);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    pingora::tls::install_default_crypto_provider();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let (chain, private) = match pingora::tls::load_certs_and_key_files(&cert_s, &key_s) {
        Ok(Some(pair)) => pair,
        // One of the two files holds no PEM item of its kind: which one?
        Ok(None) => {
            return Err(match pingora::tls::load_pem_file_ca(&cert_s) {
                Ok(der) if !der.is_empty() => format!("{key_s}: no private key in the file"),
                _ => format!("{cert_s}: no certificate in the file"),
            })
        }
        Err(e) => return Err(format!("{cert_s} / {key_s}: {e}")),
    };
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider installed".to_owned())?;
    let pair = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("{cert_s} / {key_s}: {e}"))?;
    Ok(Arc::new(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

    fn data(name: &str) -> PathBuf {
        Path::new(DATA).join(name)
    }

    #[test]
    fn swaps_only_a_pair_that_loads_and_matches() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::copy(data("tls-test.crt"), &cert).unwrap();
        std::fs::copy(data("tls-test.key"), &key).unwrap();
        let r = ReloadableCert::load(&cert, &key).expect("the test pair loads");
        let first = r.current.load_full();
        assert_eq!(r.reload(), Ok(false), "same files: nothing to swap");

        // A certificate without its key: refused, the running one stays.
        std::fs::copy(data("tls-test-2.crt"), &cert).unwrap();
        let err = r.reload().unwrap_err();
        assert!(err.contains("c.pem"), "{err}");
        assert!(Arc::ptr_eq(&first, &r.current.load_full()));

        // The matching key too: swapped.
        std::fs::copy(data("tls-test-2.key"), &key).unwrap();
        assert_eq!(r.reload(), Ok(true));
        assert_ne!(first.cert, r.current.load().cert);

        // An empty file: refused with its name.
        std::fs::write(&cert, "").unwrap();
        assert!(r.reload().unwrap_err().contains("c.pem"));
        // The error never shows key material.
        std::fs::copy(data("tls-test.crt"), &cert).unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let err = r.reload().unwrap_err();
        assert!(!err.contains("BEGIN"), "{err}");
    }
}
