//! Access tokens: made from the OS's random source, given to the player once, stored only as
//! their SHA-256 (the `key` of the player's `join` record). A token acts for its player alone.
//!
//! Never logs or stores a token in clear.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

/// Lowercase hex (every request hashes its token: no formatting machinery here).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A new token. Fails only if the OS has no random source.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("mlt_{}", hex(&bytes)))
}

/// The key stored for a token.
pub fn key_of(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Player names by token key.
/// std RwLock: held for a map lookup only, never across an await.
#[derive(Default)]
pub struct Accounts {
    by_key: RwLock<HashMap<String, String>>,
}

impl Accounts {
    pub fn insert(&self, key: String, name: String) {
        self.by_key
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, name);
    }

    /// The player a token acts for.
    pub fn player_of(&self, token: &str) -> Option<String> {
        self.player_and_key(token).map(|(name, _)| name)
    }

    /// The player a token acts for, and the token's key (what rate limits count by).
    pub fn player_and_key(&self, token: &str) -> Option<(String, String)> {
        let key = key_of(token);
        let name = self
            .by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()?;
        Some((name, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_identifies_them() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        let accounts = Accounts::default();
        accounts.insert(key_of(&a), "ann".into());
        assert_eq!(accounts.player_of(&a).as_deref(), Some("ann"));
        assert_eq!(accounts.player_of(&b), None);
        assert_ne!(key_of(&a), a);
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
