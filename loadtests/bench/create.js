// Create-task load for loadtests/bench/api_load.py: POST /api/{USER_ID}/tasks, closed or open loop.
//
// Consumes env: BASE_URL, USER_ID, TOKEN (Bearer; empty for the plain baseline), MODE=closed|open,
// VUS and DURATION (closed loop: VUS clients back to back), RATE (open loop: constant-arrival-rate,
// requests/s, for DURATION), SUMMARY (path of the JSON summary to write).
// Requests time out after 10 s (counted failed). Emits: the k6 summary (http_req_duration med/p90/p99/max, http_reqs, dropped_iterations) as JSON.
import http from 'k6/http';
import { check } from 'k6';

const MODE = __ENV.MODE || 'closed';
const DURATION = __ENV.DURATION || '20s';
const RATE = Number(__ENV.RATE || 100);
const VUS = Number(__ENV.VUS || 8);
const URL = `${__ENV.BASE_URL}/api/${__ENV.USER_ID}/tasks`;
const HEADERS = { 'Content-Type': 'application/json' };
if (__ENV.TOKEN) {
  HEADERS.Authorization = `Bearer ${__ENV.TOKEN}`;
}
const DUE = new Date(Date.now() + 30 * 86400 * 1000).toISOString();

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    create:
      MODE === 'open'
        ? {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            preAllocatedVUs: Math.max(8, Math.ceil(RATE / 10)),
            maxVUs: Math.max(50, RATE),
            gracefulStop: '5s',
          }
        : { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '5s' },
  },
};

export default function () {
  const body = JSON.stringify({
    title: `bench task ${__VU}-${__ITER}`,
    description: 'created by loadtests/bench/create.js',
    priority: 'medium',
    tags: ['bench', 'load'],
    due_at: DUE,
    reminders: ['PT1H'],
  });
  const response = http.post(URL, body, { headers: HEADERS, timeout: '10s' });
  check(response, { 'status is 201': (r) => r.status === 201 });
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
