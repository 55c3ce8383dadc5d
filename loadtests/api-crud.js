// Task API load: a constant arrival rate of create / filtered list / PATCH / complete.
//
// Consumes env: BASE_URL, TOKEN, USER_ID, SMOKE=1, RATE (iterations/s, default 50), DURATION (default 2m),
// SEED_TASKS (tasks created in setup for updates and completions, default 50), P95_MS / P99_MS.
// Emits: k6 metrics, every request tagged name=create|list|update|complete; thresholds fail the run.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e USER_ID=alice -e TOKEN=$(tasktide token alice) \
//     loadtests/api-crud.js
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import {
  SMOKE,
  TASKS_URL,
  baseThresholds,
  createTask,
  isoIn,
  params,
  pick,
  query,
  requireAccess,
} from './common.js';

const RATE = SMOKE ? 5 : Number(__ENV.RATE || 50);
const DURATION = SMOKE ? '5s' : __ENV.DURATION || '2m';
const SEED_TASKS = SMOKE ? 5 : Number(__ENV.SEED_TASKS || 50);
const PRIORITIES = ['high', 'medium', 'low', 'none'];
const TAGS = ['work', 'home', 'errand', 'k6'];
const SORTS = ['due_at', '-due_at', 'priority', '-priority', 'title', '-created_at', 'updated_at'];

const operations = new Counter('crud_operations');

export const options = {
  scenarios: {
    crud: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(2, Math.ceil(RATE / 2)),
      maxVUs: Math.max(10, RATE * 4),
    },
  },
  thresholds: {
    ...baseThresholds(),
    'http_req_duration{name:list}': [`p(95)<${Number(__ENV.P95_MS || 500)}`],
    crud_operations: ['count>0'],
  },
};

function newTaskFields() {
  return {
    title: `k6 task ${Math.random().toString(36).slice(2, 10)}`,
    description: 'created by loadtests/api-crud.js',
    priority: pick(PRIORITIES),
    tags: [pick(TAGS), 'k6'],
    due_at: isoIn(3600 + Math.floor(Math.random() * 86400)),
  };
}

export function setup() {
  requireAccess();
  const ids = [];
  for (let i = 0; i < SEED_TASKS; i++) {
    const task = createTask(newTaskFields(), 'seed');
    if (task) ids.push(task.id);
  }
  return { ids };
}

function create() {
  createTask(newTaskFields());
}

function list() {
  const filters = { sort: pick(SORTS), limit: 20 };
  const roll = Math.random();
  if (roll < 0.3) filters.status = pick(['pending', 'completed', 'all']);
  else if (roll < 0.5) filters.priority = [pick(PRIORITIES), pick(PRIORITIES)];
  else if (roll < 0.7) filters.tag = pick(TAGS);
  else if (roll < 0.85) filters.q = 'k6 task';
  else filters.overdue = 'false';
  const res = http.get(`${TASKS_URL}${query(filters)}`, params('list'));
  check(res, { 'list ok (200, array)': (r) => r.status === 200 && Array.isArray(r.json()) });
}

function update(ids) {
  const body = { priority: pick(PRIORITIES), tags: [pick(TAGS), 'k6'], description: `edited ${Date.now()}` };
  const res = http.patch(`${TASKS_URL}/${pick(ids)}`, JSON.stringify(body), params('update'));
  check(res, { 'task updated (200)': (r) => r.status === 200 });
}

function complete(ids) {
  const body = { completed: Math.random() < 0.5 };
  const res = http.patch(`${TASKS_URL}/${pick(ids)}/complete`, JSON.stringify(body), params('complete'));
  check(res, { 'task completed/reopened (200)': (r) => r.status === 200 });
}

export default function (data) {
  const roll = Math.random();
  if (roll < 0.3 || data.ids.length === 0) create();
  else if (roll < 0.7) list();
  else if (roll < 0.85) update(data.ids);
  else complete(data.ids);
  operations.add(1);
}
