//! Ownership as leases in a JetStream KV bucket: [`NatsOwnership`] implements [`Ownership`].
//!
//! One key per unit (the galaxy, [`store::backend::MESH_UNIT`], in this step). A claim is a
//! compare-and-set create of the key: it succeeds only if nobody holds it, and the revision it
//! gets (a stream sequence of the bucket, which only grows) is the claim's epoch, greater than
//! every earlier claim's, across restarts and across nodes. The holder renews by updating the
//! key at the revision it last wrote (compare-and-set again: a holder that was replaced learns
//! it on its next renewal); it releases by deleting at that revision. The key never expires by
//! itself: the nodes that watch it judge it (`mesh::protocol::lease::Watch`: a lease of
//! silence over polls the store answered, so that an election of the bucket's stream, which
//! stalls every node's writes, never looks like the holder dying), and take it over with a
//! compare-and-set at the revision they saw silent ([`NatsOwnership::take_over`]), getting a
//! higher epoch.
//!
//! This module never writes a key without the revision it expects. It has no shared (reader)
//! claims: readers of a stream do not block its owner here (`check` and `replay` read an
//! export; docs/NATS.md).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::stream::StorageType;
use store::backend::{Claim, Ownership, OwnershipError};

use crate::error::is_wrong_last_sequence;
use crate::{Nats, NatsError};

/// The bucket of leases.
pub const LEASES_BUCKET: &str = "mlt_leases";

/// Leases in a KV bucket, held by node [`Nats`]'s name.
pub struct NatsOwnership {
    nats: Nats,
    kv: kv::Store,
    lease: Duration,
    /// The claims this node holds: unit → (epoch, revision of its last write of the key).
    held: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl NatsOwnership {
    /// Opens the bucket `bucket` (creating it: `replicas` copies, file storage, one revision a
    /// key, no expiry: watchers judge a lease). Every node must use the same lease.
    pub fn open(
        nats: &Nats,
        bucket: &str,
        lease: Duration,
        replicas: usize,
    ) -> Result<NatsOwnership, NatsError> {
        assert!(
            lease >= Duration::from_secs(1),
            "a lease of at least a second"
        );
        let config = kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = nats.open_bucket(config)?;
        Ok(NatsOwnership {
            nats: nats.clone(),
            kv,
            lease,
            held: Mutex::new(BTreeMap::new()),
        })
    }

    /// How long a claim lasts without a renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn held(&self) -> MutexGuard<'_, BTreeMap<String, (u64, u64)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn value(&self, epoch: u64) -> Vec<u8> {
        format!("node={} epoch={epoch}", self.nats.node).into_bytes()
    }

    fn failed(unit: &str, reason: impl std::fmt::Display) -> OwnershipError {
        OwnershipError::Failed {
            unit: unit.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The revision this node last wrote for `claim`, if it holds it.
    fn revision_of(&self, claim: &Claim) -> Result<u64, OwnershipError> {
        match self.held().get(&claim.unit) {
            Some(&(epoch, revision)) if epoch == claim.epoch && !claim.shared => Ok(revision),
            _ => Err(OwnershipError::NotHeld {
                unit: claim.unit.clone(),
                epoch: claim.epoch,
            }),
        }
    }
}

/// Who holds a unit, as a claim attempt found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holding node's name.
    pub node: String,
    /// Its epoch (the revision of its claim).
    pub epoch: u64,
    /// The revision of the key's last write (the claim or the last renewal).
    pub revision: u64,
    /// When the server stored that write, by the server's clock: the lease nominally ends
    /// [`NatsOwnership::lease`] after it, unless the holder renews (a watcher judges it by its
    /// own count, which an election stalls).
    pub written_at: SystemTime,
}

impl Holder {
    /// When the lease nominally ends unless renewed, by the server's clock.
    pub fn expires_at(&self, lease: Duration) -> SystemTime {
        self.written_at + lease
    }
}

/// What one claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimAttempt {
    /// The unit was free: this node holds it now.
    Claimed(Claim),
    /// Someone holds it.
    Held(Holder),
}

impl NatsOwnership {
    /// Claims `unit` if nobody holds it (compare-and-set at the stream's leader: of two nodes
    /// trying at once, one wins), else says who holds it and since when. A standby calls this
    /// every [`crate::limits::STANDBY_POLL_MS`].
    pub fn try_claim(&self, unit: &str) -> Result<ClaimAttempt, OwnershipError> {
        let kv = self.kv.clone();
        let key = unit.to_string();
        let value = format!("node={}", self.nats.node).into_bytes();
        let created = self
            .nats
            .bridge
            .run(create_at_leader(kv, key, value))
            .map_err(|e| Self::failed(unit, e))?;
        self.claim_attempt(unit, 0, created)
    }

    /// What a create (`after` 0) or a take-over at revision `after` came to: this node holds
    /// `unit` at the write's revision (its epoch), or someone holds it.
    fn claim_attempt(
        &self,
        unit: &str,
        after: u64,
        outcome: Result<Created, async_nats::Error>,
    ) -> Result<ClaimAttempt, OwnershipError> {
        match outcome {
            Ok(Created::Claimed(epoch)) => {
                assert!(epoch > after, "a KV revision only grows, from 1");
                self.held().insert(unit.to_string(), (epoch, epoch));
                Ok(ClaimAttempt::Claimed(Claim {
                    unit: unit.to_string(),
                    epoch,
                    shared: false,
                }))
            }
            Ok(Created::HeldBy(last)) => Ok(ClaimAttempt::Held(holder_of(&last))),
            Err(e) => Err(Self::failed(unit, e)),
        }
    }
}

impl NatsOwnership {
    /// Takes `unit` over from a holder whose key a watcher saw silent at `revision` for a whole
    /// lease: a compare-and-set at that revision (a renewal since makes it fail: then it says
    /// who holds it now).
    pub fn take_over(&self, unit: &str, revision: u64) -> Result<ClaimAttempt, OwnershipError> {
        assert!(revision > 0, "a key to take over has a revision");
        let kv = self.kv.clone();
        let key = unit.to_string();
        let value = format!("node={}", self.nats.node).into_bytes();
        let taken = self
            .nats
            .bridge
            .run(async move {
                match kv.update(&key, value.into(), revision).await {
                    Ok(new_revision) => Ok(Created::Claimed(new_revision)),
                    Err(e)
                        if e.kind() == UpdateErrorKind::WrongLastRevision
                            || is_wrong_last_sequence(&e) =>
                    {
                        match last_at_leader(&kv, &key).await? {
                            Some(last) if !last.deleted => Ok(Created::HeldBy(last)),
                            _ => Err(format!("{key} was released while taken over").into()),
                        }
                    }
                    Err(e) => Err(async_nats::Error::from(e)),
                }
            })
            .map_err(|e| Self::failed(unit, e))?;
        self.claim_attempt(unit, revision, taken)
    }
}

/// The holder a key's last write names (`node=alpha epoch=5`, or `node=alpha` as first
/// written: the epoch is then the revision of that write).
fn holder_of(last: &Last) -> Holder {
    let field = |key: &str| {
        last.value
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    Holder {
        node: field("node").unwrap_or(&last.value).to_string(),
        epoch: field("epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(last.revision),
        revision: last.revision,
        written_at: last.written_at,
    }
}

impl Ownership for NatsOwnership {
    fn claim(&self, unit: &str) -> Result<Claim, OwnershipError> {
        match self.try_claim(unit)? {
            ClaimAttempt::Claimed(claim) => Ok(claim),
            ClaimAttempt::Held(holder) => Err(OwnershipError::Held(format!(
                "{unit} is held by node={} epoch={} (revision {}); its lease ends {} s after its holder's last renewal",
                holder.node,
                holder.epoch,
                holder.revision,
                self.lease.as_secs_f64()
            ))),
        }
    }

    fn claim_shared(&self, unit: &str) -> Result<Claim, OwnershipError> {
        Err(Self::failed(
            unit,
            "a JetStream lease has no shared claims: read an export of the streams (docs/NATS.md)",
        ))
    }

    fn renew(&self, claim: &Claim) -> Result<(), OwnershipError> {
        let revision = self.revision_of(claim)?;
        let written = self.write(&claim.unit, claim.epoch, revision);
        match written {
            Ok(new_revision) => {
                assert!(new_revision > revision, "a KV revision only grows");
                self.held()
                    .insert(claim.unit.clone(), (claim.epoch, new_revision));
                Ok(())
            }
            Err(e) => {
                if matches!(e, OwnershipError::NotHeld { .. }) {
                    self.held().remove(&claim.unit);
                }
                Err(e)
            }
        }
    }

    fn release(&self, claim: &Claim) -> Result<(), OwnershipError> {
        let revision = self.revision_of(claim)?;
        let kv = self.kv.clone();
        let key = claim.unit.clone();
        let deleted = self
            .nats
            .bridge
            .run(async move { kv.delete_expect_revision(key, Some(revision)).await })
            .map_err(|e| Self::failed(&claim.unit, e))?;
        self.held().remove(&claim.unit);
        match deleted {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == UpdateErrorKind::WrongLastRevision || is_wrong_last_sequence(&e) =>
            {
                Err(OwnershipError::NotHeld {
                    unit: claim.unit.clone(),
                    epoch: claim.epoch,
                })
            }
            Err(e) => Err(Self::failed(&claim.unit, e)),
        }
    }
}

impl NatsOwnership {
    /// Writes the key of `unit` (holder and epoch) if its revision is still `revision`;
    /// returns the new revision. Another revision means someone else wrote it (not held), or
    /// that an earlier write of this node's landed after its caller stopped waiting for it
    /// (the key names this node and epoch): then the write is made again at that revision.
    /// Gives up after [`crate::limits::RENEWALS_PER_LEASE`]'s share of the lease without an
    /// answer (an election): the caller tries again at its next renewal.
    fn write(&self, unit: &str, epoch: u64, revision: u64) -> Result<u64, OwnershipError> {
        let kv = self.kv.clone();
        let key = unit.to_string();
        let value = self.value(epoch);
        let within = self.lease / u32::try_from(crate::limits::RENEWALS_PER_LEASE).unwrap_or(4);
        let updated = self
            .nats
            .bridge
            .run(async move {
                let attempt = async {
                    let mut expected = revision;
                    for _ in 0..2 {
                        match kv.update(&key, value.clone().into(), expected).await {
                            Ok(new_revision) => return Ok(Some(new_revision)),
                            Err(e)
                                if e.kind() == UpdateErrorKind::WrongLastRevision
                                    || is_wrong_last_sequence(&e) => {}
                            Err(e) => return Err(async_nats::Error::from(e)),
                        }
                        match last_at_leader(&kv, &key).await? {
                            Some(last) if !last.deleted && last.value.as_bytes() == value => {
                                expected = last.revision;
                            }
                            _ => return Ok(None),
                        }
                    }
                    Ok(None)
                };
                match tokio::time::timeout(within, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {} ms", within.as_millis()).into()),
                }
            })
            .map_err(|e| Self::failed(unit, e))?;
        match updated {
            Ok(Some(new_revision)) => Ok(new_revision),
            Ok(None) => Err(OwnershipError::NotHeld {
                unit: unit.to_string(),
                epoch,
            }),
            Err(e) => Err(Self::failed(unit, e)),
        }
    }
}

/// What a create of a key found.
enum Created {
    /// The key was free (absent, deleted) or taken over: this is its new revision.
    Claimed(u64),
    /// Someone holds it: the key's last write.
    HeldBy(Last),
}

/// How many times a create looks again when the key changes under it (expires, is deleted).
const CREATE_ATTEMPTS: u32 = 3;

/// Creates `key` if nobody holds it: a compare-and-set on "no message" first, then, if the
/// key's last message (read from the stream's leader) is a delete marker, on that marker's
/// revision. (async-nats's `Store::create` reads the key with a direct get, which any replica
/// answers: a follower that has not applied a release yet made a free key look held.)
async fn create_at_leader(
    kv: kv::Store,
    key: String,
    value: Vec<u8>,
) -> Result<Created, async_nats::Error> {
    let mut expected = 0;
    for _ in 0..CREATE_ATTEMPTS {
        match kv.update(&key, value.clone().into(), expected).await {
            Ok(revision) => return Ok(Created::Claimed(revision)),
            Err(e)
                if e.kind() == UpdateErrorKind::WrongLastRevision || is_wrong_last_sequence(&e) => {
            }
            Err(e) => return Err(e.into()),
        }
        let Some(last) = last_at_leader(&kv, &key).await? else {
            expected = 0;
            continue;
        };
        if last.deleted {
            expected = last.revision;
            continue;
        }
        return Ok(Created::HeldBy(last));
    }
    Err(format!("{key} changed under {CREATE_ATTEMPTS} attempts to claim it").into())
}

/// A key's last message, as the bucket stream's leader has it.
struct Last {
    value: String,
    revision: u64,
    written_at: SystemTime,
    /// A delete or purge marker (a released key).
    deleted: bool,
}

/// Reads `key`'s last message from the stream's leader (a direct get, which any replica
/// answers, could be behind). None: the key was never written.
async fn last_at_leader(kv: &kv::Store, key: &str) -> Result<Option<Last>, async_nats::Error> {
    let subject = format!("{}{key}", kv.prefix);
    let last = match kv.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(last) => last,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let operation = last.headers.get("KV-Operation").map(|v| v.as_str());
    let nanos = u64::try_from(last.time.unix_timestamp_nanos()).unwrap_or(0);
    Ok(Some(Last {
        value: String::from_utf8_lossy(&last.payload).into_owned(),
        revision: last.sequence,
        written_at: UNIX_EPOCH + Duration::from_nanos(nanos),
        deleted: matches!(operation, Some("DEL" | "PURGE")),
    }))
}
