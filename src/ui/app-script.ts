/**
 * The dashboard's script (served as /app.js). Plain ES2020, no template literals (it lives in
 * one). Every datum reaches the page through text(): createTextNode or textContent.
 */
export const APP_JS = String.raw`'use strict';
(function () {
  var state = { view: 'tasks', tasks: [], stats: {}, history: {}, egress: [], pending: [], filters: { task: '', decision: '', host: '' }, review: null, logs: null };
  var main = document.getElementById('main');
  var MAX_ROWS = 1000;

  // Controls, bidi overrides and invisible format characters a sandbox put in a name or a line
  // show as escapes: text that reorders or hides itself must not mislead the reviewer.
  var HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
  function visible(value, keepLines) {
    return String(value).replace(HIDDEN, function (c) {
      if (keepLines && (c === '\n' || c === '\t')) return c;
      var code = c.codePointAt(0);
      return code < 0x100 ? '\\x' + code.toString(16).padStart(2, '0') : '\\u{' + code.toString(16) + '}';
    });
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    var keys = Object.keys(attrs || {});
    for (var i = 0; i < keys.length; i++) {
      var k = keys[i], v = attrs[k];
      if (k === 'onclick') node.addEventListener('click', v);
      else if (k === 'oninput') node.addEventListener('input', v);
      else if (k === 'text') node.textContent = visible(v, false);
      else if (k === 'lines') node.textContent = visible(v, true);
      else if (/^(id|class|type|title|value|placeholder|data-[a-z-]+|disabled)$/.test(k)) { if (v !== false && v !== undefined) node.setAttribute(k, String(v)); }
    }
    var children = Array.prototype.slice.call(arguments, 2);
    for (var j = 0; j < children.length; j++) {
      var c = children[j];
      if (c === null || c === undefined) continue;
      if (Array.isArray(c)) { children.splice.apply(children, [j + 1, 0].concat(c)); continue; }
      node.appendChild(typeof c === 'object' ? c : document.createTextNode(visible(c, false)));
    }
    return node;
  }

  function status(message, isError) {
    var s = document.getElementById('status');
    s.textContent = message || '';
    s.className = isError ? 'error' : '';
  }

  function api(path, body) {
    var init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
    return fetch(path, init).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) { var e = new Error((data.error && data.error.message) || res.statusText); e.info = data.error || {}; throw e; }
        return data;
      });
    });
  }

  function fail(e) {
    status((e.message || String(e)) + (e.info && e.info.hint ? ' (' + e.info.hint + ')' : ''), true);
  }

  function size(bytes) {
    if (bytes === undefined || bytes === null) return '';
    var units = ['B', 'KiB', 'MiB', 'GiB'];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i === 0 ? bytes : bytes.toFixed(1)) + ' ' + units[i];
  }

  function age(seconds) {
    if (seconds < 60) return Math.round(seconds) + 's';
    if (seconds < 3600) return Math.round(seconds / 60) + 'm';
    if (seconds < 86400) return Math.round(seconds / 3600) + 'h';
    return Math.round(seconds / 86400) + 'd';
  }

  function spark(values, max) {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', '60');
    svg.setAttribute('height', '16');
    var line = document.createElementNS(ns, 'polyline');
    var points = [];
    for (var i = 0; i < values.length; i++) points.push((i * 60 / 29).toFixed(1) + ',' + (16 - 15 * Math.min(1, values[i] / (max || 1))).toFixed(1));
    line.setAttribute('points', points.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#36c');
    svg.appendChild(line);
    return svg;
  }

  function key(t) { return t.repoKey + '/' + t.name; }

  function act(t, action) {
    var words = { down: 'Stop the container of', reset: 'Start a fresh container for', rm: 'Remove' };
    if (!window.confirm(words[action] + ' task ' + t.name + '?')) return;
    status(action + ' ' + t.name + '…');
    api('/api/task', { repoKey: t.repoKey, task: t.name, action: action }).then(function () { status(action + ' ' + t.name + ': done'); refreshTasks(); }, fail);
  }

  function renderTasks() {
    if (state.tasks.length === 0) return main.replaceChildren(el('p', { class: 'empty', text: 'no tasks yet (moat up in a repository)' }));
    var head = el('tr', null, el('th', { text: 'Repository' }), el('th', { text: 'Task' }), el('th', { text: 'Branch' }), el('th', { text: 'State' }), el('th', { text: 'Age' }), el('th', { text: 'Template' }), el('th', { text: 'Network' }), el('th', { text: 'Limits' }), el('th', { text: 'CPU' }), el('th', { text: 'Memory' }), el('th', { text: 'PIDs' }), el('th', { text: 'Disk' }), el('th', { text: 'Commits' }), el('th', { text: 'Egress ok/denied' }), el('th', { text: '' }));
    var rows = state.tasks.map(function (t) {
      var s = state.stats[key(t)];
      var h = state.history[key(t)] || { cpu: [], mem: [] };
      var c = s && s.container;
      return el('tr', { 'data-testid': 'task-row', 'data-task': t.name },
        el('td', { class: 'mono', text: t.repoPath }),
        el('td', { class: 'mono', text: t.name }),
        el('td', { class: 'mono', text: t.branch }),
        el('td', { text: t.state + (t.stopReason ? ': ' + t.stopReason : '') }),
        el('td', { text: age(t.ageSeconds) }),
        el('td', { text: t.template }),
        el('td', { text: t.network }),
        el('td', { text: size(t.limits.memoryBytes) + ' / ' + t.limits.cpus + ' cpu / ' + t.limits.pids + ' pids' }),
        el('td', null, c ? c.cpuPercent.toFixed(1) + '% ' : '', c ? spark(h.cpu, 100 * t.limits.cpus) : ''),
        el('td', null, c ? size(c.memoryBytes) + ' ' : '', c ? spark(h.mem, t.limits.memoryBytes) : ''),
        el('td', { text: c ? c.pids + ' / ' + t.limits.pids : '' }),
        el('td', { text: s ? size(s.workspaceBytes) + (s.diskCapBytes ? ' / ' + size(s.diskCapBytes) : '') : '' }),
        el('td', { text: t.commits }),
        el('td', { text: t.network === 'none' ? 'off' : t.egress.allowed + '/' + t.egress.denied }),
        el('td', null,
          el('button', { class: 'act', 'data-testid': 'review', onclick: function () { openReview(t); }, text: 'Review' }),
          el('button', { class: 'act', onclick: function () { openLogs(t); }, text: 'Logs' }),
          el('button', { class: 'act', onclick: function () { act(t, 'down'); }, text: 'Down' }),
          el('button', { class: 'act', onclick: function () { act(t, 'reset'); }, text: 'Reset' }),
          el('button', { class: 'act danger', onclick: function () { act(t, 'rm'); }, text: 'Remove' })));
    });
    var body = el('tbody');
    main.replaceChildren(el('table', { 'data-testid': 'tasks' }, el('thead', null, head), body));
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function matches(r) {
    var f = state.filters;
    return (!f.task || r.task.indexOf(f.task) >= 0) && (!f.decision || r.decision === f.decision) && (!f.host || r.host.indexOf(f.host) >= 0);
  }

  var egressBody = null;
  function egressRow(r) {
    return el('tr', { 'data-testid': 'egress-row', class: r.decision },
      el('td', { class: 'mono', text: r.time }), el('td', { class: 'mono', text: r.task }), el('td', { text: r.decision }),
      el('td', { class: 'mono', text: r.method + ' ' + r.host + ':' + r.port + (r.address ? ' → ' + r.address : '') }),
      el('td', { class: 'mono', text: r.rule }), el('td', { text: size(r.bytesUp) + ' / ' + size(r.bytesDown) }));
  }
  function renderEgress() {
    function filter(name) {
      return function (e) { state.filters[name] = e.target.value; renderEgress(); };
    }
    var decision = el('select', { 'data-testid': 'filter-decision' }, el('option', { value: '', text: 'any decision' }), el('option', { value: 'allowed', text: 'allowed' }), el('option', { value: 'denied', text: 'denied' }));
    decision.value = state.filters.decision;
    decision.addEventListener('change', filter('decision'));
    var filters = el('div', { class: 'filters' },
      el('input', { placeholder: 'task', value: state.filters.task, 'data-testid': 'filter-task', oninput: filter('task') }), decision,
      el('input', { placeholder: 'host contains', value: state.filters.host, 'data-testid': 'filter-host', oninput: filter('host') }));
    egressBody = el('tbody');
    var shown = state.egress.filter(matches).slice(-300).reverse();
    shown.forEach(function (r) { egressBody.appendChild(egressRow(r)); });
    main.replaceChildren(filters, el('table', { 'data-testid': 'egress' }, el('thead', null, el('tr', null, el('th', { text: 'Time' }), el('th', { text: 'Task' }), el('th', { text: 'Decision' }), el('th', { text: 'Target' }), el('th', { text: 'Rule' }), el('th', { text: 'Up / down' }))), egressBody));
    var inputs = main.querySelectorAll('input');
    for (var i = 0; i < inputs.length; i++) if (inputs[i].getAttribute('data-testid') === focusedFilter) { inputs[i].focus(); inputs[i].setSelectionRange(inputs[i].value.length, inputs[i].value.length); }
  }
  var focusedFilter = null;
  document.addEventListener('focusin', function (e) { focusedFilter = e.target && e.target.getAttribute ? e.target.getAttribute('data-testid') : null; });

  function answer(p, choice) {
    var words = { once: 'Allow ' + p.host + ' once', task: 'Allow ' + p.host + ' for task ' + p.task, always: 'Allow ' + p.host + ' always (your user config)', deny: 'Deny ' + p.host };
    if (choice === 'always' && !window.confirm(words.always + '?')) return;
    api('/api/answer', { repoKey: p.repoKey, task: p.task, id: p.id, answer: choice }).then(function () { status(words[choice] + ': done'); }, fail);
  }

  function renderPending() {
    if (state.pending.length === 0) return main.replaceChildren(el('p', { class: 'empty', 'data-testid': 'no-pending', text: 'no request waits for an answer (tasks ask when egress.ask is on in your config)' }));
    main.replaceChildren.apply(main, state.pending.map(function (p) {
      var left = Math.max(0, Math.round((Date.parse(p.expiresAt) - Date.now()) / 1000));
      return el('div', { class: 'card', 'data-testid': 'pending', 'data-host': p.host },
        el('h3', { class: 'mono', text: p.method + ' ' + p.host + ':' + p.port }),
        el('p', null, 'task ', el('span', { class: 'mono', text: p.task }), ', waiting since ' + p.time + ' (' + left + ' s left; no answer = deny)' + (p.standing ? '; asked by the agent over MCP, no connection is held' : '')),
        p.reason ? el('p', { class: 'mono', 'data-testid': 'reason', text: 'reason: ' + p.reason }) : null,
        p.standing ? null : el('button', { class: 'act', 'data-testid': 'allow-once', onclick: function () { answer(p, 'once'); }, text: 'Allow once' }),
        el('button', { class: 'act', 'data-testid': 'allow-task', onclick: function () { answer(p, 'task'); }, text: 'Allow for this task' }),
        el('button', { class: 'act', 'data-testid': 'allow-always', onclick: function () { answer(p, 'always'); }, text: 'Allow always' }),
        el('button', { class: 'act danger', 'data-testid': 'deny', onclick: function () { answer(p, 'deny'); }, text: 'Deny' }));
    }));
  }

  function merge(r, strategy, yes) {
    if (!yes && !window.confirm((strategy === 'squash' ? 'Squash-merge ' : 'Merge ') + r.task + ' into your current branch of ' + r.repoPath + '?')) return;
    api('/api/merge', { repoKey: r.repoKey, task: r.task, strategy: strategy, yes: yes === true }).then(function (m) {
      status('merged ' + m.commits + ' commit(s) of ' + m.task + ' into ' + m.into + ' (' + m.head.slice(0, 12) + ')');
      var box = document.getElementById('confirm');
      if (box) box.replaceChildren();
    }, function (e) {
      fail(e);
      if (e.info && e.info.code === 'E_CONFIRM') {
        document.getElementById('confirm').replaceChildren(el('div', { class: 'card flag', 'data-testid': 'confirm' },
          el('p', { text: e.message }),
          el('button', { class: 'act danger', 'data-testid': 'merge-anyway', onclick: function () { merge(r, strategy, true); }, text: 'I reviewed the flagged files: ' + strategy + ' anyway' })));
      }
    });
  }

  function renderReview() {
    var r = state.review;
    if (!r) return main.replaceChildren(el('p', { class: 'empty', text: 'loading…' }));
    var files = el('tbody');
    r.files.forEach(function (f) {
      files.appendChild(el('tr', { class: f.flags.length ? 'flag' : '', 'data-testid': f.flags.length ? 'flagged-file' : 'file' },
        el('td', { class: 'mono', text: f.path + (f.linkTarget !== undefined ? ' → ' + f.linkTarget : '') }),
        el('td', { text: (f.additions === undefined ? '' : '+' + f.additions + ' -' + f.deletions) }),
        el('td', null, f.reasons.map(function (x) { return el('div', { class: 'reason', text: x }); }))));
    });
    main.replaceChildren(
      el('h2', null, 'Review ', el('span', { class: 'mono', text: r.task }), ' (', el('span', { class: 'mono', text: r.branch }), ', ' + r.commits + ' commit(s)' + (r.uncommitted ? ', uncommitted work' : '') + ')'),
      r.warning ? el('p', { class: 'denied', text: r.warning }) : null,
      el('div', null,
        el('button', { class: 'act', 'data-testid': 'merge', onclick: function () { merge(r, 'merge'); }, text: 'Merge' }),
        el('button', { class: 'act', 'data-testid': 'squash', onclick: function () { merge(r, 'squash'); }, text: 'Squash' }),
        el('button', { class: 'act', onclick: function () { show('tasks'); }, text: 'Back' })),
      el('div', { id: 'confirm' }),
      el('table', { 'data-testid': 'files' }, el('thead', null, el('tr', null, el('th', { text: 'File (flagged first)' }), el('th', { text: 'Lines' }), el('th', { text: 'Review flags' }))), files),
      el('pre', { 'data-testid': 'patch', lines: r.patch || '' }));
  }

  function renderLogs() {
    var l = state.logs;
    main.replaceChildren(el('h2', null, 'Logs of ', el('span', { class: 'mono', text: l ? l.task : '' }), el('span', { 'data-testid': 'logs-state', text: l && l.ended ? ' (' + l.ended + ')' : ' (followed)' })), el('button', { class: 'act', onclick: function () { show('tasks'); }, text: 'Back' }), el('pre', { 'data-testid': 'logs', lines: l && l.text !== undefined ? l.text : 'loading…' }));
  }

  function render() {
    var buttons = document.querySelectorAll('nav button');
    for (var i = 0; i < buttons.length; i++) buttons[i].className = buttons[i].getAttribute('data-view') === state.view ? 'active' : '';
    var count = document.getElementById('pending-count');
    count.textContent = String(state.pending.length);
    count.className = state.pending.length ? '' : 'zero';
    ({ tasks: renderTasks, egress: renderEgress, pending: renderPending, review: renderReview, logs: renderLogs })[state.view]();
  }

  function show(view) {
    // Leaving the logs ends their stream (the server stops following the container).
    if (view !== 'logs' && logStream) { logStream.close(); logStream = null; }
    state.view = view;
    render();
  }

  function openReview(t) {
    state.review = null;
    show('review');
    api('/api/review?repoKey=' + encodeURIComponent(t.repoKey) + '&task=' + encodeURIComponent(t.name)).then(function (r) { state.review = r; if (state.view === 'review') render(); }, fail);
  }

  function openLogs(t) {
    state.logs = { repoKey: t.repoKey, task: t.name };
    show('logs');
    followLogs();
  }

  // The followed log: 'tail' replaces the text (also after a reconnect), 'logs' appends, 'end' closes.
  var logStream = null;
  var LOG_KEEP = 1000000;
  function followLogs() {
    var l = state.logs;
    if (logStream) logStream.close();
    logStream = new EventSource('/api/logs/stream?repoKey=' + encodeURIComponent(l.repoKey) + '&task=' + encodeURIComponent(l.task));
    var shown = function (data, replace) {
      if (state.logs !== l) return;
      var text = (replace ? '' : l.text || '') + (data.skipped ? '[' + data.skipped + ' characters not shown: the task wrote faster than the page reads]\n' : '') + data.text;
      l.text = text.length > LOG_KEEP ? text.slice(-LOG_KEEP) : text;
      var pre = main.querySelector('pre[data-testid="logs"]');
      if (pre && state.view === 'logs') pre.textContent = visible(l.text, true); else if (state.view === 'logs') render();
    };
    logStream.addEventListener('tail', function (e) { shown(JSON.parse(e.data), true); });
    logStream.addEventListener('logs', function (e) { shown(JSON.parse(e.data), false); });
    logStream.addEventListener('end', function (e) {
      if (logStream) { logStream.close(); logStream = null; }
      if (state.logs !== l) return;
      l.ended = JSON.parse(e.data).reason;
      if (state.view === 'logs') render();
    });
  }

  function refreshTasks() {
    return api('/api/tasks').then(function (tasks) { state.tasks = tasks; if (state.view === 'tasks') render(); }, fail);
  }
  function refreshStats() {
    return api('/api/stats').then(function (rows) {
      state.stats = {};
      rows.forEach(function (s) {
        var k = s.repoKey + '/' + s.task;
        state.stats[k] = s;
        var h = state.history[k] || (state.history[k] = { cpu: [], mem: [] });
        if (s.container) { h.cpu.push(s.container.cpuPercent); h.mem.push(s.container.memoryBytes); }
        if (h.cpu.length > 30) { h.cpu.shift(); h.mem.shift(); }
      });
      if (state.view === 'tasks') render();
    }, function () {});
  }

  // The live feed: batches of attempts, drawn at most once per frame.
  var queued = [];
  var drawing = false;
  function drawQueued() {
    drawing = false;
    var batch = queued;
    queued = [];
    state.egress = state.egress.concat(batch).slice(-MAX_ROWS);
    if (state.view === 'egress' && egressBody) {
      batch.filter(matches).forEach(function (r) { egressBody.insertBefore(egressRow(r), egressBody.firstChild); });
      while (egressBody.childNodes.length > 300) egressBody.removeChild(egressBody.lastChild);
    }
  }
  var events = new EventSource('/api/events');
  events.addEventListener('egress', function (e) {
    var data = JSON.parse(e.data);
    queued = queued.concat(data.records);
    if (data.dropped) status(data.dropped + ' attempts not shown (flood); moat egress TASK has them all');
    if (!drawing) { drawing = true; requestAnimationFrame(drawQueued); }
  });
  events.addEventListener('pending', function (e) {
    state.pending = JSON.parse(e.data);
    if (state.view === 'pending') render();
    else { var c = document.getElementById('pending-count'); c.textContent = String(state.pending.length); c.className = state.pending.length ? '' : 'zero'; }
  });

  window.addEventListener('unhandledrejection', function (e) { status('page error: ' + (e.reason && e.reason.message), true); });
  window.addEventListener('error', function (e) { status('page error: ' + e.message, true); });
  var navs = document.querySelectorAll('nav button');
  for (var i = 0; i < navs.length; i++) navs[i].addEventListener('click', function (e) { show(e.currentTarget.getAttribute('data-view')); });
  setInterval(function () { if (state.view === 'pending') renderPending(); }, 1000);
  setInterval(refreshTasks, 2000);
  setInterval(refreshStats, 3000);
  refreshTasks();
  refreshStats();
  render();
})();
`;
