//! `GET /`: a page that shows the network's state and lets a person scan codes.

use axum::response::Html;

/// The live page (polls `/control/state` every second).
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WhatsApp network simulator</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}code{word-break:break-all}</style>
</head><body>
<h1>WhatsApp network simulator</h1>
<p>Device WebSocket: <code>/ws</code>. Control API: <code>/control</code>.</p>
<h2>Pairings</h2><table id="pairings"></table>
<h2>Accounts</h2><table id="accounts"></table>
<h2>Counters</h2><pre id="counters"></pre>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
async function post(path, body) {
  const r = await fetch("/control" + path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
  if (!r.ok) alert(await r.text());
}
async function scan(code) {
  const phone = prompt("Phone number that scans this code", "+60123456789");
  if (phone) await post("/scan", {code, phone});
}
async function refresh() {
  const s = await (await fetch("/control/state")).json();
  document.getElementById("pairings").innerHTML = "<tr><th>kind</th><th>code</th><th>phone</th><th></th></tr>" +
    s.pairings.map(p => `<tr><td>${esc(p.kind)}</td><td><code>${esc(p.code)}</code></td><td>${esc(p.phone)}</td><td>` +
      (p.kind === "qr" ? `<button onclick="scan('${esc(p.code)}')">scan</button>` : `<button onclick="post('/pair-code',{code:'${esc(p.code)}'})">confirm</button>`) +
      "</td></tr>").join("");
  document.getElementById("accounts").innerHTML = "<tr><th>phone</th><th>banned</th><th>devices</th><th>connected</th><th>pending</th><th>sent</th><th>received</th></tr>" +
    s.accounts.slice(0, 500).map(a => `<tr><td>${esc(a.phone)}</td><td>${a.banned ? esc(a.ban_reason) : ""}</td><td>${a.linked_devices}</td><td>${a.connected}</td><td>${a.pending}</td><td>${a.sent}</td><td>${a.received}</td></tr>`).join("");
  document.getElementById("counters").textContent = JSON.stringify({connections: s.connections, connected_sessions: s.connected_sessions, ...s.counters}, null, 2);
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"#;
