#[perf::cache_result(tags = ["campaign:{campaign}"])]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
