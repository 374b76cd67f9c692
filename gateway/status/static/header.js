/* The top of the page: the banners (connection lost, EVACUATE with who is inside, output
 * fault, not ready) and the header bar (site, title, link state, alarm count, who).
 */
import { $, fmtAge, h, icon, list } from './dom.js';
import { evacuating, headcountKnown, personName, presenceOf } from './look.js';
import { sinceSnap, st, stale } from './state.js';

export function renderBanners() {
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
          if (!headcountKnown(p)) return h('div', { class: 'evac-people unknown', text: (z.name || z.id) + ': headcount unknown (' + (p.presence_reason || 'no live badge receiver') + ')' + (names.length ? '; last located inside: ' + names.join(', ') : '') });
          return h('div', { class: 'evac-people', text: (z.name || z.id) + ': ' + (names.length ? names.length + ' inside: ' + names.join(', ') : 'nobody inside') });
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

export function renderHeader() {
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
