//! The house's layout. A module that uses another (`crate::a::b` or
//! `super::x` anywhere in its files) sits above it; a circle would mean
//! rooms that cannot be understood, tested or moved apart. Checked:
//!
//! - no import circle between sibling modules at any depth (`wire::connection`
//!   and `wire::transport` as much as `client` and `media`); a module using
//!   its own parent or child is no circle;
//! - the two sides stay apart: `client` never uses `server`, nor `server`
//!   `client` (what both need lives below both: `gate`, `process`, `wire`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below the crate root (`["wire", "transport"]`).
type Module = Vec<String>;

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file under `src/` is (`wire/transport/mod.rs` → wire::transport).
fn module_of(rel: &Path) -> Module {
    let mut parts: Module = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of `text` before its tests, without `//` comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `text` names from within `module`: `crate::a::b`, `super::c`
/// (resolved against `module`), and each member of a `{…}` group after them.
fn used_paths(module: &[String], text: &str) -> Vec<Module> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let head = if starts_word && rest.starts_with("crate::") {
            Some((Vec::new(), 7))
        } else if starts_word && rest.starts_with("super::") {
            Some((module[..module.len().saturating_sub(1)].to_vec(), 7))
        } else {
            None
        };
        let Some((mut base, skip)) = head else {
            i += 1;
            continue;
        };
        i += skip;
        // Segments: idents separated by `::`, `super` going up.
        loop {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let seg: String = bytes[start..i].iter().collect();
            if seg.is_empty() {
                break;
            }
            if seg == "super" {
                base.pop();
            } else {
                base.push(seg);
            }
            if bytes.get(i) == Some(&':') && bytes.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                break;
            }
        }
        if bytes.get(i) == Some(&'{') {
            let end = bytes[i..]
                .iter()
                .position(|&c| c == '}')
                .map_or(bytes.len(), |e| i + e);
            let group: String = bytes[i + 1..end].iter().collect();
            for member in group.split(',') {
                // `a::b::c`, `a::b as c` or `self`: its path up to the first non-path part.
                let mut p = base.clone();
                for seg in member.trim().split("::") {
                    let seg: String = seg.chars().take_while(|&c| is_ident(c)).collect();
                    if seg.is_empty() || seg == "self" {
                        break;
                    }
                    p.push(seg);
                }
                if p.len() > base.len() {
                    out.push(p);
                }
            }
            i = end;
        }
        out.push(base);
    }
    out
}

/// Module → the modules it uses, with the files that do.
fn graph() -> BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let entries: Vec<(Module, String, String)> = all
        .iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            if rel.starts_with("bin") {
                return None;
            }
            let text = std::fs::read_to_string(path).unwrap();
            Some((module_of(rel), rel.display().to_string(), code(&text)))
        })
        .collect();
    let modules: BTreeSet<Module> = entries.iter().map(|(m, _, _)| m.clone()).collect();
    // The longest prefix of `p` that is a module.
    let resolve = |p: &Module| -> Option<Module> {
        (1..=p.len())
            .rev()
            .map(|n| p[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut g: BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> = BTreeMap::new();
    for (module, file, text) in &entries {
        for used in used_paths(module, text).iter().filter_map(&resolve) {
            if &used != module {
                g.entry(module.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(file.clone());
            }
        }
    }
    g
}

/// The edges between siblings: for each parent, child → the children it uses
/// (through any module below them), with the files.
fn sibling_edges(
    g: &BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>,
) -> BTreeMap<Module, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>> {
    let mut levels: BTreeMap<Module, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>> =
        BTreeMap::new();
    for (a, uses) in g {
        for (b, files) in uses {
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            if common == a.len() || common == b.len() {
                continue; // parent and descendant
            }
            levels
                .entry(a[..common].to_vec())
                .or_default()
                .entry(a[common].clone())
                .or_default()
                .entry(b[common].clone())
                .or_default()
                .extend(files.iter().cloned());
        }
    }
    levels
}

/// A circle through `start`, as the nodes along it, if there is one.
fn circle_from(
    g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    start: &str,
) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// The circles between siblings of `g`, each said with the files behind its arrows.
fn circles(g: &BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, level) in sibling_edges(g) {
        let prefix = if parent.is_empty() {
            String::new()
        } else {
            format!("{}::", parent.join("::"))
        };
        let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for child in level.keys() {
            if let Some(path) = circle_from(&level, child) {
                if !seen.insert(path.iter().cloned().collect()) {
                    continue; // the same circle, from another of its modules
                }
                let why: Vec<String> = path
                    .windows(2)
                    .map(|w| {
                        let files: Vec<&String> = level[&w[0]][&w[1]].iter().collect();
                        format!("{prefix}{} → {prefix}{} (in {files:?})", w[0], w[1])
                    })
                    .collect();
                found.push(why.join("; "));
            }
        }
    }
    found
}

#[test]
fn no_import_circle_between_sibling_modules_at_any_depth() {
    let found = circles(&graph());
    assert!(
        found.is_empty(),
        "import circles between modules (move what both need below both):\n{}",
        found.join("\n")
    );
}

#[test]
fn client_and_server_never_use_each_other() {
    let g = graph();
    let mut crossings = Vec::new();
    for (a, uses) in &g {
        for (b, files) in uses {
            let (from, to) = (a[0].as_str(), b[0].as_str());
            if (from, to) == ("client", "server") || (from, to) == ("server", "client") {
                crossings.push(format!(
                    "{} → {} (in {files:?})",
                    a.join("::"),
                    b.join("::")
                ));
            }
        }
    }
    assert!(
        crossings.is_empty(),
        "one side uses the other (move what both need below both):\n{}",
        crossings.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_plain_and_super_uses() {
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    let text = "use crate::wire::{a, b};\nuse crate::{media::x, stats};\nlet n = crate::DEFAULT_PORT; use super::super::gate::X; super::y::z()";
    let got = used_paths(&m("server::stage::pool"), text);
    for want in [
        "wire::a",
        "wire::b",
        "wire",
        "media::x",
        "stats",
        "DEFAULT_PORT",
        "server::gate::X",
        "server::stage::y::z",
    ] {
        assert!(got.contains(&m(want)), "{want} not in {got:?}");
    }
}

#[test]
fn the_checker_finds_a_circle_between_nested_siblings() {
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    let mut g: BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(m(a))
            .or_default()
            .entry(m(b))
            .or_default()
            .insert(format!("{a}.rs"));
    };
    edge("wire::connection", "wire::stream");
    edge("wire::stream::websocket", "wire::connection");
    edge("wire::stream::websocket", "wire::stream"); // a child using its parent: no circle
    let found = circles(&g);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("wire::connection → wire::stream"),
        "{found:?}"
    );
}
