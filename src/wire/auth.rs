//! Token authentication: proof that both sides know a shared token, without
//! the token crossing the wire.
//!
//! The server opens with a CHALLENGE carrying a fresh 32-byte random nonce.
//! The client answers in its HELLO with a nonce of its own and
//! `HMAC-SHA256(token, "framelink hello" ‖ server nonce ‖ client nonce)`; the
//! server answers in its WELCOME with
//! `HMAC-SHA256(token, "framelink welcome" ‖ client nonce ‖ server nonce)`,
//! so a client with a token knows it reached a server with the same token.
//! Proofs are checked in constant time. Fresh nonces on both sides mean a
//! recorded handshake cannot be replayed. Without TLS the frames themselves
//! still cross the wire in the clear: see the README's SECURITY section.

use crate::wire::{NONCE_LEN, PROOF_LEN};
use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The environment variable both programs read the token from.
pub const TOKEN_ENV: &str = "FRAMELINK_TOKEN";

/// A shared secret. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Result<Token> {
        if secret.is_empty() {
            bail!("the token is empty: give a secret with --token or {TOKEN_ENV}");
        }
        Ok(Token(secret.as_bytes().to_vec()))
    }

    /// `--token` if given, else the `FRAMELINK_TOKEN` variable, else none.
    pub fn from_flag_or_env(flag: Option<&str>) -> Result<Option<Token>> {
        match flag {
            Some(t) => Token::new(t).map(Some),
            None => match std::env::var(TOKEN_ENV) {
                Ok(t) if !t.is_empty() => Token::new(&t).map(Some),
                Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
                Err(e) => Err(e).context(format!("cannot read {TOKEN_ENV}")),
            },
        }
    }

    fn mac(&self, label: &[u8], a: &[u8], b: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(label);
        m.update(a);
        m.update(b);
        m
    }

    /// The client's proof for its HELLO.
    pub fn hello_proof(&self, server_nonce: &[u8], client_nonce: &[u8]) -> Vec<u8> {
        self.mac(b"framelink hello", server_nonce, client_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Checks a HELLO's proof, in constant time.
    pub fn check_hello(&self, server_nonce: &[u8], client_nonce: &[u8], proof: &[u8]) -> bool {
        proof.len() == PROOF_LEN
            && self
                .mac(b"framelink hello", server_nonce, client_nonce)
                .verify_slice(proof)
                .is_ok()
    }

    /// The server's proof for its WELCOME.
    pub fn welcome_proof(&self, client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
        self.mac(b"framelink welcome", client_nonce, server_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Checks a WELCOME's proof, in constant time.
    pub fn check_welcome(&self, client_nonce: &[u8], server_nonce: &[u8], proof: &[u8]) -> bool {
        proof.len() == PROOF_LEN
            && self
                .mac(b"framelink welcome", client_nonce, server_nonce)
                .verify_slice(proof)
                .is_ok()
    }

    /// Whether `given` (from an HTTP request) is this token. Compares
    /// digests, so the time taken says nothing about the token.
    pub fn matches(&self, given: &str) -> bool {
        Sha256::digest(given.as_bytes()) == Sha256::digest(&self.0)
    }
}

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).expect("the operating system's random source works");
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_only_with_the_same_token_and_nonces() {
        let (t, other) = (Token::new("s3cret").unwrap(), Token::new("guess").unwrap());
        let (sn, cn) = (nonce(), nonce());
        assert_ne!(sn, cn);
        let p = t.hello_proof(&sn, &cn);
        assert!(t.check_hello(&sn, &cn, &p));
        assert!(!other.check_hello(&sn, &cn, &p));
        assert!(
            !t.check_hello(&nonce(), &cn, &p),
            "a replay against a new challenge fails"
        );
        assert!(!t.check_hello(&sn, &cn, &[]));
        let w = t.welcome_proof(&cn, &sn);
        assert!(t.check_welcome(&cn, &sn, &w));
        assert!(
            !t.check_welcome(&cn, &sn, &p),
            "a HELLO proof is not a WELCOME proof"
        );
        assert!(t.matches("s3cret") && !t.matches("s3cret ") && !t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(…)");
        assert!(Token::new("").is_err());
    }
}
