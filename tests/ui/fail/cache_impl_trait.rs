#[perf::cache_result]
fn f(id: u64) -> impl Clone {
    id
}

fn main() {}
