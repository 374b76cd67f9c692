/* Status page of one gateway: vanilla JS, no build step, no third-party code.
 *
 * Data: the live stream (EventSource /api/events, `event: state` = the whole snapshot);
 * when the stream is quiet for POLL_IF_QUIET_MS the page fetches /api/state, so ages
 * and countdowns stay true and a hung gateway is noticed. Any error -> "connection lost"
 * banner at once and everything is drawn stale (grey, hatched, never green).
 *
 * Tolerant by design: every section may be missing (older gateway, not configured) and
 * is then shown as "not configured". All text goes in through textContent (no innerHTML).
 */
'use strict';
(() => {
  const Q = new URLSearchParams(location.search);
  const WALL = Q.get('screen') === '1';
  const ROTATE_S = Math.min(120, Math.max(3, Number(Q.get('rotate')) || 8));
  const POLL_IF_QUIET_MS = 1500;
  const POLL_TIMEOUT_MS = 3000;
  const STALE_AFTER_S = 5; // DOMAIN.md: stale = older than 3 x the poll period, 5 s at most
  // Trend charts: refresh period (?trend_s= for tests and slow links), 60 s by default.
  const TREND_REFRESH_MS = Math.min(600, Math.max(1, Number(Q.get('trend_s')) || 60)) * 1000;
  const ICONS = '#'; // the sprite is put inline at start: icons keep working when the gateway is gone
  const SVGNS = 'http://www.w3.org/2000/svg';

  const ZONE_STATES = {
    normal: { label: 'Normal', icon: 'ok' },
    warning: { label: 'Warning', icon: 'warn' },
    alarm: { label: 'Alarm', icon: 'alarm' },
    evacuate: { label: 'EVACUATE', icon: 'evacuate' },
    fault: { label: 'Fault', icon: 'fault' },
    stale: { label: 'No data', icon: 'stale' },
  };
  const SEVERITY_RANK = { normal: 0, warning: 1, alarm: 2, evacuate: 3 };
  const QUANTITY = { o2: 'O₂', lel: 'LEL', h2s: 'H₂S', co: 'CO', temperature: 'Temperature', vibration: 'Vibration', current: 'Current' };
  const KIND = { confined_space: ['Confined space', 'tank'], hot_work: ['Hot work', 'flame'] };

  const st = {
    snap: null,
    at: 0, // performance.now() when `snap` arrived
    link: 'connecting', // connecting | live | lost
    lostWhy: '',
    lostAt: 0,
    es: null,
    polling: false,
    lastPoll: 0,
    renderKey: '',
    session: { user: null, role: null, csrf: null, roles: ['viewer', 'operator', 'admin'], available: true },
    recent: [], // alarms this page saw clear: [{alarm, clearedUtc}]
    active: new Map(),
    wallIndex: 0,
    wallNext: 0,
  };

  // ---- DOM helpers --------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'data') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  function icon(name, cls) {
    const svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS(SVGNS, 'use');
    use.setAttribute('href', ICONS + name);
    svg.append(use);
    return svg;
  }

  const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);
  const list = (x) => (Array.isArray(x) ? x : isObj(x) ? Object.entries(x).map(([id, v]) => (isObj(v) ? { id, ...v } : { id, value: v })) : []);
  const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

  function fmtNum(v) {
    if (v === null || v === undefined) return '—';
    const a = Math.abs(v);
    if (a === 0) return '0.0';
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(a >= 1 ? 1 : 2);
  }
  function fmtAge(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return 'never';
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    return Math.floor(s / 3600) + ' h ago';
  }
  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const two = (n) => String(n).padStart(2, '0');
    return (hh ? hh + ':' + two(mm) : mm) + ':' + two(ss);
  }
  const stale = () => st.link !== 'live';
  const sinceSnap = () => (performance.now() - st.at) / 1000;

  // A live age: the snapshot's age plus the time since it arrived, refreshed every 0.5 s.
  function ageEl(ageS, prefix) {
    const el = h('span', { class: 'age', data: { age: ageS ?? '', at: st.at, prefix: prefix || '' } });
    paintAge(el);
    return el;
  }
  function paintAge(el) {
    const base = el.dataset.age === '' ? null : Number(el.dataset.age);
    const t = base === null ? null : base + (performance.now() - Number(el.dataset.at)) / 1000;
    el.textContent = (el.dataset.prefix || '') + fmtAge(t);
  }
  function countdownEl(remainingS) {
    const el = h('span', { class: 'countdown', data: { remaining: remainingS, at: st.at } });
    paintCountdown(el);
    return el;
  }
  function paintCountdown(el) {
    const left = Number(el.dataset.remaining) - (performance.now() - Number(el.dataset.at)) / 1000;
    el.textContent = stale() ? fmtDuration(left) + ' (stale)' : left <= 0 ? 'expired' : fmtDuration(left) + ' left';
    el.classList.toggle('countdown-low', left < 600);
  }

  // ---- what a value or a zone looks like -------------------------------------------------
  function signalLook(sig) {
    if (stale()) return { cls: 'st-stale', text: 'stale', icon: 'stale' };
    if (sig.quality === 'bad') return { cls: 'st-fault', text: 'bad: ' + (sig.reason || 'no reason given'), icon: 'fault' };
    if (sig.stale || sig.quality === 'stale' || sig.quality !== 'good') return { cls: 'st-stale', text: 'stale' + (sig.reason ? ': ' + sig.reason : ''), icon: 'stale' };
    const sev = sig.severity in SEVERITY_RANK ? sig.severity : 'fault';
    if (sev === 'normal') return { cls: 'st-normal', text: 'ok', icon: 'ok' };
    if (sev === 'fault') return { cls: 'st-fault', text: String(sig.severity), icon: 'fault' };
    return { cls: 'st-' + sev, text: ZONE_STATES[sev].label.toLowerCase(), icon: ZONE_STATES[sev].icon };
  }

  function zoneLook(z) {
    const known = ZONE_STATES[z.state];
    const look = known ? { state: z.state, ...known } : { state: 'fault', label: 'Unknown: ' + z.state, icon: 'fault' };
    // Stale data is never green; a known danger keeps its colour but is hatched as stale.
    if (stale() && look.state === 'normal') return { state: 'stale', label: 'No data', icon: 'stale', stale: true };
    return { ...look, stale: stale() };
  }

  const signalsOf = (zid) => list(st.snap?.signals).filter((s) => s.zone === zid);
  const permitsOf = (zid) => list(st.snap?.permits).filter((p) => (p.zone ?? p.zone_id) === zid);

  // Presence: {presence: {zones: [{zone, inside: [...], entries, exits, max}]}} (list or map).
  function presenceOf(zid) {
    const p = st.snap?.presence;
    if (!isObj(p)) return null;
    const zones = list(p.zones ?? p);
    const z = zones.find((x) => (x.zone ?? x.id) === zid);
    if (!z) return { inside: [], entries: null, exits: null };
    const inside = list(z.inside ?? z.people).map((x) => (typeof x === 'string' ? { person: x } : isObj(x) && 'value' in x && Object.keys(x).length === 2 ? { person: String(x.value) } : x));
    return { ...z, inside };
  }
  const personName = (p) => p.name || p.person || p.id || p.badge || '?';

  // ---- data in -------------------------------------------------------------------------
  function volatileKey(snap) {
    return JSON.stringify(snap, (k, v) => (['utc', 'uptime_s', 'age_s', 'remaining_s', 'steps', 'polls', 'inbox'].includes(k) ? undefined : v));
  }

  function accept(snap) {
    if (!isObj(snap)) return;
    trackRecent(snap);
    st.snap = snap;
    st.at = performance.now();
    const wasLive = st.link === 'live';
    st.link = 'live';
    const key = volatileKey(snap);
    if (!wasLive || key !== st.renderKey) {
      st.renderKey = key;
      render();
    } else {
      paintLive();
    }
  }

  function linkLost(why) {
    if (st.link !== 'lost') st.lostAt = performance.now();
    const changed = st.link !== 'lost' || st.lostWhy !== why;
    st.link = 'lost';
    st.lostWhy = why;
    if (changed) render();
  }

  function connect() {
    if (st.es) st.es.close();
    const es = new EventSource('/api/events');
    st.es = es;
    es.addEventListener('state', (e) => {
      try {
        accept(JSON.parse(e.data));
      } catch (err) {
        linkLost('unreadable data from the gateway');
      }
    });
    es.addEventListener('error', () => {
      linkLost('the live stream broke; reconnecting');
      // CLOSED means the browser gave up (e.g. an HTTP error): retry ourselves.
      if (es.readyState === EventSource.CLOSED) setTimeout(() => st.es === es && connect(), 2000);
    });
  }

  async function poll() {
    if (st.polling) return;
    st.polling = true;
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), POLL_TIMEOUT_MS);
    try {
      const r = await fetch('/api/state', { cache: 'no-store', signal: ctrl.signal });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      accept(await r.json());
    } catch (err) {
      linkLost(err.name === 'AbortError' ? 'the gateway does not answer' : 'no answer from the gateway');
    } finally {
      clearTimeout(timer);
      st.polling = false;
    }
  }

  function trackRecent(snap) {
    const now = new Map(list(snap.alarms).map((a) => [a.zone + '/' + a.signal, a]));
    for (const [k, a] of st.active) {
      if (!now.has(k)) st.recent.unshift({ alarm: a, cleared: snap.utc || new Date().toISOString() });
    }
    st.recent.length = Math.min(st.recent.length, 50);
    st.active = now;
  }

  // ---- rendering -----------------------------------------------------------------------
  function render() {
    document.body.classList.toggle('wall', WALL);
    document.body.classList.toggle('all-stale', stale());
    renderBanners();
    renderHeader();
    const main = $('main');
    const view = WALL ? wallView() : routeView();
    main.replaceChildren(view);
    paintLive();
  }

  function route() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    return { name: parts[0] || 'overview', arg: parts[1] };
  }

  function routeView() {
    const r = route();
    for (const a of $('nav').querySelectorAll('a')) a.classList.toggle('active', a.dataset.route === (r.name === 'zone' ? 'overview' : r.name));
    if (!st.snap) return h('p', { class: 'muted', text: stale() ? 'No data: ' + st.lostWhy : 'Loading the gateway state…' });
    switch (r.name) {
      case 'zone': return zoneView(r.arg);
      case 'alarms': return alarmsView();
      case 'permits': return permitsView();
      case 'devices': return devicesView();
      case 'connectivity': return connectivityView();
      case 'condition': return conditionView();
      default: return overviewView();
    }
  }

  function renderBanners() {
    const conn = $('banner-conn');
    conn.hidden = st.link !== 'lost';
    $('banner-conn-detail').textContent = st.lostWhy + (st.snap ? '; last data ' + fmtAge(sinceSnap()) : '');
    const evac = list(st.snap?.zones).filter((z) => z.evacuate === true);
    const eb = $('banner-evac');
    eb.hidden = evac.length === 0;
    if (evac.length) {
      eb.replaceChildren(
        icon('evacuate', 'icon-lg'),
        h('div', {},
          h('strong', { text: 'EVACUATE ' + evac.map((z) => z.name || z.id).join(', ') }),
          stale() ? h('span', { class: 'tag', text: 'last known (stale)' }) : null,
          ...evac.map((z) => {
            const p = presenceOf(z.id);
            if (!p) return null;
            const names = p.inside.map(personName);
            return h('div', { class: 'evac-people', text: (z.name || z.id) + ': ' + (names.length ? names.length + ' inside: ' + names.join(', ') : 'nobody recorded inside') });
          })));
    }
    const out = $('banner-output');
    const of = st.snap?.output_fault;
    out.hidden = !of;
    if (of) out.replaceChildren(icon('fault'), h('span', { text: 'Output fault: ' + (typeof of === 'string' ? of : JSON.stringify(of)) + '. Outputs are driven safe.' }));
    const rd = $('banner-ready');
    rd.hidden = !st.snap || st.snap.ready !== false;
    if (!rd.hidden) rd.replaceChildren(icon('stale'), h('span', { text: 'Gateway starting: not ready yet.' }));
  }

  function renderHeader() {
    const s = st.snap;
    $('site').textContent = s ? (s.site || 'site') + ' · ' + (s.gateway || 'gateway') : 'Gateway';
    document.title = (evacuating() ? 'EVACUATE · ' : '') + (s ? s.gateway || 'Gateway' : 'Gateway') + ' status';
    const ls = $('link-state');
    ls.replaceChildren(icon(st.link === 'live' ? 'link' : 'lost'), st.link === 'live' ? 'live' : st.link === 'lost' ? 'connection lost' : 'connecting');
    ls.className = 'link-state link-' + st.link;
    const n = list(s?.alarms).length;
    const c = $('nav-alarms');
    c.hidden = n === 0;
    c.textContent = String(n);
    const sess = st.session;
    $('who-name').textContent = !sess.available ? 'read-only gateway' : sess.user ? sess.user + ' (' + sess.role + ')' : 'not logged in';
    $('login-btn').textContent = sess.user ? 'Log out' : 'Log in';
  }

  const evacuating = () => list(st.snap?.zones).some((z) => z.evacuate === true);

  function section(title, iconName, ...kids) {
    return h('section', { class: 'panel' }, h('h2', {}, iconName ? icon(iconName) : null, title), ...kids);
  }
  const notConfigured = (what) => h('p', { class: 'muted not-configured', text: what + ': not configured' });

  // ---- overview: the workshop risk board ---------------------------------------------------
  function overviewView() {
    const zones = list(st.snap.zones);
    const board = h('div', { class: 'board', role: 'list' }, zones.map((z) => zoneTile(z)));
    return h('div', {},
      h('h1', { class: 'visually-hidden', text: 'Plant overview' }),
      zones.length ? board : notConfigured('Zones'),
      activeAlarmsPanel(true));
  }

  function zoneTile(z, opts) {
    const look = zoneLook(z);
    const kind = KIND[z.kind] || [z.kind || 'zone', 'gateway'];
    const sigs = signalsOf(z.id);
    const pres = presenceOf(z.id);
    const permits = permitsOf(z.id);
    const tile = h(opts?.static ? 'div' : 'a', {
      class: 'tile st-' + look.state + (look.stale ? ' is-stale' : ''),
      href: opts?.static ? null : '#/zone/' + encodeURIComponent(z.id),
      role: 'listitem',
      data: { zone: z.id, state: look.state },
    },
    h('div', { class: 'tile-state' }, icon(look.icon, 'icon-lg'), h('span', { class: 'state-label', text: look.label })),
    h('div', { class: 'tile-name' }, icon(kind[1]), h('span', { text: z.name || z.id })),
    h('div', { class: 'tile-kind', text: kind[0] }),
    look.stale ? h('div', { class: 'tag tag-stale', text: 'last known · connection lost' }) : null,
    z.silenced ? h('div', { class: 'tag' }, icon('silenced'), 'horn silenced') : null,
    h('ul', { class: 'tile-values' }, sigs.map((s) => {
      const sl = signalLook(s);
      return h('li', { class: sl.cls, data: { signal: s.id } },
        h('span', { class: 'q', text: QUANTITY[s.quantity] || s.quantity || s.id }),
        h('span', { class: 'v', data: { value: s.id }, text: fmtNum(num(s.value)) }),
        h('span', { class: 'u', text: s.unit || '' }),
        sl.text !== 'ok' ? h('span', { class: 'flag' }, icon(sl.icon), sl.text) : null);
    })),
    pres ? h('div', { class: 'tile-people' }, icon('person'), pres.inside.length + ' inside' + (num(pres.max) ? ' (max ' + pres.max + ')' : '')) : null,
    permits.map((p) => h('div', { class: 'tile-permit' }, icon('permit'), (p.id || p.permit_id) + ' ' + (p.state || ''), num(p.remaining_s) !== null ? [' · ', countdownEl(p.remaining_s)] : null)));
    return tile;
  }

  // ---- zone detail ------------------------------------------------------------------------
  function zoneView(zid) {
    const z = list(st.snap.zones).find((x) => x.id === zid);
    if (!z) return h('div', {}, h('p', { text: 'No zone ' + zid + ' on this gateway.' }), h('a', { href: '#/', text: 'Back to the overview' }));
    const look = zoneLook(z);
    const sigs = signalsOf(zid);
    const outs = list(st.snap.outputs).filter((o) => o.zone === zid);
    return h('div', { class: 'zone-detail' },
      h('div', { class: 'zone-head st-' + look.state + (look.stale ? ' is-stale' : '') },
        icon(look.icon, 'icon-lg'),
        h('h1', {}, h('span', { class: 'state-label', text: look.label }), ' ', z.name || z.id),
        z.silenced ? h('span', { class: 'tag' }, icon('silenced'), 'horn silenced') : null,
        h('div', { class: 'actions' },
          writeButton('Acknowledge zone', '/api/ack', { zone: zid, target: '*' }, 'operator'),
          writeButton('Silence horn', '/api/silence', { zone: zid }, 'operator'))),
      section('Gas', 'warn', sigs.length ? h('div', { class: 'gauges' }, sigs.map(gauge)) : notConfigured('Signals in this zone')),
      peoplePanel(zid),
      section('Permits', 'permit', ...permitCards(permitsOf(zid), 'this zone')),
      machinesPanel(zid),
      section('Outputs', 'device', outs.length ? outputsTable(outs) : h('p', { class: 'muted', text: 'No outputs in this zone.' })));
  }

  function scale(sig) {
    const lims = list(sig.limits).filter((l) => num(l.value) !== null);
    const vals = lims.map((l) => l.value);
    const lows = lims.filter((l) => l.direction === 'low').map((l) => l.value);
    const v = num(sig.value);
    let lo = lows.length ? Math.floor(Math.min(...lows) * 0.8) : 0;
    let hi = Math.ceil(Math.max(1, ...vals) * 1.25);
    if (v !== null) { lo = Math.min(lo, Math.floor(v)); hi = Math.max(hi, Math.ceil(v * 1.05)); }
    return { lo, hi, pos: (x) => Math.min(100, Math.max(0, ((x - lo) / (hi - lo || 1)) * 100)) };
  }

  function gauge(sig) {
    const sl = signalLook(sig);
    const v = num(sig.value);
    const sc = scale(sig);
    const bar = h('div', { class: 'bar', role: 'img', 'aria-label': (QUANTITY[sig.quantity] || sig.id) + ' ' + fmtNum(v) + ' ' + (sig.unit || '') + ' against its limits' });
    const fill = h('div', { class: 'bar-fill' });
    fill.style.width = (v === null ? 0 : sc.pos(v)) + '%';
    bar.append(fill);
    for (const l of list(sig.limits)) {
      if (num(l.value) === null) continue;
      const m = h('div', { class: 'bar-mark sev-' + (l.severity || 'alarm'), title: l.name + ' ' + (l.direction === 'low' ? '≤ ' : '≥ ') + l.value });
      m.style.left = sc.pos(l.value) + '%';
      bar.append(m);
    }
    if (v !== null) {
      const pin = h('div', { class: 'bar-pin' });
      pin.style.left = sc.pos(v) + '%';
      bar.append(pin);
    }
    return h('div', { class: 'gauge ' + sl.cls, data: { signal: sig.id } },
      h('div', { class: 'gauge-head' },
        h('span', { class: 'q', text: (QUANTITY[sig.quantity] || sig.quantity || '') + ' ' }),
        h('span', { class: 'sig-id', text: sig.id }),
        h('span', { class: 'flag' }, icon(sl.icon), sl.text)),
      h('div', { class: 'gauge-value' }, h('span', { class: 'v', data: { value: sig.id }, text: fmtNum(v) }), ' ', h('span', { class: 'u', text: sig.unit || '' })),
      bar,
      h('div', { class: 'scale' }, h('span', { text: String(sc.lo) }), h('span', { text: String(sc.hi) })),
      h('ul', { class: 'limits' }, list(sig.limits).map((l) => h('li', { class: 'sev-' + (l.severity || ''), text: l.name + ' ' + (l.direction === 'low' ? '≤ ' : '≥ ') + l.value + ' → ' + (l.severity || '') }))),
      h('div', { class: 'gauge-foot' }, ageEl(num(sig.age_s), 'read '), sig.reason && sl.cls !== 'st-fault' ? h('span', { text: ' · ' + sig.reason }) : null));
  }

  function peoplePanel(zid) {
    const p = presenceOf(zid);
    if (!p) return section('People inside', 'person', notConfigured('Presence'));
    const counts = [num(p.entries) !== null ? 'entries ' + p.entries : null, num(p.exits) !== null ? 'exits ' + p.exits : null, num(p.max) !== null ? 'max ' + p.max : null].filter(Boolean).join(' · ');
    return section('People inside', 'person',
      h('p', { class: 'people-count', text: p.inside.length + ' inside' + (counts ? ' · ' + counts : '') + (stale() ? ' (stale)' : '') }),
      p.inside.length ? h('ul', { class: 'people' }, p.inside.map((x) => h('li', {}, icon('person'), h('strong', { text: personName(x) }), x.role ? ' · ' + x.role : '', num(x.since_s) !== null ? ' · inside ' + fmtDuration(x.since_s) : ''))) : null);
  }

  function machinesPanel(zid) {
    const c = st.snap.condition;
    if (!isObj(c) && !Array.isArray(c)) return null;
    const ms = list(c.machines ?? c).filter((m) => !m.zone || m.zone === zid);
    if (!ms.length) return null;
    return section('Machines', 'device', h('ul', { class: 'kv' }, ms.map((m) => h('li', {}, h('strong', { text: m.name || m.id }), ' ', h('span', { class: 'tag', text: String(m.level ?? m.state ?? '?') }), ' ', Object.entries(m).filter(([k, v]) => !['id', 'name', 'zone', 'level', 'state', 'trend'].includes(k) && typeof v !== 'object').map(([k, v]) => k + ' ' + v).join(' · ')))),
      h('a', { href: '#/condition', text: 'Trends and ISO zones' }));
  }

  // ---- condition monitoring: machine cards with 24 h trend charts ---------------------------
  // Trends come from GET /api/trends/{point} (gateway/trends.py TrendStore.series): minutes
  // oldest first with min/max/mean, plus ISO 10816-3 boundaries (vibration) or alarm/trip
  // limits (temperature). Fetched when the view opens, then every TREND_REFRESH_MS; a failed
  // fetch keeps the last chart but marks it stale (never green), a 404 says "no data".
  const TREND_PATH = /^\/api\/trends\/[^/?#]+$/;
  const TREND_TIMEOUT_MS = 5000;
  const TREND_RETRY_MS = 10000; // after a failed fetch: sooner than the regular refresh
  const DAY_MS = 864e5;
  const UNITS = { degC: '°C', 'mm/s': 'mm/s' };
  const MACHINE_LEVELS = {
    normal: { label: 'Normal', icon: 'ok', cls: 'normal' },
    warning: { label: 'Warning', icon: 'warn', cls: 'warning' },
    alarm: { label: 'Alarm', icon: 'alarm', cls: 'alarm' },
    trip: { label: 'TRIP', icon: 'alarm', cls: 'alarm' },
    fault: { label: 'Sensor fault', icon: 'fault', cls: 'fault' },
  };
  const TREND_KINDS = [['vibration', 'Vibration RMS'], ['temperature', 'Temperature']];
  const trends = new Map(); // url -> {body, endMs, okAt, tried, failed, missing, why, inflight, svg, svgNarrow}

  const unitText = (u) => UNITS[u] || u || '';
  const two = (n) => String(n).padStart(2, '0');
  const hhmm = (ms) => { const d = new Date(ms); return two(d.getHours()) + ':' + two(d.getMinutes()); };
  function utcOffsetText() {
    const off = -new Date().getTimezoneOffset();
    return 'UTC' + (off < 0 ? '−' : '+') + two(Math.floor(Math.abs(off) / 60)) + ':' + two(Math.abs(off) % 60);
  }

  function conditionMachines() {
    const c = st.snap?.condition;
    if (!isObj(c) && !Array.isArray(c)) return [];
    return list(c.machines ?? c).filter(isObj);
  }

  // Only this gateway's own trend paths are fetched, whatever the snapshot says.
  function trendUrl(m, kind) {
    const u = isObj(m.trend) ? m.trend[kind] : null;
    return typeof u === 'string' && TREND_PATH.test(u) ? u : null;
  }

  function refreshTrends(force) {
    if (WALL || route().name !== 'condition') return;
    const now = performance.now();
    for (const m of conditionMachines()) {
      for (const [kind] of TREND_KINDS) {
        const u = trendUrl(m, kind);
        if (!u) continue;
        const t = trends.get(u);
        const due = !t || now - t.tried >= (t.failed ? Math.min(TREND_RETRY_MS, TREND_REFRESH_MS) : TREND_REFRESH_MS);
        if ((force || due) && !(t && t.inflight)) fetchTrend(u);
      }
    }
  }

  async function fetchTrend(url) {
    const t = trends.get(url) || { body: null, endMs: 0, okAt: 0, tried: 0, failed: false, missing: false, why: '', inflight: false, svg: null };
    trends.set(url, t);
    t.inflight = true;
    t.tried = performance.now();
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TREND_TIMEOUT_MS);
    try {
      const r = await fetch(url, { cache: 'no-store', signal: ctrl.signal });
      if (r.status === 404) {
        Object.assign(t, { body: null, svg: null, missing: true, failed: false, why: '' });
      } else {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const body = await r.json();
        if (!isObj(body) || !Array.isArray(body.minutes)) throw new Error('unreadable trend data');
        // The window ends at the gateway's "now" (its clock, not this browser's).
        const gw = Date.parse(st.snap?.utc);
        Object.assign(t, { body, endMs: Number.isFinite(gw) ? gw : Date.now(), okAt: Date.now(), svg: null, missing: false, failed: false, why: '' });
      }
    } catch (err) {
      t.failed = true;
      t.why = err.name === 'AbortError' ? 'the gateway does not answer' : 'no answer from the gateway';
      if (err instanceof Error && /^HTTP|unreadable/.test(err.message)) t.why = err.message;
    } finally {
      clearTimeout(timer);
      t.inflight = false;
    }
    if (!WALL && route().name === 'condition' && st.snap) render();
  }

  function machineLook(m) {
    const known = MACHINE_LEVELS[m.level];
    const look = known ? { ...known } : { label: 'Unknown: ' + (m.level ?? '?'), icon: 'fault', cls: 'fault' };
    if (stale() && look.cls === 'normal') return { label: 'No data', icon: 'stale', cls: 'stale', stale: true };
    return { ...look, stale: stale() };
  }

  function conditionView() {
    const ms = conditionMachines();
    if (!ms.length) return section('Condition monitoring', 'device', notConfigured('Condition monitoring'));
    return h('div', { class: 'condition' },
      h('h1', { class: 'visually-hidden', text: 'Condition monitoring' }),
      h('p', { class: 'muted cond-note', text: 'Last 24 h per minute, times in local time (' + utcOffsetText() + '). Trends refresh every ' + Math.round(TREND_REFRESH_MS / 1000) + ' s.' }),
      h('div', { class: 'machines' }, ms.map(machineCard)));
  }

  function machineCard(m) {
    const look = machineLook(m);
    const zone = list(st.snap.zones).find((z) => z.id === m.zone);
    const rms = num(m.rms_mm_s), temp = num(m.temperature_c);
    const zoneLetter = typeof m.iso_zone === 'string' && /^[A-D]$/.test(m.iso_zone) ? m.iso_zone : null;
    const lastKnown = stale() ? ' (stale)' : '';
    return h('article', { class: 'machine st-' + look.cls + (look.stale ? ' is-stale' : ''), data: { machine: m.id, level: String(m.level ?? '') } },
      h('header', { class: 'machine-head' },
        h('div', { class: 'machine-state' }, icon(look.icon, 'icon-lg'), h('span', { class: 'state-label', text: look.label })),
        h('h2', {}, icon('device'), h('span', { text: m.name || m.id })),
        h('span', { class: 'muted', text: zone ? zone.name || zone.id : m.zone || '' }),
        typeof m.stopped === 'boolean' ? h('span', { class: 'tag stop-tag' + (m.stopped ? ' stop-on' : '') }, icon(m.stopped ? 'lock' : 'check'), (stale() ? 'last known: ' : '') + (m.stopped ? 'machine STOP asserted' : 'run permitted')) : null),
      h('ul', { class: 'machine-values' },
        h('li', { data: { value: 'vibration' } },
          h('span', { class: 'q', text: 'Vibration RMS' }),
          h('span', { class: 'v', text: fmtNum(rms) }), h('span', { class: 'u', text: 'mm/s' }),
          zoneLetter && rms !== null ? h('span', { class: 'tag iso-tag iso-' + zoneLetter.toLowerCase(), data: { iso: zoneLetter } }, 'ISO zone ' + zoneLetter) : null,
          rms === null ? h('span', { class: 'flag' }, icon('stale'), 'no fresh value') : lastKnown ? h('span', { class: 'flag' }, icon('stale'), 'stale') : null),
        h('li', { data: { value: 'temperature' } },
          h('span', { class: 'q', text: 'Temperature' }),
          h('span', { class: 'v', text: fmtNum(temp) }), h('span', { class: 'u', text: '°C' }),
          temp === null ? h('span', { class: 'flag' }, icon('stale'), 'no fresh value') : lastKnown ? h('span', { class: 'flag' }, icon('stale'), 'stale') : null),
        list(m.conditions).length ? h('li', { class: 'machine-conds', text: 'Active: ' + list(m.conditions).map((c) => String(c.kind || '?').replace(/_/g, ' ')).join(', ') }) : null),
      h('div', { class: 'charts' }, TREND_KINDS.map(([kind, title]) => trendFigure(m, kind, title))));
  }

  function trendFigure(m, kind, title) {
    const url = trendUrl(m, kind);
    const t = url ? trends.get(url) : null;
    const fig = h('figure', { class: 'chart', data: { kind, point: url ? url.slice(url.lastIndexOf('/') + 1) : '' } });
    const cap = h('figcaption', {}, h('strong', { text: title }), ' · last 24 h');
    fig.append(cap);
    const msg = (cls, iconName, text) => { fig.classList.add(cls); fig.append(h('p', { class: 'chart-msg' }, icon(iconName), text)); return fig; };
    if (!url) return msg('chart-none', 'stale', title + ': no data (no trend recorded for this point)');
    if (!t || (!t.body && !t.missing && !t.failed)) return msg('chart-loading', 'stale', 'Loading the trend…');
    if (t.missing) return msg('chart-none', 'stale', title + ': no data (the gateway keeps no trend for this point)');
    if (!t.body) return msg('chart-error', 'stale', title + ': stale, no data: ' + t.why);
    const isStale = t.failed || stale();
    if (isStale) {
      fig.classList.add('is-stale');
      cap.append(' ', h('span', { class: 'tag tag-stale' }, icon('stale'), 'stale' + (t.failed ? ': ' + t.why : ': connection lost')));
    }
    if (!t.body.minutes.length) {
      fig.classList.add('chart-none');
      fig.append(h('p', { class: 'chart-msg' }, icon('stale'), title + ': no data in the last 24 h'));
      return fig;
    }
    if (!t.svg || t.svgNarrow !== NARROW.matches) { t.svg = trendSvg(t.body, t.endMs, kind, title); t.svgNarrow = NARROW.matches; }
    fig.append(t.svg, h('p', { class: 'chart-legend muted', text: legendText(t.body, kind) }));
    return fig;
  }

  function legendText(b, kind) {
    const u = unitText(b.unit);
    const iso = isoOf(b);
    if (kind === 'vibration' && iso) return 'Line: mean, band: min–max per minute. ISO 10816-3' + (iso.group ? ' group ' + iso.group : '') + (iso.foundation ? ', ' + iso.foundation : '') + ': A/B ' + iso.ab + ' · B/C ' + iso.bc + ' · C/D ' + iso.cd + ' ' + u;
    const lim = limitsOf(b);
    return 'Line: mean, band: min–max per minute.' + lim.map(([n, v]) => ' ' + n + ' ' + v + ' ' + u).join(' ·');
  }

  function isoOf(b) {
    const i = b.iso;
    if (!isObj(i)) return null;
    const ab = num(i.ab), bc = num(i.bc), cd = num(i.cd);
    return ab !== null && bc !== null && cd !== null && ab < bc && bc < cd ? { ab, bc, cd, group: i.group, foundation: i.foundation } : null;
  }
  function limitsOf(b) {
    const l = isObj(b.limits) ? b.limits : {};
    return [['alarm', num(l.alarm_c)], ['trip', num(l.trip_c)]].filter(([, v]) => v !== null);
  }

  function niceTicks(lo, hi, want) {
    const raw = (hi - lo) / want;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw) || 10 * mag;
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (Math.abs(step / mag - 2.5) < 1e-9 ? 1 : 0));
    const out = [];
    for (let v = Math.ceil(lo / step) * step, i = 0; v <= hi + step * 1e-9 && i < 20; v += step, i++) out.push({ v, text: v.toFixed(digits) });
    return out;
  }

  function svgEl(tag, attrs, text) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = String(text);
    return el;
  }

  // Chart geometry in viewBox units; the SVG scales to its box (CSS width 100%). Phones get a
  // narrower viewBox so that the same text stays readable once scaled down.
  const NARROW = window.matchMedia('(max-width: 600px)');
  const chartGeometry = () => ({ w: NARROW.matches ? 360 : 480, h: 216, l: 44, r: 40, t: 22, b: 30 });

  function trendSvg(b, endMs, kind, title) {
    const CH = chartGeometry();
    const start = endMs - DAY_MS;
    const pts = b.minutes.map((p) => ({ t: Date.parse(p.minute_utc) + 30e3, min: num(p.min), max: num(p.max), mean: num(p.mean) }))
      .filter((p) => Number.isFinite(p.t) && p.mean !== null && p.t >= start && p.t <= endMs + 60e3);
    const iso = kind === 'vibration' ? isoOf(b) : null;
    const lims = limitsOf(b);
    const vals = pts.flatMap((p) => [p.min ?? p.mean, p.max ?? p.mean]);
    const dMax = vals.length ? Math.max(...vals) : 0;
    const dMin = vals.length ? Math.min(...vals) : 0;
    let lo, hi;
    if (iso) { lo = 0; hi = Math.max(iso.cd * 1.25, dMax * 1.05); }
    else if (lims.length) { lo = Math.min(0, dMin); hi = Math.max(...lims.map(([, v]) => v), dMax) * 1.1; }
    else { lo = dMin - Math.abs(dMin) * 0.05; hi = dMax + Math.abs(dMax) * 0.05; }
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const x0 = CH.l, x1 = CH.w - CH.r, y0 = CH.t, y1 = CH.h - CH.b;
    const X = (ms) => +(x0 + ((ms - start) / DAY_MS) * (x1 - x0)).toFixed(1);
    const Y = (v) => +(y1 - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (y1 - y0)).toFixed(1);
    const u = unitText(b.unit);
    const last = pts.length ? pts[pts.length - 1] : null;
    const svg = svgEl('svg', {
      class: 'chart-svg', viewBox: '0 0 ' + CH.w + ' ' + CH.h, role: 'img',
      'aria-label': title + ', last 24 h, ' + pts.length + ' minutes' + (last ? ', latest mean ' + fmtNum(last.mean) + ' ' + u : ''),
    });
    const g = (cls) => svg.appendChild(svgEl('g', { class: cls }));
    // ISO zones as bands behind everything (letter inside when there is room).
    if (iso) {
      const zones = g('iso-bands');
      const edges = [lo, iso.ab, iso.bc, iso.cd, hi];
      'ABCD'.split('').forEach((z, i) => {
        const top = Y(edges[i + 1]), bottom = Y(edges[i]);
        if (bottom - top <= 0) return;
        zones.append(svgEl('rect', { class: 'iso-band iso-' + z.toLowerCase(), x: x0, y: top, width: x1 - x0, height: +(bottom - top).toFixed(1), 'data-zone': z }));
        if (bottom - top >= 13) zones.append(svgEl('text', { class: 'iso-letter', x: x0 + 4, y: +(bottom - 3).toFixed(1) }, z));
      });
    }
    // Axes, grid and labels: value ticks on the left, local-time ticks every 6 h below.
    const axes = g('axes');
    for (const { v, text } of niceTicks(lo, hi, 4)) {
      axes.append(svgEl('line', { class: 'grid', x1: x0, x2: x1, y1: Y(v), y2: Y(v) }));
      axes.append(svgEl('text', { class: 'tick tick-y', x: x0 - 4, y: Y(v) + 4, 'text-anchor': 'end' }, text));
    }
    axes.append(svgEl('text', { class: 'axis-unit', x: 2, y: 12 }, u));
    const tick = new Date(start);
    tick.setMinutes(0, 0, 0);
    for (let i = 0; i < 30 && tick.getTime() <= endMs; i++, tick.setHours(tick.getHours() + 1)) {
      if (tick.getTime() < start || tick.getHours() % 6 !== 0) continue;
      const x = X(tick.getTime());
      axes.append(svgEl('line', { class: 'grid grid-x', x1: x, x2: x, y1: y0, y2: y1 }));
      axes.append(svgEl('text', { class: 'tick tick-x', x, y: y1 + 14, 'text-anchor': 'middle', 'data-ms': tick.getTime() }, hhmm(tick.getTime())));
    }
    axes.append(svgEl('text', { class: 'tick tick-now', x: x1, y: y1 + 26, 'text-anchor': 'end' }, 'now ' + hhmm(endMs) + ' (local)'));
    axes.append(svgEl('rect', { class: 'frame', x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
    // Limit lines, labelled in the right margin (nudged apart when close).
    const limits = g('limits');
    const marks = iso ? [['ab', 'A/B', iso.ab], ['bc', 'B/C', iso.bc], ['cd', 'C/D', iso.cd]] : lims.map(([n, v]) => [n, n, v]);
    let prevY = Infinity;
    for (const [key, label, v] of marks) {
      if (v > hi) continue;
      const y = Y(v);
      limits.append(svgEl('line', { class: 'limit limit-' + key, x1: x0, x2: x1, y1: y, y2: y, 'data-limit': key, 'data-value': v }));
      const ly = Math.min(y + 4, prevY - 11);
      prevY = ly;
      limits.append(svgEl('text', { class: 'limit-label limit-label-' + key, x: x1 + 3, y: +ly.toFixed(1) }, label));
    }
    // Data: min-max band and mean line, broken where minutes are missing.
    const runs = [];
    for (const p of pts) {
      const run = runs[runs.length - 1];
      if (run && p.t - run[run.length - 1].t <= 150e3) run.push(p);
      else runs.push([p]);
    }
    const data = g('series');
    const band = runs.map((r) => 'M' + r.map((p) => X(p.t) + ' ' + Y(p.max ?? p.mean)).join('L') + 'L' + r.slice().reverse().map((p) => X(p.t) + ' ' + Y(p.min ?? p.mean)).join('L') + 'Z').join('');
    data.append(svgEl('path', { class: 'minmax', d: band }));
    const mean = runs.map((r) => 'M' + (r.length === 1 ? [r[0], r[0]] : r).map((p, i) => (X(p.t) + (r.length === 1 ? i : 0)) + ' ' + Y(p.mean)).join('L')).join('');
    data.append(svgEl('path', { class: 'mean', d: mean, 'data-points': pts.length }));
    if (last) data.append(svgEl('circle', { class: 'last', cx: X(last.t), cy: Y(last.mean), r: 3 }));
    return svg;
  }

  // ---- permits --------------------------------------------------------------------------
  function permitsView() {
    if (!('permits' in st.snap)) return section('Permits', 'permit', notConfigured('Permits'));
    return section('Permits', 'permit', ...permitCards(list(st.snap.permits), 'this gateway'));
  }

  function permitCards(permits, where) {
    if (!('permits' in st.snap)) return [notConfigured('Permits')];
    if (!permits.length) return [h('p', { class: 'muted', text: 'No permits for ' + where + '.' })];
    return permits.map(permitCard);
  }

  function permitCard(p) {
    const checklist = list(p.checklist ?? p.interlock);
    const allOk = checklist.length > 0 && checklist.every((c) => c.ok === true);
    const released = p.released === true && !stale();
    return h('article', { class: 'permit', data: { permit: p.id || p.permit_id } },
      h('header', {},
        h('h3', {}, icon('permit'), (p.id || p.permit_id || '?') + ' · ' + String(p.type || 'permit').replace('_', ' ')),
        h('span', { class: 'tag', text: String(p.state || 'unknown').toUpperCase() }),
        num(p.remaining_s) !== null ? countdownEl(p.remaining_s) : p.valid_to ? h('span', { class: 'muted', text: 'valid to ' + p.valid_to }) : null),
      h('p', { class: 'permit-release ' + (released ? 'st-normal' : 'st-alarm') }, icon(released ? 'check' : 'lock'),
        'released' in p ? (released ? 'Ignition RELEASED' : 'NOT released' + (stale() ? ' (stale data)' : '')) : 'Release: not reported'),
      checklist.length ? h('ul', { class: 'checklist', 'aria-label': 'Interlock checklist' + (allOk ? ' (all conditions met)' : '') }, checklist.map((c) => {
        const ok = c.ok === true && !stale();
        return h('li', { class: ok ? 'ok' : stale() ? 'unknown' : 'not-ok' }, icon(ok ? 'check' : stale() ? 'stale' : 'cross'),
          h('span', { class: 'cond', text: String(c.condition ?? c.name ?? '?').replace(/_/g, ' ') }),
          h('span', { class: 'why', text: (stale() ? 'stale · ' : ok ? '' : 'NOT MET · ') + (c.reason || '') }));
      })) : h('p', { class: 'muted', text: 'No interlock checklist reported.' }),
      list(p.people).length ? h('p', { class: 'muted', text: 'People: ' + list(p.people).map((x) => personName(x) + (x.role ? ' (' + x.role + ')' : '')).join(', ') }) : null);
  }

  // ---- alarms ---------------------------------------------------------------------------
  function alarmRow(a, actions) {
    const sev = a.severity in ZONE_STATES ? a.severity : 'fault';
    const look = ZONE_STATES[sev];
    const sig = list(st.snap.signals).find((s) => s.id === a.signal);
    const zone = list(st.snap.zones).find((z) => z.id === a.zone);
    const levels = Object.entries(isObj(a.levels) ? a.levels : {}).map(([n, l]) => n + (l.active ? ' active' : '') + (l.latched ? ' latched' : '')).join(', ');
    const fault = isObj(a.fault) ? 'fault: ' + (a.fault.reason || 'yes') + (a.fault.latched ? ' (latched)' : '') : '';
    return h('li', { class: 'alarm st-' + sev + (stale() ? ' is-stale' : ''), data: { zone: a.zone, signal: a.signal } },
      h('div', { class: 'alarm-sev' }, icon(look.icon), h('strong', { text: look.label })),
      h('div', { class: 'alarm-what' },
        h('a', { href: '#/zone/' + encodeURIComponent(a.zone), text: zone?.name || a.zone }), ' · ',
        h('span', { text: (QUANTITY[sig?.quantity] || '') + ' ' + a.signal }),
        sig ? h('span', { class: 'v', text: ' ' + fmtNum(num(sig.value)) + ' ' + (sig.unit || '') }) : null,
        h('div', { class: 'muted', text: [levels, fault, a.acked_by ? 'acknowledged by ' + a.acked_by : 'not acknowledged', zone?.silenced ? 'horn silenced' : ''].filter(Boolean).join(' · ') })),
      actions ? h('div', { class: 'actions' },
        writeButton('Acknowledge', '/api/ack', { zone: a.zone, target: a.signal }, 'operator'),
        writeButton('Silence', '/api/silence', { zone: a.zone }, 'operator')) : null);
  }

  function activeAlarmsPanel(compact) {
    const alarms = list(st.snap.alarms).slice().sort((a, b) => (SEVERITY_RANK[b.severity] ?? 4) - (SEVERITY_RANK[a.severity] ?? 4));
    return section('Active alarms' + (stale() ? ' (stale)' : ''), 'alarm',
      alarms.length ? h('ul', { class: 'alarms', 'aria-label': 'Active alarms' }, alarms.map((a) => alarmRow(a, !WALL))) : h('p', { class: 'muted', text: stale() ? 'Unknown: connection lost.' : 'No active alarms.' }),
      compact && alarms.length ? h('a', { href: '#/alarms', text: 'All alarms' }) : null);
  }

  function alarmsView() {
    const server = list(st.snap.recent_alarms);
    const recent = server.length ? server.map((a) => ({ alarm: a, cleared: a.cleared_utc || a.utc || '' })) : st.recent;
    return h('div', {},
      activeAlarmsPanel(false),
      section('Recent' + (server.length ? '' : ' (cleared while this page was open)'), 'stale',
        recent.length ? h('ul', { class: 'alarms recent' }, recent.map((r) => {
          const li = alarmRow(r.alarm, false);
          li.append(h('div', { class: 'muted', text: 'cleared ' + r.cleared }));
          return li;
        })) : h('p', { class: 'muted', text: 'None.' })));
  }

  // ---- devices and connectivity ------------------------------------------------------------
  function table(head, rows) {
    return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col', text: t })))), h('tbody', {}, rows)));
  }
  function okCell(ok, yes, no) {
    const good = ok === true && !stale();
    return h('td', { class: good ? 'st-normal' : ok === null || ok === undefined || stale() ? 'st-stale' : 'st-alarm' }, icon(good ? 'ok' : stale() ? 'stale' : ok === false ? 'fault' : 'stale'), good ? yes : stale() ? 'stale' : ok === false ? no : 'unknown');
  }

  function devicesView() {
    const devs = list(st.snap.devices);
    const rej = Object.entries(isObj(st.snap.rejected) ? st.snap.rejected : {});
    const eng = isObj(st.snap.engine) ? st.snap.engine : null;
    return h('div', {},
      section('Devices', 'device', devs.length ? table(['Device', 'Status', 'Last seen', 'Polls', 'Comm errors', 'Last problem'], devs.map((d) => h('tr', { data: { device: d.id } },
        h('th', { scope: 'row', text: d.id }),
        okCell(d.up, 'up', 'DOWN'),
        h('td', {}, num(d.last_seen_s ?? d.age_s) !== null ? ageEl(d.last_seen_s ?? d.age_s) : d.last_seen || '—'),
        h('td', { text: d.polls ?? '—' }),
        h('td', { class: d.comm_errors > 0 ? 'warn-text' : '', text: d.comm_errors ?? '—' }),
        h('td', { text: d.last_reason || d.quality || '' })))) : notConfigured('Devices')),
      section('Outputs', 'device', list(st.snap.outputs).length ? outputsTable(list(st.snap.outputs)) : notConfigured('Outputs')),
      section('Rejected input', 'fault', rej.length ? h('ul', { class: 'kv' }, rej.map(([k, v]) => h('li', { text: k + ': ' + (isObj(v) ? JSON.stringify(v) : v) }))) : h('p', { class: 'muted', text: 'Nothing rejected.' })),
      section('Engine', 'gateway', eng ? h('ul', { class: 'kv' }, Object.entries(eng).map(([k, v]) => h('li', { text: k.replace(/_/g, ' ') + ': ' + (Array.isArray(v) ? v.join(' / ') : v) }))) : notConfigured('Engine statistics')));
  }

  function outputsTable(outs) {
    return table(['Output', 'Kind', 'Commanded', 'Observed', 'Read-back'], outs.map((o) => {
      const match = o.commanded === null || o.commanded === undefined || o.observed === null || o.observed === undefined ? null : o.commanded === o.observed;
      const onoff = (v) => (v === true ? 'ON' : v === false ? 'off' : '—');
      return h('tr', { data: { output: o.id } }, h('th', { scope: 'row', text: o.id }), h('td', { text: String(o.kind || '').replace(/_/g, ' ') }),
        h('td', { text: onoff(o.commanded) }), h('td', { text: onoff(o.observed) }), okCell(match, 'matches', 'MISMATCH'));
    }));
  }

  function connectivityView() {
    const s = st.snap;
    const conn = isObj(s.connectivity) ? Object.entries(s.connectivity) : [];
    const generic = (name, v) => h('li', { class: 'conn', data: { link: name } },
      h('strong', { text: name }), ' ',
      isObj(v) && 'connected' in v ? h('span', { class: 'tag ' + (v.connected && !stale() ? 'st-normal' : 'st-alarm') }, icon(v.connected && !stale() ? 'link' : 'lost'), v.connected ? (stale() ? 'last known: connected' : 'connected') : 'NOT connected') : null,
      ' ', h('span', { class: 'muted', text: isObj(v) ? Object.entries(v).filter(([k]) => k !== 'connected').map(([k, x]) => k.replace(/_/g, ' ') + ': ' + (x === '' || x === null ? '—' : isObj(x) ? JSON.stringify(x) : x)).join(' · ') : String(v) }));
    return h('div', {},
      section('This page', 'link', h('ul', { class: 'kv' },
        h('li', { text: 'Live stream: ' + (st.link === 'live' ? 'connected' : st.link) + (st.link === 'lost' ? ' (' + st.lostWhy + ')' : '') }),
        h('li', {}, 'Last data: ', ageEl(0)),
        h('li', { text: 'Gateway time (UTC): ' + (s.utc || '—') + ' · up ' + fmtDuration(s.uptime_s || 0) + ' · ready: ' + (s.ready === true ? 'yes' : 'no') }))),
      section('Northbound', 'link', conn.length ? h('ul', { class: 'kv' }, conn.map(([k, v]) => generic(k, v))) : notConfigured('Connectivity')),
      section('Ledger outbox', 'permit', isObj(s.outbox) ? h('ul', { class: 'kv' },
        generic('outbox', Object.fromEntries(Object.entries(s.outbox).filter(([k]) => k !== 'parked_records'))),
        list(s.outbox.parked_records).map((r) => h('li', { class: 'parked', data: { parked: String(r.id) } },
          h('strong', { text: 'Parked #' + r.id }), ' ' + (r.stream || '') + ': ' + (r.reason || 'refused by the ledger') + ' ',
          writeButton('Retry', '/api/outbox/retry', { id: r.id }, 'admin')))) : notConfigured('Outbox')),
      section('Time-series store', 'device', isObj(s.tsdb) ? h('ul', { class: 'kv' }, generic('tsdb', s.tsdb)) : notConfigured('TSDB')));
  }

  // ---- wall display (?screen=1) --------------------------------------------------------------
  function wallZones() {
    const zones = list(st.snap?.zones);
    const hot = zones.filter((z) => z.state !== 'normal');
    return hot.length ? hot : zones;
  }

  function wallView() {
    if (!st.snap) return h('p', { class: 'muted', text: stale() ? 'No data: ' + st.lostWhy : 'Loading…' });
    const zones = wallZones();
    const z = zones.length ? zones[st.wallIndex % zones.length] : null;
    return h('div', { class: 'wall-grid' },
      activeAlarmsPanel(false),
      h('div', { class: 'board board-wall', role: 'list' }, list(st.snap.zones).map((x) => zoneTile(x, { static: true }))),
      z ? h('section', { class: 'panel wall-zone', data: { zone: z.id } },
        h('h2', {}, icon(zoneLook(z).icon), (z.name || z.id) + ' · ' + zoneLook(z).label, h('span', { class: 'muted rotate-note', text: ' (' + ((st.wallIndex % zones.length) + 1) + '/' + zones.length + ', next in ' + ROTATE_S + ' s)' })),
        h('div', { class: 'gauges' }, signalsOf(z.id).map(gauge)),
        presenceOf(z.id) ? peoplePanel(z.id) : null) : null);
  }

  // ---- login and writes ---------------------------------------------------------------------
  function can(role) {
    const r = st.session.roles;
    return st.session.user && r.indexOf(st.session.role) >= r.indexOf(role);
  }

  function writeButton(label, path, body, role) {
    const locked = !can(role);
    return h('button', {
      type: 'button', class: 'btn' + (locked ? ' btn-locked' : ''), data: { write: path },
      title: locked ? 'Needs an ' + role + ' login' : null,
      onclick: (e) => doWrite(e.currentTarget, label, path, body, role),
    }, locked ? icon('lock') : null, label);
  }

  async function doWrite(btn, label, path, body, role) {
    btn.disabled = true;
    try {
      const r = await fetch(path, {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': st.session.csrf || '' },
        body: JSON.stringify(body),
      });
      const j = await r.json().catch(() => ({}));
      if (r.ok) toast(label + ': done', 'ok');
      else if (r.status === 401) { toast(label + ' refused: ' + (j.error || 'log in first'), 'err'); st.session.user = null; openLogin(label + ' needs an ' + role + ' login.'); }
      else if (r.status === 403) toast(label + ' refused: ' + (j.error || 'not allowed'), 'err');
      else if (r.status === 404 || r.status === 405) toast(label + ' refused: this gateway has no write API (read-only)', 'err');
      else toast(label + ' failed: ' + (j.error || 'HTTP ' + r.status), 'err');
    } catch (err) {
      toast(label + ' failed: no answer from the gateway', 'err');
    } finally {
      btn.disabled = false;
    }
  }

  let toastTimer = 0;
  function toast(text, kind) {
    const t = $('toast');
    t.textContent = text;
    t.className = 'toast toast-' + kind;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  async function loadSession() {
    try {
      const r = await fetch('/api/session', { cache: 'no-store', credentials: 'same-origin' });
      if (r.status === 404) { st.session.available = false; return; }
      const j = await r.json();
      st.session = { ...st.session, available: true, user: j.user, role: j.role, csrf: j.csrf || null, roles: j.roles || st.session.roles };
    } catch (err) { /* the connection banner tells the story */ }
    render();
  }

  function openLogin(why) {
    if (!st.session.available) { toast('This gateway has no login (read-only).', 'err'); return; }
    $('login-why').textContent = why || '';
    $('login-err').textContent = '';
    const d = $('login-dlg');
    if (!d.open) d.showModal();
    $('login-user').focus();
  }

  async function submitLogin(e) {
    e.preventDefault();
    const err = $('login-err');
    err.textContent = '';
    try {
      const r = await fetch('/api/login', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: $('login-user').value, password: $('login-pw').value }),
      });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) { err.textContent = j.error || 'HTTP ' + r.status; return; }
      st.session = { ...st.session, user: j.user, role: j.role, csrf: j.csrf, roles: j.roles || st.session.roles };
      $('login-pw').value = '';
      $('login-dlg').close();
      toast('Logged in as ' + j.user + ' (' + j.role + ')', 'ok');
      render();
    } catch (x) {
      err.textContent = 'No answer from the gateway.';
    }
  }

  async function logout() {
    try {
      await fetch('/api/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': st.session.csrf || '' } });
    } catch (err) { /* the session ends server-side on expiry anyway */ }
    st.session = { ...st.session, user: null, role: null, csrf: null };
    render();
  }

  // ---- the clock of the page: ages, countdowns, polling, wall rotation -------------------------
  function paintLive() {
    for (const el of document.querySelectorAll('.age')) paintAge(el);
    for (const el of document.querySelectorAll('.countdown')) paintCountdown(el);
    if (st.link === 'lost') $('banner-conn-detail').textContent = st.lostWhy + (st.snap ? '; last data ' + fmtAge(sinceSnap()) : '');
  }

  function tick() {
    const now = performance.now();
    const quiet = now - st.at;
    // Quiet stream: fetch the state (ages stay true); while lost, knock every 2 s only.
    if (quiet > POLL_IF_QUIET_MS && now - st.lastPoll > (st.link === 'lost' ? 2000 : 0)) { st.lastPoll = now; poll(); }
    if (st.link === 'live' && quiet > (STALE_AFTER_S + POLL_TIMEOUT_MS / 1000) * 1000) linkLost('no data for ' + Math.round(quiet / 1000) + ' s');
    refreshTrends(false);
    if (WALL && performance.now() >= st.wallNext) {
      st.wallNext = performance.now() + ROTATE_S * 1000;
      st.wallIndex += 1;
      if (st.snap) render();
    }
    paintLive();
  }

  async function loadIcons() {
    try {
      const r = await fetch('/static/icons.svg');
      const doc = new DOMParser().parseFromString(await r.text(), 'image/svg+xml');
      if (doc.documentElement.nodeName !== 'svg') return;
      const sprite = document.importNode(doc.documentElement, true);
      sprite.setAttribute('class', 'sprite');
      sprite.setAttribute('aria-hidden', 'true');
      document.body.prepend(sprite);
    } catch (err) { /* icons are decoration: every one sits beside its text */ }
  }

  function start() {
    loadIcons();
    if (WALL) { document.body.classList.add('wall'); st.wallNext = performance.now() + ROTATE_S * 1000; }
    $('login-btn').addEventListener('click', () => (st.session.user ? logout() : openLogin('')));
    $('login-form').addEventListener('submit', submitLogin);
    $('login-cancel').addEventListener('click', () => $('login-dlg').close());
    NARROW.addEventListener('change', () => st.snap && render());
    window.addEventListener('hashchange', () => { render(); refreshTrends(true); $('main').focus({ preventScroll: true }); });
    connect();
    poll();
    loadSession();
    setInterval(tick, 500);
  }

  start();
})();
