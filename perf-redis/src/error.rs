//! The one error type of perf-redis.

use std::time::Duration;

/// What can go wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or pool configuration was refused: what was wrong, with the pool's or the
    /// client's own error as the [`source`](std::error::Error::source) when one of them
    /// refused it.
    #[error("invalid Redis configuration: {message}")]
    Config {
        /// What was refused and why.
        message: String,
        /// The pool's or the client's own error, when one of them refused the configuration.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The tier needs a tokio runtime for its background tasks.
    #[error("the Redis tier must be built from within a tokio runtime")]
    NoRuntime,
    /// No pooled connection could be had.
    #[error("no Redis connection available")]
    Pool(#[source] deadpool_redis::PoolError),
    /// Redis answered with an error, or the connection failed.
    #[error("Redis command failed")]
    Redis(#[source] deadpool_redis::redis::RedisError),
    /// The operation took longer than the configured timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open: Redis failed repeatedly and is not asked until a probe
    /// succeeds.
    #[error("Redis is unavailable (circuit breaker open)")]
    Unavailable,
}

impl Error {
    /// A configuration refused by perf-redis itself.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// A configuration refused by the pool or the client, which said why.
    pub(crate) fn config_from(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Config {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// Whether Redis answered, and the error is about the data or the command (a key holding
    /// another type, a reply of an unexpected shape) rather than Redis's health: such errors
    /// do not count against the circuit breaker.
    pub(crate) fn is_about_data(&self) -> bool {
        use deadpool_redis::redis::{ErrorKind, ServerErrorKind};
        let Error::Redis(error) = self else {
            return false;
        };
        match error.kind() {
            ErrorKind::UnexpectedReturnType | ErrorKind::Extension => true,
            ErrorKind::Server(kind) => matches!(
                kind,
                ServerErrorKind::ResponseError
                    | ServerErrorKind::NoScript
                    | ServerErrorKind::ExecAbort
                    | ServerErrorKind::CrossSlot
            ),
            _ => false,
        }
    }
}
