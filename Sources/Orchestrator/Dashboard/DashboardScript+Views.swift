extension DashboardScript {
    /// Rendering and actions: the four views, a task's page, the forms and buttons. Every element
    /// a person reads also says its state in words (colour only repeats it), and the data
    /// attributes (`data-state`, `data-event-ids`...) let the browser tests read what is shown.
    static let views = #"""

    const TASK_STATES = ['pending', 'assigned', 'running', 'completed', 'failed', 'cancelled', 'lost'];
    const EVENT_TYPES = ['task_created', 'task_assigned', 'task_running', 'task_completed', 'task_failed', 'task_rescheduled',
      'task_cancelled', 'task_lost', 'task_deleted', 'node_joined', 'node_ready', 'node_not_ready', 'node_down', 'node_drained',
      'node_cordoned', 'node_uncordoned', 'node_removed', 'leader_elected'];
    const EXAMPLE = { name: 'test-task', image: 'alpine', command: ['echo', 'hello world'], resources: { cpu: 500, memory: 256 } };
    const PAGE = 25;
    let taskPage = 0;
    const view = { task: null, history: [], historyNote: '', logAbort: null, logTask: null };

    function h(tag, attrs, ...children) {
      const el = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'text') el.textContent = v; else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if (k.startsWith('data-')) el.dataset[k.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = v;
        else el.setAttribute(k, v === true ? '' : v);
      }
      for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
      return el;
    }
    function state(word) { return h('span', { class: 'state state-' + word, text: word.replace('_', ' ') }); }
    function summary(dl, pairs) { dl.replaceChildren(...pairs.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)])); }
    // Where a task runs, or for one that ended, where it last ran.
    function taskNode(t) { return t.node || (t.placement && t.placement.node) || ''; }
    function age(ms) {
      if (!ms) return '—';
      const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
      return s < 90 ? s + ' s' : s < 5400 ? Math.round(s / 60) + ' min' : s < 172800 ? Math.round(s / 3600) + ' h' : Math.round(s / 86400) + ' d';
    }
    function route() {
      const parts = (location.hash || '#/cluster').slice(2).split('/');
      return parts[0] === 'tasks' && parts[1] ? { name: 'task', id: decodeURIComponent(parts.slice(1).join('/')) }
        : { name: ['cluster', 'nodes', 'tasks', 'events'].includes(parts[0]) ? parts[0] : 'cluster' };
    }
    function nodeStateWords(n) {
      const words = [n.state];
      if (!n.schedulable && n.state !== 'draining') words.push('cordoned');
      return words;
    }

    function render() {
      const r = route();
      for (const name of ['cluster', 'nodes', 'tasks', 'task', 'events']) $('view-' + name).hidden = name !== r.name;
      for (const name of ['cluster', 'nodes', 'tasks', 'events']) {
        const current = name === r.name || (name === 'tasks' && r.name === 'task');
        if (current) $('nav-' + name).setAttribute('aria-current', 'page'); else $('nav-' + name).removeAttribute('aria-current');
      }
      $('nav-nodes').textContent = 'Nodes (' + S.nodes.size + ')';
      $('nav-tasks').textContent = 'Tasks (' + S.tasks.size + ')';
      const banners = [];
      if (S.cluster && !S.cluster.leader_id) banners.push('Master ' + S.cluster.node_id + ' knows no leader: changes wait or fail until one is elected.');
      if (S.notice) banners.push(S.notice);
      $('banner').hidden = banners.length === 0;
      $('banner').textContent = banners.join(' ');
      const ev = $('view-events');
      ev.dataset.eventIds = S.eventIDs.join(',');
      ev.dataset.gaps = S.gaps;
      ev.dataset.reconnects = S.reconnects;
      if (r.name === 'cluster') renderCluster();
      if (r.name === 'nodes') renderNodes();
      if (r.name === 'tasks') renderTasks();
      if (r.name === 'task') renderTask(r.id);
      if (r.name === 'events') renderEvents();
    }

    function renderCluster() {
      const c = S.cluster;
      if (!c) return;
      summary($('cluster-summary'), [['Answering master', c.node_id], ['Leader', c.leader_id || 'none (no leader known)'],
        ['Term', String(c.term ?? '—')], ['Commit index', String(c.commit_index ?? '—')], ['Applied index', String(c.applied_index ?? '—')],
        ['Store', c.store], ['Default scheduler', c.default_scheduler], ['Revision', String(c.revision)]]);
      const leader = S.health[c.leader_id];
      const commit = leader ? leader.commit_index : c.commit_index;
      $('members').tBodies[0].replaceChildren(...S.members.map((m) => {
        const seen = S.health[m.id];
        const lag = seen && commit != null && seen.applied_index != null ? Math.max(0, commit - seen.applied_index) : null;
        const health = !seen ? 'unreachable' : !seen.ready ? 'not_ready' : lag !== null && lag > 100 ? 'lagging' : 'healthy';
        return h('tr', { 'data-member': m.id, 'data-role': m.id === c.leader_id ? 'leader' : 'follower', 'data-health': health },
          h('td', { text: m.id + (m.id === S.masterID ? ' (this page’s API)' : '') }),
          h('td', {}, state(m.id === c.leader_id ? 'leader' : 'follower')), h('td', {}, state(health)),
          h('td', { text: seen && seen.applied_index != null ? String(seen.applied_index) : '—' }),
          h('td', { text: lag === null ? '—' : lag + (lag === 1 ? ' entry' : ' entries') }),
          h('td', { text: m.api_address || '—' }));
      }));
    }

    function bar(label, used, total, unit) {
      const pct = total > 0 ? Math.round(100 * used / total) : 0;
      return h('div', {}, h('div', { text: label + ': ' + used + ' / ' + total + ' ' + unit + ' allocated (' + pct + '%)' }),
        h('meter', { min: 0, max: total, value: used, low: total * 0.7, high: total * 0.9, optimum: 0, 'aria-label': label }));
    }
    async function nodeAction(id, action) {
      $('nodes-result').textContent = action + ' ' + id + '…';
      try {
        await api('/api/v1/nodes/' + encodeURIComponent(id) + '/' + action, { method: 'POST' });
        $('nodes-result').textContent = action + ' ' + id + ': accepted';
      } catch (e) { $('nodes-result').textContent = action + ' ' + id + ' failed: ' + e.message; }
    }
    function renderNodes() {
      const nodes = [...S.nodes.values()].sort((a, b) => a.id.localeCompare(b.id));
      $('node-list').replaceChildren(...(nodes.length ? nodes.map((n) => h('article', { class: 'card', 'data-node': n.id, 'data-state': nodeStateWords(n).join(' ') },
        h('h3', { text: n.id }), h('p', {}, ...nodeStateWords(n).map(state)),
        bar('CPU', n.allocated.cpu, n.capacity.cpu, 'millicores'), bar('Memory', n.allocated.memory, n.capacity.memory, 'MB'),
        h('p', { text: n.task_count + (n.task_count === 1 ? ' task' : ' tasks') + ' · heartbeat ' + age(n.last_heartbeat) + ' ago · ' + n.address }),
        h('ul', { class: 'labels', 'aria-label': 'labels' }, ...Object.entries(n.labels || {}).map(([k, v]) => h('li', { text: k + '=' + v }))),
        h('p', {}, h('button', { type: 'button', 'data-action': 'drain', disabled: n.state === 'draining', onclick: () => nodeAction(n.id, 'drain'), text: 'Drain' }), ' ',
          h('button', { type: 'button', 'data-action': 'cordon', disabled: !n.schedulable, onclick: () => nodeAction(n.id, 'cordon'), text: 'Cordon' }), ' ',
          h('button', { type: 'button', 'data-action': 'uncordon', disabled: n.schedulable && n.state !== 'draining', onclick: () => nodeAction(n.id, 'uncordon'), text: 'Uncordon' }))))
        : [h('p', { class: 'muted', text: 'No node has joined.' })]));
    }

    function renderTasks() {
      const want = $('task-state').value, q = $('task-search').value.trim().toLowerCase();
      const rows = [...S.tasks.values()].filter((t) => (!want || t.state === want) &&
        (!q || [t.id, t.spec.name, taskNode(t), t.spec.image].some((s) => s.toLowerCase().includes(q))))
        .sort((a, b) => b.created_at - a.created_at || b.id.localeCompare(a.id));
      const pages = Math.max(1, Math.ceil(rows.length / PAGE));
      taskPage = Math.min(taskPage, pages - 1);
      $('tasks').tBodies[0].replaceChildren(...rows.slice(taskPage * PAGE, (taskPage + 1) * PAGE).map((t) =>
        h('tr', { 'data-task': t.id, 'data-state': t.state },
          h('td', {}, h('a', { href: '#/tasks/' + encodeURIComponent(t.id), text: t.spec.name })), h('td', {}, state(t.state)),
          h('td', { text: taskNode(t) || '—' }), h('td', { text: age(t.created_at) }), h('td', { text: t.spec.image }))));
      $('page-info').textContent = rows.length + ' tasks · page ' + (taskPage + 1) + ' of ' + pages;
      $('page-prev').disabled = taskPage === 0;
      $('page-next').disabled = taskPage >= pages - 1;
    }

    // A task's history: the store's retained events for it (replayed once), then live ones.
    async function loadHistory(id) {
      view.history = [];
      view.historyNote = '';
      const types = EVENT_TYPES.filter((t) => t.startsWith('task_')).join(',');
      let since = '0';
      for (let attempt = 0; attempt < 2 && view.task === id; attempt++) {
        const ctrl = new AbortController();
        try {
          const res = await fetch(S.base + '/api/v1/events?type=' + types + '&since=' + since, { headers: authHeaders(), signal: ctrl.signal });
          if (res.status === 410) {
            const m = /oldest available: revision (\d+)/.exec(await res.text());
            since = m ? String(Number(m[1]) - 1) : String(S.lastEventID).split(':')[0];
            view.historyNote = 'Older events were compacted; the history starts later.';
            continue;
          }
          if (!res.ok) return;
          // The replay arrives at once; a quiet half second means it is done (live events reach
          // the page through the main stream).
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '', quiet;
          for (;;) {
            const next = await Promise.race([reader.read(), new Promise((r) => { quiet = setTimeout(() => r(null), 500); })]);
            clearTimeout(quiet);
            if (!next || next.done) break;
            buf += next.value;
            let cut;
            while ((cut = buf.indexOf('\n\n')) >= 0) {
              const msg = parseBlock(buf.slice(0, cut));
              buf = buf.slice(cut + 2);
              if (msg && msg.data.length) addHistory(id, msg.id, JSON.parse(msg.data.join('\n')));
            }
          }
        } catch (_) { return; } finally { ctrl.abort(); }
        break;
      }
      scheduleRender();
    }
    function addHistory(id, eventID, ev) {
      const t = ev.task;
      if (!t || t.id !== id || view.history.some((x) => x.id === eventID)) return;
      view.history.push({ id: eventID, type: ev.type, from: ev.previous_state, to: t.state, at: t.updated_at, node: t.node, reason: t.reason });
    }
    function onTaskEvent(e) { if (view.task && e.ev) addHistory(view.task, e.id, e.ev); }

    // The task's output, followed live (`?follow=true`: `output` messages, then `end`). Opened
    // once the task has a node (before that there is no output, and the 409 would be a console error).
    async function followLogs(id) {
      const ctrl = new AbortController();
      view.logAbort = ctrl;
      const out = $('task-logs');
      out.textContent = '';
      let any = false;
      try {
        const res = await fetch(S.base + '/api/v1/tasks/' + encodeURIComponent(id) + '/logs?follow=true',
          { headers: authHeaders(), cache: 'no-store', signal: ctrl.signal });
        if (!res.ok) {
          let why = 'HTTP ' + res.status;
          try { why = (await res.json()).error.message; } catch (_) {}
          out.textContent = '(logs unavailable: ' + why + ')';
          return;
        }
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, '\n');
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const msg = parseBlock(buf.slice(0, cut));
            buf = buf.slice(cut + 2);
            if (!msg || !msg.data.length) continue;
            const data = JSON.parse(msg.data.join('\n'));
            if (msg.event === 'output') {
              any = true;
              out.append(data.stream === 'stderr' ? h('span', { class: 'stderr', title: 'stderr', text: data.text }) : data.text);
            } else if (msg.event === 'end') {
              out.append(h('span', { class: 'muted', text: (any ? '\n' : '') + '[ended' + (data.exit_code == null ? '' : ' with exit code ' + data.exit_code) + ']' }));
            } else if (msg.event === 'error') {
              out.append(h('span', { class: 'muted', text: '\n[log stream error: ' + ((data.error || {}).message || '') + ']' }));
            }
          }
        }
      } catch (e) {
        if (e.name !== 'AbortError') out.append(h('span', { class: 'muted', text: '\n[log stream lost: ' + e.message + ']' }));
      }
    }
    function stopLogs() {
      if (view.logAbort) view.logAbort.abort();
      view.logAbort = null;
      view.logTask = null;
    }
    function renderTask(id) {
      if (view.task !== id) {
        stopLogs();
        view.task = id;
        $('task-logs').textContent = '(no output: the task has not been placed yet)';
        $('task-result').textContent = '';
        loadHistory(id);
      }
      const t = S.tasks.get(id);
      if (t && view.logTask !== id && (t.node || t.placement)) {
        view.logTask = id;
        followLogs(id);
      }
      $('view-task').dataset.state = t ? t.state : 'unknown';
      if (!t) { $('task-title').textContent = 'Task ' + id + ' (not found)'; return; }
      $('task-title').textContent = 'Task ' + t.spec.name;
      summary($('task-summary'), [['Id', t.id], ['State', state(t.state)], ['Node', taskNode(t) || '—'], ['Epoch', String(t.epoch)],
        ['Retries', String(t.retries)], ['Reason', t.reason || '—'], ['Exit code', t.exit_code == null ? '—' : String(t.exit_code)],
        ['Created', new Date(t.created_at).toISOString() + ' (' + age(t.created_at) + ' ago)'], ['Updated', new Date(t.updated_at).toISOString()]]);
      $('task-cancel').disabled = ['completed', 'failed', 'cancelled'].includes(t.state);
      const hist = view.history.slice().sort((a, b) => parseFloat(a.id) - parseFloat(b.id) || a.id.localeCompare(b.id));
      $('task-history').replaceChildren(...hist.map((x) => h('li', { 'data-event': x.id },
        h('span', { text: (x.from ? x.from + ' → ' : '') }), state(x.to),
        h('span', { class: 'muted', text: ' ' + x.type + ' at revision ' + x.id + (x.node ? ' on ' + x.node : '') + (x.reason ? ' (' + x.reason + ')' : '') }))),
        ...(view.historyNote ? [h('li', { class: 'muted', text: view.historyNote })] : []));
      const p = t.placement;
      $('task-placement').replaceChildren(p ? h('div', {},
        h('p', { text: 'Placed on ' + p.node + ' by ' + p.algorithm + ' with score ' + p.score.toFixed(3) + '.' }),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', { text: 'Filter' }), h('th', { text: 'Nodes removed' }))),
          h('tbody', {}, ...p.filters.map((f) => h('tr', {}, h('td', { text: f.filter }), h('td', { text: String(f.removed) }))))))
        : h('p', { class: 'muted', text: t.reason ? 'Not placed: ' + t.reason : 'Not placed yet.' }));
      $('task-spec').textContent = JSON.stringify(t.spec, null, 2);
    }

    function describe(e) {
      if (e.type === 'gap') return e.text;
      const ev = e.ev, subject = ev.task ? 'task ' + ev.task.spec.name + ' (' + ev.task.id + ')' : ev.node ? 'node ' + ev.node.id
        : ev.leader ? 'leader ' + (ev.leader.id || ev.leader.leader || JSON.stringify(ev.leader)) : ev.id || '';
      const to = ev.task ? ev.task.state : ev.node ? ev.node.state : '';
      return subject + (ev.previous_state ? ': ' + ev.previous_state + ' → ' + to : to ? ': ' + to : '');
    }
    function renderEvents() {
      const want = $('event-type').value, q = $('event-search').value.trim().toLowerCase();
      const shown = S.events.filter((e) => (!want || e.type === want) && (!q || describe(e).toLowerCase().includes(q))).slice(-200).reverse();
      $('event-status').textContent = S.eventIDs.length + ' events received since the page loaded, last id ' + (S.lastEventID ?? '—') +
        ', ' + S.reconnects + ' reconnects, ' + (S.gaps ? S.gaps + ' gaps (lists reloaded)' : 'no gap');
      $('event-list').replaceChildren(...shown.map((e) => h('li', { 'data-event': e.id || 'gap' },
        h('span', { class: 'muted', text: (e.id ? '#' + e.id : '') + ' ' + (e.at ? new Date(e.at).toLocaleTimeString() : '') + ' ' }),
        h('strong', { text: e.type }), h('span', { text: ' ' + describe(e) }))));
    }

    // --- Wiring ---
    for (const s of TASK_STATES) $('task-state').append(h('option', { value: s, text: s }));
    for (const t of EVENT_TYPES) $('event-type').append(h('option', { value: t, text: t }));
    for (const id of ['task-state', 'task-search']) $(id).addEventListener('input', () => { taskPage = 0; render(); });
    for (const id of ['event-type', 'event-search']) $(id).addEventListener('input', render);
    $('page-prev').addEventListener('click', () => { taskPage--; render(); });
    $('page-next').addEventListener('click', () => { taskPage++; render(); });
    $('submit-spec').value = JSON.stringify(EXAMPLE, null, 2);
    $('submit-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      let spec;
      try { spec = JSON.parse($('submit-spec').value); } catch (err) { $('submit-result').textContent = 'Not JSON: ' + err.message; return; }
      // One key per press: a retry after a failover cannot create a second task.
      const key = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
      $('submit-result').textContent = 'Submitting…';
      try {
        const r = await api('/api/v1/tasks', { method: 'POST', json: spec, headers: { 'Idempotency-Key': key } });
        S.tasks.set(r.body.id, Object.assign({}, S.tasks.get(r.body.id) || {}, r.body));
        $('submit-result').replaceChildren('Created ', h('a', { href: '#/tasks/' + encodeURIComponent(r.body.id), 'data-created': r.body.id, text: r.body.id }));
        render();
      } catch (err) { $('submit-result').textContent = 'Refused: ' + err.message; }
    });
    $('task-cancel').addEventListener('click', async () => {
      const id = view.task;
      $('task-result').textContent = 'Cancelling…';
      try { await api('/api/v1/tasks/' + encodeURIComponent(id), { method: 'DELETE' }); $('task-result').textContent = 'Cancel requested.'; }
      catch (e) { $('task-result').textContent = 'Cancel failed: ' + e.message; }
    });
    window.addEventListener('hashchange', () => { if (route().name !== 'task') { stopLogs(); view.task = null; } render(); });
    render();
    if (S.tokenRequired && !S.token) askToken(); else start();
    """#
}
