//! Argument parsing for the attribute macros. Every error is a `syn::Error` at the user's span.

use syn::{
    Expr, LitStr, Path, Token,
    parse::{Parse, ParseStream},
};

/// `#[performance_monitor]`, `#[performance_monitor("op")]`,
/// `#[performance_monitor("op", optimizer = expr, crate = "path")]`.
pub(crate) struct MonitorArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) optimizer: Option<Expr>,
    pub(crate) krate: Option<Path>,
}

impl Parse for MonitorArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = MonitorArgs {
            name: None,
            optimizer: None,
            krate: None,
        };
        if input.peek(LitStr) {
            let name: LitStr = input.parse()?;
            if name.value().is_empty() {
                return Err(syn::Error::new(
                    name.span(),
                    "the operation name must not be empty",
                ));
            }
            args.name = Some(name);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        args.krate = parse_arguments(
            input,
            "an operation name (\"op\"), `optimizer = <expr>` or `crate = \"path\"`",
            |key, input| {
                if key != "optimizer" {
                    return Ok(false);
                }
                input.parse::<Token![=]>()?;
                args.optimizer = Some(input.parse()?);
                Ok(true)
            },
        )?;
        Ok(args)
    }
}

/// Parses comma-separated arguments, handing each name to `accept` (which reports whether it
/// knows it); `crate = "path"` is handled here for every macro. Returns the `crate` path.
fn parse_arguments(
    input: ParseStream<'_>,
    expected: &str,
    mut accept: impl FnMut(&syn::Ident, ParseStream<'_>) -> syn::Result<bool>,
) -> syn::Result<Option<Path>> {
    let mut krate = None;
    while !input.is_empty() {
        if input.peek(Token![crate]) {
            input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            krate = Some(parse_crate_path(input)?);
        } else {
            let key: syn::Ident = input.parse()?;
            if !accept(&key, input)? {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{key}`: expected {expected}"),
                ));
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(krate)
}

/// `crate = "::my::perf"`: where the generated code finds perf.
fn parse_crate_path(input: ParseStream<'_>) -> syn::Result<Path> {
    let text: LitStr = input.parse()?;
    text.parse::<Path>()
        .map_err(|_| syn::Error::new(text.span(), "`crate` must be a path such as \"::perf\""))
}

/// The annotated item, which must be a function or method with a body.
pub(crate) fn function(
    macro_name: &str,
    item: proc_macro2::TokenStream,
) -> syn::Result<syn::ItemFn> {
    syn::parse2::<syn::ItemFn>(item.clone()).map_err(|_| {
        syn::Error::new_spanned(
            item,
            format!("#[{macro_name}] goes on a function or a method with a body"),
        )
    })
}

/// Which tier `cache_type` names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheType {
    L1,
    L2,
    Redis,
}

/// `#[cache_result(ttl = .., cache_type = "..", key = "..", skip(..), cache_err, cache_none,
/// optimizer = .., crate = "..")]`.
pub(crate) struct CacheArgs {
    /// The TTL in nanoseconds; `None` means the configuration's `cache_ttl`.
    pub(crate) ttl_nanos: Option<u64>,
    pub(crate) cache_type: CacheType,
    pub(crate) cache_type_span: proc_macro2::Span,
    pub(crate) key: Option<LitStr>,
    pub(crate) skip: Vec<syn::Ident>,
    pub(crate) cache_err: bool,
    pub(crate) cache_none: bool,
    pub(crate) optimizer: Option<Expr>,
    pub(crate) krate: Option<Path>,
}

impl Parse for CacheArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = CacheArgs {
            ttl_nanos: None,
            cache_type: CacheType::L1,
            cache_type_span: proc_macro2::Span::call_site(),
            key: None,
            skip: Vec::new(),
            cache_err: false,
            cache_none: false,
            optimizer: None,
            krate: None,
        };
        args.krate = parse_arguments(
            input,
            "ttl, cache_type, key, skip(..), cache_err, cache_none, optimizer or crate",
            |key, input| {
                match key.to_string().as_str() {
                    "ttl" => {
                        input.parse::<Token![=]>()?;
                        args.ttl_nanos = Some(parse_ttl(input)?);
                    }
                    "cache_type" => {
                        input.parse::<Token![=]>()?;
                        let value: LitStr = input.parse()?;
                        args.cache_type_span = value.span();
                        args.cache_type = match value.value().as_str() {
                            "l1" => CacheType::L1,
                            "l2" => CacheType::L2,
                            "redis" => CacheType::Redis,
                            other => {
                                return Err(syn::Error::new(
                                    value.span(),
                                    format!(
                                        "unknown cache_type {other:?}: expected \"l1\", \"l2\" or \"redis\""
                                    ),
                                ));
                            }
                        };
                    }
                    "key" => {
                        input.parse::<Token![=]>()?;
                        args.key = Some(input.parse()?);
                    }
                    "skip" => {
                        let content;
                        syn::parenthesized!(content in input);
                        let names = content.parse_terminated(syn::Ident::parse, Token![,])?;
                        args.skip.extend(names);
                    }
                    "cache_err" => args.cache_err = true,
                    "cache_none" => args.cache_none = true,
                    "optimizer" => {
                        input.parse::<Token![=]>()?;
                        args.optimizer = Some(input.parse()?);
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(args)
    }
}

/// `ttl = 3600` (seconds) or `ttl = "30m"`; zero is refused.
fn parse_ttl(input: ParseStream<'_>) -> syn::Result<u64> {
    let (duration, span) = if input.peek(syn::LitInt) {
        let seconds: syn::LitInt = input.parse()?;
        (
            std::time::Duration::from_secs(seconds.base10_parse::<u64>()?),
            seconds.span(),
        )
    } else {
        let text: LitStr = input.parse()?;
        let parsed = humantime::parse_duration(&text.value()).map_err(|error| {
            syn::Error::new(
                text.span(),
                format!("ttl: {error} (write seconds, or \"30s\", \"5m\", \"1h\")"),
            )
        })?;
        (parsed, text.span())
    };
    if duration.is_zero() {
        return Err(syn::Error::new(span, "ttl must be greater than zero"));
    }
    u64::try_from(duration.as_nanos()).map_err(|_| syn::Error::new(span, "ttl is too large"))
}
