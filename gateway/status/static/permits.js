/* Permits (#/permits, and per zone on #/zone/<id>): one card per permit with its countdown,
 * ignition release and interlock checklist.
 */
import { h, icon, list, num } from './dom.js';
import { personName } from './look.js';
import { st, stale } from './state.js';
import { countdownEl, notConfigured, section } from './widgets.js';

export function permitsView() {
  if (!('permits' in st.snap)) return section('Permits', 'permit', notConfigured('Permits'));
  return section('Permits', 'permit', ...permitCards(list(st.snap.permits), 'this gateway'));
}

export function permitCards(permits, where) {
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
