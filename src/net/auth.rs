//! Access tokens: made from the OS's random source, given to the player once, stored only as
//! their SHA-256 (the `key` of the player's `join` record). A token acts for its player alone.
//!
//! Never logs or stores a token in clear.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        self.by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key_of(token))
            .cloned()
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
    }
}
