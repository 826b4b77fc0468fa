//! The tokenize service example, started in-process on a free port and driven over HTTP.
//! One test: the example installs the process's global optimizer, which happens once.

#![allow(dead_code)]

#[path = "../examples/tokenize_service/app.rs"]
mod app;
#[path = "../examples/tokenize_service/tokens.rs"]
mod tokens;

use serde_json::{Value, json};

struct Service {
    base: String,
    client: reqwest::Client,
    optimizer: &'static perf::PerformanceOptimizer,
}

impl Service {
    async fn start() -> Self {
        let options = app::Options {
            addr: "127.0.0.1:0".parse().expect("address"),
            cache_enabled: true,
            config: None,
        };
        let (router, optimizer) = app::build(&options).await.expect("built");
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .expect("bound");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base,
            client: reqwest::Client::new(),
            optimizer,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /tokenize`, expecting 200: the tokens.
    async fn tokens(&self, text: &str, encoding: Option<&str>) -> Vec<u64> {
        let mut body = json!({ "text": text });
        if let Some(encoding) = encoding {
            body["encoding"] = json!(encoding);
        }
        let (status, answer) = self.post("/tokenize", &body).await;
        assert_eq!(status, 200, "{answer}");
        let tokens: Vec<u64> = answer["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|token| token.as_u64().expect("a token id"))
            .collect();
        assert_eq!(answer["count"], tokens.len(), "{answer}");
        tokens
    }

    /// The token cache's counters (`/performance/cache/stats`): L1 hits, loader runs, L1
    /// entries, L2 bytes.
    async fn cache(&self) -> CacheCounts {
        let (status, stats) = self.get("/performance/cache/stats").await;
        assert_eq!(status, 200);
        let number = |value: &Value| value.as_u64().expect("a count");
        CacheCounts {
            hits: number(&stats["l1"]["hits"]),
            loads: number(&stats["loads"]["loader_runs"]),
            entries: number(&stats["l1"]["entries"]),
            l2_bytes: number(&stats["l2"]["bytes"]),
        }
    }

    /// `/tokenize/stats`: encoders built, encoders held.
    async fn models(&self) -> (u64, u64) {
        let (status, stats) = self.get("/tokenize/stats").await;
        assert_eq!(status, 200);
        let models = &stats["models"];
        (
            models["loads"].as_u64().expect("loads"),
            models["resident"].as_u64().expect("resident"),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheCounts {
    hits: u64,
    loads: u64,
    entries: u64,
    l2_bytes: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_service() {
    let service = Service::start().await;
    known_tokens_in_each_encoding(&service).await;
    a_repeated_text_is_a_cache_hit(&service).await;
    encodings_are_cached_apart(&service).await;
    long_texts_are_kept_compressed_in_l2(&service).await;
    a_batch_answers_in_input_order(&service).await;
    bad_input_gets_a_clear_error(&service).await;
    caching_off_calls_through_and_keeps_the_encoders(&service).await;
    memory_pressure_drops_the_encoders_and_they_are_rebuilt(&service).await;
    admin_api_and_metrics_answer(&service).await;
}

/// Token ids as tiktoken gives them; cl100k_base by default.
async fn known_tokens_in_each_encoding(service: &Service) {
    assert_eq!(service.tokens("hello world", None).await, [15339, 1917]);
    let cl100k = service.tokens("hello world", Some("cl100k_base")).await;
    assert_eq!(cl100k, [15339, 1917]);
    let r50k = service.tokens("hello world", Some("r50k_base")).await;
    assert_eq!(r50k, [31373, 995]);
    let o200k = service.tokens("hello world", Some("o200k_base")).await;
    assert_eq!(o200k, [24912, 2375]);
    // Plain text: a special-token marker in a client's text is not the special token.
    let marker = service.tokens("<|endoftext|>", None).await;
    assert!(!marker.contains(&100_257), "{marker:?}");
    assert!(marker.len() > 1, "{marker:?}");
    assert_eq!(service.tokens("", None).await, Vec::<u64>::new());
}

async fn a_repeated_text_is_a_cache_hit(service: &Service) {
    let text = "The quick brown fox jumps over the lazy dog.";
    let before = service.cache().await;
    let first = service.tokens(text, None).await;
    let after_first = service.cache().await;
    assert_eq!(after_first.loads, before.loads + 1, "a miss: tokenized");
    let second = service.tokens(text, None).await;
    let after_second = service.cache().await;
    assert_eq!(second, first);
    assert_eq!(after_second.loads, after_first.loads, "not tokenized again");
    assert_eq!(after_second.hits, after_first.hits + 1, "an L1 hit");
}

async fn encodings_are_cached_apart(service: &Service) {
    let text = "Caching by content hash, per encoding.";
    let before = service.cache().await;
    let cl100k = service.tokens(text, Some("cl100k_base")).await;
    let p50k = service.tokens(text, Some("p50k_base")).await;
    let after = service.cache().await;
    assert_ne!(cl100k, p50k, "two vocabularies");
    assert_eq!(
        after.loads,
        before.loads + 2,
        "each encoding tokenized once"
    );
    assert_eq!(after.entries, before.entries + 2, "two entries");
    assert_eq!(service.tokens(text, Some("p50k_base")).await, p50k);
    assert_eq!(service.tokens(text, Some("cl100k_base")).await, cl100k);
    assert_eq!(service.cache().await.loads, after.loads, "both hits");
}

/// 16 KiB of text: about 3,000 tokens, held in L2 in fewer bytes than their 4-byte ids.
async fn long_texts_are_kept_compressed_in_l2(service: &Service) {
    let sentence = "Load tests repeat the same texts, so their tokens are worth keeping. ";
    let text: String = sentence.repeat(16 * 1024 / sentence.len());
    let before = service.cache().await;
    let tokens = service.tokens(&text, None).await;
    let after = service.cache().await;
    assert!(tokens.len() > 2_000, "{} tokens", tokens.len());
    let stored = after.l2_bytes - before.l2_bytes;
    assert!(
        stored < tokens.len() as u64,
        "{} tokens in {stored} bytes of L2",
        tokens.len()
    );
    assert_eq!(service.tokens(&text, None).await, tokens);
    assert_eq!(service.cache().await.loads, after.loads, "a hit");
}

async fn a_batch_answers_in_input_order(service: &Service) {
    let texts = [
        "first text",
        "the second, longer text",
        "third",
        "first text",
    ];
    let (status, answer) = service
        .post("/tokenize/batch", &json!({ "texts": texts }))
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), texts.len());
    for (text, result) in texts.iter().zip(results) {
        let tokens: Vec<u64> = result["tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("tokens for {text:?}: {result}"))
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(tokens, service.tokens(text, None).await, "{text:?}");
        assert_eq!(result["count"], tokens.len());
    }
    let (status, answer) = service
        .post(
            "/tokenize/batch",
            &json!({ "texts": ["hello world"], "encoding": "r50k_base" }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["tokens"], json!([31373, 995]));
    assert!(
        service.optimizer.tasks().stats().submitted >= 5,
        "one task a text"
    );
}

async fn bad_input_gets_a_clear_error(service: &Service) {
    let (status, answer) = service
        .post("/tokenize", &json!({ "text": "x", "encoding": "gpt5" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "unknown encoding \"gpt5\": expected one of cl100k_base, o200k_base, p50k_base, r50k_base"
    );
    let (status, answer) = service
        .post(
            "/tokenize/batch",
            &json!({ "texts": ["x"], "encoding": "gpt5" }),
        )
        .await;
    assert_eq!(status, 400, "{answer}");

    let too_many = vec!["x"; app::MAX_BATCH + 1];
    let (status, answer) = service
        .post("/tokenize/batch", &json!({ "texts": too_many }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "65 texts; at most 64 a batch");

    let too_long = "a".repeat(app::MAX_TEXT_BYTES + 1);
    let (status, answer) = service
        .post("/tokenize", &json!({ "text": too_long }))
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        answer["error"],
        "the text is 65537 bytes; at most 65536 are taken"
    );
    let (status, answer) = service
        .post("/tokenize/batch", &json!({ "texts": ["ok", too_long] }))
        .await;
    assert_eq!(
        (status, answer["error"].clone()),
        (413, json!("text 1 is 65537 bytes; at most 65536 are taken"))
    );
    // Past the body limit the body is not even read.
    let huge = "a".repeat(4 * app::MAX_TEXT_BYTES);
    let (status, answer) = service.post("/tokenize", &json!({ "text": huge })).await;
    assert_eq!(status, 413, "{answer}");

    let (status, answer) = service.post("/tokenize", &json!({ "txt": "x" })).await;
    assert_eq!(status, 422);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|error| error.contains("missing field `text`")),
        "{answer}"
    );
}

/// What `TOKENIZE_CACHE_ENABLED=false` does (the load test's baseline): tokens are computed
/// on every call, and the encoders, in their own cache, are not rebuilt.
async fn caching_off_calls_through_and_keeps_the_encoders(service: &Service) {
    let cache = service.optimizer.cache();
    let text = "Every call tokenizes while caching is off.";
    let (models_before, _) = service.models().await;
    cache.set_enabled(false);
    let before = service.cache().await;
    let first = service.tokens(text, None).await;
    let second = service.tokens(text, None).await;
    let after = service.cache().await;
    cache.set_enabled(true);
    assert_eq!(first, second);
    assert_eq!(
        (after.hits, after.entries),
        (before.hits, before.entries),
        "nothing read or stored"
    );
    let (_, stats) = service.get("/tokenize/stats").await;
    assert_eq!(stats["cache_enabled"], true, "back on");
    assert_eq!(
        service.models().await.0,
        models_before,
        "no encoder rebuilt"
    );
}

async fn memory_pressure_drops_the_encoders_and_they_are_rebuilt(service: &Service) {
    let memory = service.optimizer.memory();
    let (loads, resident) = service.models().await;
    assert_eq!(
        (loads, resident),
        (4, 4),
        "every encoding built once, and held"
    );

    // Not under pressure, a forced cleanup keeps them.
    let report = memory.cleanup_memory_async(true).await.expect("cleaned up");
    let hook = |report: &perf::memory::CleanupReport| {
        report
            .actions
            .iter()
            .find(|action| action.name == "tokenizer_models")
            .map(|action| action.detail.clone())
            .expect("the hook ran")
    };
    assert_eq!(hook(&report), "kept the encoders (not shedding)");
    assert_eq!(service.models().await, (4, 4));

    // Under pressure: any usage is over this threshold.
    let config = service.optimizer.config();
    let mut pressed = (*config).clone();
    pressed.memory.cleanup_threshold = 1e-9;
    service
        .optimizer
        .update_config(pressed)
        .expect("a hot field");
    let report = memory.cleanup_memory_async(true).await;
    service
        .optimizer
        .update_config((*config).clone())
        .expect("restored");
    let report = report.expect("cleaned up");
    assert!(report.shed, "{report:?}");
    assert_eq!(hook(&report), "dropped 4 encoders; rebuilt on next use");
    assert_eq!(service.models().await, (4, 0));

    // A text not cached needs its encoder: built again, once.
    let tokens = service.tokens("hello again, world", None).await;
    assert_eq!(tokens, [15339, 1578, 11, 1917]);
    assert_eq!(service.tokens("hello world", None).await, [15339, 1917]);
    assert_eq!(service.models().await, (5, 1));
}

async fn admin_api_and_metrics_answer(service: &Service) {
    let (status, _) = service.get("/performance/health").await;
    assert_eq!(status, 200);
    let metrics = service
        .client
        .get(format!("{}/metrics", service.base))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"operation="tokenize.post""#),
        "monitored handlers are exported"
    );
}
