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
/// subject's last sequence is not the one expected: error 10071 ("wrong last sequence: N"),
/// or 10164 ("wrong last sequence", without the number), which a stream's new leader was seen
/// to answer after an election (async-nats maps only 10071 to its `WrongLastSequence` kind:
/// 10164 arrives as `Other`). For a log this is fencing; for a lease key, "someone else wrote".
pub fn is_wrong_last_sequence(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::{Error as JetStreamError, ErrorCode};
    /// "wrong last sequence" without the sequence (nats-server's JSStreamWrongLastSequenceConstantErr).
    const WRONG_LAST_SEQUENCE_CONSTANT: ErrorCode = ErrorCode(10164);
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(publish) = e.downcast_ref::<PublishError>() {
            if publish.kind() == PublishErrorKind::WrongLastSequence {
                return true;
            }
        }
        if let Some(js) = e.downcast_ref::<JetStreamError>() {
            let code = js.error_code();
            if code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE || code == WRONG_LAST_SEQUENCE_CONSTANT
            {
                return true;
            }
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
    fn both_wrong_last_sequence_codes_are_recognised_through_the_wrappers() {
        let constant = PublishError::with_source(PublishErrorKind::Other, server_error(10164));
        assert!(is_wrong_last_sequence(&constant), "10164 arrives as Other");
        let numbered =
            PublishError::with_source(PublishErrorKind::WrongLastSequence, server_error(10071));
        assert!(is_wrong_last_sequence(&numbered));
        let kv: async_nats::jetstream::kv::UpdateError =
            PublishError::with_source(PublishErrorKind::Other, server_error(10164)).into();
        assert!(is_wrong_last_sequence(&kv), "inside a KV update error");
        let other = PublishError::with_source(PublishErrorKind::Other, server_error(10058));
        assert!(!is_wrong_last_sequence(&other));
        assert!(!is_wrong_last_sequence(&PublishError::new(
            PublishErrorKind::TimedOut
        )));
    }
}
