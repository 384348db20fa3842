//! Architecture invariants, checked as ordinary tests so `cargo test` enforces them.
//!
//! Every crate under `crates/` must be classified in [`CRATES`]; a new crate
//! that is not fails the test until someone decides what rules bind it.

use crate::tools::root;
use std::{fs, path::Path};

/// What rules bind a crate.
#[derive(Clone, Copy, PartialEq)]
#[allow(
    dead_code,
    reason = "variants are used as the broker, client and CLI crates land"
)]
enum Kind {
    /// Sans-IO core: `no_std`, no clock, no I/O, no ambient RNG, no spawning.
    CoreNoStd,
    /// Sans-IO core with a std shell: the listed source subdirectories or
    /// files are the core and obey the core rules; the rest may do I/O.
    CoreWithShell(&'static [&'static str]),
    /// A std crate held to the core rules everywhere except the listed
    /// source files (a binary's runner): the deterministic simulator.
    CoreExcept(&'static [&'static str]),
    /// An I/O crate (client, CLI, tools).
    Shell,
}

const CRATES: &[(&str, Kind)] = &[
    ("tern-codec", Kind::CoreNoStd),
    ("tern-topic", Kind::CoreNoStd),
    ("tern-session", Kind::CoreNoStd),
    ("tern-broker", Kind::CoreWithShell(&["core"])),
    ("tern-client", Kind::Shell),
    // Bridges: a tern-client connection on each side, inside the broker.
    ("tern-bridge", Kind::Shell),
    // The cluster's NATS link: a connection, tasks and the wall clock.
    ("tern-cluster", Kind::Shell),
    // The reference std driver: threads, sockets and the wall clock.
    ("tern-blocking", Kind::Shell),
    ("tern-cli", Kind::Shell),
    // The durable store: a database file and the thread that writes it.
    ("tern-store", Kind::Shell),
    // Black-box tests over real sockets, with wall-clock timeouts.
    ("tern-conformance", Kind::Shell),
    // Determinism is the simulator's point: no clock, threads, I/O or
    // HashMap, except in the binary that runs seeds on worker threads.
    ("tern-sim", Kind::CoreExcept(&["main.rs"])),
    // Starts and stops brokers as child processes for xtask and the tests.
    ("tern-testkit", Kind::Shell),
];

/// Text that must not appear in core source: each reads a clock, does I/O,
/// spawns, or brings in non-deterministic iteration or randomness.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "rand::",
    "getrandom",
    "HashMap",
    "HashSet",
    "tokio",
    "std::thread",
    "std::net",
    "std::fs",
    "std::io",
    "async fn",
];

/// What a core crate's `clippy.toml` must disallow: every way std reads a
/// clock, and the usual I/O, spawning and unordered collections.
const DISALLOWED_IN_CLIPPY_TOML: &[&str] = &[
    "std::time::Instant::now",
    "std::time::Instant::elapsed",
    "std::time::SystemTime::now",
    "std::time::SystemTime::elapsed",
    "std::thread::spawn",
    "std::thread::sleep",
    "std::collections::HashMap",
    "std::collections::HashSet",
    "std::net::TcpStream",
    "std::fs::File",
];

fn check_clippy_toml(name: &str, clippy: &Path, problems: &mut Vec<String>) {
    let text = fs::read_to_string(clippy).unwrap_or_default();
    for path in DISALLOWED_IN_CLIPPY_TOML {
        if !text.contains(&format!("path = \"{path}\"")) {
            problems.push(format!("{name}: clippy.toml must disallow `{path}`"));
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without `//` comments, so docs may mention what code may not use.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether an attribute is exactly `#[cfg(test)]`.
fn is_cfg_test(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg")
        && attr
            .parse_args::<syn::Ident>()
            .is_ok_and(|ident| ident == "test")
}

/// Collects the spans of every `#[cfg(test)]` item, at any depth.
#[derive(Default)]
struct TestItems {
    spans: Vec<proc_macro2::Span>,
}

impl TestItems {
    fn note(&mut self, attrs: &[syn::Attribute], span: proc_macro2::Span) -> bool {
        let test_only = attrs.iter().any(is_cfg_test);
        if test_only {
            self.spans.push(span);
        }
        test_only
    }
}

impl<'ast> syn::visit::Visit<'ast> for TestItems {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        use syn::spanned::Spanned;
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::ExternCrate(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::ForeignMod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::TraitAlias(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if !self.note(attrs, item.span()) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        use syn::spanned::Spanned;
        let attrs: &[syn::Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !self.note(attrs, item.span()) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        use syn::spanned::Spanned;
        let attrs: &[syn::Attribute] = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !self.note(attrs, item.span()) {
            syn::visit::visit_trait_item(self, item);
        }
    }
}

/// The source with every `#[cfg(test)]` item blanked out (tests may use std
/// freely) and everything else kept, parsed with syn so that production
/// code after a test-only item is still checked. A file that is test-only
/// as a whole (`#![cfg(test)]`) becomes empty.
fn without_test_items(text: &str) -> Result<String, String> {
    let file = syn::parse_file(text).map_err(|e| {
        let at = e.span().start();
        format!("does not parse at {}:{}: {e}", at.line, at.column)
    })?;
    if file.attrs.iter().any(is_cfg_test) {
        return Ok(String::new());
    }
    let mut items = TestItems::default();
    syn::visit::Visit::visit_file(&mut items, &file);
    let mut lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
    for span in items.spans {
        // Lines are 1-based, columns 0-based in chars; the end is exclusive.
        let (start, end) = (span.start(), span.end());
        for line in start.line..=end.line {
            let Some(chars) = lines.get_mut(line - 1) else {
                continue;
            };
            let from = if line == start.line { start.column } else { 0 };
            let to = if line == end.line {
                end.column.min(chars.len())
            } else {
                chars.len()
            };
            for c in chars.iter_mut().take(to).skip(from) {
                *c = ' ';
            }
        }
    }
    Ok(lines
        .iter()
        .map(|l| l.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\n"))
}

fn check_core_files(files: &[std::path::PathBuf], problems: &mut Vec<String>) {
    for file in files {
        let source = fs::read_to_string(file).expect("readable source");
        let text = match without_test_items(&source) {
            Ok(text) => code_only(&text),
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for needle in FORBIDDEN_IN_CORE {
            if text.contains(needle) {
                problems.push(format!("{}: core code uses `{needle}`", file.display()));
            }
        }
    }
}

#[test]
fn every_crate_is_classified() {
    let mut unclassified = Vec::new();
    for entry in fs::read_dir(root().join("crates")).expect("crates/ exists") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .into_string()
            .expect("utf-8 name");
        if !CRATES.iter().any(|(c, _)| *c == name) {
            unclassified.push(name);
        }
    }
    assert!(
        unclassified.is_empty(),
        "classify these crates in xtask/src/tidy.rs: {unclassified:?}"
    );
}

#[test]
fn core_crates_do_no_io_read_no_clock_and_stay_deterministic() {
    let mut problems = Vec::new();
    for (name, kind) in CRATES {
        let src = root().join("crates").join(name).join("src");
        let mut files = Vec::new();
        match kind {
            Kind::CoreNoStd => {
                let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
                if !lib.contains("#![no_std]") {
                    problems.push(format!("{name}: core crate is not #![no_std]"));
                }
                let clippy = root().join("crates").join(name).join("clippy.toml");
                check_clippy_toml(name, &clippy, &mut problems);
                rust_files(&src, &mut files);
            }
            Kind::CoreWithShell(core_paths) => {
                let clippy = root().join("crates").join(name).join("clippy.toml");
                check_clippy_toml(name, &clippy, &mut problems);
                for p in *core_paths {
                    let path = src.join(p);
                    if path.is_dir() {
                        rust_files(&path, &mut files);
                    } else {
                        files.push(path);
                    }
                }
            }
            Kind::CoreExcept(shell) => {
                let clippy = root().join("crates").join(name).join("clippy.toml");
                check_clippy_toml(name, &clippy, &mut problems);
                rust_files(&src, &mut files);
                files.retain(|f| !shell.iter().any(|s| f.ends_with(s)));
            }
            Kind::Shell => {}
        }
        check_core_files(&files, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "architecture invariants broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn library_crates_forbid_unsafe() {
    for (name, _) in CRATES {
        let lib = root().join("crates").join(name).join("src/lib.rs");
        if let Ok(text) = fs::read_to_string(&lib) {
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "{name}: lib.rs must #![forbid(unsafe_code)]"
            );
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let command = "cargo xtask ci";
    assert!(readme.contains(command), "README must give `{command}`");
    assert!(ci.contains(command), ".ci/run must call `{command}`");
}

#[test]
fn the_tidy_check_can_fail() {
    let dir = std::env::temp_dir().join(format!("tern-tidy-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.rs");
    fs::write(
        &file,
        "fn f() { let _ = std::time::Instant::now(); }\n// HashMap in a comment is fine\n",
    )
    .unwrap();
    let mut problems = Vec::new();
    check_core_files(&[file], &mut problems);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("Instant::now"));
}

/// Production code after a `#[cfg(test)]` item is still checked: the old
/// reader stopped at the first `#[cfg(test)]` and would pass this file.
#[test]
fn code_after_a_test_only_item_is_checked() {
    let dir = std::env::temp_dir().join(format!("tern-tidy-after-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("after.rs");
    fs::write(
        &file,
        "struct S;\n\
         impl S {\n\
             #[cfg(test)]\n\
             fn test_only(&self) -> std::collections::HashMap<u8, u8> { Default::default() }\n\
             fn production(&self) { let _ = std::time::Instant::now(); }\n\
         }\n\
         #[cfg(test)]\n\
         mod tests {\n\
             #[test]\n\
             fn t() { let _: std::collections::HashSet<u8> = Default::default(); }\n\
         }\n\
         fn after_the_tests() { std::thread::yield_now(); }\n",
    )
    .unwrap();
    let mut problems = Vec::new();
    check_core_files(&[file], &mut problems);
    fs::remove_dir_all(&dir).unwrap();
    let found: Vec<&str> = FORBIDDEN_IN_CORE
        .iter()
        .copied()
        .filter(|n| problems.iter().any(|p| p.ends_with(&format!("`{n}`"))))
        .collect();
    assert_eq!(found, ["Instant::now", "std::thread"], "{problems:?}");
}

/// A test-only item's text is blanked exactly, and nothing else is.
#[test]
fn only_cfg_test_items_are_left_out() {
    let text = "fn a() {}\n#[cfg(test)] fn b() {}\n#[cfg(not(test))] fn c() {}\n";
    let kept = without_test_items(text).unwrap();
    assert!(kept.contains("fn a()"), "{kept}");
    assert!(!kept.contains("fn b()"), "{kept}");
    assert!(kept.contains("fn c()"), "{kept}");
    assert_eq!(
        without_test_items("#![cfg(test)]\nfn x() {}\n").unwrap(),
        ""
    );
}
