use perf::performance_monitor;

#[performance_monitor]
fn unnamed() {}

#[performance_monitor("named")]
fn named(x: u32) -> u32 {
    x + 1
}

#[performance_monitor("fallible")]
fn fallible(text: &str) -> Result<u32, std::num::ParseIntError> {
    Ok(text.parse::<u32>()?)
}

#[performance_monitor("async")]
async fn asynchronous(x: u32) -> Result<u32, String> {
    if x == 0 {
        return Err("zero".into());
    }
    Ok(x)
}

#[performance_monitor("generic")]
fn generic<T: Clone>(value: &T) -> T {
    value.clone()
}

#[performance_monitor("impl_trait")]
fn impl_trait() -> impl Iterator<Item = u8> {
    0..3
}

#[performance_monitor("given", optimizer = optimizer)]
fn given(optimizer: &perf::PerformanceOptimizer) {
    let _ = optimizer;
}

#[performance_monitor("relocated", crate = "::perf")]
fn relocated() {}

struct Service(u32);

trait Api {
    async fn call(&self) -> u32;
}

impl Api for Service {
    #[performance_monitor("trait_async")]
    async fn call(&self) -> u32 {
        self.0
    }
}

impl Service {
    #[performance_monitor("by_ref")]
    fn by_ref(&self) -> u32 {
        self.0
    }

    #[performance_monitor("by_mut")]
    fn by_mut(&mut self) {
        self.0 += 1;
    }

    #[performance_monitor("by_value")]
    async fn by_value(self) -> u32 {
        self.0
    }
}

/// An axum handler's shape: `Result<impl Trait, E>` with `?` in the body.
#[performance_monitor("handler")]
async fn handler(query: String) -> Result<impl std::fmt::Display, std::num::ParseIntError> {
    let id: u32 = query.parse()?;
    Ok(id)
}

fn main() {
    unnamed();
    let _ = (named(1), fallible("1"), generic(&2), impl_trait().count(), relocated());
    let _ = asynchronous(1);
    let _ = handler(String::from("1"));
    let mut service = Service(1);
    service.by_mut();
    let _ = service.by_ref();
    let _ = service.call();
    let _ = service.by_value();
    given(&perf::PerformanceOptimizer::builder().build().unwrap());
}
