/* Alarms (#/alarms): the active-alarms panel (also on the overview and the wall display)
 * and the recently cleared ones.
 */
import { fmtNum, h, icon, isObj, list, num } from './dom.js';
import { SEVERITY_RANK, QUANTITY, ZONE_STATES } from './look.js';
import { WALL, st, stale } from './state.js';
import { writeButton } from './session.js';
import { section } from './widgets.js';

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

export function activeAlarmsPanel(compact) {
  const alarms = list(st.snap.alarms).slice().sort((a, b) => (SEVERITY_RANK[b.severity] ?? 4) - (SEVERITY_RANK[a.severity] ?? 4));
  return section('Active alarms' + (stale() ? ' (stale)' : ''), 'alarm',
    alarms.length ? h('ul', { class: 'alarms', 'aria-label': 'Active alarms' }, alarms.map((a) => alarmRow(a, !WALL))) : h('p', { class: 'muted', text: stale() ? 'Unknown: connection lost.' : 'No active alarms.' }),
    compact && alarms.length ? h('a', { href: '#/alarms', text: 'All alarms' }) : null);
}

export function alarmsView() {
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
