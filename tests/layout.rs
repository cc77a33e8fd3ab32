//! The house's layout: no import circle between the library's top-level
//! modules (`cli`, `client`, `server`, `media`, `wire`, …). A module that
//! uses another (`crate::x` anywhere in its files) sits above it; a circle
//! would mean two rooms that cannot be understood, tested or moved apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// The top-level modules `text` names as `crate::x` (also inside
/// `use crate::{x, y::z}`), lower-case names only (upper-case ones are the
/// crate root's items).
fn used_modules(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let names: Vec<String> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(ident).collect()
            }
            None => vec![ident(rest)],
        };
        for n in names {
            if n.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.insert(n);
            }
        }
    }
    out
}

/// Module → the modules it uses, with the files that do.
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for used in used_modules(&text) {
            if used != module {
                g.entry(module.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    g
}

/// A circle through `start`, as the modules along it, if there is one.
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

#[test]
fn no_import_circle_between_modules() {
    let g = graph();
    let mut circles = Vec::new();
    for module in g.keys() {
        if let Some(path) = circle_from(&g, module) {
            let why: Vec<String> = path
                .windows(2)
                .map(|w| {
                    let files: Vec<&String> = g[&w[0]][&w[1]].iter().collect();
                    format!("{} → {} (in {:?})", w[0], w[1], files)
                })
                .collect();
            circles.push(why.join("; "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between modules (move what both need below both):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_uses() {
    let text = "use crate::wire::{a, b};\nuse crate::{media::x, stats};\nlet n = crate::DEFAULT_PORT; crate::shutdown::Shutdown::new()";
    let got: Vec<String> = used_modules(text).into_iter().collect();
    assert_eq!(got, ["media", "shutdown", "stats", "wire"]);
}
