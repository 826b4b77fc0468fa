#[perf::cache_result]
async fn f(id: u64) {
    let _ = id;
}

fn main() {}
