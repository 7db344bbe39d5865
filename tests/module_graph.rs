//! No import cycles among the gateway's modules (issue 14): each module of src/ names the modules it uses
//! (`use crate::...` and `crate::x::` paths outside comments and unit tests); the graph they make must have no
//! cycle, so each concern can be understood, tested and changed from the modules below it. A new cycle fails
//! here, naming the modules and the lines that close it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The modules `source` uses, each with the first line that does.
fn uses(source: &str, modules: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap_or(source);
    let mut found = BTreeMap::new();
    let mut note = |name: &str, line: usize| {
        if modules.contains(name) {
            found.entry(name.to_string()).or_insert(line);
        }
    };
    let lines: Vec<(usize, &str)> =
        code.lines().enumerate().map(|(i, l)| (i + 1, l.split("//").next().unwrap_or(""))).collect();
    // `crate::name` anywhere, and the first names of a `use crate::{a, b::c, ...};` group.
    let mut group: Option<i32> = None;
    for &(number, line) in &lines {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            note(&name, number);
            let head = line[..at].trim_start();
            if rest.starts_with('{') && (head.starts_with("use") || head.starts_with("pub use")) {
                group = Some(0);
            }
        }
        if let Some(depth) = group.as_mut() {
            let mut word = String::new();
            for c in line.chars() {
                match c {
                    '{' => *depth += 1,
                    '}' => *depth -= 1,
                    _ => {}
                }
                if c.is_alphanumeric() || c == '_' {
                    word.push(c);
                } else {
                    // A name at depth 1 followed by `::`, `,` or `}` is a module of the group (or an item of
                    // the crate root, which is not a module and is ignored).
                    if *depth == 1 && !word.is_empty() {
                        note(&word, number);
                    }
                    word.clear();
                }
            }
            if line.contains(';') {
                group = None;
            }
        }
    }
    found
}

#[test]
fn the_modules_of_src_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            sources.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeMap<String, usize>> = sources
        .iter()
        .map(|(name, source)| {
            let mut used = uses(source, &modules);
            used.remove(name);
            (name.clone(), used)
        })
        .collect();
    assert!(graph["session"].contains_key("node"), "the parser sees `use crate::{{...}}` groups");
    assert!(graph["ws"].contains_key("admission"), "the parser sees `crate::x` paths");

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
                .map(|w| format!("  src/{}.rs line {} uses {}", w[0], graph[w[0]][w[1]], w[1]))
                .collect();
            panic!("import cycle {}:\n{}", cycle.join(" -> "), edges.join("\n"));
        }
    }
}
