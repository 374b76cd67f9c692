/* Pieces every view uses: live ages and countdowns (app.js paintLive repaints them every
 * 0.5 s), a titled panel, and the "not configured" line.
 */
import { fmtAge, fmtDuration, h, icon } from './dom.js';
import { st, stale } from './state.js';

// A live age: the snapshot's age plus the time since it arrived, refreshed every 0.5 s.
export function ageEl(ageS, prefix) {
  const el = h('span', { class: 'age', data: { age: ageS ?? '', at: st.at, prefix: prefix || '' } });
  paintAge(el);
  return el;
}
export function paintAge(el) {
  const base = el.dataset.age === '' ? null : Number(el.dataset.age);
  const t = base === null ? null : base + (performance.now() - Number(el.dataset.at)) / 1000;
  el.textContent = (el.dataset.prefix || '') + fmtAge(t);
}
export function countdownEl(remainingS) {
  const el = h('span', { class: 'countdown', data: { remaining: remainingS, at: st.at } });
  paintCountdown(el);
  return el;
}
export function paintCountdown(el) {
  const left = Number(el.dataset.remaining) - (performance.now() - Number(el.dataset.at)) / 1000;
  el.textContent = stale() ? fmtDuration(left) + ' (stale)' : left <= 0 ? 'expired' : fmtDuration(left) + ' left';
  el.classList.toggle('countdown-low', left < 600);
}

export function section(title, iconName, ...kids) {
  return h('section', { class: 'panel' }, h('h2', {}, iconName ? icon(iconName) : null, title), ...kids);
}
export const notConfigured = (what) => h('p', { class: 'muted not-configured', text: what + ': not configured' });
