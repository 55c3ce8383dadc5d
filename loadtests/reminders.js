// Reminder lateness: tasks due in LEAD_S seconds with a reminder PT{LEAD_S-5}S (i.e. due 5 s from now),
// then the in-app notification is awaited and `created_at - remind_at` recorded.
//
// Consumes env: BASE_URL, TOKEN, USER_ID, SMOKE=1, RATE (tasks/s, default 2), DURATION (default 1m),
// LEAD_S (default 90: a cluster's PingSource ticks once a minute and a reminder only fires before its due
// time; `tasktide dev --ping-every 1s` allows 15), POLL_MS (default 2000, smoke 500), LATENESS_P95_MS (default 90000, the
// TasktideReminderLate alert), P95_MS / P99_MS.
// Emits: Trend `reminder_lateness` (ms) and Rate `reminder_delivered`.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import { NOTIFICATIONS_URL, SMOKE, baseThresholds, createTask, isoIn, params, query, requireAccess } from './common.js';

const RATE = SMOKE ? 1 : Number(__ENV.RATE || 2);
const DURATION = SMOKE ? '5s' : __ENV.DURATION || '1m';
const LEAD_S = Number(__ENV.LEAD_S || (SMOKE ? 15 : 90));
const REMIND_IN_S = 5;
const POLL_MS = Number(__ENV.POLL_MS || (SMOKE ? 500 : 2000));

const lateness = new Trend('reminder_lateness', true);
const delivered = new Rate('reminder_delivered');

export const options = {
  scenarios: {
    reminders: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(2, RATE * (LEAD_S + 2)),
      maxVUs: Math.max(10, RATE * (LEAD_S + 10)),
      gracefulStop: `${LEAD_S + 10}s`,
    },
  },
  thresholds: {
    ...baseThresholds(),
    reminder_delivered: ['rate>0.99'],
    reminder_lateness: [`p(95)<${Number(__ENV.LATENESS_P95_MS || 90000)}`],
  },
};

export function setup() {
  if (LEAD_S <= REMIND_IN_S) {
    throw new Error(`LEAD_S must exceed ${REMIND_IN_S}`);
  }
  requireAccess();
}

export default function () {
  const dueAt = isoIn(LEAD_S);
  const offset = LEAD_S - REMIND_IN_S;
  const task = createTask({
    title: `k6 reminder ${__VU}-${__ITER}`,
    tags: ['k6', 'reminder'],
    due_at: dueAt,
    reminders: [`PT${offset}S`],
  });
  if (!task) {
    delivered.add(false);
    return;
  }
  const remindAt = Date.parse(task.due_at) - offset * 1000;
  while (Date.now() < Date.parse(task.due_at) + 5000) {
    sleep(POLL_MS / 1000);
    if (Date.now() < remindAt) continue;
    const res = http.get(`${NOTIFICATIONS_URL}${query({ limit: 200 })}`, params('notifications'));
    if (res.status !== 200) continue;
    const note = res.json().find((n) => n.task_id === task.id);
    if (note) {
      lateness.add(Math.max(0, Date.parse(note.created_at) - remindAt));
      delivered.add(true);
      check(note, { 'notification names the task': (n) => n.title.includes(task.title) });
      return;
    }
  }
  delivered.add(false);
}
