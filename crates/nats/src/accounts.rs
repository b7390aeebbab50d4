//! The galaxy's accounts in the KV bucket [`ACCOUNTS_BUCKET`] (issue 19, decision 9): key = a
//! token's key (the SHA-256 of the token, `net::auth::key_of`, 64 hex digits), value = the
//! player's name. Any node's API authenticates any player by it: its own cache first, then
//! this bucket.
//!
//! An account is written once ([`Accounts::put`] is a create: a key already holding the same
//! name is a retry and succeeds, a key holding another name is refused) before the join that
//! made the token is acknowledged, so a token a player holds is always found. The bucket is an
//! index: the accounts themselves are the `key` of each player's `join` record, in the logs.
//!
//! This module never holds a token in clear and never deletes an account.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind};
use async_nats::jetstream::stream::StorageType;

use crate::{Nats, NatsError};

/// The bucket of accounts.
pub const ACCOUNTS_BUCKET: &str = "mlt_accounts";

/// How long a write or read is tried again when the bucket does not answer (an election
/// stalls KV for 4-9 s) before it fails.
pub const ACCOUNTS_RETRY_FOR_MS: u64 = 12_000;

/// How long one attempt may take before it is abandoned and tried again.
pub const ACCOUNTS_ATTEMPT_TIMEOUT_MS: u64 = 3_000;

/// The pause between two attempts.
pub const ACCOUNTS_RETRY_PAUSE_MS: u64 = 200;

/// The longest player name stored, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

const _: () = assert!(ACCOUNTS_ATTEMPT_TIMEOUT_MS < ACCOUNTS_RETRY_FOR_MS);
const _: () = assert!(ACCOUNTS_RETRY_PAUSE_MS < ACCOUNTS_ATTEMPT_TIMEOUT_MS);

/// Whether `key` is a token's key: 64 lowercase hex digits.
fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The galaxy's accounts, for this node's connection. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    kv: kv::Store,
}

impl Accounts {
    /// Opens bucket `bucket` (creating it: `replicas` copies, file storage, one revision a
    /// key, kept forever); blocks.
    pub fn open(nats: &Nats, bucket: &str, replicas: usize) -> Result<Accounts, NatsError> {
        let config = kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        Ok(Accounts {
            kv: nats.open_bucket(config)?,
        })
    }

    /// Records that the token of key `key` acts for `name`. Returns once the bucket holds it
    /// (a write acknowledged by the bucket's replicas).
    pub async fn put(&self, key: &str, name: &str) -> Result<(), NatsError> {
        check(key)?;
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(NatsError::Accounts {
                what: format!("account {key}"),
                reason: format!("a player's name of 1 to {MAX_NAME_BYTES} bytes, not {name:?}"),
            });
        }
        let started = Instant::now();
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_millis(ACCOUNTS_ATTEMPT_TIMEOUT_MS),
                self.kv.create(key, name.as_bytes().to_vec().into()),
            )
            .await;
            let reason = match attempt {
                Ok(Ok(_revision)) => return Ok(()),
                Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {
                    // Ours, stored by an attempt whose answer was lost, or a collision.
                    match self.get(key).await? {
                        Some(stored) if stored == name => return Ok(()),
                        stored => {
                            return Err(NatsError::Accounts {
                                what: format!("account {key}"),
                                reason: format!("it is recorded for {stored:?}, not {name:?}: a token's key is never reused"),
                            })
                        }
                    }
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer in {ACCOUNTS_ATTEMPT_TIMEOUT_MS} ms"),
            };
            give_up_after(started, &format!("cannot record account {key}"), reason).await?;
        }
    }

    /// Region mode (issue 20): the accounts' bucket of another region, `region`, through the
    /// leafnode link (its domain's API). Fails at once if the link or that region is down.
    pub async fn of_region(nats: &Nats, region: &str, bucket: &str) -> Result<Accounts, NatsError> {
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(ACCOUNTS_ATTEMPT_TIMEOUT_MS))
            .api_prefix(crate::region::api_prefix(region))
            .build(nats.client().clone());
        let kv = js.get_key_value(bucket).await.map_err(|e| {
            NatsError::jetstream(format!("cannot open bucket {bucket} of region {region}"), e)
        })?;
        Ok(Accounts { kv })
    }

    /// The player the token of key `key` acts for, or None if no account has it.
    pub async fn get(&self, key: &str) -> Result<Option<String>, NatsError> {
        check(key)?;
        let started = Instant::now();
        loop {
            match self.get_once(key).await {
                Err(Unread::Unanswered(reason)) => {
                    give_up_after(started, &format!("cannot read account {key}"), reason).await?
                }
                other => return other.map_err(|e| e.into_error(key)),
            }
        }
    }

    /// One attempt at [`Accounts::get`], for another region's bucket (a link that is cut must
    /// not hold a request for seconds).
    pub async fn get_without_retry(&self, key: &str) -> Result<Option<String>, NatsError> {
        check(key)?;
        self.get_once(key).await.map_err(|e| e.into_error(key))
    }

    async fn get_once(&self, key: &str) -> Result<Option<String>, Unread> {
        let attempt = tokio::time::timeout(
            Duration::from_millis(ACCOUNTS_ATTEMPT_TIMEOUT_MS),
            self.kv.get(key),
        )
        .await;
        match attempt {
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(bytes))) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| Unread::NotAName),
            Ok(Err(e)) => Err(Unread::Unanswered(e.to_string())),
            Err(_) => Err(Unread::Unanswered(format!(
                "no answer in {ACCOUNTS_ATTEMPT_TIMEOUT_MS} ms"
            ))),
        }
    }
}

/// Why one read of an account gave no name.
enum Unread {
    /// The bucket did not answer (worth another attempt).
    Unanswered(String),
    /// The value is not a UTF-8 name (another attempt reads the same).
    NotAName,
}

impl Unread {
    fn into_error(self, key: &str) -> NatsError {
        NatsError::Accounts {
            what: format!("account {key}"),
            reason: match self {
                Unread::Unanswered(reason) => reason,
                Unread::NotAName => "its value is not a UTF-8 name".into(),
            },
        }
    }
}

fn check(key: &str) -> Result<(), NatsError> {
    match valid_key(key) {
        true => Ok(()),
        false => Err(NatsError::Accounts {
            what: format!("account {key:?}"),
            reason: "a token's key is 64 lowercase hex digits (net::auth::key_of)".into(),
        }),
    }
}

/// Pauses before the next attempt, or fails once [`ACCOUNTS_RETRY_FOR_MS`] have passed.
async fn give_up_after(started: Instant, what: &str, reason: String) -> Result<(), NatsError> {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if elapsed_ms >= ACCOUNTS_RETRY_FOR_MS {
        return Err(NatsError::Accounts {
            what: what.to_string(),
            reason: format!("{reason} (tried for {elapsed_ms} ms)"),
        });
    }
    tokio::time::sleep(Duration::from_millis(ACCOUNTS_RETRY_PAUSE_MS)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tokens_key_is_a_key() {
        assert!(valid_key(&"ab01".repeat(16)));
        for bad in ["", "AB", &"g".repeat(64), &"a".repeat(63), "../x"] {
            assert!(!valid_key(bad), "{bad}");
            assert!(check(bad)
                .unwrap_err()
                .to_string()
                .contains("64 lowercase hex"));
        }
    }
}
