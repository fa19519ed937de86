//! The shape of `src/`, kept by a test: the layers of DESIGN.md depend in one direction, no
//! module imports one that imports it back, and no file grows past what a newcomer reads in
//! one sitting.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lines a source file may have (tests included).
const MAX_LINES: usize = 600;

/// Every module of the crate: `bus::worker` → its source text, without its `#[cfg(test)]`
/// tail.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix("src")
                    .expect("under src")
                    .with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts
                    .last()
                    .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
                {
                    parts.pop();
                }
                let text = std::fs::read_to_string(&path).expect("source is readable");
                out.insert(parts.join("::"), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// The module a `use` path (`super::x::Y`, `crate::a::b`) names, relative to `from`.
fn target(from: &str, path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let mut base: Vec<&str> = if from.is_empty() {
        vec![]
    } else {
        from.split("::").collect()
    };
    let mut segs = path.split("::").peekable();
    match segs.peek() {
        Some(&"crate") => {
            base.clear();
            segs.next();
        }
        Some(&"super") | Some(&"self") => {}
        _ => return None,
    }
    let mut full = base;
    for s in segs {
        match s {
            "super" => {
                full.pop();
            }
            "self" => {}
            s => full.push(s),
        }
    }
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Each module's imports of other modules of the crate (not of its own ancestors).
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, text) in modules {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut deps = BTreeSet::new();
        for stmt in code.split("use ").skip(1) {
            let Some(stmt) = stmt.split(';').next() else {
                continue;
            };
            let stmt: String = stmt.chars().filter(|c| !c.is_whitespace()).collect();
            let (prefix, items) = match stmt.split_once("::{") {
                Some((p, rest)) => (p.to_string(), rest.trim_end_matches('}').to_string()),
                None => (stmt.clone(), String::new()),
            };
            let mut paths = vec![prefix.clone()];
            // One level of braces is enough to find modules: `super::{a, b::C}`.
            for item in items.split(',').filter(|i| !i.is_empty()) {
                let item = item.split("::{").next().unwrap_or(item);
                paths.push(format!("{prefix}::{item}"));
            }
            for p in paths {
                if let Some(t) = target(name, &p, modules)
                    && t != *name
                    && !name.starts_with(&format!("{t}::"))
                    && !t.is_empty()
                {
                    deps.insert(t);
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    let graph = imports(&modules);
    // Every module reachable from each module: a cycle is a module reaching itself.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            if m == start {
                cycles.push(start.clone());
                break;
            }
            if seen.insert(m.clone())
                && let Some(next) = graph.get(m)
            {
                todo.extend(next.iter());
            }
        }
    }
    assert!(cycles.is_empty(), "modules in an import cycle: {cycles:?}");
}

#[test]
fn the_layers_depend_in_one_direction() {
    let modules = modules();
    let graph = imports(&modules);
    let layer = |m: &str| m.split("::").next().unwrap_or("").to_string();
    // What each layer may import (DESIGN.md, "Layers").
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("contract", &[][..]),
        ("config", &["contract"][..]),
        ("providers", &["contract", "config"][..]),
        (
            "engine",
            &["contract", "config", "providers", "telemetry"][..],
        ),
        ("simulator", &["contract", "config"][..]),
    ]);
    let mut wrong = Vec::new();
    for (m, deps) in &graph {
        let Some(ok) = allowed.get(layer(m).as_str()) else {
            continue;
        };
        for d in deps {
            let l = layer(d);
            if l != layer(m) && !ok.contains(&l.as_str()) {
                wrong.push(format!("{m} imports {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_source_file_is_longer_than_a_sitting() {
    let mut long = Vec::new();
    fn walk(dir: &Path, long: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, long);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path)
                    .expect("readable")
                    .lines()
                    .count();
                if lines > MAX_LINES {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    walk(Path::new("src"), &mut long);
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
