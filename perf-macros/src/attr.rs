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
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                args.krate = Some(parse_crate_path(input)?);
            } else {
                let key: syn::Ident = input.parse()?;
                match key.to_string().as_str() {
                    "optimizer" => {
                        input.parse::<Token![=]>()?;
                        args.optimizer = Some(input.parse()?);
                    }
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!(
                                "unknown argument `{key}`: expected an operation name (\"op\"), \
                                 `optimizer = <expr>` or `crate = \"path\"`"
                            ),
                        ));
                    }
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// `crate = "::my::perf"`: where the generated code finds perf.
pub(crate) fn parse_crate_path(input: ParseStream<'_>) -> syn::Result<Path> {
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
