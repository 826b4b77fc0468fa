#[perf::cache_result(tags = ["user:{id}"])]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
