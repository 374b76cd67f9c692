/* Login, logout and the write buttons (acknowledge, silence, outbox retry), with the toast
 * that reports how a write went. The gateway enforces roles and CSRF; the page only marks
 * a button that needs another login (lock icon, btn-locked).
 */
import { $, h, icon } from './dom.js';
import { render, st } from './state.js';

function can(role) {
  const r = st.session.roles;
  return st.session.user && r.indexOf(st.session.role) >= r.indexOf(role);
}

export function writeButton(label, path, body, role) {
  const locked = !can(role);
  return h('button', {
    type: 'button', class: 'btn' + (locked ? ' btn-locked' : ''), data: { write: path },
    title: locked ? 'Needs an ' + role + ' login' : null,
    onclick: (e) => doWrite(e.currentTarget, label, path, body, role),
  }, locked ? icon('lock') : null, label);
}

async function doWrite(btn, label, path, body, role) {
  btn.disabled = true;
  try {
    const r = await fetch(path, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': st.session.csrf || '' },
      body: JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (r.ok) toast(label + ': done', 'ok');
    else if (r.status === 401) { toast(label + ' refused: ' + (j.error || 'log in first'), 'err'); st.session.user = null; openLogin(label + ' needs an ' + role + ' login.'); }
    else if (r.status === 403) toast(label + ' refused: ' + (j.error || 'not allowed'), 'err');
    else if (r.status === 404 || r.status === 405) toast(label + ' refused: this gateway has no write API (read-only)', 'err');
    else toast(label + ' failed: ' + (j.error || 'HTTP ' + r.status), 'err');
  } catch (err) {
    toast(label + ' failed: no answer from the gateway', 'err');
  } finally {
    btn.disabled = false;
  }
}

let toastTimer = 0;
function toast(text, kind) {
  const t = $('toast');
  t.textContent = text;
  t.className = 'toast toast-' + kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

export async function loadSession() {
  try {
    const r = await fetch('/api/session', { cache: 'no-store', credentials: 'same-origin' });
    if (r.status === 404) { st.session.available = false; return; }
    const j = await r.json();
    st.session = { ...st.session, available: true, user: j.user, role: j.role, csrf: j.csrf || null, roles: j.roles || st.session.roles };
  } catch (err) { /* the connection banner tells the story */ }
  render();
}

export function openLogin(why) {
  if (!st.session.available) { toast('This gateway has no login (read-only).', 'err'); return; }
  $('login-why').textContent = why || '';
  $('login-err').textContent = '';
  const d = $('login-dlg');
  if (!d.open) d.showModal();
  $('login-user').focus();
}

export async function submitLogin(e) {
  e.preventDefault();
  const err = $('login-err');
  err.textContent = '';
  try {
    const r = await fetch('/api/login', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: $('login-user').value, password: $('login-pw').value }),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) { err.textContent = j.error || 'HTTP ' + r.status; return; }
    st.session = { ...st.session, user: j.user, role: j.role, csrf: j.csrf, roles: j.roles || st.session.roles };
    $('login-pw').value = '';
    $('login-dlg').close();
    toast('Logged in as ' + j.user + ' (' + j.role + ')', 'ok');
    render();
  } catch (x) {
    err.textContent = 'No answer from the gateway.';
  }
}

export async function logout() {
  try {
    await fetch('/api/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': st.session.csrf || '' } });
  } catch (err) { /* the session ends server-side on expiry anyway */ }
  st.session = { ...st.session, user: null, role: null, csrf: null };
  render();
}
