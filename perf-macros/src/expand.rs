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
/// value lands in `__perf_result`.
fn captured_body(function: &ItemFn) -> TokenStream {
    let block = &function.block;
    let annotation = nameable_return(&function.sig.output).map(|ty| quote!(: #ty));
    if function.sig.asyncness.is_some() {
        quote! { let __perf_result #annotation = async move #block.await; }
    } else {
        let closure_return = nameable_return(&function.sig.output).map(|ty| quote!(-> #ty));
        quote! {
            #[allow(clippy::redundant_closure_call)]
            let __perf_result #annotation = (move || #closure_return #block)();
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
    let body = captured_body(&function);
    function.block = syn::parse2(quote! {{
        #start
        #body
        __perf_timing.finish(#status);
        __perf_result
    }})?;
    Ok(quote!(#function))
}
