//! The layer map of docs/ARCHITECTURE.md, enforced: every module under `src/` imports only
//! from modules below it. Layers, bottom to top, and within a layer the order in which
//! its modules may use each other:
//!
//! | layer | modules |
//! | --- | --- |
//! | data | dtype, error, caps, quant, desc, reference |
//! | device | bindcache, shaders, context, tensor, qtensor |
//! | plan | plan |
//! | ops | ops |
//! | measure | bench, tuning, calib |
//! | model | model |
//! | train | train |
//! | import | import |
//!
//! A module may name itself and any module earlier in this list; naming a later one is an
//! upward import and fails the test with the file, line and both layers. Since the order
//! is strict, no cycle can cross two top-level modules. A new top-level module must be
//! placed here before it can be used. The CLI (`src/bin`) sits above everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `(layer, modules in order)`, bottom to top.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "data",
        &["dtype", "error", "caps", "quant", "desc", "reference"],
    ),
    (
        "device",
        &["bindcache", "shaders", "context", "tensor", "qtensor"],
    ),
    ("plan", &["plan"]),
    ("ops", &["ops"]),
    ("measure", &["bench", "tuning", "calib"]),
    ("model", &["model"]),
    ("train", &["train"]),
    ("import", &["import"]),
];

/// Position of every module in the strict order, with its layer's name.
fn ranks() -> BTreeMap<&'static str, (usize, &'static str)> {
    let mut out = BTreeMap::new();
    for (layer, modules) in LAYERS {
        for m in *modules {
            let rank = out.len();
            out.insert(*m, (rank, *layer));
        }
    }
    out
}

/// Items the crate root re-exports (`pub use module::{A, B};` in lib.rs), so that
/// `crate::A` resolves to its module.
fn root_reexports(lib_rs: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib_rs.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.insert(item.to_string(), module.to_string());
        }
    }
    out
}

/// One import that breaks the layering.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = ranks();
        let layer = |m: &str| r.get(m).map_or("unknown", |x| x.1);
        write!(
            f,
            "{}:{}: `{}` ({} layer) imports `{}` ({} layer), which is above it",
            self.file,
            self.line,
            self.from,
            layer(&self.from),
            self.to,
            layer(&self.to)
        )
    }
}

/// The top-level module a path under `src/` belongs to, and whether the file is the
/// module's root (where `super::` names the crate root).
fn module_of(rel: &Path) -> Option<(String, bool)> {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [file] if file == "lib.rs" => None,
        [file] => Some((file.trim_end_matches(".rs").to_string(), true)),
        [dir, ..] if dir == "bin" => None,
        [dir, file] => Some((dir.clone(), file == "mod.rs")),
        [dir, ..] => Some((dir.clone(), false)),
        [] => None,
    }
}

/// The first identifier of each path in `crate::{a::b, c}` or `crate::a::b`.
fn heads(after_crate: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = after_crate.strip_prefix('{') {
        // Top-level commas of the group only.
        let mut out = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.push(ident(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.retain(|s| !s.is_empty() && s != "self");
        out
    } else {
        vec![ident(after_crate)]
    }
}

/// Every layering violation in one file's source. `module` is its top-level module;
/// `at_root` says whether `super::` there names the crate root.
fn check_source(
    file: &str,
    module: &str,
    at_root: bool,
    source: &str,
    reexports: &BTreeMap<String, String>,
) -> Vec<Violation> {
    let ranks = ranks();
    let Some(&(own, _)) = ranks.get(module) else {
        return vec![Violation {
            file: file.into(),
            line: 0,
            from: module.into(),
            to: "(not placed in LAYERS)".into(),
        }];
    };
    let mut out = Vec::new();
    // A `use crate::{...}` group may span lines: join each statement's lines first.
    let code: Vec<(usize, String)> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect();
    let mut i = 0;
    while i < code.len() {
        let (line_no, mut text) = code[i].clone();
        // Join an open `crate::{` group with the following lines until it closes.
        let mut j = i;
        while text.contains("crate::{")
            && text.matches('{').count() > text.matches('}').count()
            && j + 1 < code.len()
        {
            j += 1;
            text.push(' ');
            text.push_str(code[j].1.trim());
        }
        i = j + 1;
        let mut targets = Vec::new();
        for (pos, _) in text.match_indices("crate::") {
            // `$crate::` and identifiers ending in `crate` are not paths of this crate.
            let before = text[..pos].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            targets.extend(heads(&text[pos + "crate::".len()..]));
        }
        if at_root {
            for (pos, _) in text.match_indices("super::") {
                let h = heads(&text[pos + "super::".len()..]);
                targets.extend(h.into_iter().filter(|t| ranks.contains_key(t.as_str())));
            }
        }
        for t in targets {
            let target = if ranks.contains_key(t.as_str()) {
                t
            } else if let Some(m) = reexports.get(&t) {
                m.clone()
            } else {
                // A root item that is not a module or a known re-export.
                t
            };
            let rank = ranks.get(target.as_str()).map(|r| r.0);
            if rank.is_none_or(|r| r > own) {
                out.push(Violation {
                    file: file.into(),
                    line: line_no,
                    from: module.into(),
                    to: target,
                });
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let p = entry.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn layers_only_point_down() {
    let src = src_dir();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexports = root_reexports(&lib);
    assert!(
        reexports.contains_key("Context") && reexports.contains_key("Error"),
        "lib.rs re-exports were not parsed: {reexports:?}"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = BTreeMap::new();
    let mut violations = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let Some((module, at_root)) = module_of(rel) else {
            continue;
        };
        *seen.entry(module.clone()).or_insert(0) += 1;
        let text = std::fs::read_to_string(f).unwrap();
        violations.extend(check_source(
            &format!("src/{}", rel.display()),
            &module,
            at_root,
            &text,
            &reexports,
        ));
    }
    // Every placed module exists, and every module is placed (check_source reports
    // unplaced ones as violations).
    for (_, modules) in LAYERS {
        for m in *modules {
            assert!(
                seen.contains_key(*m),
                "LAYERS names `{m}`, which src/ lacks"
            );
        }
    }
    assert!(
        violations.is_empty(),
        "{} upward imports:\n{}",
        violations.len(),
        violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The checker itself catches what it must: upward imports in every syntax the crate
/// uses (a plain path, a `use` group spread over lines, a root re-export, `super::` from
/// a module's root file), and lets downward and same-module imports through.
#[test]
fn checker_flags_upward_imports() {
    let lib = "pub use context::{Context, ContextStats};\npub use error::{Error, Result};\n";
    let re = root_reexports(lib);
    let check = |module: &str, root: bool, src: &str| -> Vec<String> {
        check_source("x.rs", module, root, src, &re)
            .into_iter()
            .map(|v| v.to)
            .collect()
    };
    // Downward, same module, comments: fine.
    assert!(check(
        "ops",
        false,
        "use crate::plan::gemm_kernel;\nuse crate::ops::RowTile;"
    )
    .is_empty());
    assert!(check(
        "plan",
        false,
        "/// See [`crate::ops::gemm`].\nuse crate::desc::gemm::GemmDesc;"
    )
    .is_empty());
    assert!(check("ops", false, "fn f(c: &crate::Context) {}").is_empty());
    // Upward in each form.
    assert_eq!(check("plan", false, "use crate::ops::gemm::gemm;"), ["ops"]);
    assert_eq!(
        check(
            "ops",
            false,
            "use crate::{\n    plan,\n    model::Model,\n};"
        ),
        ["model"]
    );
    assert_eq!(
        check("error", false, "fn f(c: &crate::Context) {}"),
        ["context"]
    );
    assert_eq!(check("context", true, "use super::plan::lookup;"), ["plan"]);
    // Same layer, later module.
    assert_eq!(
        check("bench", false, "use crate::calib::Observer;"),
        ["calib"]
    );
    // `$crate` in a macro is not a path of this crate.
    assert!(check("dtype", false, "$crate::tensor::Tensor").is_empty());
    // An unplaced module is reported.
    assert_eq!(check("newthing", false, ""), ["(not placed in LAYERS)"]);
}
