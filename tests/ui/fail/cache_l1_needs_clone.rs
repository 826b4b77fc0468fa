struct NotClone;

#[perf::cache_result(key = "k")]
async fn f() -> NotClone {
    NotClone
}

fn main() {}
