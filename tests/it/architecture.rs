//! The rules ARCHITECTURE.md states about the house, checked against the source: which
//! top-level modules may name which outside crates, that the modules' dependencies form no
//! circle, which modules are leaves, and that the error table of `docs/API.md` lists exactly
//! the codes the service sends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A top-level module (`src/NAME.rs` or `src/NAME/`) and the code of each of its files, with
/// comments and `#[cfg(test)] mod tests` removed.
struct House {
    modules: BTreeMap<String, Vec<(PathBuf, String)>>,
}

impl House {
    fn read() -> House {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut modules: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
        for file in rust_files(&src) {
            let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
            let first = relative
                .components()
                .next()
                .expect("a name")
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if first == "lib" || first == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable");
            modules
                .entry(first)
                .or_default()
                .push((relative, code_of(&text)));
        }
        assert!(
            modules.len() >= 15,
            "found only {} modules under src/",
            modules.len()
        );
        House { modules }
    }

    /// The other top-level modules each module names through `crate::`.
    fn dependencies(&self) -> BTreeMap<&str, BTreeSet<String>> {
        self.modules
            .iter()
            .map(|(module, files)| {
                let mut uses = BTreeSet::new();
                for (_, code) in files {
                    for (at, _) in code.match_indices("crate::") {
                        let preceded = code
                            .get(..at)
                            .unwrap_or_default()
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_');
                        if preceded {
                            continue; // `tutor_crate::` or the like
                        }
                        let name: String = code
                            .get(at + "crate::".len()..)
                            .unwrap_or_default()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if self.modules.contains_key(&name) && name != *module {
                            uses.insert(name);
                        }
                    }
                }
                (module.as_str(), uses)
            })
            .collect()
    }

    /// The files (relative to `src/`) whose code names `krate::`.
    fn files_naming(&self, krate: &str) -> BTreeSet<String> {
        let path = format!("{krate}::");
        self.modules
            .values()
            .flatten()
            .filter(|(_, code)| {
                code.match_indices(&path).any(|(at, _)| {
                    !code
                        .get(..at)
                        .unwrap_or_default()
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                })
            })
            .map(|(file, _)| file.to_string_lossy().replace('\\', "/"))
            .collect()
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A file's code: its unit tests cut off and every `//` comment line dropped, so a module
/// may mention another in its documentation.
fn code_of(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .and_then(|at| text.get(..at))
        .unwrap_or(text);
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which modules (or files) may name each outside crate, as ARCHITECTURE.md says.
const CRATE_HOMES: &[(&str, &[&str])] = &[
    ("tantivy", &["index.rs", "retrieve.rs"]),
    ("axum", &["http/"]),
    ("async_openai", &["llm/openai.rs", "semantic/remote.rs"]),
    ("anyhow", &["cli.rs", "app.rs"]),
];

#[test]
fn outside_crates_are_named_only_where_the_architecture_puts_them() {
    let house = House::read();
    for (krate, homes) in CRATE_HOMES {
        let naming = house.files_naming(krate);
        assert!(
            !naming.is_empty(),
            "no file names {krate}: the scan is broken"
        );
        let strays: Vec<&String> = naming
            .iter()
            .filter(|file| !homes.iter().any(|home| file.starts_with(home)))
            .collect();
        assert!(
            strays.is_empty(),
            "{krate} is named outside {homes:?}: {strays:?}"
        );
    }
}

#[test]
fn the_modules_depend_on_each_other_without_a_circle() {
    let house = House::read();
    let dependencies = house.dependencies();
    // The scan sees what it should: the chat layer uses the index and the models.
    assert!(dependencies["chat"].contains("index") && dependencies["chat"].contains("llm"));
    // Depth-first search; a module met again while it is still open closes a circle.
    fn visit<'a>(
        module: &'a str,
        dependencies: &'a BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| *m == module) {
            panic!(
                "the modules form a circle: {} -> {module}",
                path[at..].join(" -> ")
            );
        }
        path.push(module);
        for next in &dependencies[module] {
            visit(next, dependencies, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in dependencies.keys() {
        visit(module, &dependencies, &mut Vec::new(), &mut done);
    }
    assert_eq!(done.len(), dependencies.len());
}

#[test]
fn the_leaves_know_no_other_module() {
    let house = House::read();
    let dependencies = house.dependencies();
    // The semantic part may use the shared memo table and nothing else of the tutor.
    let leaves: &[(&str, &[&str])] = &[
        ("text", &[]),
        ("ids", &[]),
        ("memo", &[]),
        ("telemetry", &[]),
        ("semantic", &["memo"]),
    ];
    for (leaf, allowed) in leaves {
        let extra: Vec<&String> = dependencies[leaf]
            .iter()
            .filter(|m| !allowed.contains(&m.as_str()))
            .collect();
        assert!(extra.is_empty(), "{leaf} depends on {extra:?}");
    }
}

#[test]
fn the_error_table_in_the_api_document_lists_every_code_with_its_status() {
    let api = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/API.md"))
        .expect("docs/API.md");
    let table = api
        .split_once("### Errors")
        .expect("an Errors section")
        .1
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'));
    let mut documented = BTreeSet::new();
    for row in table {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(status) = cells[1].parse::<u16>() else {
            continue; // the header and its rule
        };
        // Every `code` before the first parenthesis or colon of each comma-separated part.
        for part in cells[2].split("), ") {
            let part = part.split([':', '(']).next().unwrap_or("");
            for code in part.split('`').skip(1).step_by(2) {
                documented.insert((status, code.to_string()));
            }
        }
    }
    let sent: BTreeSet<(u16, String)> = tutor::http::ErrorCode::ALL
        .iter()
        .map(|code| (code.status().as_u16(), code.as_str().to_string()))
        .collect();
    assert_eq!(
        documented, sent,
        "docs/API.md's error table and ErrorCode::ALL differ"
    );
}
