/* What a zone, a signal or a person looks like, and where they sit in the snapshot.
 * Stale data is never green: every look checks the link state first.
 */
import { fmtAge, fmtNum, isObj, list, num } from './dom.js';
import { st, stale } from './state.js';

export const ZONE_STATES = {
  normal: { label: 'Normal', icon: 'ok' },
  warning: { label: 'Warning', icon: 'warn' },
  alarm: { label: 'Alarm', icon: 'alarm' },
  evacuate: { label: 'EVACUATE', icon: 'evacuate' },
  fault: { label: 'Fault', icon: 'fault' },
  stale: { label: 'No data', icon: 'stale' },
};
export const SEVERITY_RANK = { normal: 0, warning: 1, alarm: 2, evacuate: 3 };
export const QUANTITY = { o2: 'O₂', lel: 'LEL', h2s: 'H₂S', co: 'CO', temperature: 'Temperature', vibration: 'Vibration', current: 'Current' };
export const KIND = { confined_space: ['Confined space', 'tank'], hot_work: ['Hot work', 'flame'] };

export function signalLook(sig) {
  if (stale()) return { cls: 'st-stale', text: 'stale', icon: 'stale' };
  if (sig.quality === 'bad') return { cls: 'st-fault', text: 'bad: ' + (sig.reason || 'no reason given'), icon: 'fault' };
  if (sig.stale || sig.quality === 'stale' || sig.quality !== 'good') return { cls: 'st-stale', text: 'stale' + (sig.reason ? ': ' + sig.reason : ''), icon: 'stale' };
  const sev = sig.severity in SEVERITY_RANK ? sig.severity : 'fault';
  if (sev === 'normal') return { cls: 'st-normal', text: 'ok', icon: 'ok' };
  if (sev === 'fault') return { cls: 'st-fault', text: String(sig.severity), icon: 'fault' };
  return { cls: 'st-' + sev, text: ZONE_STATES[sev].label.toLowerCase(), icon: ZONE_STATES[sev].icon };
}

export function zoneLook(z) {
  const known = ZONE_STATES[z.state];
  const look = known ? { state: z.state, ...known } : { state: 'fault', label: 'Unknown: ' + z.state, icon: 'fault' };
  // Stale data is never green; a known danger keeps its colour but is hatched as stale.
  if (stale() && look.state === 'normal') return { state: 'stale', label: 'No data', icon: 'stale', stale: true };
  return { ...look, stale: stale() };
}

export const signalsOf = (zid) => list(st.snap?.signals).filter((s) => s.zone === zid);
export const permitsOf = (zid) => list(st.snap?.permits).filter((p) => (p.zone ?? p.zone_id) === zid);

// Presence: {presence: {zones: [{zone, inside: [...], entries, exits, max}]}} (list or map).
export function presenceOf(zid) {
  const p = st.snap?.presence;
  if (!isObj(p)) return null;
  const zones = list(p.zones ?? p);
  const z = zones.find((x) => (x.zone ?? x.id) === zid);
  if (!z) return { inside: [], entries: null, exits: null, presence: 'unknown', presence_reason: 'no presence data for this zone' };
  const inside = list(z.inside ?? z.people).map((x) => (typeof x === 'string' ? { person: x } : isObj(x) && 'value' in x && Object.keys(x).length === 2 ? { person: String(x.value) } : x));
  return { ...z, inside };
}
// A value the gateway does not trust is "—"; the last good one is shown beside it, muted, with its age.
export function lastGoodText(sig) {
  const lg = sig.last_good;
  if (num(sig.value) !== null || !isObj(lg) || num(lg.value) === null) return '';
  const at = new Date(lg.utc);
  const when = Number.isNaN(at.getTime()) ? '' : ' at ' + at.toLocaleTimeString([], { hour12: false });
  return 'last good ' + fmtNum(lg.value) + ' ' + (sig.unit || '') + when + ' (' + fmtAge(num(lg.age_s)) + ')';
}
// Unknown is never "nobody inside": without a live badge receiver the count is unknown, and says why.
export const headcountKnown = (p) => p.presence !== 'unknown';
export const headcount = (p) => (headcountKnown(p) ? p.inside.length + ' inside' : 'headcount unknown');
export const personName = (p) => p.name || p.person || p.id || p.badge || '?';

export const evacuating = () => list(st.snap?.zones).some((z) => z.evacuate === true);
