//! Attribute macros for perf, re-exported as `perf::performance_monitor` and
//! `perf::cache_result`. Generated code calls `::perf::__private`, which is not a stable API.

mod attr;
mod expand;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Times every call of a function as an operation: `processing_time_seconds{operation}`,
/// `async_operations_total{operation,status}` (`success`, `error` for an `Err` return, `panic`,
/// `cancelled` for an async call dropped before it finished), and in-process statistics.
///
/// `#[performance_monitor]` names the operation after the function's path;
/// `#[performance_monitor("ads.fetch")]` names it. `optimizer = <expr>` records into a given
/// `PerformanceOptimizer` instead of the global one; `crate = "path"` relocates `perf`.
#[proc_macro_attribute]
pub fn performance_monitor(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(args as attr::MonitorArgs);
    let function = match attr::function("performance_monitor", item.into()) {
        Ok(function) => function,
        Err(error) => return error.into_compile_error().into(),
    };
    expand::performance_monitor(args, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
