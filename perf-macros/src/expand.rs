//! Code generation. Generated code names `::perf::__private` (or the `crate = ".."` path).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{ItemFn, Path, ReturnType, Type, spanned::Spanned};

use crate::attr::MonitorArgs;

fn krate(path: Option<&Path>) -> TokenStream {
    match path {
        Some(path) => quote!(#path),
        None => quote!(::perf),
    }
}

/// Whether the declared return type is some `Result`, by its last path segment's name: the
/// macro sees tokens, not types, so an aliased `Result` must keep that name to count errors.
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = ty.as_ref() else {
        return false;
    };
    path.path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "Result")
}

/// The declared return type, where it can annotate a `let` (not `impl Trait`).
fn nameable_return(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Type(_, ty) if !matches!(ty.as_ref(), Type::ImplTrait(_)) => Some(ty),
        _ => None,
    }
}

/// The function's body run so that `return` and `?` leave the body, not the function, and its
/// value lands in `__perf_result`; inside the span `__perf_span`.
fn captured_body(function: &ItemFn, private: &TokenStream) -> TokenStream {
    let block = &function.block;
    let annotation = nameable_return(&function.sig.output).map(|ty| quote!(: #ty));
    if function.sig.asyncness.is_some() {
        quote! {
            let __perf_result #annotation =
                #private::tracing::Instrument::instrument(async move #block, __perf_span).await;
        }
    } else {
        let closure_return = nameable_return(&function.sig.output).map(|ty| quote!(-> #ty));
        quote! {
            let __perf_entered = __perf_span.enter();
            #[allow(clippy::redundant_closure_call)]
            let __perf_result #annotation = (move || #closure_return #block)();
            ::core::mem::drop(__perf_entered);
        }
    }
}

pub(crate) fn performance_monitor(
    args: MonitorArgs,
    mut function: ItemFn,
) -> syn::Result<TokenStream> {
    let perf = krate(args.krate.as_ref());
    let private = quote!(#perf::__private);
    let ident = &function.sig.ident;
    let name = match &args.name {
        Some(name) => quote!(#name),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
    };
    let start = match &args.optimizer {
        None => quote! {
            static __PERF_SITE: #private::monitor::CallSite = #private::monitor::CallSite::new(#name);
            let __perf_timing = __PERF_SITE.start();
        },
        Some(optimizer) => quote_spanned! {optimizer.span()=>
            let __perf_timing = #private::monitor::Monitor::start((#optimizer).monitor(), #name);
        },
    };
    let status = if returns_result(&function.sig.output) {
        quote! {
            if __perf_result.is_err() {
                #private::monitor::Status::Error
            } else {
                #private::monitor::Status::Success
            }
        }
    } else {
        quote!(#private::monitor::Status::Success)
    };
    let body = captured_body(&function, &private);
    function.block = syn::parse2(quote! {{
        #start
        // A span for span-based profilers, when `profiling_enabled`; the name is the
        // operation's, fixed at compile time as tracing needs.
        let __perf_span = if __perf_timing.profiling() {
            #private::tracing::info_span!(#name)
        } else {
            #private::tracing::Span::none()
        };
        #body
        __perf_timing.finish(#status);
        __perf_result
    }})?;
    Ok(quote!(#function))
}

/// How the return type is cached.
enum Returns {
    /// Cache every value.
    Plain,
    /// `Result<T, E>`: cache `Ok` values only.
    Result,
    /// `Option<T>`: cache `Some` values only.
    Option,
}

/// The first generic type argument of the return type's last path segment (`T` of
/// `Result<T, E>` or `Option<T>`).
fn inner_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == name))
}

pub(crate) fn cache_result(
    args: crate::attr::CacheArgs,
    mut function: ItemFn,
) -> syn::Result<TokenStream> {
    use crate::attr::CacheType;

    let perf = krate(args.krate.as_ref());
    let private = quote!(#perf::__private);
    let ident = function.sig.ident.clone();
    let is_async = function.sig.asyncness.is_some();

    let ret: Type = match &function.sig.output {
        ReturnType::Default => {
            return Err(syn::Error::new(
                function.sig.ident.span(),
                "#[cache_result] needs a function that returns a value",
            ));
        }
        ReturnType::Type(_, ty) if matches!(ty.as_ref(), Type::ImplTrait(_)) => {
            return Err(syn::Error::new_spanned(
                ty,
                "#[cache_result] cannot cache an `impl Trait` value: name its type",
            ));
        }
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let (returns, cached_type) = if last_segment_is(&ret, "Result") && !args.cache_err {
        (Returns::Result, inner_type(&ret).cloned())
    } else if last_segment_is(&ret, "Option") && !args.cache_none {
        (Returns::Option, inner_type(&ret).cloned())
    } else {
        (Returns::Plain, Some(ret.clone()))
    };
    let cached_type = cached_type
        .ok_or_else(|| syn::Error::new_spanned(&ret, "cannot tell what type this returns"))?;
    if args.cache_type == CacheType::Redis && !is_async {
        return Err(syn::Error::new(
            args.cache_type_span,
            "cache_type = \"redis\" needs an async fn: Redis is reached asynchronously",
        ));
    }
    check_failure_args(&args.failure, is_async, &returns)?;
    if let Some(tag) = args.tags.first()
        && !is_async
    {
        return Err(syn::Error::new(
            tag.span(),
            "`tags` needs an async fn: a tag's generation may be read from Redis",
        ));
    }

    // Arguments: names and types, the key's parts.
    let mut arguments = Vec::new();
    for input in &function.sig.inputs {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        }; // self is never part of the key
        let syn::Pat::Ident(pat) = typed.pat.as_ref() else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "#[cache_result] needs plain argument names to build the key: bind this pattern to a name",
            ));
        };
        arguments.push((pat.ident.clone(), typed.ty.as_ref().clone()));
    }
    for skipped in &args.skip {
        if !arguments.iter().any(|(name, _)| name == skipped) {
            return Err(syn::Error::new(
                skipped.span(),
                format!("`{skipped}` is not an argument of `{ident}`"),
            ));
        }
    }
    let key_parts: Vec<_> = arguments
        .iter()
        .filter(|(name, _)| !args.skip.contains(name))
        .collect();

    let path = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#ident)
    ));
    // Writes the key into `__perf_buf: &mut String`; whether it could.
    let templates =
        (args.key.iter().map(|key| (key, "key"))).chain(args.tags.iter().map(|tag| (tag, "tag")));
    for (template, what) in templates {
        for placeholder in placeholders(&template.value()) {
            if !arguments.iter().any(|(name, _)| *name == placeholder) {
                return Err(syn::Error::new(
                    template.span(),
                    format!("`{{{placeholder}}}` in the {what} is not an argument of `{ident}`"),
                ));
            }
        }
    }
    let write_key = match &args.key {
        Some(template) => {
            quote! {
                ::std::fmt::Write::write_fmt(__perf_buf, ::std::format_args!(#template)).is_ok()
            }
        }
        None => {
            let names = key_parts.iter().map(|(name, _)| name);
            quote! {
                #private::perf_core::cache::write_function_key(__perf_buf, #path, &(#(&#names,)*))
            }
        }
    };
    // `None` when the arguments could not be written (a `Serialize` or `Display` that failed):
    // such a call runs uncached, since its key would not tell it from other calls.
    let key = quote! {{
        let mut __perf_owned = ::std::string::String::new();
        let __perf_buf = &mut __perf_owned;
        if #write_key {
            ::core::option::Option::Some(__perf_owned)
        } else {
            ::core::option::Option::None
        }
    }};
    let key_checks = if args.key.is_none() {
        key_parts
            .iter()
            .map(|(_, ty)| quote_spanned!(ty.span()=> #private::assert_key_argument::<#ty>();))
            .collect()
    } else {
        Vec::new()
    };
    let value_check = match args.cache_type {
        CacheType::L1 => {
            quote_spanned!(cached_type.span()=> #private::assert_cacheable_in_l1::<#cached_type>();)
        }
        _ => {
            quote_spanned!(cached_type.span()=> #private::assert_cacheable_shared::<#cached_type>();)
        }
    };
    let cache = match &args.optimizer {
        Some(optimizer) => quote_spanned!(optimizer.span()=> (#optimizer).cache()),
        None => quote!(#perf::global().cache()),
    };
    let tier = match args.cache_type {
        CacheType::L1 => quote!(#private::perf_core::Tier::L1),
        CacheType::L2 => quote!(#private::perf_core::Tier::L2),
        CacheType::Redis => quote!(#private::perf_core::Tier::Redis),
    };
    let options = load_options(&args, &tier, &returns, &private);
    let sharing = match returns {
        Returns::Result => quote_spanned! {ret.span()=> {
            #[allow(unused_imports)]
            use #private::{ShareByClone as _, ShareByMessage as _};
            (&#private::Sharing::<<#ret as #private::ReturnParts>::Err>::new()).pick()
        }},
        Returns::Option | Returns::Plain => quote!(#private::ErrorSharing::by_message()),
    };
    let error_check = match returns {
        Returns::Result => quote_spanned! {ret.span()=>
            #private::assert_cacheable_error::<<#ret as #private::ReturnParts>::Err>();
        },
        Returns::Option | Returns::Plain => quote!(),
    };
    // Under tags, the key carries the tags' generations (see perf-core's `cache/tags.rs`),
    // made once per call before the hit is looked for.
    let tags = &args.tags;
    let tagged = if tags.is_empty() {
        quote!()
    } else {
        quote! {
            let __perf_tagged: ::core::option::Option<::std::string::String> = match #key {
                ::core::option::Option::Some(__perf_key) => ::core::option::Option::Some(
                    __perf_cache
                        .tagged_key(&__perf_key, &[#(::std::format!(#tags).as_str()),*])
                        .await,
                ),
                ::core::option::Option::None => ::core::option::Option::None,
            };
        }
    };
    // A hit: a copy of the L1 value, from this thread's near cache when current.
    let fast_hit = match &args.key {
        _ if !tags.is_empty() => quote! {
            __perf_tagged
                .as_deref()
                .and_then(|__perf_key| __perf_cache.hit_for_key::<#cached_type>(__perf_key))
        },
        Some(_) => quote! {{
            let __perf_keyed = ::core::cell::Cell::new(false);
            #private::with_key(
                |__perf_buf: &mut ::std::string::String| __perf_keyed.set(#write_key),
                |__perf_key: &str| {
                    if __perf_keyed.get() {
                        __perf_cache.hit_for_key::<#cached_type>(__perf_key)
                    } else {
                        ::core::option::Option::None
                    }
                },
            )
        }},
        None => {
            let names = key_parts.iter().map(|(name, _)| name);
            quote! {
                __perf_cache.hit_for_call::<#cached_type, _>(#path, &(#(&#names,)*))
            }
        }
    };
    let hit = match returns {
        Returns::Result => quote!(::core::result::Result::Ok(__perf_hit)),
        Returns::Option => quote!(::core::option::Option::Some(__perf_hit)),
        Returns::Plain => quote!(__perf_hit),
    };
    // The loader's result as get_or_load wants it, and get_or_load's as the function returns it.
    let (loader_value, finish) = match returns {
        Returns::Result => (
            quote!(__perf_value),
            quote!(__perf_loaded.map(#private::unshare)),
        ),
        Returns::Option => (
            quote!(__perf_value.ok_or(#private::NotCached)),
            quote!(__perf_loaded.ok().map(#private::unshare)),
        ),
        Returns::Plain => (
            quote!(::core::result::Result::<_, #private::Unfailing>::Ok(__perf_value)),
            quote! {
                match __perf_loaded {
                    ::core::result::Result::Ok(value) => #private::unshare(value),
                    // Plain loaders never fail and run without a hard timeout; failures reach
                    // only callers with the same error type.
                    ::core::result::Result::Err(unfailing) => match unfailing {},
                }
            },
        ),
    };
    let block = &function.block;
    let detached = is_async && wants_background(&args.failure) && owns_its_arguments(&function.sig);
    let method = match (is_async, detached, args.cache_type) {
        (true, true, CacheType::L1) => quote!(load_l1_detached_with),
        (true, true, _) => quote!(load_detached_with),
        (true, false, CacheType::L1) => quote!(load_l1_with),
        (true, false, _) => quote!(load_with),
        (false, _, CacheType::L1) => quote!(load_l1_local_with),
        (false, _, _) => quote!(load_local_with),
    };
    let call = quote!(#method(&__perf_key, &#options, #sharing, __perf_loader));
    let load = if is_async {
        quote! {
            let __perf_loader = move || async move {
                let __perf_value: #ret = async move #block.await;
                #loader_value
            };
            let __perf_loaded = match __perf_key {
                ::core::option::Option::Some(__perf_key) => {
                    __perf_cache.#call.await.map(|__perf_loaded| __perf_loaded.value)
                }
                ::core::option::Option::None => {
                    __perf_cache.load_unkeyed(#path, __perf_loader).await
                }
            };
        }
    } else {
        quote! {
            let __perf_loader = move || {
                #[allow(clippy::redundant_closure_call)]
                let __perf_value: #ret = (move || -> #ret #block)();
                #loader_value
            };
            let __perf_loaded = match __perf_key {
                ::core::option::Option::Some(__perf_key) => {
                    __perf_cache.#call.map(|__perf_loaded| __perf_loaded.value)
                }
                ::core::option::Option::None => __perf_cache.load_unkeyed_local(#path, __perf_loader),
            };
        }
    };
    let key = if tags.is_empty() {
        key
    } else {
        quote!(__perf_tagged)
    };
    let miss = quote! {
        let __perf_key: ::core::option::Option<::std::string::String> = #key;
        #load
        #finish
    };
    // An async miss is boxed: in place, its state would make every call's future, hits
    // included, several times larger.
    let miss = if is_async {
        quote!(::std::boxed::Box::pin(async move { #miss }).await)
    } else {
        quote!(#miss)
    };
    let body = quote! {{
        #(#key_checks)*
        #value_check
        #error_check
        let __perf_cache = #cache;
        #tagged
        if let ::core::option::Option::Some(__perf_hit) = #fast_hit {
            return #hit;
        }
        #miss
    }};
    function.block = syn::parse2(body)?;
    Ok(quote!(#function))
}

/// The `{name}` placeholders of a key template (`{{` and `}}` are literal braces).
fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                // `{name:?}` and `{name:>8}` format the same argument.
                let name = name.split(':').next().unwrap_or_default().trim().to_owned();
                names.push(name);
            }
            _ => {}
        }
    }
    names
}

/// Refuses failure settings that cannot work for this function.
fn check_failure_args(
    failure: &crate::attr::FailureArgs,
    is_async: bool,
    returns: &Returns,
) -> syn::Result<()> {
    if !is_async {
        for (arg, name) in [
            (failure.timeout, "timeout"),
            (failure.hard_timeout, "hard_timeout"),
        ] {
            if let Some(arg) = arg {
                return Err(syn::Error::new(
                    arg.span,
                    format!("`{name}` needs an async fn: a synchronous body cannot be stopped"),
                ));
            }
        }
    }
    if let (Returns::Plain, Some(hard)) = (returns, failure.hard_timeout) {
        return Err(syn::Error::new(
            hard.span,
            "`hard_timeout` needs a function returning `Result` or `Option`: \
             a call given up at its hard timeout has nothing else to return",
        ));
    }
    Ok(())
}

/// Whether the call's load is worth running in a task, so that it outlives a caller that
/// stopped waiting: with a soft or hard timeout, or refresh-ahead.
fn wants_background(failure: &crate::attr::FailureArgs) -> bool {
    failure.timeout.is_some() || failure.hard_timeout.is_some() || failure.refresh_ahead.is_some()
}

/// Whether the function's arguments can move into a `'static` task: no receiver, no
/// generics, no borrowed or lifetime-carrying argument types (judged from the tokens).
fn owns_its_arguments(sig: &syn::Signature) -> bool {
    if !sig.generics.params.is_empty() {
        return false;
    }
    sig.inputs.iter().all(|input| match input {
        syn::FnArg::Receiver(_) => false,
        syn::FnArg::Typed(typed) => {
            let tokens = quote!(#typed).to_string();
            !tokens.contains('&') && !tokens.contains('\'') && !tokens.contains("impl ")
        }
    })
}

/// The call's `LoadOptions`: the tier, the TTL and whichever failure settings were given.
fn load_options(
    args: &crate::attr::CacheArgs,
    tier: &TokenStream,
    returns: &Returns,
    private: &TokenStream,
) -> TokenStream {
    let duration = |nanos: u64| quote!(::core::time::Duration::from_nanos(#nanos));
    let mut calls = Vec::new();
    if let Some(nanos) = args.ttl_nanos {
        let ttl = duration(nanos);
        calls.push(quote!(.ttl(#ttl)));
    }
    let failure = &args.failure;
    for (arg, setter) in [
        (failure.fail_safe, quote!(fail_safe)),
        (failure.fail_safe_throttle, quote!(fail_safe_throttle)),
        (failure.timeout, quote!(soft_timeout)),
        (failure.hard_timeout, quote!(hard_timeout)),
        (failure.failure_ttl, quote!(failure_ttl)),
    ] {
        if let Some(arg) = arg {
            let value = duration(arg.nanos);
            calls.push(quote!(.#setter(#value)));
        }
    }
    if let Returns::Plain = returns {
        // A plain value has no way to report a timeout: the configuration's is not applied.
        calls.push(quote!(.hard_timeout(::core::time::Duration::ZERO)));
    }
    for (arg, setter) in [
        (failure.refresh_ahead, quote!(eager_refresh)),
        (failure.jitter, quote!(jitter)),
    ] {
        if let Some(arg) = arg {
            let value = arg.value;
            calls.push(quote!(.#setter(#value)));
        }
    }
    quote!(#private::LoadOptions::new(#tier) #(#calls)*)
}
