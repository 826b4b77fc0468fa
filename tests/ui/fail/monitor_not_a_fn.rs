#[perf::performance_monitor("op")]
struct NotAFunction;

fn main() {}
