/// The dashboard's script, in two parts: `core` talks to the API (token, failover between
/// masters, the event stream), `views` (DashboardScript+Views.swift) renders and acts.
///
/// Why it is written this way:
/// - The event stream is read with `fetch()` and a stream parser, not `EventSource`, which cannot
///   send the `Authorization` header. It resumes with `?since=<last id>` after every reconnect, so
///   the page misses no event (ids are the server's `R` or `R:i`, see `EventCursor`).
/// - State is list + watch: tasks and nodes are listed once, then kept current by the events
///   from the lists' revision on; only the cluster status (no events) and heartbeat ages (not
///   events either) are refreshed periodically.
/// - When the master the page came from stops answering, API calls go to another member's
///   address straight away (its CORS answer allows a member's page, see `ClusterOrigins`); the
///   page stays loaded with everything it has.
/// - Only `textContent` is ever set from data, never HTML: task names and labels are user input.
enum DashboardScript {
    static let core = #"""
    'use strict';
    const $ = (id) => document.getElementById(id);
    const S = {
      base: '', // '' is the master that served the page; else another member's origin
      masterID: null,
      token: sessionStorage.getItem('orch-token') || '',
      tokenRequired: document.querySelector('meta[name="orch-token-required"]').content === 'true',
      cluster: null, members: [], health: {},
      tasks: new Map(), nodes: new Map(),
      events: [], eventIDs: [], lastEventID: null, gaps: 0, reconnects: 0,
      streamGen: 0, streamAbort: null, started: false, failingOver: null,
    };
    const MAX_EVENTS = 500, MAX_IDS = 20000;

    class NetworkError extends Error {}
    class HTTPError extends Error {
      constructor(status, body) { super((body && body.error && body.error.message) || ('HTTP ' + status)); this.status = status; this.body = body; }
    }

    const delay = (ms) => new Promise((r) => setTimeout(r, ms));
    function authHeaders(extra) {
      const h = Object.assign({}, extra || {});
      if (S.token) h['Authorization'] = 'Bearer ' + S.token;
      return h;
    }

    // One API call against the current master. A network failure (the master is gone) starts a
    // failover and is retried once on the new master; a 401 asks for the token.
    async function api(path, opts, retried) {
      opts = opts || {};
      const headers = authHeaders(opts.headers);
      if (opts.json !== undefined) headers['Content-Type'] = 'application/json';
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), opts.timeout || 12000);
      let res;
      try {
        res = await fetch(S.base + path, { method: opts.method || 'GET', headers, cache: 'no-store', signal: ctrl.signal,
          body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined });
      } catch (e) {
        clearTimeout(timer);
        if (!retried && await failover()) return api(path, opts, true);
        throw new NetworkError('no master answers: ' + e.message);
      }
      clearTimeout(timer);
      const text = await res.text();
      let body = null;
      if ((res.headers.get('Content-Type') || '').includes('json')) { try { body = JSON.parse(text); } catch (_) {} }
      if (res.status === 401) { askToken('The token was refused.'); throw new HTTPError(401, body); }
      if (!res.ok) throw new HTTPError(res.status, body);
      return { status: res.status, body, text, headers: res.headers };
    }

    // --- Token: asked for when the API wants one, kept in sessionStorage (this tab) only. ---
    function askToken(message) {
      $('token-form').hidden = false;
      $('token-error').textContent = message || '';
      $('token-input').focus();
    }
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      S.token = $('token-input').value.trim();
      sessionStorage.setItem('orch-token', S.token);
      $('token-form').hidden = true;
      $('token-input').value = '';
      if (!S.started) start(); else { refreshCluster(); restartStream(); }
    });

    // --- Failover: the member list says where the other masters are. ---
    function memberOrigin(m) { return m.api_address ? location.protocol + '//' + m.api_address : null; }
    async function probe(origin, ms) {
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), ms);
      try {
        const res = await fetch(origin + '/api/v1/cluster', { headers: authHeaders(), cache: 'no-store', signal: ctrl.signal });
        return res.ok ? await res.json() : null;
      } catch (_) { return null; } finally { clearTimeout(timer); }
    }
    // Finds a master that answers, the current one last; true when one does. Concurrent callers
    // share one attempt.
    function failover() {
      if (S.failingOver) return S.failingOver;
      S.failingOver = (async () => {
        const current = S.base || location.origin;
        const others = S.members.map(memberOrigin).filter((o) => o && o !== current);
        for (const origin of others.concat([current])) {
          const c = await probe(origin, 2000);
          if (!c) continue;
          if (origin !== current) {
            const from = S.masterID || location.host;
            S.base = origin === location.origin ? '' : origin;
            showNotice('Master ' + from + ' stopped answering; the page now uses ' + c.node_id + ' at ' + origin.replace(/^\w+:\/\//, '') + '.');
          }
          applyCluster(c);
          return true;
        }
        setConnection('no master answers; retrying');
        return false;
      })().finally(() => { S.failingOver = null; });
      return S.failingOver;
    }

    // --- State: lists, then the event stream from their revision. ---
    async function loadAllTasks() {
      const all = [];
      let token = null, revision = null;
      for (let i = 0; i < 200; i++) {
        const r = await api('/api/v1/tasks?limit=500' + (token ? '&continue=' + encodeURIComponent(token) : ''));
        all.push(...r.body.tasks);
        revision = revision === null ? r.body.revision : Math.min(revision, r.body.revision);
        token = r.body.continue;
        if (!token) break;
      }
      return { tasks: all, revision };
    }
    async function loadState() {
      const [t, n] = await Promise.all([loadAllTasks(), api('/api/v1/nodes')]);
      S.tasks = new Map(t.tasks.map((x) => [x.id, x]));
      S.nodes = new Map(n.body.nodes.map((x) => [x.id, x]));
      return Math.min(t.revision, n.body.revision);
    }
    // Heartbeat ages change without events; the node list is re-read for them.
    async function refreshNodes() {
      const n = await api('/api/v1/nodes');
      for (const node of n.body.nodes) {
        const cur = S.nodes.get(node.id);
        if (!cur || cur.revision <= node.revision) S.nodes.set(node.id, node);
      }
      scheduleRender();
    }

    function parseBlock(block) {
      const msg = { id: null, event: 'message', data: [] };
      let any = false;
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'id') msg.id = value; else if (field === 'event') msg.event = value;
        else if (field === 'data') msg.data.push(value); else continue;
        any = true;
      }
      return any ? msg : null;
    }

    function restartStream() {
      if (S.streamAbort) S.streamAbort.abort();
      runStream();
    }
    // Reads the stream until it ends, then resumes from the last id: on this master if it still
    // answers, else on another (failover). A 410 (history compacted) reloads the lists and says
    // so: a gap is shown, never hidden.
    async function runStream() {
      const gen = ++S.streamGen;
      let failures = 0;
      while (gen === S.streamGen) {
        const ctrl = new AbortController();
        S.streamAbort = ctrl;
        let ended = 'closed';
        try {
          const since = S.lastEventID === null ? '' : '?since=' + encodeURIComponent(S.lastEventID);
          const res = await fetch(S.base + '/api/v1/events' + since, { headers: authHeaders(), cache: 'no-store', signal: ctrl.signal });
          if (res.status === 401) { askToken('The token was refused.'); return; }
          if (res.status === 410) { await resync('the server no longer has the events after ' + S.lastEventID); continue; }
          if (!res.ok) throw new HTTPError(res.status, null);
          failures = 0;
          setConnection('live' + (S.masterID ? ' from ' + S.masterID : ''));
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          read: for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r\n?/g, '\n');
            let cut;
            while ((cut = buf.indexOf('\n\n')) >= 0) {
              const msg = parseBlock(buf.slice(0, cut));
              buf = buf.slice(cut + 2);
              if (!msg) continue;
              if (msg.event === 'shutdown') { ended = 'shutdown'; ctrl.abort(); break read; }
              if (msg.event === 'error') {
                const err = JSON.parse(msg.data.join('\n') || '{}').error || {};
                ended = err.code === 'compacted' ? 'compacted' : 'error';
                ctrl.abort();
                break read;
              }
              if (msg.id !== null && msg.data.length) onEvent(msg.id, JSON.parse(msg.data.join('\n')));
            }
          }
        } catch (e) {
          if (gen !== S.streamGen) return;
          ended = 'failed';
          failures++;
        }
        if (gen !== S.streamGen) return;
        if (ended === 'compacted') { await resync('the server compacted the events after ' + S.lastEventID); continue; }
        S.reconnects++;
        setConnection('reconnecting from event ' + S.lastEventID + '…');
        // A master that is stopping or gone: find one that answers before reconnecting.
        if (ended === 'shutdown' || ended === 'failed') {
          if (!(await probe(S.base || location.origin, 1500))) await failover();
        }
        await delay(Math.min(2000, 100 * 2 ** failures));
      }
    }
    async function resync(why) {
      S.gaps++;
      recordEvent({ id: null, type: 'gap', text: 'Events were missed: ' + why + '; the lists were reloaded.' });
      S.lastEventID = String(await loadState());
      scheduleRender();
    }

    function onEvent(id, ev) {
      S.lastEventID = id;
      S.eventIDs.push(id);
      if (S.eventIDs.length > MAX_IDS) S.eventIDs.splice(0, S.eventIDs.length - MAX_IDS);
      if (ev.task) {
        const cur = S.tasks.get(ev.task.id);
        if (!cur || cur.revision <= ev.task.revision) S.tasks.set(ev.task.id, ev.task);
      } else if (ev.node) {
        const cur = S.nodes.get(ev.node.id);
        if (!cur || cur.revision <= ev.node.revision) S.nodes.set(ev.node.id, ev.node);
      }
      if (ev.type === 'task_deleted') S.tasks.delete(ev.id);
      if (ev.type === 'node_removed') S.nodes.delete(ev.id);
      if (ev.type === 'leader_elected') refreshCluster();
      recordEvent({ id, type: ev.type, ev, at: Date.now() });
    }
    function recordEvent(e) {
      S.events.push(e);
      if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
      if (typeof onTaskEvent === 'function') onTaskEvent(e);
      scheduleRender();
    }

    // --- Cluster status: no events, so refreshed every few seconds, with each member's health. ---
    function applyCluster(c) {
      S.cluster = c;
      S.masterID = c.node_id;
      if (c.members && c.members.length) S.members = c.members;
      document.body.dataset.master = c.node_id;
      document.body.dataset.leader = c.leader_id || '';
      scheduleRender();
    }
    async function refreshCluster() {
      try {
        applyCluster((await api('/api/v1/cluster')).body);
      } catch (e) { if (!(e instanceof HTTPError)) setConnection('no master answers; retrying'); return; }
      const results = await Promise.all(S.members.map(async (m) => {
        const origin = memberOrigin(m);
        return [m.id, origin ? await probe(origin, 2000) : null];
      }));
      S.health = Object.fromEntries(results);
      scheduleRender();
    }

    let renderQueued = false;
    function scheduleRender() {
      if (renderQueued) return;
      renderQueued = true;
      setTimeout(() => { renderQueued = false; render(); }, 50);
    }
    function setConnection(text) { $('connection').textContent = text; }
    function showNotice(text) { S.notice = text; scheduleRender(); }

    async function start() {
      S.started = true;
      try {
        await refreshCluster();
        S.lastEventID = String(await loadState());
        $('view-events').dataset.since = S.lastEventID; // where this page's event record starts
      } catch (e) {
        S.started = false;
        if (!(e instanceof HTTPError && e.status === 401)) setConnection('cannot load: ' + e.message);
        return;
      }
      document.body.dataset.ready = 'true';
      scheduleRender();
      runStream();
      setInterval(refreshCluster, 3000);
      setInterval(() => { refreshNodes().catch(() => {}); }, 5000);
    }
    """#
}
