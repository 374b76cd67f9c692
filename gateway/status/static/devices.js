/* Devices (#/devices): field devices, outputs (also on #/zone/<id>), rejected input and the
 * engine statistics.
 */
import { h, icon, isObj, list, num } from './dom.js';
import { st, stale } from './state.js';
import { ageEl, notConfigured, section } from './widgets.js';

function table(head, rows) {
  return h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col', text: t })))), h('tbody', {}, rows)));
}
function okCell(ok, yes, no) {
  const good = ok === true && !stale();
  return h('td', { class: good ? 'st-normal' : ok === null || ok === undefined || stale() ? 'st-stale' : 'st-alarm' }, icon(good ? 'ok' : stale() ? 'stale' : ok === false ? 'fault' : 'stale'), good ? yes : stale() ? 'stale' : ok === false ? no : 'unknown');
}

export function devicesView() {
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
    section('Gateway tasks', 'gateway', taskList()),
    section('Rejected input', 'fault', rej.length ? h('ul', { class: 'kv' }, rej.map(([k, v]) => h('li', { text: k + ': ' + (isObj(v) ? JSON.stringify(v) : v) }))) : h('p', { class: 'muted', text: 'Nothing rejected.' })),
    section('Engine', 'gateway', eng ? h('ul', { class: 'kv' }, Object.entries(eng).map(([k, v]) => h('li', { text: k.replace(/_/g, ' ') + ': ' + (Array.isArray(v) ? v.join(' / ') : v) }))) : notConfigured('Engine statistics')));
}

// One fault stays one fault: a source or sink that failed was restarted alone; say which, how
// often and why, so a technician sees a defect that the plant kept running through.
function taskList() {
  const tasks = list(st.snap.tasks).filter((t) => t.restarts > 0);
  const sinks = list(st.snap.sinks).filter((s) => s.errors > 0);
  if (!tasks.length && !sinks.length) return h('p', { class: 'muted', text: 'No task has failed since the gateway started.' });
  return h('ul', { class: 'kv' },
    tasks.map((t) => h('li', { class: 'warn-text', data: { task: t.task } }, h('strong', { text: t.task }), ' restarted ' + t.restarts + '× · ' + (t.last_error || ''))),
    sinks.map((s) => h('li', { class: 'warn-text', data: { sink: s.sink } }, h('strong', { text: 'sink ' + s.sink }), ' ' + s.errors + ' error(s) · ' + (s.last_error || ''))));
}

export function outputsTable(outs) {
  return table(['Output', 'Kind', 'Commanded', 'Observed', 'Read-back'], outs.map((o) => {
    const match = o.commanded === null || o.commanded === undefined || o.observed === null || o.observed === undefined ? null : o.commanded === o.observed;
    const onoff = (v) => (v === true ? 'ON' : v === false ? 'off' : '—');
    return h('tr', { data: { output: o.id } }, h('th', { scope: 'row', text: o.id }), h('td', { text: String(o.kind || '').replace(/_/g, ' ') }),
      h('td', { text: onoff(o.commanded) }), h('td', { text: onoff(o.observed) }), okCell(match, 'matches', 'MISMATCH'));
  }));
}
