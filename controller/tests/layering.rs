//! The controller's layers, checked on its sources (ARCHITECTURE.md, "Layers of the
//! controller"): no two modules import each other, no cycle, the core imports nothing above it,
//! the workflow driver names no workflow kind's module, and nothing below the transports imports
//! them; the CLI crate has no cycle. A module is a top-level entry of `src/` (a file or a
//! directory); test code is not read.

// A test binary: the helpers below are test code, and a source that cannot be read fails it.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The core: what `Ctl` is made of and what it needs.
const CORE: &[&str] = &[
    "audit",
    "auth",
    "authority",
    "config",
    "ctl",
    "error",
    "hub",
    "ids",
    "jobs",
    "limits",
    "records",
    "registry",
    "roles",
    "sealing",
    "store",
];
/// The driver: plans through `ctl.kinds`, knows no kind.
const DRIVER: &[&str] = &["workflows"];
/// What the driver may import besides the core.
const DRIVER_USES: &[&str] = &["nodes", "settings"];
/// The transports and the composition above the domain.
const TOP: &[&str] = &["server", "web", "kinds", "local"];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The text before a file's `#[cfg(test)] mod tests` block (always its last item here).
fn product_part(src: &str) -> &str {
    let mut at = 0;
    while let Some(i) = src[at..].find("#[cfg(test)]") {
        let after = src[at + i + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod tests") {
            return &src[..at + i];
        }
        at += i + 1;
    }
    src
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `src` names after `crate::`, `crate::{…}` groups included.
fn imports(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at depth 0 of the group.
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        out.insert(ident(&group[k..]).to_string());
                        start = false;
                    }
                    _ => start = false,
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    graph_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// The module graph of a crate's `src`.
fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = src.to_path_buf();
    let mut modules = BTreeSet::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if (p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
            && name != "main"
            && name != "lib"
        {
            modules.insert(name);
        }
    }
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&top) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Comments name modules without importing them.
        let code: String = product_part(&text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let deps = g.entry(top.clone()).or_default();
        for m in imports(&code) {
            if m != top && modules.contains(&m) {
                deps.insert(m);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_reader_sees_imports_in_paths_and_groups() {
    let src = "use crate::a::X;\nuse crate::{b, c::{D, E}, self};\nfn f() { crate::d::g(); }\n\
               #[cfg(test)]\nmod tests { use crate::z; }\n";
    let got: Vec<String> = imports(product_part(src)).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d", "self"]);
}

#[test]
fn no_module_imports_one_that_imports_it_and_there_is_no_cycle() {
    let g = graph();
    assert!(g.len() > 30, "the sources were not found: {g:?}");
    let cs = cycles(&g);
    assert!(cs.is_empty(), "import cycles in the controller: {cs:?}");
}

#[test]
fn the_cli_crate_has_no_cycle_either() {
    let g = graph_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src"));
    assert!(g.len() > 10, "the CLI's sources were not found: {g:?}");
    let cs = cycles(&g);
    assert!(cs.is_empty(), "import cycles in the CLI: {cs:?}");
}

#[test]
fn the_core_imports_only_the_core() {
    let g = graph();
    let mut wrong = Vec::new();
    for m in CORE {
        for d in g.get(*m).into_iter().flatten() {
            if !CORE.contains(&d.as_str()) {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "core modules importing above the core: {wrong:?}"
    );
}

#[test]
fn the_driver_names_no_kind_and_nothing_below_the_top_imports_it() {
    let g = graph();
    let mut wrong = Vec::new();
    for m in DRIVER {
        for d in g.get(*m).into_iter().flatten() {
            if !CORE.contains(&d.as_str()) && !DRIVER_USES.contains(&d.as_str()) {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    for (m, deps) in &g {
        if TOP.contains(&m.as_str()) {
            continue;
        }
        for d in deps {
            if TOP.contains(&d.as_str()) {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken: {wrong:?}");
}
