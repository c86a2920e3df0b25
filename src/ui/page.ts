/**
 * The dashboard's page, shipped inside moat (no CDN, no build step, no framework): one HTML shell,
 * one stylesheet, one script. The script builds every element with createElement and writes all
 * data with textContent, never innerHTML, and sets no URL from data: a file name, commit message,
 * host or log line a sandbox chose stays text. The CSP (guard.ts) forbids inline script anyway.
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>moat</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <strong>moat</strong>
  <nav>
    <button data-view="tasks" data-testid="nav-tasks">Tasks</button>
    <button data-view="egress" data-testid="nav-egress">Egress</button>
    <button data-view="pending" data-testid="nav-pending">Pending <span id="pending-count" data-testid="pending-count">0</span></button>
  </nav>
  <span id="status" data-testid="status" role="status"></span>
</header>
<main id="main"></main>
</body>
</html>
`;

export const APP_CSS = `
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
header { display: flex; gap: 16px; align-items: center; padding: 8px 16px; background: #1d2330; color: #fff; }
nav button { background: none; border: 0; color: #cfd6e4; font: inherit; padding: 4px 8px; cursor: pointer; }
nav button.active { color: #fff; border-bottom: 2px solid #6cf; }
#pending-count { background: #c33; color: #fff; border-radius: 8px; padding: 0 6px; font-size: 12px; }
#pending-count.zero { background: #555; }
#status { margin-left: auto; font-size: 13px; white-space: pre-wrap; }
#status.error { color: #ff9d9d; }
main { padding: 16px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ec; vertical-align: top; }
th { font-weight: 600; background: #eef1f5; }
td.mono, .mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.denied { color: #b00; } .allowed { color: #070; }
.filters { display: flex; gap: 8px; margin-bottom: 8px; }
.card { background: #fff; border: 1px solid #d6dbe4; border-radius: 6px; padding: 12px; margin-bottom: 8px; }
.card h3 { margin: 0 0 4px; font-size: 15px; }
button.act { margin-right: 4px; }
button.danger { color: #b00; }
.flag { background: #fff3cd; }
.flag .reason { color: #8a5a00; font-size: 12px; }
pre { background: #fff; border: 1px solid #d6dbe4; padding: 8px; overflow: auto; max-height: 60vh; font-size: 12px; }
svg.spark { vertical-align: middle; }
.empty { color: #667; }
`;
