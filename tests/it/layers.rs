//! Dependencies run one way: the domain (hooks-domain) reaches no AWS crate
//! and no HTTP client, and within every crate no file imports a file that
//! imports it back; the domain's errors are types a caller can match.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every package `package` depends on, directly or not, for its own build
/// on this platform (normal dependencies: what ships with it).
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_domain_reaches_no_aws_crate_and_no_http_client() {
    let deps = dependencies_of("hooks-domain");
    // The walk works: the domain's own direct dependencies are there.
    for expected in ["serde_json", "cel", "chrono"] {
        assert!(deps.contains(expected), "{expected} not found in {deps:?}");
    }
    let forbidden: Vec<&String> = deps
        .iter()
        .filter(|d| {
            d.starts_with("aws-")
                || d.starts_with("aws_")
                || [
                    "reqwest",
                    "hyper",
                    "lambda_runtime",
                    "lambda_http",
                    "hooks-core",
                ]
                .contains(&d.as_str())
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "hooks-domain depends on {forbidden:?}: adapters belong in hooks-core"
    );
    // And the adapters' crate does reach AWS (the check would see it).
    assert!(dependencies_of("hooks-core").contains("aws-sdk-dynamodb"));
}

/// The modules of a crate: module path → file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut todo = vec![src.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if stem.ends_with("tests") || path.starts_with(src.join("bin")) {
                continue;
            }
            let mut module: Vec<String> = path
                .parent()
                .unwrap()
                .strip_prefix(src)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !["mod", "lib", "main"].contains(&stem) {
                module.push(stem.to_owned());
            }
            found.insert(module, path);
        }
    }
    found
}

/// The module paths a file's code (before its tests, without comments)
/// names: `crate::a::b`, `super::a`, `self::a`, braces expanded one level.
fn references(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or(text)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let parent = &me[..me.len().saturating_sub(1)];
    let mut out = Vec::new();
    let words = code
        .split(|c: char| !(c.is_alphanumeric() || "_:{,".contains(c)))
        .filter(|w| w.contains("::"));
    for word in words {
        let (base, rest) = if let Some(rest) = word.strip_prefix("crate::") {
            (&[][..], rest)
        } else if let Some(rest) = word.strip_prefix("super::") {
            (parent, rest)
        } else if let Some(rest) = word.strip_prefix("self::") {
            (me, rest)
        } else {
            continue;
        };
        for item in rest.trim_start_matches('{').split(',') {
            let mut path = base.to_vec();
            path.extend(
                item.split("::")
                    .map(|s| s.trim_matches(|c| c == '{' || c == '}'))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            out.push(path);
        }
    }
    out
}

/// File-to-file imports of a crate, without a child's imports of its
/// ancestors' module files (a parent re-exporting its children is a facade,
/// not a layer).
fn imports(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mods = modules(src);
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (me, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(&text, me) {
            let target = (0..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|p| mods.contains_key(*p));
            let Some(target) = target else { continue };
            if target == me.as_slice() || me.starts_with(target) {
                continue;
            }
            graph
                .entry(file.clone())
                .or_default()
                .insert(mods[target].clone());
        }
    }
    graph
}

/// A circle of imports, if there is one.
fn circle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.clone());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    for krate in [
        "domain/src",
        "shared/src",
        "cli/src",
        "local/src",
        "functions/ingest/src",
        "functions/dispatch/src",
    ] {
        let graph = imports(&root().join(krate));
        assert!(
            graph.values().map(BTreeSet::len).sum::<usize>() > 0,
            "no imports read in {krate}"
        );
        if let Some(c) = circle(&graph) {
            panic!("an import circle in {krate}: {c:#?}");
        }
    }
}

#[test]
fn the_circle_check_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use crate::a::A;\npub struct B;\n").unwrap();
    let c = circle(&imports(dir.path())).expect("a.rs and b.rs import each other");
    assert_eq!(c.len(), 3, "{c:?}");
}

/// The lines of `text` before its tests that give an error as a bare
/// string: `Result<…, String>` or `type Err = String`.
fn string_errors(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| {
            let l = l.split("//").next().unwrap_or("");
            (l.contains("Result<") && l.replace(' ', "").contains(",String>"))
                || l.replace(' ', "").contains("typeErr=String")
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_domains_errors_are_types_not_strings() {
    let mut found = Vec::new();
    let mut files = 0;
    let mut dirs = vec![root().join("domain/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("tests.rs")
            {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for line in string_errors(&text) {
                    found.push(format!("{}: {line}", path.display()));
                }
            }
        }
    }
    assert!(files > 10, "only {files} files read");
    assert!(
        found.is_empty(),
        "errors that callers can only print, not match: {found:#?}"
    );
    // The scan sees one.
    let sample = "fn f(x: &str) -> Result<u32, String> {\n    Err(x.into())\n}\n";
    assert_eq!(string_errors(sample).len(), 1);
    assert!(string_errors("#[cfg(test)]\nfn f() -> Result<(), String> {}\n").is_empty());
}
