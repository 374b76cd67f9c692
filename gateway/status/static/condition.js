/* Condition monitoring (#/condition): machine cards with 24 h trend charts (drawn by chart.js).
 *
 * Trends come from GET /api/trends/{point} (gateway/core/trends.py TrendStore.series): minutes
 * oldest first with min/max/mean, plus ISO 10816-3 boundaries (vibration) or alarm/trip
 * limits (temperature). Fetched when the view opens, then every TREND_REFRESH_MS; a failed
 * fetch keeps the last chart but marks it stale (never green), a 404 says "no data".
 */
import { fmtNum, h, icon, isObj, list, num, two } from './dom.js';
import { NARROW, isoOf, limitsOf, trendSvg, unitText } from './chart.js';
import { TREND_REFRESH_MS, WALL, render, route, st, stale } from './state.js';
import { notConfigured, section } from './widgets.js';

const TREND_PATH = /^\/api\/trends\/[^/?#]+$/;
const TREND_TIMEOUT_MS = 5000;
const TREND_RETRY_MS = 10000; // after a failed fetch: sooner than the regular refresh
const MACHINE_LEVELS = {
  normal: { label: 'Normal', icon: 'ok', cls: 'normal' },
  warning: { label: 'Warning', icon: 'warn', cls: 'warning' },
  alarm: { label: 'Alarm', icon: 'alarm', cls: 'alarm' },
  trip: { label: 'TRIP', icon: 'alarm', cls: 'alarm' },
  fault: { label: 'Sensor fault', icon: 'fault', cls: 'fault' },
};
const TREND_KINDS = [['vibration', 'Vibration RMS'], ['temperature', 'Temperature']];
const trends = new Map(); // url -> {body, endMs, okAt, tried, failed, missing, why, inflight, svg, svgNarrow}

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

export function refreshTrends(force) {
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

export function conditionView() {
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
