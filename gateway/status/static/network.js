/* Network (#/connectivity): this page's live stream, the northbound links, the ledger
 * outbox (with Retry for parked records) and the time-series store.
 */
import { fmtDuration, h, icon, isObj, list } from './dom.js';
import { st, stale } from './state.js';
import { writeButton } from './session.js';
import { ageEl, notConfigured, section } from './widgets.js';

// What a field means, for people: the snapshot's keys are for machines.
const LABEL = {
  pending: 'waiting to send', last_error: 'last error', depth: 'not yet delivered to the ledger',
  queued: 'queued in memory', parked: 'refused by the ledger (parked)', accepted: 'accepted', rejected: 'refused',
  cached: 'cached for offline use', polls: 'polls', last_ok_utc: 'last success (UTC)', buffered: 'buffered points',
};
const shown = (x) => (x === '' || x === null || x === undefined ? '—' : typeof x === 'boolean' ? (x ? 'yes' : 'no')
  : isObj(x) ? Object.entries(x).filter(([, y]) => y !== null && y !== '').map(([k, y]) => (LABEL[k] || k.replace(/_/g, ' ')) + ' ' + shown(y)).join(', ') || '—'
  : Array.isArray(x) ? (x.length ? x.map(shown).join(', ') : 'none') : String(x));

export function connectivityView() {
  const s = st.snap;
  const conn = isObj(s.connectivity) ? Object.entries(s.connectivity).filter(([k, v]) => k !== 'tsdb' && k !== 'outbox' && v !== null) : [];
  const tsdb = isObj(s.connectivity) ? s.connectivity.tsdb : null;
  const generic = (name, v) => h('li', { class: 'conn', data: { link: name } },
    h('strong', { text: name }), ' ',
    isObj(v) && 'connected' in v ? h('span', { class: 'tag ' + (v.connected && !stale() ? 'st-normal' : 'st-alarm') }, icon(v.connected && !stale() ? 'link' : 'lost'), v.connected ? (stale() ? 'last known: connected' : 'connected') : 'NOT connected') : null,
    ' ', h('span', { class: 'muted', text: isObj(v) ? Object.entries(v).filter(([k]) => k !== 'connected').map(([k, x]) => (LABEL[k] || k.replace(/_/g, ' ')) + ': ' + shown(x)).join(' · ') : shown(v) }));
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
    section('Time-series store', 'device', isObj(tsdb) ? h('ul', { class: 'kv' }, generic('tsdb', tsdb)) : notConfigured('TSDB')));
}
