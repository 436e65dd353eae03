//! The kernel module's layering, checked on the host (a test of `cargo test`): every file of
//! `rxdsk-kmod/` imports only from its own layer or the ones below (`ctl` > `device` > `image` >
//! `store` > `sys`), no two files import each other in a circle, and the kernel's C bindings
//! (`bindings::`) appear only in the glue layer, `sys/`.
//!
//! An import is a `crate::` or `super::` path in the code (a `use` or a qualified name); a
//! `mod` line declares a child and imports nothing. `crate::LocalModule` is the `module!`
//! macro's `THIS_MODULE`, not a file of ours.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers, lowest first; a file's layer is the first component of its module path.
pub const LAYERS: &[&str] = &["sys", "store", "image", "device", "ctl"];

/// One source file of the module and what it imports.
#[derive(Debug)]
pub struct File {
    /// Module path: `[]` for the crate root, `["store", "plain"]` for `store/plain.rs`.
    pub module: Vec<String>,
    /// Module paths of the files it imports from.
    pub imports: BTreeSet<Vec<String>>,
    /// Lines that use `bindings::`.
    pub bindings: usize,
}

/// Reads every `.rs` file under `dir` (the module's directory).
pub fn scan(dir: &Path) -> std::io::Result<Vec<File>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap_or(&path).with_extension("");
                let mut module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module == ["rxdsk_main"] {
                    module.clear();
                }
                let text = fs::read_to_string(&path)?;
                let imports = imports_of(&text)
                    .into_iter()
                    .map(|(base, p)| resolve_base(&module, base, p))
                    .collect();
                let mut imports: BTreeSet<Vec<String>> = imports;
                // `child::Item` in the file that declares `mod child;`.
                for child in children_of(&text) {
                    if uses_relative(&text, &child) {
                        let mut m = module.clone();
                        m.push(child);
                        imports.insert(m);
                    }
                }
                let bindings = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//") && l.contains("bindings::"))
                    .count();
                files.push(File {
                    module,
                    imports,
                    bindings,
                });
            }
        }
    }
    // Keep only imports that name one of our files (the longest module path that is one).
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    for f in &mut files {
        f.imports = f
            .imports
            .iter()
            .filter_map(|p| {
                (1..=p.len())
                    .rev()
                    .map(|n| p[..n].to_vec())
                    .find(|prefix| known.contains(prefix))
            })
            .filter(|p| *p != f.module)
            .collect();
    }
    files.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(files)
}

/// The modules a file declares (`mod x;`, `pub(crate) mod x;`).
fn children_of(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub(crate) mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_string)
        })
        .collect()
}

/// Whether `text` names an item of its child module `child` by a relative path (`child::`).
fn uses_relative(text: &str, child: &str) -> bool {
    let key = format!("{child}::");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .any(|l| {
            l.match_indices(&key).any(|(at, _)| {
                !l[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            })
        })
}

/// Where a path starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Base {
    Crate,
    Super,
}

/// `crate::a::b` / `super::x` paths in `text`, with `use` groups (`crate::a::{b, c::d}`)
/// expanded: each as its base and its lowercase (module) segments.
fn imports_of(text: &str) -> Vec<(Base, Vec<String>)> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (base, key) in [(Base::Crate, "crate::"), (Base::Super, "super::")] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(key) {
            let before = rest[..at].chars().last();
            rest = &rest[at + key.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in expand(rest) {
                out.push((base, path));
            }
        }
    }
    out
}

/// The module paths of the use tree at the start of `s` (`a::b::{c, d::e}` gives `a::b::c`
/// and `a::b::d::e`); segments stop at the first non-module one.
fn expand(s: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut s = s.trim_start();
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut paths = Vec::new();
            for part in split_top(&group[..end]) {
                for mut tail in expand(part) {
                    let mut p = prefix.clone();
                    p.append(&mut tail);
                    paths.push(p);
                }
            }
            if paths.is_empty() {
                paths.push(prefix);
            }
            return paths;
        }
        let seg: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let is_module = seg
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && seg != "self";
        if seg == "super" || is_module {
            prefix.push(seg.clone());
        } else {
            return vec![prefix];
        }
        s = &s[seg.len()..];
        match s.strip_prefix("::") {
            Some(more) => s = more.trim_start(),
            None => return vec![prefix],
        }
    }
}

/// Splits a use group's content at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// An import's absolute module path, seen from the file of module `from`.
fn resolve_base(from: &[String], base: Base, mut path: Vec<String>) -> Vec<String> {
    let mut abs = match base {
        Base::Crate => Vec::new(),
        // A file's `super` is its parent module.
        Base::Super => from[..from.len().saturating_sub(1)].to_vec(),
    };
    while path.first().is_some_and(|s| s == "super") {
        path.remove(0);
        abs.pop();
    }
    abs.extend(path);
    abs
}

/// The layer of a module path: its index in [`LAYERS`]; the crate root is above them all.
fn layer(module: &[String]) -> usize {
    module
        .first()
        .and_then(|m| LAYERS.iter().position(|l| l == m))
        .unwrap_or(LAYERS.len())
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "rxdsk_main".into()
    } else {
        module.join("/")
    }
}

/// What is wrong with the layering of `files`: an import that reaches up, a circle, bindings
/// outside `sys/`.
pub fn problems(files: &[File]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        for to in &f.imports {
            if layer(to) > layer(&f.module) {
                out.push(format!("{} reaches up to {}", name(&f.module), name(to)));
            }
        }
        if f.bindings > 0 && f.module.first().is_none_or(|m| m != "sys") {
            out.push(format!(
                "{} uses bindings:: outside sys/ ({} lines)",
                name(&f.module),
                f.bindings
            ));
        }
    }
    // Circles: a depth-first search for a back edge.
    let graph: BTreeMap<&Vec<String>, &BTreeSet<Vec<String>>> =
        files.iter().map(|f| (&f.module, &f.imports)).collect();
    let mut state: BTreeMap<&Vec<String>, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a Vec<String>,
        graph: &BTreeMap<&'a Vec<String>, &'a BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, u8>,
        stack: &mut Vec<&'a Vec<String>>,
        out: &mut Vec<String>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        for m in graph.get(n).into_iter().flat_map(|s| s.iter()) {
            let Some((&key, _)) = graph.get_key_value(m) else {
                continue;
            };
            match state.get(key) {
                Some(1) => {
                    let from = stack.iter().position(|s| *s == key).unwrap_or(0);
                    let circle: Vec<String> = stack[from..].iter().map(|s| name(s)).collect();
                    out.push(format!("circle: {} -> {}", circle.join(" -> "), name(key)));
                }
                Some(_) => {}
                None => visit(key, graph, state, stack, out),
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    for f in files {
        if !state.contains_key(&f.module) {
            visit(&f.module, &graph, &mut state, &mut Vec::new(), &mut out);
        }
    }
    out
}

/// The import graph as text, a file per line: `store/plain -> store/changes, store/error, sys/...`.
pub fn render(files: &[File]) -> String {
    files
        .iter()
        .map(|f| {
            let to: Vec<String> = f.imports.iter().map(|m| name(m)).collect();
            format!("{:<20} -> {}\n", name(&f.module), to.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sources: &[(&str, &str)]) -> Vec<File> {
        let dir = std::env::temp_dir().join(format!(
            "rxdsk-layers-{}-{}",
            std::process::id(),
            sources.len()
        ));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in sources {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        let scanned = scan(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        scanned
    }

    #[test]
    fn the_module_reaches_only_down_without_circles() {
        let dir = crate::paths::repo().join("rxdsk-kmod");
        let files = scan(&dir).unwrap();
        assert!(files.len() > 10, "{}", render(&files));
        let problems = problems(&files);
        assert!(
            problems.is_empty(),
            "{}\n{}",
            problems.join("\n"),
            render(&files)
        );
    }

    #[test]
    fn a_circle_an_upward_import_and_stray_bindings_are_found() {
        let f = files(&[
            ("rxdsk_main.rs", "mod sys; mod store;"),
            ("sys.rs", "pub(crate) mod a;"),
            ("sys/a.rs", "use crate::store::{Store, b::B};"),
            ("store.rs", "mod b; use crate::sys::a::A;"),
            (
                "store/b.rs",
                "use super::Store; fn f() { kernel::bindings::xa_load(); }",
            ),
        ]);
        let p = problems(&f).join("\n");
        assert!(p.contains("sys/a reaches up to store"), "{p}");
        assert!(p.contains("sys/a reaches up to store/b"), "{p}");
        assert!(p.contains("store/b uses bindings:: outside sys/"), "{p}");
        assert!(p.contains("circle:"), "{p}");
    }

    #[test]
    fn grouped_and_relative_imports_resolve_to_files() {
        let f = files(&[
            ("rxdsk_main.rs", ""),
            ("image.rs", "use crate::store::{unloaded::Unloaded, Store};"),
            (
                "image/journal.rs",
                "use super::{Image, format::X}; use crate::sys::ffi::{self, Gfp};",
            ),
            ("store.rs", ""),
            ("store/unloaded.rs", ""),
            ("sys.rs", ""),
            ("sys/ffi.rs", ""),
        ]);
        let journal = f.iter().find(|f| f.module == ["image", "journal"]).unwrap();
        let names: Vec<String> = journal.imports.iter().map(|m| name(m)).collect();
        assert_eq!(names, ["image", "sys/ffi"]);
        let image = f.iter().find(|f| f.module == ["image"]).unwrap();
        let names: Vec<String> = image.imports.iter().map(|m| name(m)).collect();
        assert_eq!(names, ["store", "store/unloaded"]);
        assert!(problems(&f).is_empty());
    }
}
