//! The docs' relative links point at files that exist: every `[text](path)` in `docs/*.md`
//! and `grafana/README.md` that is not a URL or an in-page anchor names a file of the
//! repository (an anchor after `#` is not checked).

use std::path::Path;

use crate::support::REPO;

/// The link targets of a Markdown text.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let root = Path::new(REPO);
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.push(root.join("grafana/README.md"));
    assert!(files.len() >= 5, "{files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for link in links(&text) {
            let path = link.split('#').next().unwrap_or_default();
            if path.is_empty() || link.contains("://") {
                continue;
            }
            checked += 1;
            let target = file.parent().expect("a directory").join(path);
            if !target.exists() {
                broken.push(format!("{}: {link}", file.display()));
            }
        }
    }
    assert!(checked >= 20, "{checked} links checked");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
