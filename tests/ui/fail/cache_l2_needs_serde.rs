// Deserialize but not Serialize: the compiler's list of Deserialize impls depends on which
// features the workspace build turns on, so this case keeps to the Serialize one.
#[derive(Clone, serde::Deserialize)]
struct NotSerde;

#[perf::cache_result(cache_type = "l2", key = "k")]
async fn f() -> NotSerde {
    NotSerde
}

fn main() {}
