//! No import cycles among the gateway's modules (issue 14): each module of src/ names the modules it uses
//! (`use crate::...` and `crate::x::` paths outside comments and unit tests); the graph they make must have no
//! cycle, so each concern can be understood, tested and changed from the modules below it. A new cycle fails
//! here, naming the modules and the lines that close it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// A module's path in the crate (`node::hub`) from its file's path under src/ (`node/hub.rs`, `node/mod.rs`).
fn module_path(relative: &Path) -> String {
    let mut parts: Vec<String> =
        relative.with_extension("").components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a source file without its unit tests and comments, as one string (newlines kept).
fn code(source: &str) -> String {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap_or(source);
    code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths named at `at` in `code`: `a::b::c`, or `a::{b, c::{d, self}}` expanded, each with the offset of
/// its last segment's start. `prefix` is the path they are relative to.
fn paths_at(code: &str, mut at: usize, prefix: Vec<String>, found: &mut Vec<(Vec<String>, usize)>) -> usize {
    let bytes = code.as_bytes();
    let mut path = prefix;
    let mut start = at;
    loop {
        while at < bytes.len() && (bytes[at] as char).is_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            at += 1;
            loop {
                at = paths_at(code, at, path.clone(), found);
                while at < bytes.len() && (bytes[at] as char).is_whitespace() {
                    at += 1;
                }
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => return at + 1,
                    _ => return at,
                }
                while at < bytes.len() && (bytes[at] as char).is_whitespace() {
                    at += 1;
                }
                if bytes.get(at) == Some(&b'}') {
                    return at + 1;
                }
            }
        }
        let word: String = code[at..].chars().take_while(|c| is_ident(*c)).collect();
        if word.is_empty() {
            break;
        }
        if word != "self" {
            path.push(word.clone());
            start = at;
        }
        at += word.len();
        if code[at..].starts_with("::") {
            at += 2;
        } else {
            break;
        }
    }
    found.push((path, start));
    at
}

/// The modules of the crate `source` (the file of module `this`) uses, each with the first line that does:
/// `crate::` and `super::` paths, `use` groups expanded, each resolved to the longest module path it starts with.
fn uses(this: &str, source: &str, modules: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let code = code(source);
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at == 0 || !is_ident(code[..at].chars().next_back().unwrap()) {
            paths_at(&code, at + "crate::".len(), Vec::new(), &mut paths);
        }
    }
    // `super::` in module `a::b::c` (a/b/c.rs or a/b/c/mod.rs) is `a::b`.
    let mut base: Vec<String> = this.split("::").map(String::from).collect();
    base.pop();
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().next_back();
        if at == 0 || !(is_ident(before.unwrap()) || before == Some(':')) {
            paths_at(&code, at + "super::".len(), base.clone(), &mut paths);
        }
    }
    let mut found = BTreeMap::new();
    for (path, offset) in paths {
        let line = code[..offset].matches('\n').count() + 1;
        let module = (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains(m));
        if let Some(module) = module {
            found.entry(module).or_insert(line);
        }
    }
    found
}

/// Every `.rs` file under `dir` (the binary's folder aside), by its path relative to src/.
fn sources(src: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(src).unwrap();
        if path.is_dir() {
            if relative != Path::new("bin") {
                sources(src, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && relative != Path::new("lib.rs") {
            let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
            out.insert(module_path(relative), (is_mod_rs, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// Where module `name`'s file is, for messages.
fn file_of(name: &str, graph: &BTreeMap<String, (bool, BTreeMap<String, usize>)>) -> String {
    let base = name.replace("::", "/");
    if graph[name].0 {
        format!("src/{base}/mod.rs")
    } else {
        format!("src/{base}.rs")
    }
}

#[test]
fn the_modules_of_src_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&src, &src, &mut files);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let full: BTreeMap<String, (bool, BTreeMap<String, usize>)> = files
        .iter()
        .map(|(name, (is_mod_rs, source))| {
            let mut used = uses(name, source, &modules);
            used.remove(name);
            (name.clone(), (*is_mod_rs, used))
        })
        .collect();
    let graph: BTreeMap<String, BTreeMap<String, usize>> =
        full.iter().map(|(name, (_, used))| (name.clone(), used.clone())).collect();
    assert!(graph["session"].contains_key("node"), "the parser sees `use crate::{{...}}` groups");
    assert!(graph["transports::ws"].contains_key("transports::admission"), "the parser sees `crate::x::y` paths");
    assert!(graph["node::catalog::watch"].contains_key("node::catalog"), "the parser sees `super::` paths");

    // Depth-first search for a back edge; report the cycle it closes.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, usize>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            return Some(path[at..].iter().copied().chain([node]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph[node].keys() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("  {} line {} uses {}", file_of(w[0], &full), graph[w[0]][w[1]], w[1]))
                .collect();
            panic!("import cycle {}:\n{}", cycle.join(" -> "), edges.join("\n"));
        }
    }
}
