// End-to-end event latency: complete a recurring task and time until its next occurrence is visible.
//
// Path measured: PATCH .../complete -> outbox -> task-events -> Broker -> Trigger recurring -> new task row
// -> visible in GET /tasks. Consumes env: BASE_URL, TOKEN, USER_ID, SMOKE=1, RATE (completions/s, default 5),
// DURATION (default 2m), POLL_MS (default 100), TIMEOUT_S (give up after, default 30), NEXT_P95_MS (default
// 5000), P95_MS / P99_MS. Emits: Trend `recurrence_next_visible` (ms) and Rate `recurrence_next_seen`.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import { SMOKE, TASKS_URL, baseThresholds, createTask, isoIn, params, query, requireAccess } from './common.js';

const RATE = SMOKE ? 1 : Number(__ENV.RATE || 5);
const DURATION = SMOKE ? '5s' : __ENV.DURATION || '2m';
const POLL_MS = Number(__ENV.POLL_MS || 100);
const TIMEOUT_S = Number(__ENV.TIMEOUT_S || 30);

const nextVisible = new Trend('recurrence_next_visible', true);
const nextSeen = new Rate('recurrence_next_seen');

export const options = {
  scenarios: {
    recurring: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(2, RATE * 2),
      maxVUs: Math.max(10, RATE * (TIMEOUT_S + 2)),
      gracefulStop: `${TIMEOUT_S + 5}s`,
    },
  },
  thresholds: {
    ...baseThresholds(),
    recurrence_next_seen: ['rate>0.99'],
    recurrence_next_visible: [`p(95)<${Number(__ENV.NEXT_P95_MS || 5000)}`],
  },
};

export function setup() {
  requireAccess();
}

export default function () {
  // A tag unique to this iteration lets the poll find the series without scanning every task.
  const tag = `e2e-${__VU}-${__ITER}-${Math.random().toString(36).slice(2, 8)}`;
  const task = createTask({
    title: `k6 recurring ${tag}`,
    priority: 'medium',
    tags: [tag],
    due_at: isoIn(3600),
    recurrence: 'FREQ=DAILY',
  });
  if (!task) {
    nextSeen.add(false);
    return;
  }
  const res = http.patch(`${TASKS_URL}/${task.id}/complete`, JSON.stringify({ completed: true }), params('complete'));
  if (!check(res, { 'completed (200)': (r) => r.status === 200 })) {
    nextSeen.add(false);
    return;
  }
  const completedAt = Date.now();
  const url = `${TASKS_URL}${query({ status: 'pending', tag })}`;
  while (Date.now() - completedAt < TIMEOUT_S * 1000) {
    const poll = http.get(url, params('poll'));
    if (poll.status === 200) {
      const next = poll.json().find((t) => t.series_id === task.series_id && t.occurrence > task.occurrence);
      if (next) {
        nextVisible.add(Date.now() - completedAt);
        nextSeen.add(true);
        check(next, { 'next occurrence is one day later': (t) => Date.parse(t.due_at) - Date.parse(task.due_at) === 86400000 });
        return;
      }
    }
    sleep(POLL_MS / 1000);
  }
  nextSeen.add(false);
}
