// Read load for loadtests/bench/api_load.py: GET one task by id, or the filtered, sorted list; open loop.
//
// Consumes env: BASE_URL, USER_ID, TOKEN (Bearer; empty for the plain baseline), OP=get|list, RATE
// (constant-arrival-rate, requests/s) for DURATION, SEED (tasks setup() creates first unless the user has
// them from an earlier run, default 200, at most 200),
// SUMMARY (path of the JSON summary to write). `list` asks for `?priority=medium&sort=due_at&limit=20` (plus
// `&tag=bench` when TAGS=1: tasktide's tag filter; the plain baseline has none).
// Requests time out after 10 s (counted failed). Emits: the k6 summary of the reads only (setup's creates
// are tagged apart) as JSON.
import http from 'k6/http';
import { check } from 'k6';

const OP = __ENV.OP || 'get';
const DURATION = __ENV.DURATION || '10s';
const RATE = Number(__ENV.RATE || 100);
const SEED = Number(__ENV.SEED || 200);
const BASE = `${__ENV.BASE_URL}/api/${__ENV.USER_ID}/tasks`;
const HEADERS = { 'Content-Type': 'application/json' };
if (__ENV.TOKEN) {
  HEADERS.Authorization = `Bearer ${__ENV.TOKEN}`;
}
const LIST = `${BASE}?priority=medium&sort=due_at&limit=20${__ENV.TAGS === '1' ? '&tag=bench' : ''}`;

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'max'],
  setupTimeout: '60s',
  // sub-metrics of the reads alone, so the summary leaves setup()'s creates out
  thresholds: { 'http_req_duration{phase:read}': [], 'http_reqs{phase:read}': [], 'http_req_failed{phase:read}': [] },
  scenarios: {
    read: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(8, Math.ceil(RATE / 10)),
      maxVUs: Math.max(50, RATE),
      gracefulStop: '5s',
    },
  },
};

export function setup() {
  // the reader's tasks from an earlier run on this server, if it seeded them already (limit <= 200)
  const listed = http.get(`${BASE}?limit=${SEED}`, { headers: HEADERS, responseType: 'text', tags: { phase: 'seed' } });
  const ids = listed.status === 200 ? JSON.parse(listed.body).map((task) => task.id) : [];
  if (ids.length >= SEED) {
    return { ids };
  }
  for (let i = ids.length; i < SEED; i++) {
    const due = new Date(Date.now() + (i + 1) * 3600 * 1000).toISOString();
    const body = JSON.stringify({ title: `read seed ${i}`, priority: i % 2 ? 'medium' : 'low', tags: ['bench'], due_at: due });
    const response = http.post(BASE, body, { headers: HEADERS, timeout: '10s', responseType: 'text', tags: { phase: 'seed' } });
    if (response.status === 201) {
      ids.push(JSON.parse(response.body).id);
    }
  }
  return { ids };
}

export default function (data) {
  const params = { headers: HEADERS, timeout: '10s', tags: { phase: 'read' } };
  const url = OP === 'list' ? LIST : `${BASE}/${data.ids[Math.floor(Math.random() * data.ids.length)]}`;
  const response = http.get(url, params);
  if (response.status !== 200 && __ITER < 3) {
    console.error(`${url} -> ${response.status}`);
  }
  check(response, { 'status is 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
