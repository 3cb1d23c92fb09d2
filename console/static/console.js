// SDP console: keeps the blocks table and the feed current from /api/events.
//
// The server sends `hello` (its clock), `snapshot` (everything), `changes` (the recent
// feed), then `delta` after each change of the picture and `change` per feed line. Each
// delta names the revision it applies to; if that is not the one shown, the page asks
// for everything again. All text from the server goes into the page with textContent,
// never as markup.
'use strict';

(() => {
  const MAX_ROWS = 500; // rows drawn at once; the filter narrows the rest down
  const MAX_FEED = 200;
  const AGE_REFRESH_MS = 5000;
  const STATUS_ORDER = ['FAILED', 'STARTING', 'WAITING', 'RUNNING', 'FINISHED', 'CANCELLED', 'NONE'];

  const model = {
    revision: null,
    blocks: new Map(), // id -> block summary (+ _t: time of `since`, ms)
    deployments: new Map(), // id -> deployment summary
    totals: null,
    clockOffset: 0, // server time - browser time, ms
  };
  const view = {
    expanded: new Set(),
    filter: '',
    status: null, // a status to show only, or null
    order: null, // ids sorted for display; null when it must be recomputed
    rows: new WeakMap(), // block summary object -> its <tr> (a changed block is a new object)
    fresh: new Set(), // ids to highlight once
    scheduled: false,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function badge(status) {
    const b = el('span', 'badge s-' + (status || 'NONE'), status || '—');
    if (!status) b.title = 'not reported yet';
    return b;
  }

  // `45s`, `5m`, `2h`, `3d`, as sdpcfg status and kubectl print them.
  function shortAge(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h';
    return Math.floor(s / 86400) + 'd';
  }

  function now() {
    return Date.now() + model.clockOffset;
  }

  function prepBlock(b) {
    const t = b.since ? Date.parse(b.since) : NaN;
    b._t = Number.isNaN(t) ? null : t;
    return b;
  }

  function ownerText(owner) {
    if (!owner) return null;
    if (owner.hostname && owner.pid != null) return owner.hostname + ':' + owner.pid;
    if (owner.hostname) return owner.hostname;
    if (owner.pid != null) return 'pid ' + owner.pid;
    return 'alive';
  }

  // Newest first: blocks not started yet (no `since`) on top, then by start time.
  function compareBlocks(a, b) {
    if (a._t === null && b._t !== null) return -1;
    if (a._t !== null && b._t === null) return 1;
    if (a._t !== b._t) return b._t - a._t;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  }

  function matches(b, words) {
    if (view.status && (b.status || 'NONE') !== view.status) return false;
    if (!words.length) return true;
    const hay = [b.id, b.workflow, b.status, b.reason, ownerText(b.owner)]
      .filter(Boolean).join(' ').toLowerCase();
    return words.every((w) => hay.includes(w));
  }

  // --- drawing ---------------------------------------------------------------------

  function schedule() {
    if (view.scheduled) return;
    view.scheduled = true;
    requestAnimationFrame(render);
  }

  function render() {
    view.scheduled = false;
    renderTotals();
    renderBlocks();
    renderOrphans();
    const failed = model.totals ? (model.totals.blocks_by_status.FAILED || 0) : 0;
    document.title = failed ? `SDP console (${failed} failed)` : 'SDP console';
    document.body.dataset.revision = model.revision === null ? '' : String(model.revision);
  }

  function renderTotals() {
    const nav = $('totals');
    const t = model.totals;
    if (!t) {
      nav.replaceChildren();
      return;
    }
    const items = [];
    const all = el('button', null);
    all.append(el('span', 'count', t.blocks), 'blocks');
    all.setAttribute('aria-pressed', String(view.status === null));
    all.dataset.status = '';
    items.push(all);
    const statuses = Object.keys(t.blocks_by_status).sort(
      (a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
    for (const s of statuses) {
      const btn = el('button', null);
      btn.append(el('span', 'count', t.blocks_by_status[s]), badge(s === 'NONE' ? null : s));
      btn.setAttribute('aria-pressed', String(view.status === s));
      btn.dataset.status = s;
      items.push(btn);
    }
    items.push(el('span', 'sep', '·'));
    const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
    items.push(el('span', 'sep', `${plural(t.deployments, 'deployment')}, ` +
      `${plural(t.owners_alive, 'owner')} alive` + (t.orphans ? `, ${t.orphans} of no block` : '')));
    nav.replaceChildren(...items);
  }

  function rank(status) {
    const i = STATUS_ORDER.indexOf(status);
    return i < 0 ? STATUS_ORDER.length : i;
  }

  function renderBlocks() {
    if (view.order === null) {
      view.order = Array.from(model.blocks.values()).sort(compareBlocks).map((b) => b.id);
    }
    const words = view.filter.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = [];
    let matching = 0;
    for (const id of view.order) {
      const b = model.blocks.get(id);
      if (!b || !matches(b, words)) continue;
      matching += 1;
      if (matching > MAX_ROWS) continue;
      rows.push(blockRow(b));
      if (view.expanded.has(id)) rows.push(detailRow(b));
    }
    $('blocks').tBodies[0].replaceChildren(...rows);
    view.fresh.clear();
    $('empty').hidden = model.blocks.size > 0 || model.revision === null;
    const total = model.blocks.size;
    let shown = `${matching} of ${total} blocks`;
    if (matching > MAX_ROWS) shown = `showing ${MAX_ROWS} of ${matching} matching (${total} blocks): filter to narrow`;
    else if (matching === total) shown = `${total} blocks`;
    $('shown').textContent = shown;
  }

  function blockRow(b) {
    let tr = view.rows.get(b);
    if (!tr) {
      tr = el('tr', 'block');
      tr.dataset.id = b.id;
      tr.dataset.status = b.status || '';
      const toggle = el('td', 'toggle');
      const button = el('button', null);
      button.type = 'button';
      button.append(el('span', 'chevron'));
      toggle.append(button);
      const status = el('td', 'status');
      status.append(badge(b.status));
      const owner = el('td', 'owner');
      const o = ownerText(b.owner);
      if (o) {
        owner.append(el('span', 'alive', o));
        owner.title = 'the owning workflow process is alive';
      } else {
        owner.append(el('span', 'dash', '—'));
      }
      const reason = el('td', 'reason', b.reason || '');
      if (b.reason) reason.title = b.reason;
      tr.append(toggle, el('td', 'id', b.id), el('td', 'workflow', b.workflow || '—'),
        status, el('td', 'age'), owner, el('td', 'deps'), reason);
      view.rows.set(b, tr);
    }
    const open = view.expanded.has(b.id);
    const button = tr.cells[0].firstChild;
    button.setAttribute('aria-expanded', String(open));
    button.setAttribute('aria-label', (open ? 'Hide' : 'Show') + ' the deployments of ' + b.id);
    tr.cells[4].textContent = b._t === null ? '—' : shortAge(now() - b._t);
    fillDeployments(tr.cells[6], b);
    tr.classList.toggle('fresh', view.fresh.has(b.id));
    return tr;
  }

  // Deployments change without their block changing: drawn on every render.
  function fillDeployments(td, b) {
    const items = [];
    const ids = b.deployments || [];
    if (!ids.length) items.push(el('span', 'dash', '—'));
    // One badge per deployment: what became of its workload once that is known (the
    // more telling of the two), else its release status; the tooltip has both.
    for (const id of ids.slice(0, 3)) {
      const d = model.deployments.get(id);
      const tag = badge(d ? d.workload_phase || d.status : null);
      tag.title = id + ': release ' + ((d && d.status) || 'not reported') +
        (d && d.workload_phase ? ', workload ' + d.workload_phase : '');
      items.push(tag);
    }
    if (ids.length > 3) items.push(el('span', 'more', '+' + (ids.length - 3)));
    td.replaceChildren(...items);
  }

  function detailRow(b) {
    const tr = el('tr', 'detail');
    tr.dataset.id = b.id;
    const td = el('td');
    td.colSpan = 8;
    const deployments = (b.deployments || []).map((id) => model.deployments.get(id)).filter(Boolean);
    if (deployments.length) {
      td.append(deploymentTable(deployments));
    } else {
      td.append(el('div', 'none', 'No deployments yet.'));
    }
    tr.append(td);
    return tr;
  }

  function deploymentTable(deployments) {
    const table = el('table', 'deployments');
    const head = el('tr');
    for (const h of ['Deployment', 'Type', 'Chart', 'Release', 'Workload', 'Message']) head.append(el('th', null, h));
    table.createTHead().append(head);
    const body = table.createTBody();
    for (const d of deployments) {
      const tr = el('tr', 'deployment');
      tr.dataset.id = d.id;
      const release = el('td', 'release');
      release.append(badge(d.status));
      const workload = el('td', 'workload');
      workload.append(d.workload_phase ? badge(d.workload_phase) : el('span', 'dash', '—'));
      const message = [d.message, d.workload_message].filter(Boolean).join(' — ');
      tr.append(el('td', 'id mono', d.id), el('td', null, d.kind || '—'), el('td', null, d.chart || '—'),
        release, workload, el('td', 'message', message));
      body.append(tr);
    }
    return table;
  }

  function renderOrphans() {
    const orphans = [];
    for (const d of model.deployments.values()) if (!d.block) orphans.push(d);
    $('orphans').hidden = orphans.length === 0;
    if (orphans.length) {
      orphans.sort((a, b) => (a.id < b.id ? -1 : 1));
      $('orphan-list').replaceChildren(deploymentTable(orphans.slice(0, MAX_ROWS)));
    }
  }

  // --- the feed --------------------------------------------------------------------

  function feedItem(c) {
    const li = el('li', c.kind);
    const t = new Date(c.time);
    const time = el('time', null, Number.isNaN(t.getTime()) ? '' : t.toLocaleTimeString([], { hour12: false }));
    time.dateTime = c.time;
    time.title = c.time + ' (revision ' + c.revision + ')';
    li.append(time, el('span', null, c.summary));
    return li;
  }

  function setFeed(changes) {
    const items = changes.slice(-MAX_FEED).reverse().map(feedItem);
    $('feed').replaceChildren(...items);
    $('feed-empty').hidden = items.length > 0;
  }

  function addFeed(c) {
    const list = $('feed');
    list.prepend(feedItem(c));
    while (list.children.length > MAX_FEED) list.lastChild.remove();
    $('feed-empty').hidden = true;
  }

  // --- the stream ------------------------------------------------------------------

  let source = null;

  function setConnection(state, text) {
    const c = $('connection');
    c.className = 'connection ' + state;
    c.textContent = text;
  }

  function connect() {
    if (source) source.close();
    source = new EventSource('/api/events');
    source.addEventListener('hello', (e) => {
      const hello = JSON.parse(e.data);
      const t = Date.parse(hello.now);
      model.clockOffset = Number.isNaN(t) ? 0 : t - Date.now();
    });
    source.addEventListener('snapshot', (e) => {
      const s = JSON.parse(e.data);
      model.blocks = new Map(s.blocks.map((b) => [b.id, prepBlock(b)]));
      model.deployments = new Map(s.deployments.map((d) => [d.id, d]));
      model.totals = s.totals;
      model.revision = s.revision;
      view.order = null;
      showLive();
      schedule();
    });
    source.addEventListener('delta', (e) => {
      const d = JSON.parse(e.data);
      if (d.revision <= model.revision) return;
      if (d.from !== model.revision) {
        // A gap: start again from a whole snapshot.
        connect();
        return;
      }
      for (const id of d.removed_blocks) {
        model.blocks.delete(id);
        view.expanded.delete(id);
      }
      for (const b of d.blocks) {
        if (!model.blocks.has(b.id)) view.fresh.add(b.id);
        model.blocks.set(b.id, prepBlock(b));
      }
      for (const id of d.removed_deployments) model.deployments.delete(id);
      for (const dep of d.deployments) model.deployments.set(dep.id, dep);
      model.totals = d.totals;
      model.revision = d.revision;
      if (d.blocks.length || d.removed_blocks.length) view.order = null;
      showLive();
      schedule();
    });
    source.addEventListener('changes', (e) => setFeed(JSON.parse(e.data)));
    source.addEventListener('change', (e) => addFeed(JSON.parse(e.data)));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        setConnection('lost', 'disconnected; retrying…');
        setTimeout(connect, 2000);
      } else {
        setConnection('connecting', 'reconnecting…');
      }
    });
  }

  function showLive() {
    if (model.revision === 0) {
      setConnection('connecting', 'waiting for the configuration database…');
    } else {
      setConnection('live', 'live · revision ' + model.revision);
    }
  }

  // --- input -----------------------------------------------------------------------

  function init() {
    $('blocks').tBodies[0].addEventListener('click', (e) => {
      const tr = e.target.closest('tr.block');
      if (!tr) return;
      const id = tr.dataset.id;
      if (view.expanded.has(id)) view.expanded.delete(id);
      else view.expanded.add(id);
      schedule();
    });
    $('totals').addEventListener('click', (e) => {
      const btn = e.target.closest('button');
      if (!btn) return;
      const s = btn.dataset.status || null;
      view.status = view.status === s ? null : s;
      schedule();
    });
    let typing = null;
    $('filter').addEventListener('input', (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        view.filter = e.target.value;
        schedule();
      }, 120);
    });
    setInterval(schedule, AGE_REFRESH_MS);
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
