//! Tokenizing, cached twice: the encoders in a small model cache (`get_or_load_l1`: built
//! once, dropped under memory pressure, rebuilt on next use), and each text's tokens under a
//! hash of its content with `#[cache_result]` (L1, and L2 compressed). `app.rs` serves it.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use futures_util::FutureExt;
use perf::{MultiLevelCache, PerformanceConfig, cache_result, memory::MemoryManager};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tiktoken_rs::CoreBPE;
use tokio::sync::Semaphore;

/// The encodings tiktoken-rs ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// GPT-3.5 and GPT-4.
    Cl100k,
    /// GPT-4o.
    O200k,
    /// Codex.
    P50k,
    /// GPT-3 (the GPT-2 vocabulary).
    R50k,
}

impl Encoding {
    pub(crate) const DEFAULT: Encoding = Encoding::Cl100k;
    const ALL: [Encoding; 4] = [
        Encoding::Cl100k,
        Encoding::O200k,
        Encoding::P50k,
        Encoding::R50k,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Cl100k => "cl100k_base",
            Encoding::O200k => "o200k_base",
            Encoding::P50k => "p50k_base",
            Encoding::R50k => "r50k_base",
        }
    }

    /// Parses the vocabulary shipped in the crate and compiles its regex: tens of
    /// milliseconds of CPU (release build: cl100k_base about 40 ms, o200k_base about 110 ms),
    /// hence the model cache.
    fn build(self) -> Result<CoreBPE, String> {
        let built = match self {
            Encoding::Cl100k => tiktoken_rs::cl100k_base(),
            Encoding::O200k => tiktoken_rs::o200k_base(),
            Encoding::P50k => tiktoken_rs::p50k_base(),
            Encoding::R50k => tiktoken_rs::r50k_base(),
        };
        built.map_err(|error| format!("building the {self} encoder: {error}"))
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Encoding`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownEncoding(String);

impl fmt::Display for UnknownEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown encoding {:?}: expected one of ", self.0)?;
        for (i, encoding) in Encoding::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{encoding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownEncoding {}

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(name: &str) -> Result<Self, UnknownEncoding> {
        Encoding::ALL
            .into_iter()
            .find(|encoding| encoding.name() == name)
            .ok_or_else(|| UnknownEncoding(name.into()))
    }
}

/// SHA-256 of a text: the cache key stands for the text without carrying it (a 16 KiB key
/// would cost its length on every lookup). Cryptographic, so that no client can make two
/// texts share a key and be served another text's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentHash([u8; 32]);

impl ContentHash {
    pub(crate) fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// The encoders and the CPU they may use. The encoders live in a model cache of their own,
/// apart from the optimizer's: `TOKENIZE_CACHE_ENABLED=false` turns that one off for the
/// uncached measurement, and rebuilding an encoder on every request would measure the build,
/// not the tokenizing. Cloning is cheap and shares both.
#[derive(Debug, Clone)]
pub(crate) struct Tokenizer {
    models: MultiLevelCache,
    /// Long encodes run one a core at a time, the rest waiting in turn (tokio's semaphore is
    /// FIFO): without it, every request in flight gets a blocking thread, and the threads
    /// share the cores so unevenly that the slowest requests take ten times the median.
    cores: Arc<Semaphore>,
}

/// The model cache's keys: `model:cl100k_base`, ...
const MODEL_PREFIX: &str = "model:";

/// Encoders are rebuilt from the crate's data, never stale: the TTL only bounds how long an
/// unused one holds its memory (a vocabulary of 100,000 to 200,000 entries, both ways).
const MODEL_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the model cache did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ModelStats {
    /// Encoders built since the start.
    pub(crate) loads: u64,
    /// Encoders held now.
    pub(crate) resident: u64,
}

impl Tokenizer {
    /// A model cache with `config`'s settings, always on, room for every encoding.
    pub(crate) fn new(config: &PerformanceConfig) -> Result<Self, perf::Error> {
        let mut config = config.clone();
        config.cache.enabled = true;
        config.cache.max_size = 16;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            models: MultiLevelCache::new(&config)?,
            cores: Arc::new(Semaphore::new(cores)),
        })
    }

    /// The tokens of `text` in `encoding`, as plain text: special-token markers such as
    /// `<|endoftext|>` in a client's text are tokenized as the characters they are.
    pub(crate) async fn tokenize(
        &self,
        encoding: Encoding,
        text: String,
    ) -> Result<Vec<u32>, String> {
        let hash = ContentHash::of(&text);
        tokenize_cached(self, encoding, hash, text).await
    }

    /// The encoder for `encoding`, built on a blocking thread on first use. Concurrent first
    /// requests build it once and share it.
    async fn encoder(&self, encoding: Encoding) -> Result<Arc<CoreBPE>, String> {
        let key = format!("{MODEL_PREFIX}{encoding}");
        self.models
            .get_or_load_l1(&key, Some(MODEL_TTL), || async move {
                tracing::info!(%encoding, "building the encoder");
                tokio::task::spawn_blocking(move || encoding.build())
                    .await
                    .map_err(|error| format!("building the {encoding} encoder: {error}"))?
            })
            .await
    }

    pub(crate) fn model_stats(&self) -> ModelStats {
        let stats = self.models.stats();
        ModelStats {
            loads: stats.loads.loader_runs,
            resident: stats.l1.entries.unwrap_or_default(),
        }
    }

    /// Under memory pressure (when the manager asks hooks to shed), drops every encoder: they
    /// are the largest thing this service holds that it can rebuild. An encoder in use stays
    /// alive until its requests end.
    pub(crate) fn register_cleanup_hook(&self, memory: &MemoryManager) {
        let models = self.models.clone();
        memory.register_cleanup_hook("tokenizer_models", move |request| {
            if !request.shed {
                return "kept the encoders (not shedding)".into();
            }
            // Hooks are synchronous. Removal is async only to reach a remote tier, and this
            // cache has none, so it finishes in its first poll.
            match models.invalidate_prefix(MODEL_PREFIX).now_or_never() {
                Some(Ok(dropped)) => format!("dropped {dropped} encoders; rebuilt on next use"),
                Some(Err(error)) => format!("encoders not dropped: {error}"),
                None => "encoders not dropped at once; they expire with their TTL".into(),
            }
        });
    }
}

/// Texts up to this long are tokenized on the async worker: about 50 µs (25 µs a KiB,
/// cl100k_base, release build), within what a task may run between awaits and not much more
/// than handing the work to a blocking thread costs. Longer ones take a blocking thread.
const INLINE_MAX_BYTES: usize = 2048;

/// Keyed by encoding and content hash, never by the text. Tokens never change for a text, so
/// the TTL only lets unused ones go; L2 keeps them zstd-compressed, several to one.
#[cache_result(
    ttl = "1h",
    cache_type = "l2",
    key = "tokens:{encoding}:{hash}",
    skip(tokenizer, text)
)]
async fn tokenize_cached(
    tokenizer: &Tokenizer,
    encoding: Encoding,
    hash: ContentHash,
    text: String,
) -> Result<Vec<u32>, String> {
    let encoder = tokenizer.encoder(encoding).await?;
    if text.len() <= INLINE_MAX_BYTES {
        return Ok(encoder.encode_ordinary(&text));
    }
    let core = Arc::clone(&tokenizer.cores)
        .acquire_owned()
        .await
        .map_err(|error| format!("tokenizing: {error}"))?;
    // Up to a couple of milliseconds of CPU (16 KiB: about 0.4 ms): off the async workers.
    // The core is held by the work, not by this future: a caller that goes away does not free
    // it while the work runs. (Not the task manager's blocking pool: a batch task waiting on a
    // submit to its own manager could wait on itself when the queue is full.)
    tokio::task::spawn_blocking(move || {
        let _core = core;
        encoder.encode_ordinary(&text)
    })
    .await
    .map_err(|error| format!("tokenizing: {error}"))
}
