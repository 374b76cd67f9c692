/* Status page of one gateway: vanilla JS in native ES modules, no build step, no third-party code.
 *
 * Data: the live stream (EventSource /api/events, `event: state` = the whole snapshot);
 * when the stream is quiet for POLL_IF_QUIET_MS the page fetches /api/state, so ages
 * and countdowns stay true and a hung gateway is noticed. Any error -> "connection lost"
 * banner at once and everything is drawn stale (grey, hatched, never green).
 *
 * Tolerant by design: every section may be missing (older gateway, not configured) and
 * is then shown as "not configured". All text goes in through textContent (no innerHTML).
 *
 * This module: data in, routing, the 0.5 s page clock, start. Where the rest lives:
 *   dom.js        DOM and format helpers (h, icon, fmtNum, fmtAge ...)
 *   state.js      query-string settings, the shared state `st`, stale(), route()
 *   look.js       what a zone/signal/person looks like; snapshot look-ups
 *   widgets.js    live ages and countdowns, panel, "not configured"
 *   header.js     banners and the header bar
 *   session.js    login, logout, write buttons, toast
 *   zones.js      #/ overview board and #/zone/<id> detail
 *   alarms.js     #/alarms (and the active-alarms panel)
 *   permits.js    #/permits: permit cards, interlock checklist
 *   devices.js    #/devices: devices, outputs, rejected input, engine
 *   network.js    #/connectivity: live stream, northbound, outbox, TSDB
 *   condition.js  #/condition: machine cards, trend fetching
 *   chart.js      the 24 h trend chart (SVG)
 *   wall.js       ?screen=1 wall display
 */
import { $, fmtAge, h, isObj, list } from './dom.js';
import { alarmsView } from './alarms.js';
import { NARROW } from './chart.js';
import { conditionView, refreshTrends } from './condition.js';
import { devicesView } from './devices.js';
import { renderBanners, renderHeader } from './header.js';
import { connectivityView } from './network.js';
import { permitsView } from './permits.js';
import { loadSession, logout, openLogin, submitLogin } from './session.js';
import {
  POLL_IF_QUIET_MS, POLL_TIMEOUT_MS, ROTATE_S, STALE_AFTER_S, WALL, route, setRender, sinceSnap, st, stale,
} from './state.js';
import { wallView } from './wall.js';
import { paintAge, paintCountdown } from './widgets.js';
import { overviewView, zoneView } from './zones.js';

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
  setRender(render);
  connect();
  poll();
  loadSession();
  setInterval(tick, 500);
}

start();
