/* One 24 h trend chart as inline SVG: ISO 10816-3 zone bands (vibration) or alarm/trip lines
 * (temperature), the min–max band and the mean line, local-time ticks every 6 h.
 */
import { fmtNum, isObj, num, svgEl, two } from './dom.js';

const DAY_MS = 864e5;
const UNITS = { degC: '°C', 'mm/s': 'mm/s' };

export const unitText = (u) => UNITS[u] || u || '';
const hhmm = (ms) => { const d = new Date(ms); return two(d.getHours()) + ':' + two(d.getMinutes()); };

export function isoOf(b) {
  const i = b.iso;
  if (!isObj(i)) return null;
  const ab = num(i.ab), bc = num(i.bc), cd = num(i.cd);
  return ab !== null && bc !== null && cd !== null && ab < bc && bc < cd ? { ab, bc, cd, group: i.group, foundation: i.foundation } : null;
}
export function limitsOf(b) {
  const l = isObj(b.limits) ? b.limits : {};
  return [['alarm', num(l.alarm_c)], ['trip', num(l.trip_c)]].filter(([, v]) => v !== null);
}

function niceTicks(lo, hi, want) {
  const raw = (hi - lo) / want;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw) || 10 * mag;
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (Math.abs(step / mag - 2.5) < 1e-9 ? 1 : 0));
  const out = [];
  for (let v = Math.ceil(lo / step) * step, i = 0; v <= hi + step * 1e-9 && i < 20; v += step, i++) out.push({ v, text: v.toFixed(digits) });
  return out;
}

// Chart geometry in viewBox units; the SVG scales to its box (CSS width 100%). Phones get a
// narrower viewBox so that the same text stays readable once scaled down.
export const NARROW = window.matchMedia('(max-width: 600px)');
const chartGeometry = () => ({ w: NARROW.matches ? 360 : 480, h: 216, l: 44, r: 40, t: 22, b: 30 });

export function trendSvg(b, endMs, kind, title) {
  const CH = chartGeometry();
  const start = endMs - DAY_MS;
  const pts = b.minutes.map((p) => ({ t: Date.parse(p.minute_utc) + 30e3, min: num(p.min), max: num(p.max), mean: num(p.mean) }))
    .filter((p) => Number.isFinite(p.t) && p.mean !== null && p.t >= start && p.t <= endMs + 60e3);
  const iso = kind === 'vibration' ? isoOf(b) : null;
  const lims = limitsOf(b);
  const vals = pts.flatMap((p) => [p.min ?? p.mean, p.max ?? p.mean]);
  const dMax = vals.length ? Math.max(...vals) : 0;
  const dMin = vals.length ? Math.min(...vals) : 0;
  let lo, hi;
  if (iso) { lo = 0; hi = Math.max(iso.cd * 1.25, dMax * 1.05); }
  else if (lims.length) { lo = Math.min(0, dMin); hi = Math.max(...lims.map(([, v]) => v), dMax) * 1.1; }
  else { lo = dMin - Math.abs(dMin) * 0.05; hi = dMax + Math.abs(dMax) * 0.05; }
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const x0 = CH.l, x1 = CH.w - CH.r, y0 = CH.t, y1 = CH.h - CH.b;
  const X = (ms) => +(x0 + ((ms - start) / DAY_MS) * (x1 - x0)).toFixed(1);
  const Y = (v) => +(y1 - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (y1 - y0)).toFixed(1);
  const u = unitText(b.unit);
  const last = pts.length ? pts[pts.length - 1] : null;
  const svg = svgEl('svg', {
    class: 'chart-svg', viewBox: '0 0 ' + CH.w + ' ' + CH.h, role: 'img',
    'aria-label': title + ', last 24 h, ' + pts.length + ' minutes' + (last ? ', latest mean ' + fmtNum(last.mean) + ' ' + u : ''),
  });
  const g = (cls) => svg.appendChild(svgEl('g', { class: cls }));
  // ISO zones as bands behind everything (letter inside when there is room).
  if (iso) {
    const zones = g('iso-bands');
    const edges = [lo, iso.ab, iso.bc, iso.cd, hi];
    'ABCD'.split('').forEach((z, i) => {
      const top = Y(edges[i + 1]), bottom = Y(edges[i]);
      if (bottom - top <= 0) return;
      zones.append(svgEl('rect', { class: 'iso-band iso-' + z.toLowerCase(), x: x0, y: top, width: x1 - x0, height: +(bottom - top).toFixed(1), 'data-zone': z }));
      if (bottom - top >= 13) zones.append(svgEl('text', { class: 'iso-letter', x: x0 + 4, y: +(bottom - 3).toFixed(1) }, z));
    });
  }
  // Axes, grid and labels: value ticks on the left, local-time ticks every 6 h below.
  const axes = g('axes');
  for (const { v, text } of niceTicks(lo, hi, 4)) {
    axes.append(svgEl('line', { class: 'grid', x1: x0, x2: x1, y1: Y(v), y2: Y(v) }));
    axes.append(svgEl('text', { class: 'tick tick-y', x: x0 - 4, y: Y(v) + 4, 'text-anchor': 'end' }, text));
  }
  axes.append(svgEl('text', { class: 'axis-unit', x: 2, y: 12 }, u));
  const tick = new Date(start);
  tick.setMinutes(0, 0, 0);
  for (let i = 0; i < 30 && tick.getTime() <= endMs; i++, tick.setHours(tick.getHours() + 1)) {
    if (tick.getTime() < start || tick.getHours() % 6 !== 0) continue;
    const x = X(tick.getTime());
    axes.append(svgEl('line', { class: 'grid grid-x', x1: x, x2: x, y1: y0, y2: y1 }));
    axes.append(svgEl('text', { class: 'tick tick-x', x, y: y1 + 14, 'text-anchor': 'middle', 'data-ms': tick.getTime() }, hhmm(tick.getTime())));
  }
  axes.append(svgEl('text', { class: 'tick tick-now', x: x1, y: y1 + 26, 'text-anchor': 'end' }, 'now ' + hhmm(endMs) + ' (local)'));
  axes.append(svgEl('rect', { class: 'frame', x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
  // Limit lines, labelled in the right margin (nudged apart when close).
  const limits = g('limits');
  const marks = iso ? [['ab', 'A/B', iso.ab], ['bc', 'B/C', iso.bc], ['cd', 'C/D', iso.cd]] : lims.map(([n, v]) => [n, n, v]);
  let prevY = Infinity;
  for (const [key, label, v] of marks) {
    if (v > hi) continue;
    const y = Y(v);
    limits.append(svgEl('line', { class: 'limit limit-' + key, x1: x0, x2: x1, y1: y, y2: y, 'data-limit': key, 'data-value': v }));
    const ly = Math.min(y + 4, prevY - 11);
    prevY = ly;
    limits.append(svgEl('text', { class: 'limit-label limit-label-' + key, x: x1 + 3, y: +ly.toFixed(1) }, label));
  }
  // Data: min-max band and mean line, broken where minutes are missing.
  const runs = [];
  for (const p of pts) {
    const run = runs[runs.length - 1];
    if (run && p.t - run[run.length - 1].t <= 150e3) run.push(p);
    else runs.push([p]);
  }
  const data = g('series');
  const band = runs.map((r) => 'M' + r.map((p) => X(p.t) + ' ' + Y(p.max ?? p.mean)).join('L') + 'L' + r.slice().reverse().map((p) => X(p.t) + ' ' + Y(p.min ?? p.mean)).join('L') + 'Z').join('');
  data.append(svgEl('path', { class: 'minmax', d: band }));
  const mean = runs.map((r) => 'M' + (r.length === 1 ? [r[0], r[0]] : r).map((p, i) => (X(p.t) + (r.length === 1 ? i : 0)) + ' ' + Y(p.mean)).join('L')).join('');
  data.append(svgEl('path', { class: 'mean', d: mean, 'data-points': pts.length }));
  if (last) data.append(svgEl('circle', { class: 'last', cx: X(last.t), cy: Y(last.mean), r: 3 }));
  return svg;
}
