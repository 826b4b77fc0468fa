#[derive(Clone)]
struct NotSerde;

#[perf::cache_result(cache_type = "l2", key = "k")]
async fn f() -> NotSerde {
    NotSerde
}

fn main() {}
