/* Page settings (from the query string), the one shared state object, and the route.
 *
 * `st` is changed in place by app.js (data in, wall rotation) and session.js (login);
 * the views only read it. A view that needs a redraw calls render() from here: app.js
 * registers the real one (so no view imports app.js).
 */

const Q = new URLSearchParams(location.search);
export const WALL = Q.get('screen') === '1';
export const ROTATE_S = Math.min(120, Math.max(3, Number(Q.get('rotate')) || 8));
export const POLL_IF_QUIET_MS = 1500;
export const POLL_TIMEOUT_MS = 3000;
export const STALE_AFTER_S = 5; // DOMAIN.md: stale = older than 3 x the poll period, 5 s at most
// Trend charts: refresh period (?trend_s= for tests and slow links), 60 s by default.
export const TREND_REFRESH_MS = Math.min(600, Math.max(1, Number(Q.get('trend_s')) || 60)) * 1000;

export const st = {
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

export const stale = () => st.link !== 'live';
export const sinceSnap = () => (performance.now() - st.at) / 1000;

// #/<name>/<arg>: #/zone/tank-t101, #/alarms, #/condition ... (anything else is the overview).
export function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { name: parts[0] || 'overview', arg: parts[1] };
}

// The page's redraw (app.js render), registered by app.js at start.
let renderPage = () => {};
export function setRender(fn) { renderPage = fn; }
export function render() { renderPage(); }
