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

/// The declared return type as a `let` or closure can be annotated with it: every
/// `impl Trait` in it (`Result<impl IntoResponse, StatusCode>`) left to inference as `_`, the
/// rest kept, so that `?` in the body still knows its error type.
fn nameable_return(output: &ReturnType) -> Option<Type> {
    match output {
        ReturnType::Type(_, ty) => Some(infer_impl_traits(ty)),
        ReturnType::Default => None,
    }
}

/// `ty` with each `impl Trait` replaced by `_`.
fn infer_impl_traits(ty: &Type) -> Type {
    let mut ty = ty.clone();
    replace_impl_traits(&mut ty);
    ty
}

fn replace_impl_traits(ty: &mut Type) {
    match ty {
        Type::ImplTrait(_) => {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: Default::default(),
            })
        }
        Type::Path(path) => {
            for segment in &mut path.path.segments {
                if let syn::PathArguments::AngleBracketed(arguments) = &mut segment.arguments {
                    for argument in &mut arguments.args {
                        if let syn::GenericArgument::Type(inner) = argument {
                            replace_impl_traits(inner);
                        }
                    }
                }
            }
        }
        Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(replace_impl_traits),
        Type::Array(array) => replace_impl_traits(&mut array.elem),
        Type::Slice(slice) => replace_impl_traits(&mut slice.elem),
        Type::Paren(paren) => replace_impl_traits(&mut paren.elem),
        Type::Group(group) => replace_impl_traits(&mut group.elem),
        _ => {}
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
            static __PERF_SITE: #private::CallSite = #private::CallSite::new(#name);
            let __perf_timing = #private::start_at(&__PERF_SITE);
        },
        Some(optimizer) => quote_spanned! {optimizer.span()=>
            let __perf_timing = #private::start_on(&#optimizer, #name);
        },
    };
    let status = if returns_result(&function.sig.output) {
        quote! {
            if __perf_result.is_err() {
                #private::Status::Error
            } else {
                #private::Status::Success
            }
        }
    } else {
        quote!(#private::Status::Success)
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

/// When `function` still carries `#[cache_result]` (it was written below the monitor, so it
/// expands after it and would take the monitored body as its loader), the function again with
/// the cache attribute first and the monitor below it: the cache's expansion keeps the monitor
/// attribute, which then wraps the whole cached body.
pub(crate) fn monitor_below_cache(
    args: &MonitorArgs,
    raw_args: TokenStream,
    function: &ItemFn,
) -> Option<TokenStream> {
    let is_cache = |attr: &syn::Attribute| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "cache_result")
    };
    let at = function.attrs.iter().position(is_cache)?;
    let mut function = function.clone();
    let cache = function.attrs.remove(at);
    let perf = krate(args.krate.as_ref());
    Some(quote! {
        #cache
        #[#perf::performance_monitor(#raw_args)]
        #function
    })
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

/// What the signature says: how the value is returned and cached, and the key's arguments.
struct Analysis {
    ident: syn::Ident,
    is_async: bool,
    ret: Type,
    returns: Returns,
    cached_type: Type,
    /// Every named argument, with its type.
    arguments: Vec<(syn::Ident, Type)>,
    /// The arguments that make up the key: all but the skipped ones.
    key_parts: Vec<(syn::Ident, Type)>,
    /// A method (or an associated function naming `Self`): its key starts with the type's
    /// name, so that two `impl`s in one module never share keys.
    in_impl: bool,
}

/// The code generated for one `#[cache_result]` function, stage by stage.
struct CacheExpansion<'a> {
    args: &'a crate::attr::CacheArgs,
    sig: Analysis,
    private: TokenStream,
    /// The function's path, `module::name`: its keys' prefix and its call site's name.
    path: TokenStream,
}

pub(crate) fn cache_result(
    args: crate::attr::CacheArgs,
    mut function: ItemFn,
) -> syn::Result<TokenStream> {
    let perf = krate(args.krate.as_ref());
    let sig = analyze(&args, &function)?;
    let ident = &sig.ident;
    let expansion = CacheExpansion {
        args: &args,
        private: quote!(#perf::__private),
        path: quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#ident)
        )),
        sig,
    };
    let body = expansion.body(&function);
    let companion = expansion.companion(&function);
    function.block = syn::parse2(body)?;
    Ok(quote!(#function #companion))
}

/// Signature analysis: the return type's shape and the arguments, and every refusal that
/// depends on them, each at the user's span.
fn analyze(args: &crate::attr::CacheArgs, function: &ItemFn) -> syn::Result<Analysis> {
    use crate::attr::CacheType;

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
    let key_parts = arguments
        .iter()
        .filter(|(name, _)| !args.skip.contains(name))
        .cloned()
        .collect();
    let in_impl = function.sig.receiver().is_some() || names_self(&function.sig);
    Ok(Analysis {
        ident,
        is_async,
        ret,
        returns,
        cached_type,
        arguments,
        key_parts,
        in_impl,
    })
}

impl CacheExpansion<'_> {
    /// A module named after a free, non-generic function, beside it: `key(..)` (without tags)
    /// and `invalidate(..)` / `invalidate_in(cache, ..)`, which drop one call's memoized result
    /// in every tier and on every instance. They take the arguments the key is made of.
    /// Methods get none: a module cannot sit in an `impl`.
    fn companion(&self, function: &ItemFn) -> TokenStream {
        if self.sig.in_impl || !function.sig.generics.params.is_empty() {
            return quote!();
        }
        let private = &self.private;
        let (ident, vis) = (&self.sig.ident, &function.vis);
        let mut used: Vec<String> = self
            .args
            .tags
            .iter()
            .flat_map(|tag| placeholders(&tag.value()))
            .collect();
        match &self.args.key {
            Some(template) => used.extend(placeholders(&template.value())),
            None => used.extend(self.sig.key_parts.iter().map(|(name, _)| name.to_string())),
        }
        let params: Vec<_> = self
            .sig
            .arguments
            .iter()
            .filter(|(name, _)| used.contains(&name.to_string()))
            .collect();
        let names: Vec<_> = params.iter().map(|(name, _)| name).collect();
        let declared: Vec<_> = params.iter().map(|(name, ty)| quote!(#name: #ty)).collect();
        // Inside the module, `module_path!()` is the function's own path.
        let written = self.written_key_at(&quote!(::core::module_path!()));
        let (key_fn, find_key) = if self.args.tags.is_empty() {
            (
                quote! {
                    /// The cache key of this call, or `None` when its arguments cannot be
                    /// written into one (such calls are never cached).
                    pub fn key(#(#declared),*) -> ::core::option::Option<::std::string::String> {
                        #written
                    }
                },
                quote!(key(#(#names),*)),
            )
        } else {
            (quote!(), self.tagged(written))
        };
        let global = self.args.optimizer.is_none().then(|| {
            quote! {
                /// [`invalidate_in`] on the global optimizer's cache, the one the function uses.
                pub async fn invalidate(
                    #(#declared),*
                ) -> ::core::result::Result<bool, #private::Error> {
                    invalidate_in(#private::global_cache(), #(#names),*).await
                }
            }
        });
        let doc = format!(
            "Keys and invalidation of [`{ident}`](fn@super::{ident})'s memoized results \
             (made by `#[cache_result]`)."
        );
        quote! {
            #[doc = #doc]
            #[allow(dead_code, non_snake_case)]
            #vis mod #ident {
                #[allow(unused_imports)]
                use super::*;

                #key_fn

                /// Drops the memoized result of this call from every tier of `cache`, and from
                /// the other instances sharing its remote tier; whether a local tier held it.
                pub async fn invalidate_in(
                    __perf_cache: &#private::MultiLevelCache,
                    #(#declared),*
                ) -> ::core::result::Result<bool, #private::Error> {
                    match #find_key {
                        ::core::option::Option::Some(__perf_key) => {
                            #private::invalidate(__perf_cache, &__perf_key).await
                        }
                        ::core::option::Option::None => ::core::result::Result::Ok(false),
                    }
                }

                #global
            }
        }
    }

    /// The new body: type checks, the cache, the hit, else the load.
    fn body(&self, function: &ItemFn) -> TokenStream {
        let checks = self.type_checks();
        let cache = self.cache();
        let tagged = self.tagged_key();
        let hit = self.hit();
        let give_hit = match self.sig.returns {
            Returns::Result => quote!(::core::result::Result::Ok(__perf_hit)),
            Returns::Option => quote!(::core::option::Option::Some(__perf_hit)),
            Returns::Plain => quote!(__perf_hit),
        };
        let miss = self.miss(function);
        let (private, path) = (&self.private, &self.path);
        quote! {{
            #checks
            static __PERF_MEMOIZED: #private::Memoized = #private::Memoized::new(#path);
            let __perf_cache = #cache;
            #tagged
            // The hit counts itself, for the cache and for the function.
            if let ::core::option::Option::Some(__perf_hit) = #hit {
                return #give_hit;
            }
            #miss
        }}
    }

    /// Asserts on the key's arguments, the cached type and the error type, so that a type that
    /// cannot be cached fails at its own span with the macros' message.
    fn type_checks(&self) -> TokenStream {
        use crate::attr::CacheType;

        let private = &self.private;
        let sig = &self.sig;
        let key_checks = match self.args.key {
            None => sig
                .key_parts
                .iter()
                .map(|(_, ty)| quote_spanned!(ty.span()=> #private::assert_key_argument::<#ty>();))
                .collect(),
            Some(_) => Vec::new(),
        };
        let cached_type = &sig.cached_type;
        let value_check = match self.args.cache_type {
            CacheType::L1 => {
                quote_spanned!(cached_type.span()=> #private::assert_cacheable_in_l1::<#cached_type>();)
            }
            _ => {
                quote_spanned!(cached_type.span()=> #private::assert_cacheable_shared::<#cached_type>();)
            }
        };
        let ret = &sig.ret;
        let error_check = match sig.returns {
            Returns::Result => quote_spanned! {ret.span()=>
                #private::assert_cacheable_error::<<#ret as #private::ReturnParts>::Err>();
            },
            Returns::Option | Returns::Plain => quote!(),
        };
        quote! {
            #(#key_checks)*
            #value_check
            #error_check
        }
    }

    /// The cache: the `optimizer = ..` argument's, else the global optimizer's.
    fn cache(&self) -> TokenStream {
        let private = &self.private;
        match &self.args.optimizer {
            Some(optimizer) => quote_spanned!(optimizer.span()=> #private::cache_of(&#optimizer)),
            None => quote!(#private::global_cache()),
        }
    }

    // ----- the key -----

    /// Writes the key into `__perf_buf: &mut String`; evaluates to whether it could.
    fn write_key(&self) -> TokenStream {
        self.write_key_at(&self.path)
    }

    /// [`write_key`](Self::write_key) with the function's path written as `path` (the
    /// companion module names it `module_path!()`, which is the same string there).
    fn write_key_at(&self, path: &TokenStream) -> TokenStream {
        let private = &self.private;
        match &self.args.key {
            Some(template) => quote! {
                ::std::fmt::Write::write_fmt(__perf_buf, ::std::format_args!(#template)).is_ok()
            },
            None => {
                let arguments = self.key_arguments();
                quote!(#private::write_function_key(__perf_buf, #path, &#arguments))
            }
        }
    }

    /// The tuple a call's key is made of: its key arguments, after the type's name for a
    /// method (`type_name::<Self>()`, generic parameters included).
    fn key_arguments(&self) -> TokenStream {
        let names = self.sig.key_parts.iter().map(|(name, _)| name);
        let receiver_type = self
            .sig
            .in_impl
            .then(|| quote!(::core::any::type_name::<Self>(),));
        quote!((#receiver_type #(&#names,)*))
    }

    /// The key as an `Option<String>`: `None` when the arguments could not be written (a
    /// `Serialize` or `Display` that failed); such a call runs uncached, since its key would
    /// not tell it from other calls. Under tags, the tagged key made before the hit.
    fn key(&self) -> TokenStream {
        if self.args.tags.is_empty() {
            self.written_key()
        } else {
            quote!(__perf_tagged)
        }
    }

    /// The key written by [`write_key`](Self::write_key), as an `Option<String>`.
    fn written_key(&self) -> TokenStream {
        self.written_key_at(&self.path)
    }

    fn written_key_at(&self, path: &TokenStream) -> TokenStream {
        let write_key = self.write_key_at(path);
        quote! {{
            let mut __perf_owned = ::std::string::String::new();
            let __perf_buf = &mut __perf_owned;
            if #write_key {
                ::core::option::Option::Some(__perf_owned)
            } else {
                ::core::option::Option::None
            }
        }}
    }

    /// Under tags, the key carries the tags' generations (see perf-core's `cache/engine/tags.rs`),
    /// made once per call before the hit is looked for.
    fn tagged_key(&self) -> TokenStream {
        let tags = &self.args.tags;
        if tags.is_empty() {
            return quote!();
        }
        let tagged = self.tagged(self.written_key());
        quote! {
            let __perf_tagged: ::core::option::Option<::std::string::String> = #tagged;
        }
    }

    /// `untagged` (an `Option<String>` key) under the tags' generations, read from
    /// `__perf_cache`; an expression to `.await` inside.
    fn tagged(&self, untagged: TokenStream) -> TokenStream {
        let (private, tags) = (&self.private, &self.args.tags);
        quote! {
            match #untagged {
                ::core::option::Option::Some(__perf_key) => ::core::option::Option::Some(
                    #private::tagged_key(
                        __perf_cache,
                        &__perf_key,
                        &[#(::std::format!(#tags).as_str()),*],
                    )
                    .await,
                ),
                ::core::option::Option::None => ::core::option::Option::None,
            }
        }
    }

    // ----- the hit -----

    /// A copy of the L1 value, from this thread's near cache when current.
    fn hit(&self) -> TokenStream {
        let private = &self.private;
        let cached_type = &self.sig.cached_type;
        if !self.args.tags.is_empty() {
            return quote! {
                __perf_tagged.as_deref().and_then(|__perf_key| {
                    #private::hit_for_key::<#cached_type>(__perf_cache, &__PERF_MEMOIZED, __perf_key)
                })
            };
        }
        match &self.args.key {
            Some(_) => {
                let write_key = self.write_key();
                quote! {{
                    let __perf_keyed = ::core::cell::Cell::new(false);
                    #private::with_key(
                        |__perf_buf: &mut ::std::string::String| __perf_keyed.set(#write_key),
                        |__perf_key: &str| {
                            if __perf_keyed.get() {
                                #private::hit_for_key::<#cached_type>(__perf_cache, &__PERF_MEMOIZED, __perf_key)
                            } else {
                                ::core::option::Option::None
                            }
                        },
                    )
                }}
            }
            None => {
                let arguments = self.key_arguments();
                quote! {
                    #private::hit_for_call::<#cached_type, _>(
                        __perf_cache,
                        &__PERF_MEMOIZED,
                        &#arguments,
                    )
                }
            }
        }
    }

    // ----- the load -----

    /// A miss: the key, the loader around the original body, the load, and its result as the
    /// function returns it. An async miss is boxed: in place, its state would make every
    /// call's future, hits included, several times larger.
    fn miss(&self, function: &ItemFn) -> TokenStream {
        let private = &self.private;
        let (ret, path) = (&self.sig.ret, &self.path);
        let key = self.key();
        let (loader_value, finish) = self.loader_result();
        let block = &function.block;
        let load = self.load_function(function);
        let options = load_options(self.args, &self.tier(), &self.sig.returns, private);
        let sharing = self.sharing();
        let miss = if self.sig.is_async {
            quote! {
                let __perf_key: ::core::option::Option<::std::string::String> = #key;
                let __perf_ran = #private::BodyRan::default();
                let __perf_loader = {
                    let __perf_ran = __perf_ran.clone();
                    move || async move {
                        __perf_ran.set();
                        let __perf_value: #ret = async move #block.await;
                        #loader_value
                    }
                };
                let __perf_loaded = match __perf_key {
                    ::core::option::Option::Some(__perf_key) => {
                        #private::#load(__perf_cache, &__perf_key, &#options, #sharing, __perf_loader)
                            .await
                    }
                    ::core::option::Option::None => {
                        #private::load_unkeyed(__perf_cache, #path, __perf_loader).await
                    }
                };
                __PERF_MEMOIZED.record(&__perf_ran);
                #finish
            }
        } else {
            quote! {
                let __perf_key: ::core::option::Option<::std::string::String> = #key;
                let __perf_ran = #private::BodyRan::default();
                let __perf_loader = {
                    let __perf_ran = __perf_ran.clone();
                    move || {
                        __perf_ran.set();
                        #[allow(clippy::redundant_closure_call)]
                        let __perf_value: #ret = (move || -> #ret #block)();
                        #loader_value
                    }
                };
                let __perf_loaded = match __perf_key {
                    ::core::option::Option::Some(__perf_key) => {
                        #private::#load(__perf_cache, &__perf_key, &#options, #sharing, __perf_loader)
                    }
                    ::core::option::Option::None => {
                        #private::load_unkeyed_local(__perf_cache, #path, __perf_loader)
                    }
                };
                __PERF_MEMOIZED.record(&__perf_ran);
                #finish
            }
        };
        if self.sig.is_async {
            quote!(::std::boxed::Box::pin(async move { #miss }).await)
        } else {
            miss
        }
    }

    /// Which load function runs the miss: async or not, in a task or not, L1 only or not.
    fn load_function(&self, function: &ItemFn) -> TokenStream {
        use crate::attr::CacheType;

        let is_async = self.sig.is_async;
        let detached =
            is_async && wants_background(&self.args.failure) && owns_its_arguments(&function.sig);
        match (is_async, detached, self.args.cache_type) {
            (true, true, CacheType::L1) => quote!(load_l1_detached),
            (true, true, _) => quote!(load_detached),
            (true, false, CacheType::L1) => quote!(load_l1),
            (true, false, _) => quote!(load),
            (false, _, CacheType::L1) => quote!(load_l1_local),
            (false, _, _) => quote!(load_local),
        }
    }

    fn tier(&self) -> TokenStream {
        use crate::attr::CacheType;

        let private = &self.private;
        match self.args.cache_type {
            CacheType::L1 => quote!(#private::Tier::L1),
            CacheType::L2 => quote!(#private::Tier::L2),
            CacheType::Redis => quote!(#private::Tier::Redis),
        }
    }

    /// How a failed load's error reaches the callers coalesced with it.
    fn sharing(&self) -> TokenStream {
        let private = &self.private;
        let ret = &self.sig.ret;
        match self.sig.returns {
            Returns::Result => quote_spanned! {ret.span()=> {
                #[allow(unused_imports)]
                use #private::{ShareByClone as _, ShareByMessage as _};
                (&#private::Sharing::<<#ret as #private::ReturnParts>::Err>::new()).pick()
            }},
            Returns::Option | Returns::Plain => quote!(#private::ErrorSharing::by_message()),
        }
    }

    /// The loader's result as the load wants it (`__perf_value` in), and the load's result as
    /// the function returns it (`__perf_loaded` in).
    fn loader_result(&self) -> (TokenStream, TokenStream) {
        let private = &self.private;
        match self.sig.returns {
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
                        // Plain loaders never fail and run without a hard timeout; failures
                        // reach only callers with the same error type.
                        ::core::result::Result::Err(unfailing) => match unfailing {},
                    }
                },
            ),
        }
    }
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

/// Whether the signature names `Self` (an associated function of an `impl`, judged from the
/// tokens: the macro cannot see the `impl` around it).
fn names_self(sig: &syn::Signature) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => ident == "Self",
            proc_macro2::TokenTree::Group(group) => walk(group.stream()),
            _ => false,
        })
    }
    walk(quote!(#sig))
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
    if args.encrypt.is_some() {
        calls.push(quote!(.encrypt()));
    }
    quote!(#private::LoadOptions::new(#tier) #(#calls)*)
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Span, TokenStream, TokenTree};
    use proptest::prelude::*;
    use syn::parse_quote;

    use super::*;

    /// Every path the expansion names into the facade, as `name::name::..` strings.
    fn perf_paths(tokens: TokenStream) -> Vec<String> {
        fn walk(tokens: TokenStream, out: &mut Vec<String>) {
            let flat: Vec<TokenTree> = tokens.into_iter().collect();
            for (at, token) in flat.iter().enumerate() {
                match token {
                    TokenTree::Group(group) => walk(group.stream(), out),
                    TokenTree::Ident(ident) if ident == "perf" => {
                        let path: String =
                            flat[at..].iter().take(6).map(ToString::to_string).collect();
                        out.push(path);
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(tokens, &mut out);
        out
    }

    fn expanded_cache(args: TokenStream, function: ItemFn) -> String {
        let args: crate::attr::CacheArgs = syn::parse2(args).expect("valid arguments");
        cache_result(args, function).expect("expands").to_string()
    }

    /// The macros' contract with the library is `perf::__private` alone: generated code calls
    /// no method of the cache and names no other path of the facade.
    #[test]
    fn generated_code_reaches_the_library_only_through_private() {
        let cases: Vec<(TokenStream, ItemFn)> = vec![
            (
                quote!(ttl = 60),
                parse_quote!(
                    async fn ad(id: u64) -> Result<String, E> {
                        todo!()
                    }
                ),
            ),
            (
                quote!(ttl = 60, cache_type = "l1", key = "ad:{id}"),
                parse_quote!(
                    fn ad(id: u64) -> Option<String> {
                        todo!()
                    }
                ),
            ),
            (
                quote!(
                    ttl = 60,
                    cache_type = "redis",
                    tags = ["ads"],
                    timeout = "50ms"
                ),
                parse_quote!(
                    async fn ad(id: u64) -> Result<String, E> {
                        todo!()
                    }
                ),
            ),
            (
                quote!(ttl = 60, optimizer = &OPTIMIZER, refresh_ahead = 0.8),
                parse_quote!(
                    async fn ad(id: u64) -> String {
                        todo!()
                    }
                ),
            ),
        ];
        for (args, function) in cases {
            let expanded = expanded_cache(args, function);
            assert!(
                !expanded.contains("__perf_cache ."),
                "a method called on the cache: {expanded}"
            );
            let tokens: TokenStream = expanded.parse().expect("tokens");
            let paths = perf_paths(tokens);
            assert!(!paths.is_empty(), "no path into the facade: {expanded}");
            for path in paths {
                assert!(
                    path.starts_with("perf::__private::"),
                    "{path} in {expanded}"
                );
            }
        }

        for args in [quote!(), quote!(optimizer = &OPTIMIZER)] {
            let args: crate::attr::MonitorArgs = syn::parse2(args).expect("valid arguments");
            let function: ItemFn = parse_quote!(
                fn run() -> Result<(), E> {
                    todo!()
                }
            );
            let expanded = performance_monitor(args, function).expect("expands");
            for path in perf_paths(expanded) {
                assert!(path.starts_with("perf::__private::"), "{path}");
            }
        }
    }

    /// `cases` cases, unless `PROPTEST_CASES` says how many.
    fn cases(cases: u32) -> ProptestConfig {
        if std::env::var_os("PROPTEST_CASES").is_some() {
            ProptestConfig::default()
        } else {
            ProptestConfig::with_cases(cases)
        }
    }

    /// Template text: braces, format specs, the function's argument names and others.
    fn templateish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            prop::sample::select(vec![
                "{",
                "}",
                "{{",
                "}}",
                "{encoding}",
                "{hash}",
                "{hash:?}",
                "{hash:>8}",
                "{}",
                "{0}",
                "{ hash }",
                "{self}",
                "{r#type}",
                ":",
                "tokens",
                "{encoding:{hash}}",
                "{hash:x$}",
                "\\",
                "\"",
            ])
            .prop_map(str::to_owned),
            "[a-z:_]{0,6}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// Any string as a key or tag template: expanded, its placeholders all arguments of
        /// the function, or refused with a `syn::Error` that says why; never a panic. (What
        /// the placeholders cannot tell, a template `format_args!` will not take, such as an
        /// unmatched `}` or `{ hash }`, is refused by rustc at the template.)
        #[test]
        fn any_template_expands_or_is_refused(template in prop_oneof![any::<String>(), templateish()]) {
            let literal = syn::LitStr::new(&template, Span::call_site());
            for args in [quote!(ttl = 60, key = #literal), quote!(ttl = 60, tags = [#literal])] {
                let function: ItemFn = parse_quote!(
                    async fn tokens(encoding: u8, hash: u64) -> u64 {
                        u64::from(encoding) ^ hash
                    }
                );
                let expanded = syn::parse2::<crate::attr::CacheArgs>(args)
                    .and_then(|args| cache_result(args, function));
                match expanded {
                    Ok(_) => {
                        for name in placeholders(&template) {
                            prop_assert!(name == "encoding" || name == "hash", "{{{}}} in {:?}", name, template);
                        }
                    }
                    Err(error) => prop_assert!(!error.to_string().is_empty()),
                }
            }
        }
    }
}
