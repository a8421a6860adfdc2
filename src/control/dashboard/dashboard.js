// The adit edge dashboard. It signs in with the admin token, which stays in this tab's
// sessionStorage and travels only as an `Authorization: Bearer` header (never in the URL),
// lists tunnels from GET /v1/tunnels with the filters as query parameters, shows one
// tunnel's routes and connections from GET /v1/tunnels/{id}, and refreshes itself every two
// seconds while open. Everything is drawn with DOM calls and textContent: nothing the API
// answers is ever parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "adit.adminToken";
  const REFRESH_MS = 2000;
  const PER_PAGE = 50;
  const TYPING_DELAY_MS = 250;

  const $ = (id) => document.getElementById(id);
  const state = { page: 1, timer: null, generation: 0, typing: null };

  class Unauthorized extends Error {}

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) {
      throw new Unauthorized();
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // A body that is not JSON: the status line says enough.
    }
    if (!response.ok) {
      const error = new Error((body && body.error) || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // --- views -------------------------------------------------------------------------

  // The detail view is named in the fragment (#/tunnel/ID) so the browser's back button
  // returns to the list. The answer is null for the list, `{ key }` for a tunnel, or
  // `{ bad }` holding the raw text when it does not percent-decode (someone typed it).
  function openedTunnel() {
    const match = /^#\/tunnel\/([^/]+)$/.exec(location.hash);
    if (!match) return null;
    try {
      return { key: decodeURIComponent(match[1]) };
    } catch (_) {
      return { bad: match[1] };
    }
  }

  function show(view) {
    for (const id of ["signin", "list", "detail"]) {
      $(id).hidden = id !== view;
    }
    $("sign-out").hidden = view === "signin";
    document.body.dataset.view = view;
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function signIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) {
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("signin-error").hidden = true;
    refresh();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(state.timer);
    state.generation += 1;
    showError("");
    $("updated").textContent = "";
    $("signin-error").textContent = message;
    $("signin-error").hidden = !message;
    show("signin");
    $("token").focus();
  }

  // One refresh at a time: a newer call makes the answers of older ones stale, and only
  // the newest schedules the next round. Whatever fails inside, the error shows in the
  // banner and the next round still comes; only signing out stops it.
  async function refresh() {
    clearTimeout(state.timer);
    const generation = ++state.generation;
    try {
      await load(generation);
    } catch (e) {
      if (generation === state.generation) showError("Dashboard error: " + e.message);
    }
    if (generation === state.generation && token()) {
      state.timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  async function load(generation) {
    if (!token()) {
      signOut("");
      return;
    }
    const target = openedTunnel();
    try {
      if (target && target.bad !== undefined) {
        noSuchTunnel("No such tunnel: " + target.bad + " is not a tunnel name or id");
        return;
      }
      if (target) {
        const info = await api("/v1/tunnels/" + encodeURIComponent(target.key));
        if (generation !== state.generation) return;
        renderDetail(info, target.key);
      } else {
        const query = listQuery();
        window.lastListQuery = query;
        $("tunnels").dataset.query = query;
        const list = await api("/v1/tunnels?" + query);
        if (generation !== state.generation) return;
        renderList(list);
      }
      show(target ? "detail" : "list");
      showError("");
      $("updated").textContent = "updated " + clock(new Date());
    } catch (e) {
      if (generation !== state.generation) return;
      if (e instanceof Unauthorized) {
        signOut("wrong token");
        return;
      }
      const message = "Cannot load " + (target ? "the tunnel" : "tunnels") + ": " + e.message;
      if (target && e.status === 404) {
        noSuchTunnel(message);
        return;
      }
      // A card of another tunnel, or half drawn, must not pass for this one.
      if (target && $("detail").dataset.key !== target.key) clearDetail();
      show(target ? "detail" : "list");
      showError(message);
    }
  }

  // An empty card saying so; the back button above it returns to the list.
  function noSuchTunnel(message) {
    clearDetail();
    $("d-name").textContent = "no such tunnel";
    show("detail");
    showError(message);
  }

  function clearDetail() {
    delete $("detail").dataset.key;
    delete $("detail").dataset.tunnel;
    for (const id of ["d-name", "d-status", "d-id", "d-created", "d-deleted", "d-uptime",
      "d-last-active", "d-last-inactive"]) {
      $(id).textContent = "";
    }
    $("d-status").className = "badge";
    $("d-deleted").hidden = $("d-deleted-label").hidden = true;
    $("d-routes").replaceChildren();
    for (const id of ["connections", "history"]) $(id).tBodies[0].replaceChildren();
  }

  // --- the list ----------------------------------------------------------------------

  // The query parameters keep the names of the API's ListQuery.
  function listQuery() {
    const params = [];
    const add = (name, value) => {
      if (value) params.push(name + "=" + encodeURIComponent(value));
    };
    add("name_prefix", $("f-name-prefix").value.trim());
    add("status", $("f-status").value);
    add("min_uptime", $("f-min-uptime").value);
    add("created_after", dayStart($("f-created-after").value, 0));
    add("created_before", dayStart($("f-created-before").value, 1));
    add("search", $("f-search").value.trim());
    add("sort_by", $("f-sort-by").value);
    add("invert_sort", $("f-invert-sort").checked ? "true" : "");
    add("show_deleted", $("f-show-deleted").checked ? "true" : "");
    add("page", String(state.page));
    add("per_page", String(PER_PAGE));
    return params.join("&");
  }

  // A date input's day (local time) as RFC 3339 in UTC; `plusDays` 1 gives the end of the
  // day, so "created until" includes the day picked.
  function dayStart(value, plusDays) {
    const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
    if (!parts) return "";
    const day = new Date(+parts[1], +parts[2] - 1, +parts[3] + plusDays);
    return day.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function renderList(list) {
    const rows = list.tunnels.map(tunnelRow);
    $("tunnels").tBodies[0].replaceChildren(...rows);
    $("tunnels").dataset.total = String(list.total);
    $("empty").hidden = rows.length > 0;

    const pages = Math.max(1, Math.ceil(list.total / Math.max(1, list.per_page)));
    $("pager").hidden = list.total <= list.per_page;
    $("page-info").textContent = "page " + list.page + " of " + pages + " · " +
      list.total + " tunnels";
    $("prev").disabled = list.page <= 1;
    $("next").disabled = list.page >= pages;
  }

  function tunnelRow(tunnel) {
    const row = document.createElement("tr");
    row.dataset.tunnel = tunnel.name;
    row.dataset.id = tunnel.id;
    row.tabIndex = 0;
    if (tunnel.status === "deleted") row.classList.add("deleted");
    const up = tunnel.status === "active" || tunnel.status === "degraded";
    row.append(
      cell(tunnel.name, "name"),
      cell(tunnel.id.slice(0, 8), "id mono", tunnel.id),
      badgeCell(tunnel.status, "status"),
      cell(String(tunnel.connections), "connections num"),
      cell(up ? duration(tunnel.uptime_seconds) : "—", "uptime"),
      cell(when(tunnel.created_at, false), "created", tunnel.created_at),
    );
    row.addEventListener("click", () => openTunnel(tunnel.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openTunnel(tunnel.id);
    });
    return row;
  }

  function openTunnel(id) {
    location.hash = "#/tunnel/" + encodeURIComponent(id);
  }

  // --- one tunnel --------------------------------------------------------------------

  // `key` is the name or id the fragment holds.
  function renderDetail(info, key) {
    $("detail").dataset.key = key;
    $("detail").dataset.tunnel = info.name;
    $("d-name").textContent = info.name;
    badge($("d-status"), info.status);
    $("d-id").textContent = info.id;
    $("d-created").textContent = when(info.created_at, true);
    // Deleted tunnels answer too, with their deletion time and history.
    $("d-deleted").textContent = info.deleted_at ? when(info.deleted_at, true) : "";
    $("d-deleted").hidden = $("d-deleted-label").hidden = !info.deleted_at;
    const up = info.status === "active" || info.status === "degraded";
    $("d-uptime").textContent = up ? duration(info.uptime_seconds) : "—";
    $("d-last-active").textContent =
      info.last_active_at ? when(info.last_active_at, true) : "never";
    $("d-last-inactive").textContent =
      info.last_inactive_at ? when(info.last_inactive_at, true) : "never";

    const routes = info.routes.map((hostname) => {
      const item = document.createElement("li");
      item.textContent = hostname;
      return item;
    });
    if (routes.length === 0) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = "no routes";
      routes.push(item);
    }
    $("d-routes").replaceChildren(...routes);

    fillConnections("connections", info.connections, false, "no live connections");
    fillConnections("history", info.history, true, "no closed connections");
  }

  function fillConnections(tableId, connections, closed, emptyText) {
    const rows = connections.map((connection) => connectionRow(connection, closed));
    if (rows.length === 0) {
      const row = document.createElement("tr");
      const note = cell(emptyText, "none");
      note.colSpan = 8;
      row.append(note);
      rows.push(row);
    }
    $(tableId).tBodies[0].replaceChildren(...rows);
  }

  function connectionRow(connection, closed) {
    const row = document.createElement("tr");
    row.dataset.connection = connection.id;
    row.append(
      cell(connection.connector_id.slice(0, 8), "mono", connection.connector_id),
      cell(connectionIndex(connection), "num"),
      cell(String(connection.edge_worker), "num"),
      cell(connection.origin_addr, "mono"),
      cell(connection.version),
      cell(connection.platform),
      cell(when(connection.opened_at, true)),
    );
    if (closed) {
      row.append(cell(connection.closed_at ? when(connection.closed_at, true) : "—"));
    } else {
      row.append(badgeCell(connection.draining ? "draining" : "active", "state"));
    }
    return row;
  }

  // --- small helpers -----------------------------------------------------------------

  // "1 of 2": the connection's index among the connections its connector asked for.
  function connectionIndex(connection) {
    const asked = connection.ha_connections;
    return asked ? connection.conn_index + " of " + asked : String(connection.conn_index);
  }

  function cell(text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }

  function badgeCell(status, className) {
    const td = document.createElement("td");
    td.className = className;
    const span = document.createElement("span");
    badge(span, status);
    td.append(span);
    return td;
  }

  function badge(element, status) {
    element.className = "badge " + status;
    element.textContent = status;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const days = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const minutes = Math.floor((s % 3600) / 60);
    if (days) return days + "d " + hours + "h";
    if (hours) return hours + "h " + minutes + "m";
    if (minutes) return minutes + "m " + (s % 60) + "s";
    return s + "s";
  }

  const pad = (n) => String(n).padStart(2, "0");

  function clock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  // An RFC 3339 time from the API, shown in local time.
  function when(text, seconds) {
    const date = new Date(text);
    if (Number.isNaN(date.getTime())) return text;
    const day = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate());
    const time = seconds ? clock(date) : pad(date.getHours()) + ":" + pad(date.getMinutes());
    return day + " " + time;
  }

  // --- wiring ------------------------------------------------------------------------

  function filtersChanged() {
    clearTimeout(state.typing);
    state.page = 1;
    refresh();
  }

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    for (const id of ["f-search", "f-name-prefix"]) {
      $(id).addEventListener("input", () => {
        clearTimeout(state.typing);
        state.typing = setTimeout(filtersChanged, TYPING_DELAY_MS);
      });
    }
    for (const id of ["f-status", "f-min-uptime", "f-created-after", "f-created-before",
      "f-sort-by", "f-invert-sort", "f-show-deleted"]) {
      $(id).addEventListener("change", filtersChanged);
    }
    $("prev").addEventListener("click", () => {
      state.page = Math.max(1, state.page - 1);
      refresh();
    });
    $("next").addEventListener("click", () => {
      state.page += 1;
      refresh();
    });
    $("back").addEventListener("click", () => {
      location.hash = "";
    });
    window.addEventListener("hashchange", () => {
      for (const id of ["connections", "history"]) $(id).tBodies[0].replaceChildren();
      refresh();
    });

    if (token()) {
      refresh();
    } else {
      signOut("");
    }
  }

  start();
})();
