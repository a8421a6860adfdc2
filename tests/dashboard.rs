//! The dashboard the edge's admin port serves, in a real headless Chromium driven over the
//! DevTools protocol (`common::cdp`): sign-in, the tunnel list following a connector as it
//! starts and stops, the detail view, and the filters the page sends to the API.
//!
//! Without Chromium installed these tests say so loudly on stderr and pass, unless
//! `ADIT_REQUIRE_CHROMIUM=1` (as in `.ci/run`) makes a missing Chromium a failure. With
//! `ADIT_SCREENSHOT=PATH` the connector test also saves a PNG of the list.

mod common;

use std::time::Duration;

use common::cdp::Browser;
use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(5);
/// The page refreshes every 2 s; a connector in a debug build registers within a few.
const FOLLOW: Duration = Duration::from_secs(10);

/// `[status, connections]` of the row of tunnel `name`, or `null` while there is none.
fn row(name: &str) -> String {
    format!(
        "(() => {{ const r = document.querySelector('tr[data-tunnel={name:?}]'); \
         return r && [r.querySelector('.status').textContent, \
         r.querySelector('.connections').textContent]; }})()"
    )
}

/// The names of the rows listed, sorted (tunnels created in the same second may come in
/// either order).
const ROWS: &str =
    "[...document.querySelectorAll('#tunnels tbody tr')].map(r => r.dataset.tunnel).sort()";

fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

fn sign_in(browser: &mut Browser, token: &str) {
    browser.wait_for(
        SHORT,
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    );
    let submit = format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('signin-submit').click(); true",
        json!(token)
    );
    browser.eval(&submit);
}

#[test]
fn dashboard_assets_are_public_with_security_headers() {
    let dir = TempDir::new("dash-assets");
    let edge = Edge::start(dir.path());

    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>adit"),
        ("/dashboard.css", "text/css; charset=utf-8", ".badge.active"),
        (
            "/dashboard.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
    ] {
        let response = get(edge.admin, "admin", path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        let policy = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("style-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(response.text().contains(needle), "{path}");

        // HEAD answers as GET does, without the body.
        let head = Client::connect(edge.admin).request("HEAD", "admin", path, None);
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(head.header("content-type"), Some(content_type), "{path}");
        let length = response.body.len().to_string();
        assert_eq!(head.header("content-length"), Some(length.as_str()));
        assert!(head.body.is_empty(), "{path}");
    }

    // The JSON API still wants the token, and only GET serves the page.
    assert_eq!(get(edge.admin, "admin", "/v1/tunnels").status, 401);
    let post = Client::connect(edge.admin).request("POST", "admin", "/", Some(b"x"));
    assert_eq!(post.status, 401);
}

#[test]
fn dashboard_follows_a_connector() {
    let Some(mut browser) = Browser::launch("dashboard_follows_a_connector") else {
        return;
    };
    let dir = TempDir::new("dash");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    edge.create_tunnel("api-staging");
    edge.create_tunnel("blog");
    let origin = start_origin();

    browser.navigate(&format!("http://{}/", edge.admin));

    // A wrong token: the form says so and keeps nothing.
    sign_in(&mut browser, "not-the-token");
    browser.wait_value(
        SHORT,
        "the wrong-token message",
        "!document.getElementById('signin-error').hidden && \
         document.getElementById('signin-error').textContent",
        json!("wrong token"),
    );
    assert_eq!(browser.eval("sessionStorage.length"), json!(0));

    sign_in(&mut browser, &edge.token);
    browser.wait_value(SHORT, "web inactive", &row("web"), json!(["inactive", "0"]));
    // A reload would drop this mark; the updates below must come without one.
    browser.eval("window.notReloaded = true");
    let href = browser.eval("location.href");
    assert_eq!(href, json!(format!("http://{}/", edge.admin)));

    let mut connector = start_connector_with(dir.path(), "web", &cred, &origin_rule(origin), 2);
    browser.wait_value(FOLLOW, "web active", &row("web"), json!(["active", "2"]));
    browser.wait_for(
        SHORT,
        "the updated time",
        "/^updated \\d\\d:\\d\\d:\\d\\d$/.test(document.getElementById('updated').textContent)",
    );
    if let Some(path) = std::env::var_os("ADIT_SCREENSHOT") {
        browser.screenshot(std::path::Path::new(&path), 1280, 720);
    }

    browser.eval("document.querySelector('tr[data-tunnel=\"web\"]').click(); true");
    browser.wait_value(
        SHORT,
        "the detail view",
        "document.body.dataset.view === 'detail' && document.getElementById('d-name').textContent",
        json!("web"),
    );
    let live = count("#connections tbody tr[data-connection]");
    browser.wait_value(SHORT, "2 live connections", &live, json!(2));
    let routes = "[...document.querySelectorAll('#d-routes li')].map(li => li.textContent)";
    assert_eq!(browser.eval(routes), json!(["web.test"]));

    connector.terminate();
    assert!(connector.wait_exit(Duration::from_secs(40)).is_some());
    let status = "document.getElementById('d-status').textContent";
    browser.wait_value(FOLLOW, "web inactive in detail", status, json!("inactive"));
    browser.wait_value(SHORT, "no live connections", &live, json!(0));

    browser.eval("document.getElementById('back').click(); true");
    browser.wait_value(
        FOLLOW,
        "web inactive",
        &row("web"),
        json!(["inactive", "0"]),
    );

    assert_eq!(browser.eval("window.notReloaded === true"), json!(true));
    let href = browser
        .eval("location.href")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !href.contains(&edge.token),
        "the token is in the URL: {href}"
    );

    // Signing out forgets the token; signing in again comes back to the list.
    browser.eval("document.getElementById('sign-out').click(); true");
    browser.wait_for(
        SHORT,
        "the sign-in form",
        "!document.getElementById('signin').hidden",
    );
    assert_eq!(browser.eval("sessionStorage.length"), json!(0));
    sign_in(&mut browser, &edge.token);
    browser.wait_value(
        SHORT,
        "the list again",
        &row("web"),
        json!(["inactive", "0"]),
    );

    // The closed connections' history comes from the control plane's connection records:
    // the two that served, and any the connector moved to another edge worker on the way.
    let history = edge.info("web")["history"].as_array().unwrap().len();
    assert!(history >= 2, "{history} closed connections recorded");
    browser.eval("document.querySelector('tr[data-tunnel=\"web\"]').click(); true");
    let closed = count("#history tbody tr[data-connection]");
    browser.wait_value(
        SHORT,
        "every closed connection in the history",
        &closed,
        json!(history),
    );
}

#[test]
fn dashboard_filters_query_the_api() {
    let Some(mut browser) = Browser::launch("dashboard_filters_query_the_api") else {
        return;
    };
    let dir = TempDir::new("dash-filters");
    let edge = Edge::start(dir.path());
    edge.create_tunnel("alpha-one");
    edge.create_tunnel("alpha-two");
    let cred = edge.create_tunnel("beta");
    edge.route("beta", "beta.test");
    let origin = start_origin();
    let _connector = start_connector_with(dir.path(), "beta", &cred, &origin_rule(origin), 1);
    edge.wait_connections("beta", 1);

    browser.navigate(&format!("http://{}/", edge.admin));
    sign_in(&mut browser, &edge.token);
    let query = "window.lastListQuery";
    let paging = "sort_by=created&page=1&per_page=50";
    browser.wait_value(SHORT, "the first list query", query, json!(paging));
    browser.wait_value(
        SHORT,
        "every tunnel",
        ROWS,
        json!(["alpha-one", "alpha-two", "beta"]),
    );

    // Typing in the search box, as keystrokes would.
    browser.eval("document.getElementById('f-search').focus(); true");
    browser.page_command("Input.insertText", json!({"text": "alpha"}));
    let searched = format!("search=alpha&{paging}");
    browser.wait_value(SHORT, "the search query", query, json!(searched));

    let pick = |id: &str, value: &str| {
        format!(
            "(() => {{ const e = document.getElementById({id:?}); e.value = {value:?}; \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
        )
    };
    browser.eval(&pick("f-status", "active"));
    let picked = format!("status=active&search=alpha&{paging}");
    browser.wait_value(SHORT, "the status query", query, json!(picked));

    // Every other filter, with the names and formats of the API's query.
    browser.eval(&pick("f-min-uptime", "600s"));
    browser.eval(&pick("f-created-after", "2024-01-01"));
    browser.eval(&pick("f-created-before", "2024-12-31"));
    browser.eval(&pick("f-sort-by", "uptime"));
    browser.eval(
        "for (const id of ['f-invert-sort', 'f-show-deleted']) { const e = \
         document.getElementById(id); e.checked = true; \
         e.dispatchEvent(new Event('change', {bubbles: true})); } true",
    );
    let everything = "status=active&min_uptime=600s&created_after=2024-01-01T00%3A00%3A00Z\
         &created_before=2025-01-01T00%3A00%3A00Z&search=alpha&sort_by=uptime&invert_sort=true\
         &show_deleted=true&page=1&per_page=50";
    browser.wait_value(SHORT, "every filter in the query", query, json!(everything));
    let in_table = browser.eval("document.getElementById('tunnels').dataset.query");
    assert_eq!(in_table, json!(everything));

    // What the rows show depends on the API applying the filters.
    for (id, value) in [
        ("f-status", ""),
        ("f-min-uptime", ""),
        ("f-created-after", ""),
        ("f-created-before", ""),
        ("f-sort-by", "created"),
    ] {
        browser.eval(&pick(id, value));
    }
    browser.eval(
        "for (const id of ['f-invert-sort', 'f-show-deleted']) { const e = \
         document.getElementById(id); e.checked = false; \
         e.dispatchEvent(new Event('change', {bubbles: true})); } true",
    );
    browser.wait_value(SHORT, "the search query again", query, json!(searched));
    let alphas = json!(["alpha-one", "alpha-two"]);
    browser.wait_value(SHORT, "the tunnels named alpha", ROWS, alphas);

    browser.eval(
        "(() => { const s = document.getElementById('f-search'); s.value = ''; \
         s.dispatchEvent(new Event('input', {bubbles: true})); return true; })()",
    );
    browser.eval(&pick("f-status", "active"));
    browser.wait_value(
        SHORT,
        "the status query alone",
        query,
        json!(format!("status=active&{paging}")),
    );
    let active: Value = json!(["beta"]);
    browser.wait_value(SHORT, "the active tunnels", ROWS, active);
}

#[test]
fn dashboard_survives_bad_fragments_and_shows_deleted_tunnels() {
    let Some(mut browser) = Browser::launch("dashboard_survives_bad_fragments") else {
        return;
    };
    let dir = TempDir::new("dash-deleted");
    let edge = Edge::start(dir.path());
    edge.create_tunnel("web");
    edge.create_tunnel("blog");
    let web_id = edge.info("web")["id"].as_str().unwrap().to_owned();
    let blog_id = edge.info("blog")["id"].as_str().unwrap().to_owned();

    browser.navigate(&format!("http://{}/", edge.admin));
    sign_in(&mut browser, &edge.token);
    browser.wait_value(SHORT, "the list", ROWS, json!(["blog", "web"]));

    // A fragment that does not percent-decode: an empty card saying so, the banner and the
    // way back, and the page keeps refreshing.
    browser.eval("location.hash = '#/tunnel/%E0'; true");
    let shown = "document.body.dataset.view === 'detail' && \
         [document.getElementById('d-name').textContent, \
         document.getElementById('error').hidden, \
         document.getElementById('error').textContent, \
         document.getElementById('d-id').textContent, \
         document.getElementById('back').hidden]";
    browser.wait_value(
        SHORT,
        "no such tunnel",
        shown,
        json!([
            "no such tunnel",
            false,
            "No such tunnel: %E0 is not a tunnel name or id",
            "",
            false
        ]),
    );
    // Only the timer can notice a fragment changed without a hashchange event.
    let replace = format!("history.replaceState(null, '', '#/tunnel/{web_id}'); true");
    browser.eval(&replace);
    let name = "document.body.dataset.view === 'detail' && \
         document.getElementById('error').hidden && \
         document.getElementById('d-name').textContent";
    browser.wait_value(FOLLOW, "web after the bad fragment", name, json!("web"));

    // An unknown id: the same empty card, with the API's answer.
    browser.eval("location.hash = '#/tunnel/nope'; true");
    browser.wait_value(
        SHORT,
        "an unknown tunnel",
        shown,
        json!([
            "no such tunnel",
            false,
            "Cannot load the tunnel: tunnel nope does not exist",
            "",
            false
        ]),
    );
    browser.eval("document.getElementById('back').click(); true");
    browser.wait_value(SHORT, "the list again", ROWS, json!(["blog", "web"]));

    // A deleted tunnel, clicked in the list with deleted tunnels shown.
    let out = edge.cli(&["tunnel", "delete", "blog"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    browser.eval(
        "(() => { const e = document.getElementById('f-show-deleted'); e.checked = true; \
         e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()",
    );
    browser.wait_value(SHORT, "blog deleted", &row("blog"), json!(["deleted", "0"]));
    browser.eval("document.querySelector('tr[data-tunnel=\"blog\"]').click(); true");
    let detail = "document.body.dataset.view === 'detail' && \
         [document.getElementById('d-name').textContent, \
         document.getElementById('d-status').textContent, \
         document.getElementById('d-status').className, \
         document.getElementById('d-id').textContent, \
         document.getElementById('d-deleted').hidden, \
         /^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$/.test(\
         document.getElementById('d-deleted').textContent), \
         document.getElementById('d-uptime').textContent, \
         document.getElementById('error').hidden, \
         [...document.querySelectorAll('#d-routes li')].map(li => li.textContent)]";
    browser.wait_value(
        SHORT,
        "the deleted tunnel's card",
        detail,
        json!([
            "blog",
            "deleted",
            "badge deleted",
            blog_id,
            false,
            true,
            "—",
            true,
            ["no routes"]
        ]),
    );
}
