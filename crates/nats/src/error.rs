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
