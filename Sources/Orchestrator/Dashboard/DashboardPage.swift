/// The dashboard's HTML and CSS. The page is a shell: `app.js` (`DashboardScript`) fills it. No
/// inline script or style anywhere, so the Content-Security-Policy can forbid both.
enum DashboardPage {
    static func html(tokenRequired: Bool) -> String {
        #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="orch-token-required" content="\#(tokenRequired)">
        <title>Orchestrator</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/ui/style.css">
        <script src="/ui/app.js" defer></script>
        </head>
        <body>
        <header>
          <h1>Orchestrator</h1>
          <nav aria-label="Views">
            <a href="#/cluster" id="nav-cluster">Cluster</a>
            <a href="#/nodes" id="nav-nodes">Nodes</a>
            <a href="#/tasks" id="nav-tasks">Tasks</a>
            <a href="#/events" id="nav-events">Events</a>
          </nav>
          <p id="connection" role="status">Connecting…</p>
        </header>
        <div id="banner" role="alert" hidden></div>
        <form id="token-form" hidden>
          <label>API token <input type="password" id="token-input" autocomplete="off" required></label>
          <button type="submit" id="token-submit">Use token</button>
          <span>kept for this browser tab only</span>
          <p id="token-error" role="alert"></p>
        </form>
        <main>
        <section id="view-cluster" hidden>
          <h2>Cluster</h2>
          <dl id="cluster-summary" class="summary"></dl>
          <div class="scroll"><table id="members">
            <thead><tr><th>Master</th><th>Role</th><th>Health</th><th>Applied index</th><th>Lag</th><th>API</th></tr></thead>
            <tbody></tbody>
          </table></div>
        </section>
        <section id="view-nodes" hidden>
          <h2>Nodes</h2>
          <p id="nodes-result" role="status"></p>
          <div id="node-list" class="cards"></div>
        </section>
        <section id="view-tasks" hidden>
          <h2>Tasks</h2>
          <details id="submit">
            <summary>Submit a task</summary>
            <form id="submit-form">
              <label for="submit-spec">Task (JSON, as POST /api/v1/tasks takes it)</label>
              <textarea id="submit-spec" rows="9" spellcheck="false"></textarea>
              <button type="submit" id="submit-button">Submit</button>
              <p id="submit-result" role="status"></p>
            </form>
          </details>
          <div class="filters">
            <label>State <select id="task-state"><option value="">any</option></select></label>
            <label>Search <input type="search" id="task-search" placeholder="name, id, node or image"></label>
          </div>
          <div class="scroll"><table id="tasks">
            <thead><tr><th>Name</th><th>State</th><th>Node</th><th>Age</th><th>Image</th></tr></thead>
            <tbody></tbody>
          </table></div>
          <div class="pager">
            <button type="button" id="page-prev">Previous</button>
            <span id="page-info"></span>
            <button type="button" id="page-next">Next</button>
          </div>
        </section>
        <section id="view-task" hidden>
          <p><a href="#/tasks">← All tasks</a></p>
          <h2 id="task-title">Task</h2>
          <p><button type="button" id="task-cancel">Cancel task</button> <span id="task-result" role="status"></span></p>
          <dl id="task-summary" class="summary"></dl>
          <h3>History</h3>
          <ol id="task-history"></ol>
          <h3>Placement</h3>
          <div id="task-placement"></div>
          <h3>Spec</h3>
          <pre id="task-spec"></pre>
          <h3>Logs</h3>
          <pre id="task-logs"></pre>
        </section>
        <section id="view-events" hidden>
          <h2>Events</h2>
          <div class="filters">
            <label>Type <select id="event-type"><option value="">all</option></select></label>
            <label>Subject <input type="search" id="event-search" placeholder="task or node id"></label>
          </div>
          <p id="event-status" role="status"></p>
          <ol id="event-list"></ol>
        </section>
        </main>
        </body>
        </html>
        """#
    }

    static let css = #"""
    :root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #5b636d; --line: #d0d7de; --accent: #0b5cad;
      --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
    @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d;
      --accent: #4493f8; --ok: #3fb950; --warn: #d29922; --bad: #f85149; } }
    * { box-sizing: border-box; }
    body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
    header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; padding: .6rem 1rem;
      border-bottom: 1px solid var(--line); }
    h1 { font-size: 1.15rem; margin: 0; }
    nav { display: flex; flex-wrap: wrap; gap: .25rem; }
    nav a { padding: .3rem .7rem; border-radius: 6px; color: var(--accent); text-decoration: none; }
    nav a[aria-current="page"] { background: var(--accent); color: var(--bg); font-weight: 600; }
    #connection { margin: 0 0 0 auto; color: var(--muted); font-size: .9rem; }
    #banner { padding: .6rem 1rem; background: var(--warn); color: #000; font-weight: 600; }
    #banner::before { content: "⚠ "; }
    main { padding: .5rem 1rem 2rem; max-width: 1200px; }
    form#token-form { padding: 1rem; border-bottom: 1px solid var(--line); }
    .summary { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
    .summary dt { color: var(--muted); }
    .summary dd { margin: 0; }
    .scroll { overflow-x: auto; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
    th { font-size: .85rem; color: var(--muted); }
    .state { font-weight: 600; white-space: nowrap; }
    .state::before { content: "● "; }
    .state-running, .state-ready, .state-completed, .state-leader, .state-healthy { color: var(--ok); }
    .state-pending, .state-assigned, .state-draining, .state-not_ready, .state-cordoned, .state-lagging { color: var(--warn); }
    .state-failed, .state-lost, .state-down, .state-unreachable, .state-cancelled { color: var(--bad); }
    .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); gap: 1rem; }
    .card { border: 1px solid var(--line); border-radius: 8px; padding: .8rem; }
    .card h3 { margin: 0 0 .4rem; font-size: 1rem; word-break: break-all; }
    meter { width: 100%; height: 1rem; }
    .labels { display: flex; flex-wrap: wrap; gap: .25rem; padding: 0; list-style: none; }
    .labels li { border: 1px solid var(--line); border-radius: 4px; padding: 0 .3rem; font-size: .85rem; }
    .filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; margin: .8rem 0; }
    .pager { display: flex; gap: 1rem; align-items: center; margin-top: .6rem; }
    button { font: inherit; padding: .3rem .8rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg);
      color: var(--fg); cursor: pointer; }
    button:disabled { opacity: .5; cursor: default; }
    input, select, textarea { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
      border-radius: 6px; padding: .25rem .4rem; }
    textarea { display: block; width: 100%; font-family: ui-monospace, monospace; margin: .3rem 0; }
    pre { background: color-mix(in srgb, var(--fg) 6%, var(--bg)); padding: .6rem; border-radius: 6px; overflow-x: auto;
      white-space: pre-wrap; word-break: break-all; max-height: 30rem; }
    #event-list { list-style: none; padding: 0; font-family: ui-monospace, monospace; font-size: .85rem; }
    #event-list li { padding: .2rem 0; border-bottom: 1px solid var(--line); }
    .muted { color: var(--muted); }
    .stderr { color: var(--bad); }
    .stderr::before { content: "stderr› "; font-weight: 600; }
    @media (max-width: 600px) {
      header { padding: .5rem; } main { padding: .5rem; }
      #connection { margin: 0; width: 100%; }
      .summary { grid-template-columns: 1fr; } .summary dd { margin-bottom: .3rem; }
      th:nth-child(5), td:nth-child(5) { display: none; }
    }
    """#
}
