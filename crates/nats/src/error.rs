//! The backend's errors: each names what failed and where (file, URL, subject, bucket), and
//! what to do.

use async_nats::ConnectErrorKind;

/// Why the JetStream backend cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("cannot connect to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    /// The safety check refused a server.
    #[error("unsafe NATS server {server}: {reason}. Change the server's configuration ({remedy}) and restart it; nothing was written")]
    Unsafe {
        server: String,
        reason: String,
        remedy: String,
    },
    #[error("cannot check the NATS server at {url}: {reason}")]
    Monitor { url: String, reason: String },
    #[error("JetStream: {what}: {reason}")]
    JetStream { what: String, reason: String },
    /// An append refused because the subject's last sequence is not the one this writer knows:
    /// another writer appended since (this one lost its ownership: a zombie).
    #[error("{subject}: append refused, another writer appended since this one's last message (its expected last sequence was {expected_last_seq}: {detail}). This node no longer owns the log and must stop writing")]
    Fenced {
        subject: String,
        expected_last_seq: u64,
        detail: String,
    },
    /// An append refused by this node itself: its unit's writes were revoked
    /// (`NatsLogs::revoker`), because another owner took the log over (a promotion re-homed its
    /// system into another region, issue 20). Nothing after it is acknowledged.
    #[error("{subject}: append refused, this unit's writes are revoked ({why}). This node no longer owns the log and must stop writing")]
    Revoked { subject: String, why: String },
    #[error("{subject}: publish failed after {attempts} attempts over {elapsed_ms} ms: {reason}")]
    Publish {
        subject: String,
        attempts: u32,
        elapsed_ms: u128,
        reason: String,
    },
    /// A message that does not hold whole record lines.
    #[error("{subject}: message {stream_seq} does not end with a whole line; this stream holds only whole records: it is corrupt")]
    NotWholeLines { subject: String, stream_seq: u64 },
    /// A node's announcement in the members' bucket (`members`) that cannot be made or left.
    #[error("member {node}: {reason}")]
    Member { node: String, reason: String },
    /// A unit's name that is not `sys.<slug>` (`requests`, `whereis`).
    #[error("unit {unit:?}: {reason}")]
    Unit { unit: String, reason: String },
    /// The galaxy's accounts bucket (`accounts`) refused or did not answer.
    #[error("accounts: {what}: {reason}")]
    Accounts { what: String, reason: String },
    #[error("the NATS runtime: {0}")]
    Runtime(String),
}

impl NatsError {
    pub(crate) fn connect(
        urls: &[String],
        creds_file: &std::path::Path,
        error: async_nats::ConnectError,
    ) -> NatsError {
        let reason = match error.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => format!(
                "the server refused the user and password of {} ({error}); check the file against the servers' `authorization` block",
                creds_file.display()
            ),
            _ => format!("{error}; are the servers running (scripts/nats-cluster.sh start DIR)?"),
        };
        NatsError::Connect {
            urls: urls.join(","),
            reason,
        }
    }

    pub(crate) fn jetstream(what: impl Into<String>, reason: impl std::fmt::Display) -> NatsError {
        NatsError::JetStream {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// As the I/O error a log's committer reports (the log keeps it as its poison).
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// Whether `error` (or an error it wraps) is the stream refusing a publish because the
/// subject's last sequence is not the one expected: error 10071 ("wrong last sequence: N").
/// For a log this is fencing; for a lease key, "someone else wrote". Not 10164 ("wrong last
/// sequence" without a number): see [`is_in_process`].
pub fn is_wrong_last_sequence(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::{Error as JetStreamError, ErrorCode};
    any_source(error, |e| {
        e.downcast_ref::<PublishError>()
            .is_some_and(|p| p.kind() == PublishErrorKind::WrongLastSequence)
            || e.downcast_ref::<JetStreamError>()
                .is_some_and(|js| js.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE)
    })
}

/// Whether `error` (or an error it wraps) is the stream saying that an earlier message is still
/// being stored: 10164 ("wrong last sequence", without a number: a message with an expected
/// sequence is in process on the same subject; nats-server's
/// JSStreamWrongLastSequenceConstantErr) or 10158 ("duplicate message id is in process"). A
/// writer's retry that overtakes its own first attempt, still in the stream's Raft log, gets
/// one of them (seen in the large storm, where an ack took longer than its timeout). Neither
/// says anything about who owns the subject: try again (the retry then meets the stored
/// message: a duplicate, or the last sequence it expected).
pub fn is_in_process(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::{Error as JetStreamError, ErrorCode};
    const IN_PROCESS: [ErrorCode; 2] = [ErrorCode(10164), ErrorCode(10158)];
    any_source(error, |e| {
        e.downcast_ref::<JetStreamError>()
            .is_some_and(|js| IN_PROCESS.contains(&js.error_code()))
    })
}

/// Whether `error` or any error it wraps passes `test`.
fn any_source(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if test(e) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};

    fn server_error(err_code: u64) -> async_nats::jetstream::Error {
        serde_json::from_str(&format!(
            r#"{{"code":400,"err_code":{err_code},"description":"wrong last sequence"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_wrong_last_sequence_is_told_from_a_message_in_process_through_the_wrappers() {
        let constant = PublishError::with_source(PublishErrorKind::Other, server_error(10164));
        assert!(!is_wrong_last_sequence(&constant), "10164 is not fencing");
        assert!(is_in_process(&constant), "10164 arrives as Other");
        let numbered =
            PublishError::with_source(PublishErrorKind::WrongLastSequence, server_error(10071));
        assert!(is_wrong_last_sequence(&numbered));
        assert!(!is_in_process(&numbered));
        let kv: async_nats::jetstream::kv::UpdateError =
            PublishError::with_source(PublishErrorKind::Other, server_error(10164)).into();
        assert!(is_in_process(&kv), "inside a KV update error");
        let id = PublishError::with_source(PublishErrorKind::Other, server_error(10158));
        assert!(is_in_process(&id) && !is_wrong_last_sequence(&id));
        let other = PublishError::with_source(PublishErrorKind::Other, server_error(10058));
        assert!(!is_wrong_last_sequence(&other));
        assert!(!is_wrong_last_sequence(&PublishError::new(
            PublishErrorKind::TimedOut
        )));
    }
}
