/* Zones: the overview board (#/) and one zone in detail (#/zone/<id>) with its gas gauges,
 * people inside, permits, machines and outputs. The tiles, gauges and people panel are
 * also used by the wall display.
 */
import { fmtDuration, fmtNum, h, icon, isObj, list, num } from './dom.js';
import { KIND, QUANTITY, headcount, headcountKnown, lastGoodText, permitsOf, personName, presenceOf, signalLook, signalsOf, zoneLook } from './look.js';
import { st, stale } from './state.js';
import { activeAlarmsPanel } from './alarms.js';
import { outputsTable } from './devices.js';
import { permitCards } from './permits.js';
import { writeButton } from './session.js';
import { ageEl, countdownEl, notConfigured, section } from './widgets.js';

// ---- overview: the workshop risk board ---------------------------------------------------
export function overviewView() {
  const zones = list(st.snap.zones);
  const board = h('div', { class: 'board', role: 'list' }, zones.map((z) => zoneTile(z)));
  return h('div', {},
    h('h1', { class: 'visually-hidden', text: 'Plant overview' }),
    zones.length ? board : notConfigured('Zones'),
    activeAlarmsPanel(true));
}

export function zoneTile(z, opts) {
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
      sl.text !== 'ok' ? h('span', { class: 'flag' }, icon(sl.icon), sl.text) : null,
      lastGoodText(s) ? h('span', { class: 'last-good muted', text: lastGoodText(s) }) : null);
  })),
  pres ? h('div', { class: 'tile-people' + (headcountKnown(pres) ? '' : ' unknown'), title: pres.presence_reason || '' }, icon('person'), headcount(pres) + (num(pres.max) ? ' (max ' + pres.max + ')' : '')) : null,
  permits.map((p) => h('div', { class: 'tile-permit' }, icon('permit'), (p.id || p.permit_id) + ' ' + (p.state || ''), num(p.remaining_s) !== null ? [' · ', countdownEl(p.remaining_s)] : null)));
  return tile;
}

// ---- zone detail ------------------------------------------------------------------------
export function zoneView(zid) {
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

export function gauge(sig) {
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
    lastGoodText(sig) ? h('div', { class: 'last-good muted', text: lastGoodText(sig) }) : null,
    h('div', { class: 'gauge-foot' }, ageEl(num(sig.age_s), 'read '), sig.reason && sl.cls !== 'st-fault' ? h('span', { text: ' · ' + sig.reason }) : null));
}

export function peoplePanel(zid) {
  const p = presenceOf(zid);
  if (!p) return section('People inside', 'person', notConfigured('Presence'));
  const counts = [num(p.entries) !== null ? 'entries ' + p.entries : null, num(p.exits) !== null ? 'exits ' + p.exits : null, num(p.max) !== null ? 'max ' + p.max : null].filter(Boolean).join(' · ');
  return section('People inside', 'person',
    h('p', { class: 'people-count' + (headcountKnown(p) ? '' : ' unknown'), text: headcount(p) + (headcountKnown(p) ? '' : ': ' + (p.presence_reason || 'no live badge receiver')) + (counts ? ' · ' + counts : '') + (stale() ? ' (stale)' : '') }),
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
