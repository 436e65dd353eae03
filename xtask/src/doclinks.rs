//! The documentation's links and file paths lead somewhere: every relative link of README.md
//! and docs/*.md names a file that exists (and a heading of it, for `#anchor`), and every
//! repository path written in backquotes exists.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md and every file of docs/.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![repo().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    more.sort();
    docs.extend(
        more.into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Markdown text without its fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// Words in backquotes that name a file or directory of the repository.
fn repo_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 9] = [
        "rxdsk-kmod/",
        "rxdsk-ioctl/",
        "rxdsk-layout/",
        "rxdsk-ctl/",
        "rxdsk-kbench/",
        "xtask/",
        "qemu-tests/",
        "docs/",
        ".ci/",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| TOP.iter().any(|t| w.starts_with(t)))
        .filter(|w| !w.contains([' ', '<', '*', '{', '$']))
        .map(str::to_string)
        .collect()
}

#[test]
fn links_and_paths_lead_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let name = doc
            .strip_prefix(repo())
            .unwrap_or(&doc)
            .display()
            .to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = match file {
                "" => doc.clone(),
                f => doc.parent().unwrap_or(Path::new(".")).join(f),
            };
            if !target.exists() {
                broken.push(format!("{name}: link to {link}: no such file"));
            } else if !anchor.is_empty() && !anchors(&read(&target)).iter().any(|a| a == anchor) {
                broken.push(format!("{name}: link to {link}: no such heading"));
            }
        }
        for path in repo_paths(&text) {
            if !repo().join(&path).exists() {
                broken.push(format!("{name}: `{path}`: no such file"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_checks_find_what_they_look_for() {
    assert_eq!(
        slug("Proof in a real distribution: `cargo xtask test-distro`"),
        "proof-in-a-real-distribution-cargo-xtask-test-distro"
    );
    assert_eq!(
        slug("Compression: zram's job, with what zram lacks"),
        "compression-zrams-job-with-what-zram-lacks"
    );
    let text = "See [a](docs/a.md#x) and `xtask/src/main.rs`, not `target/x` or\n\
                ```\n[b](c)\n```\n## A heading\n";
    assert_eq!(links(text), ["docs/a.md#x"]);
    assert_eq!(repo_paths(text), ["xtask/src/main.rs"]);
    assert_eq!(anchors(text), ["a-heading"]);
    assert!(documents().len() >= 5, "README.md and docs/*.md");
}
