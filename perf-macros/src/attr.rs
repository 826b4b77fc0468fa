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
    let mut seen: Vec<String> = Vec::new();
    let mut once = |name: String, span: proc_macro2::Span| {
        if seen.contains(&name) {
            return Err(syn::Error::new(span, format!("`{name}` is given twice")));
        }
        seen.push(name);
        Ok(())
    };
    while !input.is_empty() {
        if input.peek(Token![crate]) {
            let token = input.parse::<Token![crate]>()?;
            once("crate".into(), token.span)?;
            input.parse::<Token![=]>()?;
            krate = Some(parse_crate_path(input)?);
        } else {
            let key: syn::Ident = input.parse()?;
            once(key.to_string(), key.span())?;
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

/// A duration argument: its value in nanoseconds and where it was written.
#[derive(Clone, Copy)]
pub(crate) struct DurationArg {
    pub(crate) nanos: u64,
    pub(crate) span: proc_macro2::Span,
}

/// A fraction argument in (0, 1).
#[derive(Clone, Copy)]
pub(crate) struct FractionArg {
    pub(crate) value: f64,
}

/// What a call does when its source fails or slows (the cache's `LoadOptions`).
#[derive(Default)]
pub(crate) struct FailureArgs {
    pub(crate) fail_safe: Option<DurationArg>,
    pub(crate) fail_safe_throttle: Option<DurationArg>,
    /// The soft timeout.
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) hard_timeout: Option<DurationArg>,
    pub(crate) refresh_ahead: Option<FractionArg>,
    pub(crate) jitter: Option<FractionArg>,
    pub(crate) failure_ttl: Option<DurationArg>,
}

/// `#[cache_result(ttl = .., cache_type = "..", key = "..", tags = [".."], skip(..), cache_err, cache_none, encrypt,
/// fail_safe = "1h", fail_safe_throttle = "30s", timeout = "100ms", hard_timeout = "2s",
/// refresh_ahead = 0.8, jitter = 0.1, failure_ttl = "5s", optimizer = .., crate = "..")]`.
pub(crate) struct CacheArgs {
    /// The TTL in nanoseconds; `None` means the configuration's `cache_ttl`.
    pub(crate) ttl_nanos: Option<u64>,
    pub(crate) failure: FailureArgs,
    pub(crate) cache_type: CacheType,
    pub(crate) cache_type_span: proc_macro2::Span,
    pub(crate) key: Option<LitStr>,
    /// Tag templates over argument names, as `key`.
    pub(crate) tags: Vec<LitStr>,
    pub(crate) skip: Vec<syn::Ident>,
    pub(crate) cache_err: bool,
    pub(crate) cache_none: bool,
    /// Encrypt the value in L2 and Redis (`LoadOptions::encrypt`).
    pub(crate) encrypt: Option<proc_macro2::Span>,
    pub(crate) optimizer: Option<Expr>,
    pub(crate) krate: Option<Path>,
}

impl Parse for CacheArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = CacheArgs {
            ttl_nanos: None,
            failure: FailureArgs::default(),
            cache_type: CacheType::L1,
            cache_type_span: proc_macro2::Span::call_site(),
            key: None,
            tags: Vec::new(),
            skip: Vec::new(),
            cache_err: false,
            cache_none: false,
            encrypt: None,
            optimizer: None,
            krate: None,
        };
        args.krate = parse_arguments(
            input,
            "ttl, cache_type, key, tags, skip(..), cache_err, cache_none, encrypt, fail_safe, \
             fail_safe_throttle, timeout, hard_timeout, refresh_ahead, jitter, failure_ttl, \
             optimizer or crate",
            |key, input| {
                let failure = &mut args.failure;
                match key.to_string().as_str() {
                    "ttl" => {
                        input.parse::<Token![=]>()?;
                        args.ttl_nanos = Some(parse_duration(input, "ttl")?.nanos);
                    }
                    "fail_safe" => failure.fail_safe = Some(parse_named_duration(input, key)?),
                    "fail_safe_throttle" => {
                        failure.fail_safe_throttle = Some(parse_named_duration(input, key)?);
                    }
                    "timeout" => failure.timeout = Some(parse_named_duration(input, key)?),
                    "hard_timeout" => {
                        failure.hard_timeout = Some(parse_named_duration(input, key)?);
                    }
                    "failure_ttl" => {
                        failure.failure_ttl = Some(parse_named_duration(input, key)?);
                    }
                    "refresh_ahead" => {
                        failure.refresh_ahead = Some(parse_fraction(input, key)?);
                    }
                    "jitter" => failure.jitter = Some(parse_fraction(input, key)?),
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
                    "tags" => {
                        input.parse::<Token![=]>()?;
                        let content;
                        syn::bracketed!(content in input);
                        let tags = content.parse_terminated(<LitStr as Parse>::parse, Token![,])?;
                        if tags.is_empty() {
                            return Err(syn::Error::new(
                                key.span(),
                                "`tags` needs at least one tag",
                            ));
                        }
                        args.tags.extend(tags);
                    }
                    "skip" => {
                        let content;
                        syn::parenthesized!(content in input);
                        let names = content.parse_terminated(syn::Ident::parse, Token![,])?;
                        args.skip.extend(names);
                    }
                    "cache_err" => args.cache_err = true,
                    "cache_none" => args.cache_none = true,
                    "encrypt" => args.encrypt = Some(key.span()),
                    "optimizer" => {
                        input.parse::<Token![=]>()?;
                        args.optimizer = Some(input.parse()?);
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        if let (Some(span), CacheType::L1) = (args.encrypt, args.cache_type) {
            return Err(syn::Error::new(
                span,
                "`encrypt` needs cache_type = \"l2\" or \"redis\": L1 holds values unencoded",
            ));
        }
        let failure = &args.failure;
        if let (Some(soft), Some(hard)) = (failure.timeout, failure.hard_timeout)
            && soft.nanos > hard.nanos
        {
            return Err(syn::Error::new(
                soft.span,
                "`timeout` (the soft timeout) must not be above `hard_timeout`",
            ));
        }
        Ok(args)
    }
}

fn parse_named_duration(input: ParseStream<'_>, name: &syn::Ident) -> syn::Result<DurationArg> {
    input.parse::<Token![=]>()?;
    parse_duration(input, &name.to_string())
}

/// `refresh_ahead = 0.8`: a fraction in (0, 1).
fn parse_fraction(input: ParseStream<'_>, name: &syn::Ident) -> syn::Result<FractionArg> {
    input.parse::<Token![=]>()?;
    let literal: syn::LitFloat = input.parse().map_err(|error| {
        syn::Error::new(error.span(), format!("{name} takes a fraction such as 0.8"))
    })?;
    let value: f64 = literal.base10_parse()?;
    if !(value > 0.0 && value < 1.0) {
        return Err(syn::Error::new(
            literal.span(),
            format!("{name} must be a fraction between 0 and 1, not {value}"),
        ));
    }
    Ok(FractionArg { value })
}

/// `ttl = 3600` (seconds) or `ttl = "30m"`; zero is refused.
fn parse_duration(input: ParseStream<'_>, name: &str) -> syn::Result<DurationArg> {
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
                format!("{name}: {error} (write seconds, or \"30s\", \"5m\", \"1h\")"),
            )
        })?;
        (parsed, text.span())
    };
    if duration.is_zero() {
        return Err(syn::Error::new(
            span,
            format!("{name} must be greater than zero"),
        ));
    }
    let nanos = u64::try_from(duration.as_nanos())
        .map_err(|_| syn::Error::new(span, format!("{name} is too large")))?;
    Ok(DurationArg { nanos, span })
}
