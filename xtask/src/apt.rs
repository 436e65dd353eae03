//! The system's apt sources, read and never changed: where the kernel source and the Debian
//! guest's packages come from.

use std::fs;

/// One binary (`deb`) source: a URI and a suite.
#[derive(Debug, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suite: String,
}

/// The texts of /etc/apt/sources.list and of sources.list.d's `.list` and `.sources` files,
/// in apt's order (the directory sorted by name).
pub fn source_texts() -> Vec<String> {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(fs::read_to_string(&f).unwrap_or_default());
            }
        }
    }
    texts
}

/// The `deb` sources of one file: deb822 stanzas (every URI with every suite; `deb-src`
/// stanzas left out), then one-line entries (`deb [options] URI suite components`).
pub fn sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if field("Types:").is_some_and(|t| !t.split_whitespace().any(|t| t == "deb")) {
            continue;
        }
        if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
            for uri in uris.split_whitespace() {
                for suite in suites.split_whitespace() {
                    out.push(Source {
                        uri: uri.to_string(),
                        suite: suite.to_string(),
                    });
                }
            }
        }
    }
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut words = rest.split_whitespace().skip_while(|w| w.starts_with('['));
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(Source {
                uri: uri.to_string(),
                suite: suite.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line_sources() {
        let text = "Types: deb\nURIs: http://a/debian http://b/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb-src\nURIs: http://a/debian\nSuites: trixie\n\n\
                    deb [signed-by=/k.gpg] http://a/debian-security bookworm-security main\n\
                    deb-src http://a/debian bookworm main\n";
        let got: Vec<(String, String)> = sources(text)
            .into_iter()
            .map(|s| (s.uri, s.suite))
            .collect();
        let want = [
            ("http://a/debian", "bookworm"),
            ("http://a/debian", "bookworm-updates"),
            ("http://b/debian", "bookworm"),
            ("http://b/debian", "bookworm-updates"),
            ("http://a/debian-security", "bookworm-security"),
        ];
        assert_eq!(
            got,
            want.map(|(u, s)| (u.to_string(), s.to_string())).to_vec()
        );
    }
}
