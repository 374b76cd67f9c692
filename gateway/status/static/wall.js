/* Wall display (?screen=1, ?rotate=<s>): active alarms, every zone tile, and one zone in
 * detail that rotates through the zones not normal (all zones when none is).
 */
import { h, icon, list } from './dom.js';
import { presenceOf, signalsOf, zoneLook } from './look.js';
import { ROTATE_S, st, stale } from './state.js';
import { activeAlarmsPanel } from './alarms.js';
import { gauge, peoplePanel, zoneTile } from './zones.js';

function wallZones() {
  const zones = list(st.snap?.zones);
  const hot = zones.filter((z) => z.state !== 'normal');
  return hot.length ? hot : zones;
}

export function wallView() {
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
