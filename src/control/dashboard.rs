//! The dashboard page the admin API serves at `/`: plain HTML, CSS and a little JavaScript
//! from `src/control/dashboard/`, compiled into the binary so there is nothing to build or
//! install. The assets are public (they hold no data); the page signs in with the admin
//! token and reads everything through the token-protected JSON API.

/// One bundled file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("dashboard/index.html"),
};

const CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("dashboard/dashboard.css"),
};

const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("dashboard/dashboard.js"),
};

const ICON: Asset = Asset {
    content_type: "image/svg+xml",
    body: include_str!("dashboard/favicon.svg"),
};

/// The policy sent with every admin answer: the page may load its own script, style and
/// icon and call its own API, nothing else; no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The asset a `GET` of `path` (without its query) names, if any.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/dashboard.css" => Some(CSS),
        "/dashboard.js" => Some(SCRIPT),
        "/favicon.svg" => Some(ICON),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_assets() {
        assert_eq!(asset("/"), Some(INDEX));
        assert_eq!(asset("/index.html"), Some(INDEX));
        assert_eq!(
            asset("/dashboard.css").map(|a| a.content_type),
            Some(CSS.content_type)
        );
        assert_eq!(
            asset("/dashboard.js").map(|a| a.content_type),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("/favicon.svg").map(|a| a.content_type),
            Some("image/svg+xml")
        );
        assert_eq!(asset("/v1/tunnels"), None);
        assert_eq!(asset("/dashboard.js/"), None);
        assert_eq!(asset(""), None);
    }

    #[test]
    fn page_references_only_its_own_files() {
        for reference in ["/dashboard.css", "/dashboard.js", "/favicon.svg"] {
            assert!(
                INDEX.body.contains(&format!("\"{reference}\"")),
                "{reference}"
            );
        }
        // The policy forbids inline script and style, so the page must carry none.
        assert!(!INDEX.body.contains("<script>"));
        assert!(!INDEX.body.contains("<style"));
        assert!(!INDEX.body.contains("style="));
        assert!(!INDEX.body.contains("onclick"));
        assert!(!INDEX.body.contains("http://"));
        assert!(!INDEX.body.contains("https://"));
        assert!(!CSS.body.contains("url("));
    }
}
