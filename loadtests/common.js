// Shared helpers for the tasktide k6 scripts.
//
// Consumes env (__ENV): BASE_URL (default http://127.0.0.1:8080), TOKEN and USER_ID (required: a bearer
// token minted with `tasktide token USER_ID`), SMOKE=1 (a few seconds at a low rate), P95_MS / P99_MS
// (http_req_duration thresholds, default 500 / 1000). Emits: request helpers tagged with a `name` per
// endpoint and the thresholds every script shares.
import http from 'k6/http';
import { check, fail } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const USER_ID = __ENV.USER_ID || '';
export const TOKEN = __ENV.TOKEN || '';
export const SMOKE = __ENV.SMOKE === '1' || __ENV.SMOKE === 'true';
const P95_MS = Number(__ENV.P95_MS || 500);
const P99_MS = Number(__ENV.P99_MS || 1000);

export const TASKS_URL = `${BASE_URL}/api/${encodeURIComponent(USER_ID)}/tasks`;
export const NOTIFICATIONS_URL = `${BASE_URL}/api/${encodeURIComponent(USER_ID)}/notifications`;

/** Thresholds every script applies: under 1% failed requests, latency p95/p99, checks passing. */
export function baseThresholds() {
  return {
    http_req_failed: ['rate<0.01'],
    http_req_duration: [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`],
    checks: ['rate>0.99'],
  };
}

export function params(name, extra = {}) {
  return {
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    tags: { name },
    ...extra,
  };
}

/** `{a: 1, b: [2, 3]}` -> `?a=1&b=2&b=3` (k6 has no URLSearchParams without a remote jslib). */
export function query(fields) {
  const parts = [];
  for (const [key, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null) {
        parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(item))}`);
      }
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** setup() guard: fail fast with a readable message when the target or the token is wrong. */
export function requireAccess() {
  if (!TOKEN || !USER_ID) {
    fail('set TOKEN and USER_ID (mint a token with `tasktide token USER_ID`)');
  }
  const res = http.get(`${TASKS_URL}${query({ limit: 1 })}`, params('setup'));
  if (res.status !== 200) {
    fail(`GET ${TASKS_URL} answered ${res.status}: ${res.body}`);
  }
}

export function createTask(fields, name = 'create') {
  const res = http.post(TASKS_URL, JSON.stringify(fields), params(name));
  check(res, { 'task created (201)': (r) => r.status === 201 });
  return res.status === 201 ? res.json() : null;
}

export function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

/** RFC 3339 UTC time `seconds` from now, whole seconds (recurrence rules work at second precision). */
export function isoIn(seconds) {
  return new Date(Math.floor(Date.now() / 1000 + seconds) * 1000).toISOString();
}
