/* DOM and format helpers: elements, icons, SVG nodes, and numbers, ages and durations as text.
 *
 * Pure: no page state here. All text goes in through textContent (never innerHTML).
 */

const ICONS = '#'; // the sprite is put inline at start: icons keep working when the gateway is gone
const SVGNS = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'data') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

export function icon(name, cls) {
  const svg = document.createElementNS(SVGNS, 'svg');
  svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(SVGNS, 'use');
  use.setAttribute('href', ICONS + name);
  svg.append(use);
  return svg;
}

export function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

// The snapshot is tolerant: a section may be a list, a map keyed by id, or missing.
export const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x);
export const list = (x) => (Array.isArray(x) ? x : isObj(x) ? Object.entries(x).map(([id, v]) => (isObj(v) ? { id, ...v } : { id, value: v })) : []);
export const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

export function fmtNum(v) {
  if (v === null || v === undefined) return '—';
  const a = Math.abs(v);
  if (a === 0) return '0.0';
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(a >= 1 ? 1 : 2);
}
export function fmtAge(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return 'never';
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  return Math.floor(s / 3600) + ' h ago';
}
export function fmtDuration(s) {
  s = Math.max(0, Math.floor(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return (hh ? hh + ':' + two(mm) : mm) + ':' + two(ss);
}
export const two = (n) => String(n).padStart(2, '0');
