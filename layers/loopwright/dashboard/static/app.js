// loopwright dashboard: vanilla JavaScript, no build step, no third-party code.
// Views: "#/" (loop list), "#/loops/<loop_id>" (one loop), "#/plans?project=<id>" (a project's
// plans) and "#/plans/<plan_id>?project=<id>" (one plan). All URLs are relative to <base>.
// Text from the API is always set with textContent (never parsed as HTML).
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const IDLE_LIST_REFRESH_MS = 10000;
  // Enumerations (phases, outcomes, event types) come from the OpenAPI document: never stale.
  let PHASES = [], OUTCOMES = [], EVENT_TYPES = [];
  const STATUS_COLORS = { MET: "#1b873f", NOT_MET: "#c81e1e", ERROR: "#b45309", TIMEOUT: "#6d28d9", PENDING: "#9aa5b1" };
  const VIEWS = ["list-view", "loop-view", "plans-view", "plan-view"];
  // Plans (seed 003): task states after which a task never changes, and the badge of each status.
  const FINAL_TASK_STATES = new Set(["COMPLETED", "ERROR", "SKIPPED", "CANCELLED"]);
  const PLAN_BADGES = {
    DRAFT: "", DISPATCHING: "badge-running", RUNNING: "badge-running", VERIFYING: "badge-running",
    VERIFIED: "badge-met", FAILED: "badge-failed", CANCELLED: "badge-stopped",
  };
  const TASK_BADGES = {
    CREATED: "", RUNNING: "badge-running", COMPLETED: "badge-met", ERROR: "badge-failed",
    SKIPPED: "badge-limit", CANCELLED: "badge-stopped",
  };
  const GATE_CLASSES = { PASSED: "status-MET", FAILED: "status-NOT_MET", ERROR: "status-ERROR", TIMEOUT: "status-TIMEOUT", SKIPPED: "status-PENDING" };

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let view = { name: "list", loopId: null };
  let listCursor = null;
  let eventsCursor = null;
  let impersonationHeader = null;
  const knownProjects = new Set();

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(sec).padStart(2, "0")}s`;
    return `${sec}s`;
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const actAs = sessionStorage.getItem("loopwright.actAs");
    if (impersonationHeader && actAs) h[impersonationHeader] = actAs;
    const token = sessionStorage.getItem("loopwright.idToken");  // set by a sign-in page (AWS)
    if (token) h.Authorization = token;
    return h;
  }

  class ApiError extends Error {
    constructor(status, error) {
      super(error && error.message ? error.message : `HTTP ${status}`);
      this.status = status;
      this.error = error || {};
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const init = { method: opts.method, headers: headers(opts.body !== undefined ? { "Content-Type": "application/json" } : {}) };
    if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, { code: "unavailable", message: `the dashboard server cannot be reached (${err.message})` });
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data && data.error);
    return data;
  }

  function errorText(err) {
    const e = err.error || {};
    let text = err.message;
    if (e.policy_ids && e.policy_ids.length) text += ` [Cedar policy: ${e.policy_ids.join(", ")}]`;
    if (err.status) text = `${err.status}: ${text}`;
    return text;
  }

  function badgeFor(phase, outcome) {
    // phase: shown phase (INTERRUPTED when no process runs an active loop)
    let cls = "badge", text = phase;
    if (phase === "AWAITING_RESPONSE") { cls += " badge-awaiting"; text = "NEEDS RESPONSE"; }
    else if (phase === "PAUSED") cls += " badge-paused";
    else if (phase === "INTERRUPTED") cls += " badge-interrupted";
    else if (phase === "COMPLETED") {
      text = outcome || "COMPLETED";
      if (outcome === "CONDITIONS_MET") cls += " badge-met";
      else if (outcome === "STOPPED") cls += " badge-stopped";
      else if (outcome === "FAILED") cls += " badge-failed";
      else cls += " badge-limit";
    } else cls += " badge-running";
    return el("span", { className: cls, "data-testid": "status-badge", "data-phase": phase, "data-outcome": outcome || "", text });
  }

  function shownPhase(loop) {
    return loop.shown_phase || loop.phase;
  }

  function setRefreshStatus(text) { $("refresh-status").textContent = text; }

  function schedule(fn, ms) {
    clearTimeout(timer);
    timer = ms ? setTimeout(fn, ms) : null;
  }

  // ------------------------------------------------------------------ identity
  async function loadIdentity() {
    try {
      const who = await api("api/identity");
      impersonationHeader = who.impersonation_header || null;
      const groups = who.groups.length ? ` in ${who.groups.join(", ")}` : "";
      const all = who.operates_all_projects ? " (operates every project)" : "";
      $("identity").textContent = `Signed in as ${who.principal}${groups}${all}`;
      if (impersonationHeader) {
        show($("act-as-wrap"), true);
        $("act-as").value = sessionStorage.getItem("loopwright.actAs") || "";
      }
    } catch (err) {
      $("identity").textContent = `Not signed in: ${errorText(err)}`;
    }
  }

  function onActAsChange() {
    const value = $("act-as").value.trim();
    if (value) sessionStorage.setItem("loopwright.actAs", value);
    else sessionStorage.removeItem("loopwright.actAs");
    loadIdentity();
  }

  // ------------------------------------------------------------------ list view
  function loopRow(loop) {
    const phase = shownPhase(loop);
    const met = loop.conditions.filter((c) => c.required && c.status === "MET").length;
    const required = loop.conditions.filter((c) => c.required).length;
    const link = el("a", { href: `#/loops/${encodeURIComponent(loop.loop_id)}`, "data-testid": "loop-link", text: loop.loop_id });
    const budget = loop.token_budget ? ` / ${loop.token_budget}` : "";
    return el("tr", { "data-testid": "loop-row", "data-loop-id": loop.loop_id, "data-phase": phase },
      el("td", {}, link),
      el("td", { text: loop.project }),
      el("td", { "data-testid": "loop-status" }, badgeFor(phase, loop.outcome)),
      el("td", { "data-testid": "loop-iteration", text: `${loop.iteration} / ${loop.max_iterations}` }),
      el("td", { text: `${loop.tokens_used}${budget}` }),
      el("td", { text: `${met} / ${required}` }),
      el("td", { text: fmtTime(loop.updated_at) }));
  }

  function listQuery(cursor) {
    const params = new URLSearchParams();
    const project = $("filter-project").value.trim();
    const status = $("filter-status").value;
    if (project) params.set("project", project);
    if (status) params.set("status", status);
    if (cursor) params.set("cursor", cursor);
    return `api/loops?${params}`;
  }

  async function loadList(append) {
    try {
      const page = await api(listQuery(append ? listCursor : null));
      const body = $("loops-body");
      if (!append) body.replaceChildren();
      for (const loop of page.items) body.append(loopRow(loop));
      rememberProjects(page.items.map((l) => l.project));
      listCursor = page.next_cursor;
      show($("loops-more"), Boolean(listCursor));
      show($("loops-empty"), !append && page.items.length === 0);
      show($("list-error"), false);
      setRefreshStatus(`updated ${new Date().toLocaleTimeString()}`);
      return page.items.some((l) => l.phase !== "COMPLETED");
    } catch (err) {
      $("list-error").textContent = errorText(err);
      show($("list-error"), true);
      return true;
    }
  }

  async function refreshList() {
    if (view.name !== "list") return;
    const active = await loadList(false);
    if (view.name === "list") schedule(refreshList, active ? REFRESH_MS : IDLE_LIST_REFRESH_MS);
  }

  // ------------------------------------------------------------------ loop view
  function setBar(bar, used, limit) {
    if (!limit) { show(bar, false); return; }
    bar.max = limit;
    bar.value = Math.min(used, limit);
    show(bar, true);
  }

  function renderProgress(p) {
    $("loop-id").textContent = p.loop_id;
    $("loop-phase").replaceWith(Object.assign(badgeFor(p.shown_phase, p.outcome), { id: "loop-phase" }));
    $("loop-phase").setAttribute("data-testid", "loop-phase");
    $("loop-goal").textContent = `${p.project} · ${p.goal}`;
    $("iteration").textContent = `${p.iteration} / ${p.max_iterations}`;
    setBar($("iteration-bar"), p.iteration, p.max_iterations);
    $("tokens").textContent = p.token_budget ? `${p.tokens_used} / ${p.token_budget}` : `${p.tokens_used}`;
    setBar($("tokens-bar"), p.tokens_used, p.token_budget);
    const unpriced = p.unpriced_models && p.unpriced_models.length ? " (+ unpriced tokens)" : "";
    $("cost").textContent = (p.cost_budget_usd ? `${fmtUsd(p.cost_usd)} / ${fmtUsd(p.cost_budget_usd)}` : fmtUsd(p.cost_usd)) + unpriced;
    setBar($("cost-bar"), p.cost_usd, p.cost_budget_usd);
    $("elapsed").textContent = p.max_duration_seconds
      ? `${fmtSeconds(p.elapsed_seconds)} / ${fmtSeconds(p.max_duration_seconds)}` : fmtSeconds(p.elapsed_seconds);
    setBar($("time-bar"), p.elapsed_seconds, p.max_duration_seconds);
    const eta = $("eta");
    eta.textContent = p.eta_seconds === null || p.eta_seconds === undefined ? "—" : `≤ ${fmtSeconds(p.eta_seconds)}`;
    eta.title = p.eta_basis || "no estimate: the loop is not running, or no iteration has completed";
    const features = p.features || [];
    $("features").textContent = features.length
      ? `${p.features_completed} / ${p.features_total}${p.current_feature ? " · now " + p.current_feature : ""}` : "—";
    $("features").title = features.map((f) => `${f.done ? "✓" : "·"} ${f.name}: ${f.description}`).join("\n");
    $("sessions").textContent = `${p.sessions_used || 0}${p.max_sessions ? " / " + p.max_sessions : ""}`;
    $("sessions").title = p.handoff_reason ? `last handoff: ${p.handoff_reason}` : "no session handoff";
    $("progress-summary").textContent = p.stuck_reason ? `stuck: ${p.stuck_reason}` : p.progress_summary || "—";
    $("progress-summary").title = p.progress_summary || "";
    $("outcome").textContent = p.outcome ? `${p.outcome}${p.outcome_reason ? ": " + p.outcome_reason : ""}` : "—";
    $("last-checkpoint").textContent = p.last_checkpoint_id || "—";
    const met = p.outcome === "CONDITIONS_MET";  // only such a loop has an evidence bundle
    show($("evidence-download"), met);
    if (!met) $("evidence-note").textContent = "—";
    else if ($("evidence-note").textContent === "—") $("evidence-note").textContent = "";
    const awaiting = Boolean(p.awaiting_response);
    show($("awaiting"), awaiting);
    $("awaiting-question").textContent = p.awaiting_response || "";
    const pinned = p.pinned_change || [];
    show($("pinned-change"), pinned.length > 0);
    $("pinned-change-paths").textContent = pinned.join(", ");
    if (!pinned.length) $("approve-accept-pinned").checked = false;
    show($("stop-requested"), Boolean(p.stop_requested));
    $("stop-requested").textContent = p.stop_requested ? `Stop requested: ${p.stop_requested}` : "";
    const warnings = $("warnings");
    warnings.replaceChildren(...p.warnings.map((w) => el("li", { text: w })));
    const body = $("conditions-body");
    body.replaceChildren(...p.conditions.map((c) => el("tr", { "data-testid": "condition-row", "data-condition": c.name, "data-status": c.status },
      el("th", { scope: "row", text: c.required ? c.name : `${c.name} (optional)` }),
      el("td", { className: `status-${c.status}`, "data-testid": "condition-status", text: c.status }),
      el("td", { text: c.iteration || "—" }),
      el("td", { text: c.summary }))));
  }

  // The loop's signed evidence file, byte for byte as served (so the download verifies), saved
  // as <loop_id>.json; fetched with the page's headers (on AWS the Cognito ID token).
  async function downloadEvidence() {
    const loopId = view.loopId;
    const note = $("evidence-note");
    note.textContent = "";
    let response;
    try {
      response = await fetch(`api/loops/${encodeURIComponent(loopId)}/evidence`, { headers: headers() });
    } catch (err) {
      note.textContent = `the dashboard server cannot be reached (${err.message})`;
      return;
    }
    if (!response.ok) {
      let data = null;
      try { data = await response.json(); } catch (_) { data = null; }
      note.textContent = errorText(new ApiError(response.status, data && data.error));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `${loopId}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function renderChart(history) {
    const box = $("conditions-chart");
    const evaluations = history.evaluations.slice().sort((a, b) => a.iteration - b.iteration
      || String(a.evaluated_at).localeCompare(String(b.evaluated_at)));
    const names = history.conditions;
    if (!evaluations.length) {
      box.replaceChildren(el("p", { className: "note", "data-testid": "chart-empty", text: "No evaluation yet." }));
      return;
    }
    const width = 720, left = 120, right = 16, top = 12, lineHeight = 110, rowHeight = 18;
    const height = top + lineHeight + 24 + names.length * rowHeight + 8;
    const n = evaluations.length;
    const step = (width - left - right) / Math.max(1, n);
    const maxMet = Math.max(1, names.length);
    const x = (i) => left + step * i + step / 2;
    const y = (met) => top + lineHeight - (met / maxMet) * lineHeight;
    const latest = evaluations[n - 1];
    const label = `Exit conditions over ${n} evaluation(s); latest, iteration ${latest.iteration}: ${latest.met} of ${names.length} met`;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, "data-testid": "chart-svg" },
      svg("title", { text: label }));
    chart.append(svg("line", { x1: left, y1: top + lineHeight, x2: width - right, y2: top + lineHeight, class: "axis" }));
    chart.append(svg("line", { x1: left, y1: top, x2: left, y2: top + lineHeight, class: "axis" }));
    chart.append(svg("text", { x: left - 8, y: top + 4, "text-anchor": "end", text: `${maxMet} met` }));
    chart.append(svg("text", { x: left - 8, y: top + lineHeight, "text-anchor": "end", text: "0" }));
    const points = evaluations.map((e, i) => `${x(i).toFixed(1)},${y(e.met).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, class: "met-line", "data-testid": "chart-met-line" }));
    evaluations.forEach((e, i) => {
      chart.append(svg("circle", { cx: x(i).toFixed(1), cy: y(e.met).toFixed(1), r: 3, fill: "#1d4ed8" },
        svg("title", { text: `iteration ${e.iteration}: ${e.met} met` })));
    });
    const labelEvery = Math.max(1, Math.ceil(n / 12));
    evaluations.forEach((e, i) => {
      if (i % labelEvery === 0 || i === n - 1) {
        chart.append(svg("text", { x: x(i).toFixed(1), y: top + lineHeight + 14, "text-anchor": "middle", text: e.iteration }));
      }
    });
    const rowsTop = top + lineHeight + 24;
    names.forEach((name, r) => {
      const yRow = rowsTop + r * rowHeight;
      chart.append(svg("text", { x: left - 8, y: yRow + 12, "text-anchor": "end", text: name }));
      evaluations.forEach((e, i) => {
        const status = e.statuses[name] || "PENDING";
        chart.append(svg("rect", {
          x: (left + step * i + 1).toFixed(1), y: yRow + 2, width: Math.max(1, step - 2).toFixed(1), height: rowHeight - 4,
          fill: STATUS_COLORS[status] || STATUS_COLORS.PENDING, "data-status": status,
        }, svg("title", { text: `${name}, iteration ${e.iteration}: ${status}` })));
      });
    });
    box.replaceChildren(chart);
  }

  function eventItem(e) {
    return el("li", { "data-testid": "event", "data-type": e.type, "data-iteration": e.iteration },
      el("span", { className: "time", text: fmtTime(e.timestamp) }),
      el("span", { className: "type", text: e.type }),
      el("span", { className: "iter", text: `#${e.iteration}` }),
      el("span", { className: "message", text: e.message }));
  }

  function eventsPath(loopId, cursor) {
    const params = new URLSearchParams({ limit: "50" });
    const type = $("events-type").value;
    if (type) params.set("type", type);
    if (cursor) params.set("cursor", cursor);
    return `api/loops/${encodeURIComponent(loopId)}/events?${params}`;
  }

  async function loadOlderEvents() {
    if (!view.loopId || !eventsCursor) return;
    const page = await api(eventsPath(view.loopId, eventsCursor));
    $("events-list").append(...page.items.map(eventItem));
    eventsCursor = page.next_cursor;
    show($("events-more"), Boolean(eventsCursor));
  }

  function renderCheckpoints(list) {
    $("checkpoints-body").replaceChildren(
      ...list.checkpoints.map((c) => el("tr", { "data-testid": "checkpoint-row", "data-checkpoint-id": c.checkpoint_id },
        el("td", { text: c.checkpoint_id }), el("td", { text: c.iteration }), el("td", { text: fmtTime(c.created_at) }),
        el("td", { text: c.commit ? c.commit.slice(0, 12) : "—" }), el("td", { text: c.valid ? "yes" : "CORRUPT" }))),
      ...list.unreadable.map((id) => el("tr", { "data-testid": "checkpoint-row", "data-checkpoint-id": id },
        el("td", { text: id }), el("td", { text: "—" }), el("td", { text: "—" }), el("td", { text: "—" }), el("td", { text: "unreadable" }))));
  }

  async function loadObservability(loopId) {
    try {
      const [traces, metrics] = await Promise.all([
        api(`api/loops/${encodeURIComponent(loopId)}/traces`),
        api(`api/loops/${encodeURIComponent(loopId)}/metrics`),
      ]);
      $("traces").textContent = traces.traces.length
        ? `${traces.traces.length} X-Ray trace(s); newest ${traces.traces[0].trace_id}`
        : `Traces: ${traces.source}${traces.note ? " — " + traces.note : ""}`;
      const seconds = metrics.loop.series.find((s) => s.name === "iteration_seconds");
      const mean = seconds && seconds.values.length
        ? seconds.values.reduce((a, b) => a + b, 0) / seconds.values.length : null;
      $("metrics").textContent = `Iterations timed: ${seconds ? seconds.values.length : 0}` +
        (mean !== null ? `, mean ${mean.toFixed(1)} s` : "") + `. Service metrics: ${metrics.service.source}.`;
    } catch (err) {
      $("traces").textContent = errorText(err);
    }
  }

  async function refreshLoop() {
    const loopId = view.loopId;
    if (view.name !== "loop" || !loopId) return;
    const id = encodeURIComponent(loopId);
    try {
      const [progress, events, history, checkpoints] = await Promise.all([
        api(`api/loops/${id}`),
        api(eventsPath(loopId, null)),
        api(`api/loops/${id}/conditions?limit=500`),
        api(`api/loops/${id}/checkpoints`),
      ]);
      if (view.loopId !== loopId) return;
      renderProgress(progress);
      renderChart(history);
      $("events-list").replaceChildren(...events.items.map(eventItem));
      eventsCursor = events.next_cursor;
      show($("events-more"), Boolean(eventsCursor));
      renderCheckpoints(checkpoints);
      show($("loop-error"), false);
      const live = !progress.finished;
      setRefreshStatus(live ? `live · updated ${new Date().toLocaleTimeString()}` : `finished · updated ${new Date().toLocaleTimeString()}`);
      document.body.dataset.loopFinished = String(progress.finished);
      if (live) schedule(refreshLoop, REFRESH_MS);  // a finished loop is not refreshed again
      else schedule(null, 0);
    } catch (err) {
      $("loop-error").textContent = errorText(err);
      show($("loop-error"), true);
      if (err.status !== 404) schedule(refreshLoop, REFRESH_MS * 2);
    }
  }

  // ------------------------------------------------------------------ controls
  // US dollars: to the cent, or to the micro-dollar below a cent (cli/display.py format_usd).
  function fmtUsd(dollars) {
    const d = Number(dollars) || 0;
    return d === 0 || d >= 0.01 ? `$${d.toFixed(2)}` : `$${d.toFixed(6).replace(/0+$/, "")}`;
  }

  function intOrNull(input) {
    const v = input.value.trim();
    return v === "" ? null : Number(v);
  }

  async function control(action) {
    const loopId = view.loopId;
    if (!loopId) return;
    const reason = $("control-reason").value;
    const body = {};
    if (reason) body.reason = reason;
    if (action === "approve") {
      const response = $("approve-response").value;
      if (response) body.response = response;
      if ($("approve-accept-pinned").checked) body.accept_pinned_change = true;
    }
    let path = action;
    if (action === "stop-now") {  // stop, ending the running agent or condition at once
      path = "stop";
      body.now = true;
    }
    if (action === "limits") {
      for (const [field, id] of [["max_iterations", "limit-max-iterations"], ["token_budget", "limit-token-budget"],
        ["cost_budget_usd", "limit-cost-budget"], ["max_duration_seconds", "limit-max-duration"]]) {
        const value = intOrNull($(id));
        if (value !== null) body[field] = value;
      }
    }
    if (action === "rollback") body.to_iteration = intOrNull($("travel-iteration"));
    if (action === "fork") {
      body.from_iteration = intOrNull($("travel-iteration"));
      const goal = $("fork-goal").value.trim(), newId = $("fork-loop-id").value.trim();
      if (goal) body.goal = goal;
      if (newId) body.loop_id = newId;
    }
    const errorBox = $("control-error"), resultBox = $("control-result");
    show(errorBox, false);
    show(resultBox, false);
    const buttons = document.querySelectorAll("#control-form button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const result = await api(`api/loops/${encodeURIComponent(loopId)}/${path}`, { method: "POST", body });
      resultBox.textContent = `${action}: ${result.status} — ${result.message}`;
      resultBox.dataset.status = result.status;
      show(resultBox, true);
    } catch (err) {
      errorBox.textContent = errorText(err);
      errorBox.dataset.status = String(err.status);
      errorBox.dataset.code = (err.error && err.error.code) || "";
      show(errorBox, true);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
    refreshLoop();  // a resumed loop runs again: keep refreshing
  }


  // ------------------------------------------------------------------ plans (seed 003)
  function rememberProjects(projects) {
    let added = false;
    for (const p of projects) {
      if (p && !knownProjects.has(p)) { knownProjects.add(p); added = true; }
    }
    if (added) {
      $("known-projects").replaceChildren(...[...knownProjects].sort().map((p) => el("option", { value: p })));
    }
  }

  async function defaultProject() {
    const remembered = sessionStorage.getItem("loopwright.planProject");
    if (remembered) return remembered;
    const filtered = $("filter-project").value.trim();
    if (filtered) return filtered;
    if (!knownProjects.size) {
      try { rememberProjects((await api("api/loops?limit=200")).items.map((l) => l.project)); } catch (_) { /* shown elsewhere */ }
    }
    return knownProjects.size ? [...knownProjects].sort()[0] : "default";
  }

  function planHref(planId, project) {
    return `#/plans/${encodeURIComponent(planId)}?${new URLSearchParams({ project })}`;
  }

  function planApi(planId, project, suffix) {
    return `api/plans/${encodeURIComponent(planId)}${suffix || ""}?${new URLSearchParams({ project })}`;
  }

  function isPartial(plan) {
    return plan.tasks.some((t) => t.status === "ERROR" || t.status === "SKIPPED");
  }

  function planLive(plan) {
    return plan.status === "DISPATCHING" || plan.status === "VERIFYING" || (plan.status === "RUNNING" && !plan.completed_at);
  }

  function planBadge(plan) {
    const partial = plan.status === "RUNNING" && isPartial(plan);
    return el("span", {
      className: `badge ${PLAN_BADGES[plan.status] || ""}`.trim(), "data-testid": "plan-badge",
      "data-status": plan.status, "data-partial": String(partial), text: partial ? `${plan.status} (partial)` : plan.status,
    });
  }

  function taskBadge(status) {
    return el("span", { className: `badge ${TASK_BADGES[status] || ""}`.trim(), "data-testid": "task-status", "data-status": status, text: status });
  }

  // Wave of each task: 1 for a task without dependencies, else 1 + the highest wave it depends on
  // (the tasks of one wave can run in parallel).
  function waves(tasks) {
    const byId = new Map(tasks.map((t) => [t.task_id, t]));
    const memo = new Map();
    const visiting = new Set();
    function wave(id) {
      if (memo.has(id)) return memo.get(id);
      const task = byId.get(id);
      if (!task || visiting.has(id)) return 0;  // stored plans are DAGs; never loop on bad data
      visiting.add(id);
      const value = 1 + Math.max(0, ...task.depends_on.map(wave));
      visiting.delete(id);
      memo.set(id, value);
      return value;
    }
    for (const t of tasks) wave(t.task_id);
    return memo;
  }

  function tasksDone(plan) {
    const completed = plan.tasks.filter((t) => t.status === "COMPLETED").length;
    const ended = plan.tasks.filter((t) => FINAL_TASK_STATES.has(t.status)).length;
    return `${completed} / ${plan.tasks.length} completed` + (ended > completed ? `, ${ended - completed} failed or skipped` : "");
  }

  function planRow(plan, project) {
    return el("tr", { "data-testid": "plan-row", "data-plan-id": plan.plan_id, "data-status": plan.status },
      el("td", {}, el("a", { href: planHref(plan.plan_id, project), "data-testid": "plan-link", text: plan.plan_id })),
      el("td", {}, planBadge(plan)),
      el("td", { "data-testid": "plan-task-count", text: tasksDone(plan) }),
      el("td", { text: plan.goal || "—" }),
      el("td", { text: fmtTime(plan.created_at) }));
  }

  async function refreshPlans() {
    if (view.name !== "plans") return;
    const project = view.project;
    try {
      const data = await api(`api/projects/${encodeURIComponent(project)}/plans?limit=100`);
      if (view.name !== "plans" || view.project !== project) return;
      $("plans-body").replaceChildren(...data.plans.map((p) => planRow(p, project)));
      show($("plans-empty"), data.plans.length === 0);
      show($("plans-error"), false);
      setRefreshStatus(`updated ${new Date().toLocaleTimeString()}`);
      schedule(refreshPlans, data.plans.some(planLive) ? REFRESH_MS : IDLE_LIST_REFRESH_MS);
    } catch (err) {
      $("plans-body").replaceChildren();
      show($("plans-empty"), false);
      $("plans-error").textContent = errorText(err);
      show($("plans-error"), true);
      if (err.status !== 400 && err.status !== 404) schedule(refreshPlans, REFRESH_MS * 2);
    }
  }

  function taskRow(task, wave) {
    const loop = task.loop_id
      ? el("a", { href: `#/loops/${encodeURIComponent(task.loop_id)}`, "data-testid": "task-loop-link", text: task.loop_id })
      : el("span", { className: "note", text: "not dispatched" });
    const result = [task.outcome, task.reason].filter(Boolean).join(": ");
    return el("tr", { "data-testid": "plan-task", "data-task-id": task.task_id, "data-status": task.status },
      el("th", { scope: "row" }, el("span", { text: task.task_id }), el("br"),
        el("span", { className: "note", "data-testid": "task-description", text: task.description })),
      el("td", {}, taskBadge(task.status)),
      el("td", { "data-testid": "task-wave", text: wave || "—" }),
      el("td", { "data-testid": "task-deps", text: task.depends_on.length ? task.depends_on.join(", ") : "—" }),
      el("td", {}, loop),
      el("td", { text: task.loop_id ? `${task.iterations} (${task.tokens_used} tokens)` : "—" }),
      el("td", { "data-testid": "task-result", text: result || "—" }));
  }

  function gateRow(check) {
    const digest = check.output_sha256 ? check.output_sha256.slice(0, 12) : "—";
    const output = check.output_tail
      ? el("details", {}, el("summary", { text: "output" }), el("pre", { className: "output", text: check.output_tail }))
      : null;
    return el("tr", { "data-testid": "gate-check", "data-name": check.name, "data-status": check.status },
      el("th", { scope: "row", text: check.name }),
      el("td", { className: GATE_CLASSES[check.status] || "", "data-testid": "gate-status", text: check.status }),
      el("td", { text: `${Number(check.duration_seconds).toFixed(2)} s` }),
      el("td", { text: check.exit_code === null || check.exit_code === undefined ? "—" : check.exit_code }),
      el("td", {}, el("span", { text: check.message || "" }), output),
      el("td", { title: check.output_sha256 || "", text: digest }));
  }

  function planEventItem(e) {
    const evidence = Object.keys(e.evidence || {}).length ? JSON.stringify(e.evidence) : "";
    return el("li", { "data-testid": "plan-event", "data-type": e.type, "data-task-id": e.task_id || "" },
      el("span", { className: "time", text: fmtTime(e.timestamp) }),
      el("span", { className: "type", text: e.type }),
      e.task_id ? el("span", { className: "iter", text: e.task_id }) : null,
      el("span", { className: "message", text: e.message }),
      evidence ? el("span", { className: "evidence", text: evidence.length > 300 ? `${evidence.slice(0, 300)}…` : evidence }) : null);
  }

  function renderPlan(plan, events) {
    $("plan-id").textContent = plan.plan_id;
    $("plan-status").replaceWith(Object.assign(planBadge(plan), { id: "plan-status" }));
    $("plan-status").setAttribute("data-testid", "plan-status");
    $("plan-goal").textContent = `${plan.project} · ${plan.goal || "(no goal)"}`;
    $("plan-tasks-done").textContent = tasksDone(plan);
    $("plan-created").textContent = fmtTime(plan.created_at);
    $("plan-executed").textContent = fmtTime(plan.executed_at) || "—";
    $("plan-completed").textContent = fmtTime(plan.completed_at) || "—";
    $("plan-verified").textContent = fmtTime(plan.verified_at) || "—";
    const source = $("plan-source");
    if (plan.source_loop_id) {
      source.replaceChildren(el("a", { href: `#/loops/${encodeURIComponent(plan.source_loop_id)}`, text: plan.source_loop_id }));
    } else source.textContent = plan.packet_id || "written plan";
    const wave = waves(plan.tasks);
    const ordered = plan.tasks.slice().sort((a, b) => (wave.get(a.task_id) || 0) - (wave.get(b.task_id) || 0));
    $("plan-tasks-body").replaceChildren(...ordered.map((t) => taskRow(t, wave.get(t.task_id))));
    const checks = plan.gate_result ? plan.gate_result.checks : [];
    $("gate-checks-body").replaceChildren(...checks.map(gateRow));
    const summary = $("plan-gate-summary");
    summary.dataset.passed = plan.gate_result ? String(plan.gate_result.passed) : "";
    summary.textContent = plan.gate_result
      ? `gate:all ${plan.gate_result.passed ? "passed" : "failed"}: ${checks.filter((c) => c.passed).length} of ${checks.length} checks passed`
      : plan.status === "VERIFYING" ? "Verifying: gate:all runs…"
      : (plan.gates.length ? `Not verified yet; gates: ${plan.gates.map((g) => g.name || g.type).join(", ")}` : "Not verified yet.");
    $("plan-events").replaceChildren(...events.map(planEventItem));
    const dispatch = $("plan-dispatch"), verify = $("plan-verify");
    dispatch.disabled = plan.status !== "DRAFT";
    dispatch.title = dispatch.disabled ? `only a DRAFT plan can be dispatched (this one is ${plan.status})` : "run the tasks as loops";
    verify.disabled = !(plan.status === "RUNNING" && plan.completed_at);
    verify.title = verify.disabled ? "only a RUNNING plan whose tasks all ended can be verified" : "run gate:all";
  }

  async function refreshPlan() {
    const { planId, project } = view;
    if (view.name !== "plan" || !planId) return;
    try {
      const [plan, trail] = await Promise.all([api(planApi(planId, project)), api(planApi(planId, project, "/events"))]);
      if (view.name !== "plan" || view.planId !== planId) return;
      renderPlan(plan, trail.events);
      show($("plan-error"), false);
      const live = planLive(plan);
      document.body.dataset.planLive = String(live);
      setRefreshStatus(`${live ? "live" : "idle"} · updated ${new Date().toLocaleTimeString()}`);
      schedule(live ? refreshPlan : null, live ? REFRESH_MS : 0);
    } catch (err) {
      $("plan-error").textContent = errorText(err);
      show($("plan-error"), true);
      if (err.status !== 404 && err.status !== 400) schedule(refreshPlan, REFRESH_MS * 2);
    }
  }

  async function planAction(action) {
    const { planId, project } = view;
    if (view.name !== "plan" || !planId) return;
    const errorBox = $("plan-control-error"), resultBox = $("plan-control-result");
    show(errorBox, false);
    show(resultBox, false);
    const buttons = [$("plan-dispatch"), $("plan-verify")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const result = await api(planApi(planId, project, `/${action}`), { method: "POST", body: action === "dispatch" ? { parallel: true } : {} });
      resultBox.textContent = action === "dispatch"
        ? `dispatch: ${result.status}, ${result.runs.length} task loop(s) started in the dashboard`
        : `verify: ${result.status}${result.gate_result ? (result.gate_result.passed ? " — gate:all passed" : " — gate:all failed") : " — gate:all runs; this page updates when it ends"}`;
      resultBox.dataset.status = result.status;
      show(resultBox, true);
    } catch (err) {
      errorBox.textContent = errorText(err);
      errorBox.dataset.status = String(err.status);
      errorBox.dataset.code = (err.error && err.error.code) || "";
      show(errorBox, true);
    }
    refreshPlan();  // re-enables the buttons that apply to the plan's new status
  }

  // ------------------------------------------------------------------ routing
  function showView(id) {
    for (const name of VIEWS) show($(name), name === id);
    const plans = id === "plans-view" || id === "plan-view";
    for (const [link, current] of [["nav-loops", !plans], ["nav-plans", plans]]) {
      if (current) $(link).setAttribute("aria-current", "page");
      else $(link).removeAttribute("aria-current");
    }
  }

  async function route() {
    const [path, query] = location.hash.replace(/^#/, "").split("?");
    const params = new URLSearchParams(query || "");
    const loop = path.match(/^\/loops\/([^/]+)$/);
    const plan = path.match(/^\/plans\/([^/]+)$/);
    schedule(null, 0);
    delete document.body.dataset.planLive;
    if (loop) {
      view = { name: "loop", loopId: decodeURIComponent(loop[1]) };
      showView("loop-view");
      show($("control-error"), false);
      show($("control-result"), false);
      $("loop-id").textContent = view.loopId;
      document.title = `${view.loopId} · loopwright`;
      refreshLoop();
      loadObservability(view.loopId);
    } else if (plan || path === "/plans") {
      const project = params.get("project") || await defaultProject();
      sessionStorage.setItem("loopwright.planProject", project);
      $("plans-project").value = project;
      $("plans-back").setAttribute("href", `#/plans?${new URLSearchParams({ project })}`);
      if (plan) {
        view = { name: "plan", planId: decodeURIComponent(plan[1]), project };
        showView("plan-view");
        show($("plan-control-error"), false);
        show($("plan-control-result"), false);
        $("plan-id").textContent = view.planId;
        document.title = `${view.planId} · loopwright`;
        refreshPlan();
      } else {
        view = { name: "plans", project };
        showView("plans-view");
        document.title = `plans of ${project} · loopwright`;
        refreshPlans();
      }
    } else {
      view = { name: "list", loopId: null };
      showView("list-view");
      document.title = "loopwright dashboard";
      refreshList();
    }
  }

  async function loadEnums() {
    try {
      const schemas = (await api("api/openapi.json")).components.schemas;
      PHASES = schemas.LoopPhase.enum;
      OUTCOMES = schemas.LoopOutcome.enum;
      EVENT_TYPES = schemas.IterationEventType.enum;
    } catch (err) {
      $("list-error").textContent = `cannot read the API's document: ${errorText(err)}`;
      show($("list-error"), true);
    }
  }

  async function init() {
    await loadEnums();
    const status = $("filter-status");
    for (const [label, values] of [["phase", PHASES], ["outcome", OUTCOMES]]) {
      const group = el("optgroup", { label });
      for (const v of values) group.append(el("option", { value: v, text: v }));
      status.append(group);
    }
    const types = $("events-type");
    for (const t of EVENT_TYPES) types.append(el("option", { value: t, text: t }));
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); refreshList(); });
    $("loops-more").addEventListener("click", () => loadList(true));
    $("events-more").addEventListener("click", () => loadOlderEvents());
    $("evidence-download").addEventListener("click", () => downloadEvidence());
    $("events-type").addEventListener("change", () => refreshLoop());
    $("act-as").addEventListener("change", onActAsChange);
    $("control-form").addEventListener("submit", (e) => e.preventDefault());
    for (const button of document.querySelectorAll("#control-form button[data-action]")) {
      button.addEventListener("click", () => control(button.dataset.action));
    }
    $("plans-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      const project = $("plans-project").value.trim();
      if (!project) return;
      sessionStorage.setItem("loopwright.planProject", project);
      const target = `#/plans?${new URLSearchParams({ project })}`;
      if (location.hash === target) route(); else location.hash = target;
    });
    $("plan-dispatch").addEventListener("click", () => planAction("dispatch"));
    $("plan-verify").addEventListener("click", () => planAction("verify"));
    window.addEventListener("hashchange", route);
    loadIdentity().then(route);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
