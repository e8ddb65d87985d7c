"""The page at ``/``: every run with its live state, and links to its logs and tasks.

The page itself holds no data; its script asks the API (with the token given once in the page,
or in the address as ``#token=...``, which browsers never send to the server) every two seconds.
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>toilray WES runs</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; }
.COMPLETE { color: #176117; } .EXECUTOR_ERROR, .SYSTEM_ERROR { color: #a01818; }
.RUNNING, .INITIALIZING { color: #1d4fa0; }
pre { background: #f4f4f4; padding: 0.5em; max-height: 30em; overflow: auto; }
</style></head>
<body>
<h1>toilray WES runs</h1>
<p id="auth" hidden>Token: <input id="token" type="password" size="40"> <button id="use">Use</button></p>
<p id="message"></p>
<table><thead><tr><th>Run</th><th>Workflow</th><th>State</th><th>Started</th><th>Ended</th><th>Logs</th></tr></thead>
<tbody id="runs"></tbody></table>
<h2 id="logtitle"></h2><pre id="log" hidden></pre>
<script>
"use strict";
const BASE = "@BASE@";
const NEEDS_AUTH = "@AUTH@" === "1";
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) { sessionStorage.setItem("wesToken", fromHash); history.replaceState(null, "", location.pathname); }
function headers() {
  const token = sessionStorage.getItem("wesToken");
  return token ? {"Authorization": "Bearer " + token} : {};
}
async function api(path, asText) {
  const response = await fetch(BASE + path, {headers: headers()});
  if (response.status === 401) { document.getElementById("auth").hidden = false; throw new Error("a token is needed"); }
  if (!response.ok) { throw new Error(path + ": HTTP " + response.status); }
  return asText ? response.text() : response.json();
}
function cell(row, text, className) {
  const td = row.insertCell(); td.textContent = text || ""; if (className) { td.className = className; } return td;
}
function logLink(td, runId, what) {
  const a = document.createElement("a"); a.href = "#"; a.textContent = what; a.className = "log-" + what;
  a.addEventListener("click", async (event) => {
    event.preventDefault();
    const body = await api("/runs/" + runId + "/" + what, what !== "tasks");
    document.getElementById("logtitle").textContent = what + " of " + runId;
    const pre = document.getElementById("log"); pre.hidden = false;
    pre.textContent = typeof body === "string" ? body : JSON.stringify(body, null, 1);
  });
  td.appendChild(a); td.appendChild(document.createTextNode(" "));
}
async function refresh() {
  try {
    const listing = await api("/runs?page_size=1000");
    const details = await Promise.all(listing.runs.map((run) => api("/runs/" + run.run_id)));
    const body = document.getElementById("runs");
    body.replaceChildren();
    for (const run of details) {
      const row = body.insertRow(); row.id = "run-" + run.run_id;
      cell(row, run.run_id); cell(row, run.request.workflow_type + " " + run.request.workflow_url);
      cell(row, run.state, "state " + run.state); cell(row, run.run_log.start_time); cell(row, run.run_log.end_time);
      const logs = cell(row, "");
      for (const what of ["stdout", "stderr", "tasks"]) { logLink(logs, run.run_id, what); }
    }
    const when = new Date().toLocaleTimeString();
    document.getElementById("message").textContent = details.length + " runs, updated " + when;
  } catch (error) {
    document.getElementById("message").textContent = String(error.message);
  }
}
document.getElementById("use").addEventListener("click", () => {
  sessionStorage.setItem("wesToken", document.getElementById("token").value);
  document.getElementById("auth").hidden = true; refresh();
});
if (NEEDS_AUTH && !sessionStorage.getItem("wesToken")) { document.getElementById("auth").hidden = false; }
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"""
