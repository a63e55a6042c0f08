// The dashboard's page: a skeleton the script (page/main.ts, bundled) fills and keeps up to date.
// Runs in the kernel's main thread, which serves it as it is.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Theseus kernel</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
  header { display: flex; gap: 1.5em; align-items: baseline; padding: 0.8em 1.2em; background: #1d232a; color: #f6f7f9; }
  header h1 { font-size: 1.2em; margin: 0; }
  #live { margin-left: auto; font-size: 0.9em; }
  #live.stale { color: #ff9b8f; }
  main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 1em; padding: 1em 1.2em; }
  section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.8em 1em; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 1em; margin: 0 0 0.6em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 0.25em 0.6em; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .swap { border-left: 3px solid #3b7dd8; padding: 0.3em 0.7em; margin-bottom: 0.6em; }
  .swap.failed { border-left-color: #d8453b; }
  .phases { display: flex; height: 14px; margin: 0.3em 0; border-radius: 3px; overflow: hidden; background: #eef0f3; }
  .phases span { display: block; height: 100%; min-width: 2px; }
  .legend { font-size: 0.85em; color: #5b6570; }
  pre { font-size: 0.8em; white-space: pre-wrap; word-break: break-all; margin: 0; max-height: 16em; overflow: auto; }
</style>
</head>
<body>
<header><h1 id="app">Theseus kernel</h1><span id="kernel"></span><span id="live">connecting…</span></header>
<main>
  <section class="wide"><h2>Services</h2><table id="services"><thead><tr>
    <th>service</th><th>release</th><th>vsn</th><th>state</th><th class="num">calls/s</th><th class="num">p99 ms</th>
    <th class="num">calls</th><th class="num">errors</th><th class="num">in flight</th><th class="num">queued</th>
    <th class="num">heap MB</th><th class="num">restarts</th><th class="num">state bytes</th><th class="num">checkpoint age s</th>
  </tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Calls per second and p99 latency, with each swap</h2><div id="chart"></div></section>
  <section><h2>Upgrade timeline</h2><div id="timeline"><p class="legend">No upgrade or downgrade since the kernel started.</p></div></section>
  <section><h2>Releases</h2><table id="releases"><thead><tr><th>version</th><th>status</th><th></th></tr></thead><tbody></tbody></table>
    <h2 style="margin-top:1em">Audit trail, last lines</h2><pre id="audit"></pre></section>
</main>
<script src="/assets/dashboard.js"></script>
</body>
</html>
`;
