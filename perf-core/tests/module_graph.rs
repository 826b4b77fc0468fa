//! perf-core's modules form no cycle: reading the sources, every path a module names
//! (`use` items and inline paths, test code left out) is resolved, through `pub use`
//! re-exports, to the module that defines the item, and the graph of those edges must be
//! acyclic. A module naming its own ancestor or descendant is not counted: a parent declares
//! its children, and children reach siblings through the parent's re-exports.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use syn::visit::Visit;

type Name = Vec<String>;
type Edges = BTreeMap<Name, BTreeSet<Name>>;

#[derive(Debug)]
struct Module {
    children: BTreeSet<String>,
    /// `pub use` names: what each re-exported name stands for, as written.
    reexports: BTreeMap<String, Name>,
    /// Every path the module names, as written.
    paths: Vec<Name>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("test")
            || (attr.path().is_ident("cfg")
                && attr
                    .parse_args::<syn::Path>()
                    .is_ok_and(|p| p.is_ident("test")))
    })
}

/// Flattens a use tree into (name it binds, path it names).
fn flatten(tree: &syn::UseTree, prefix: &mut Name, out: &mut Vec<(String, Name)>) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            flatten(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) if name.ident == "self" => {
            out.push((prefix.last().cloned().unwrap_or_default(), prefix.clone()));
        }
        syn::UseTree::Name(name) => {
            let mut path = prefix.clone();
            path.push(name.ident.to_string());
            out.push((name.ident.to_string(), path));
        }
        syn::UseTree::Rename(rename) => {
            let mut path = prefix.clone();
            path.push(rename.ident.to_string());
            out.push((rename.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

#[derive(Default)]
struct Collector {
    children: BTreeSet<String>,
    /// Children declared inline (`mod x { .. }`).
    inline: Vec<(String, Vec<syn::Item>)>,
    reexports: BTreeMap<String, Name>,
    paths: Vec<Name>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Trait(t) => &t.attrs,
            _ => &[],
        };
        if is_test_only(attrs) {
            return;
        }
        match item {
            syn::Item::Mod(module) => {
                self.children.insert(module.ident.to_string());
                if let Some((_, items)) = &module.content {
                    self.inline.push((module.ident.to_string(), items.clone()));
                }
            }
            syn::Item::Use(item_use) => {
                let mut uses = Vec::new();
                flatten(&item_use.tree, &mut Vec::new(), &mut uses);
                let public = !matches!(item_use.vis, syn::Visibility::Inherited);
                for (name, path) in uses {
                    if public {
                        self.reexports.insert(name, path.clone());
                    }
                    self.paths.push(path);
                }
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_impl_item_fn(&mut self, function: &'ast syn::ImplItemFn) {
        if !is_test_only(&function.attrs) {
            syn::visit::visit_impl_item_fn(self, function);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 {
            self.paths
                .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, path);
    }
}

fn read_module(file: &Path, items: &[syn::Item], name: Name, modules: &mut BTreeMap<Name, Module>) {
    let mut collector = Collector::default();
    for item in items {
        collector.visit_item(item);
    }
    let dir = if file.ends_with("lib.rs") || file.ends_with("mod.rs") {
        file.parent().expect("a parent").to_path_buf()
    } else {
        file.with_extension("")
    };
    for child in &collector.children {
        let mut child_name = name.clone();
        child_name.push(child.clone());
        if let Some((_, items)) = collector.inline.iter().find(|(n, _)| n == child) {
            read_module(file, items, child_name, modules);
            continue;
        }
        let candidates = [
            dir.join(format!("{child}.rs")),
            dir.join(child).join("mod.rs"),
        ];
        let child_file = candidates
            .iter()
            .find(|c| c.exists())
            .unwrap_or_else(|| panic!("module {child} of {} has no file", file.display()));
        let source = fs::read_to_string(child_file).expect("readable");
        let parsed = syn::parse_file(&source).expect("parses");
        read_module(child_file, &parsed.items, child_name, modules);
    }
    modules.insert(
        name,
        Module {
            children: collector.children,
            reexports: collector.reexports,
            paths: collector.paths,
        },
    );
}

/// The module that defines what `path`, written in module `from`, names; `None` for paths
/// outside the crate.
fn resolve(
    modules: &BTreeMap<Name, Module>,
    from: &[String],
    path: &[String],
    depth: usize,
) -> Option<Name> {
    if depth > 16 {
        return None;
    }
    let mut at: Name = from.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                at.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if modules[&at].children.contains(first) => {}
        _ => return None,
    }
    for (index, segment) in rest.iter().enumerate() {
        let module = &modules[&at];
        if module.children.contains(segment) {
            at.push(segment.clone());
        } else if let Some(target) = module.reexports.get(segment) {
            let mut followed = target.clone();
            followed.extend(rest[index + 1..].iter().cloned());
            return resolve(modules, &at, &followed, depth + 1).or(Some(at));
        } else {
            break;
        }
    }
    Some(at)
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a == &b[..a.len()]
}

fn find_cycle(edges: &Edges) -> Option<Vec<Name>> {
    fn visit(
        node: &Name,
        edges: &Edges,
        state: &mut BTreeMap<Name, bool>,
        stack: &mut Vec<Name>,
    ) -> Option<Vec<Name>> {
        state.insert(node.clone(), false);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(true) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    edges.keys().find_map(|node| {
        if state.contains_key(node) {
            None
        } else {
            visit(node, edges, &mut state, &mut Vec::new())
        }
    })
}

fn module_graph() -> Edges {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let source = fs::read_to_string(&lib).expect("readable");
    let parsed = syn::parse_file(&source).expect("parses");
    let mut modules = BTreeMap::new();
    read_module(&lib, &parsed.items, Vec::new(), &mut modules);
    let mut edges = Edges::new();
    for (name, module) in &modules {
        for path in &module.paths {
            let Some(target) = resolve(&modules, name, path, 0) else {
                continue;
            };
            if !is_prefix(&target, name) && !is_prefix(name, &target) {
                edges.entry(name.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

fn module(path: &str) -> Name {
    path.split("::").map(String::from).collect()
}

#[test]
fn perf_core_has_no_module_cycles() {
    if let Some(cycle) = find_cycle(&module_graph()) {
        let names: Vec<String> = cycle
            .iter()
            .map(|m| format!("crate::{}", m.join("::")))
            .collect();
        panic!("module cycle: {}", names.join(" -> "));
    }
}

/// The check can fail: a graph with a cycle is reported, and the edges it reads from the
/// sources are real ones, re-exports followed.
#[test]
fn the_check_finds_cycles_and_reads_real_edges() {
    let mut edges = Edges::new();
    edges.entry(module("a")).or_default().insert(module("b"));
    edges.entry(module("b")).or_default().insert(module("c"));
    edges.entry(module("c")).or_default().insert(module("a"));
    assert!(find_cycle(&edges).is_some());

    let real = module_graph();
    let from_engine = &real[&module("cache::engine")];
    assert!(
        from_engine.contains(&module("cache::l1")),
        "{from_engine:?}"
    );
    assert!(real[&module("cache::l1")].contains(&module("cache::near")));
    // `crate::Error` is defined in `error` and re-exported at the root: resolved through it.
    assert!(from_engine.contains(&module("error")), "{from_engine:?}");
    // `Tier`, re-exported by `cache`, is defined in `cache::tier`.
    assert!(
        from_engine.contains(&module("cache::tier")),
        "{from_engine:?}"
    );
}
