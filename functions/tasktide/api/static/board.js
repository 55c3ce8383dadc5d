// tasktide board: a plain-JS client of the REST API, the SSE stream and the chat endpoint.
// Consumes: /openapi.json (which optional routes exist), /api/{user}/tasks, .../history, .../notifications,
// /api/{user}/stream (EventSource, ?access_token=), /api/{user}/chat. Emits: nothing but HTTP calls.
"use strict";

const TASK_EVENTS = [
  "com.tasktide.task.created", "com.tasktide.task.updated", "com.tasktide.task.completed",
  "com.tasktide.task.reopened", "com.tasktide.task.deleted", "com.tasktide.task.skipped",
];
const REMINDER_EVENT = "com.tasktide.reminder.due";
const NOTIFICATION_EVENT = "com.tasktide.notification.sent"; // the notifier wrote the in-app notification
const state = {
  token: null, user: null, source: null, skip: null, recurrenceText: false, reload: null,
  listLoad: 0,  // the latest list load: an older answer arriving after it (other filters) is dropped
  openHistory: new Set(),  // task ids whose history is open: it stays open (and is re-read) across re-renders
};
const $ = (id) => document.getElementById(id);

function claimsOf(token) {
  const part = token.split(".")[1];
  if (!part) throw new Error("That is not a JWT (it has no payload part).");
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(json);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(problemText(data, response.status));
    error.status = response.status;
    error.problem = data;
    throw error;
  }
  return data;
}

function problemText(data, status) {
  if (data && typeof data === "object") {
    const fields = (data.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    return data.detail || fields || data.title || `HTTP ${status}`;
  }
  return `HTTP ${status}`;
}

function userPath(suffix) {
  return `/api/${encodeURIComponent(state.user)}${suffix}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function formatDate(text) {
  if (!text) return "";
  return new Date(text).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// ---- sign in -------------------------------------------------------------------------------------

async function signIn(token) {
  const claims = claimsOf(token);
  if (!claims.sub) throw new Error("The token has no subject (sub).");
  state.token = token;
  state.user = claims.sub;
  await api("GET", userPath("/tasks?limit=1"));
  sessionStorage.setItem("tasktide-token", token);
  $("signin").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `Signed in as ${state.user}`;
  await discover();
  await Promise.all([loadTasks(), loadInbox(), loadChat()]);
  connectStream();
  $("new-title").focus();
}

function signOut() {
  sessionStorage.removeItem("tasktide-token");
  if (state.source) state.source.close();
  Object.assign(state, { token: null, user: null, source: null });
  $("board").hidden = true;
  $("signin").hidden = false;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("token").value = "";
  $("token").focus();
}

async function discover() {
  try {
    const spec = await (await fetch("/openapi.json")).json();
    for (const [path, ops] of Object.entries(spec.paths || {})) {
      if (/^\/api\/\{user_id\}\/tasks\/\{task_id\}\/.*skip/.test(path)) {
        state.skip = { path, method: Object.keys(ops)[0].toUpperCase() };
      }
    }
    const taskIn = ((spec.components || {}).schemas || {}).TaskIn || {};
    state.recurrenceText = Boolean((taskIn.properties || {}).recurrence_text);
  } catch (_) {
    state.skip = null;
  }
}

// ---- tasks ---------------------------------------------------------------------------------------

function filterQuery() {
  const params = new URLSearchParams();
  params.set("status", $("f-status").value);
  if ($("f-priority").value) params.set("priority", $("f-priority").value);
  if ($("f-tag").value.trim()) params.set("tag", $("f-tag").value.trim());
  if ($("f-q").value.trim()) params.set("q", $("f-q").value.trim());
  if ($("f-overdue").checked) params.set("overdue", "true");
  params.set("sort", $("f-sort").value);
  params.set("limit", "200");
  return params.toString();
}

async function loadTasks() {
  const load = ++state.listLoad;
  $("list-error").textContent = "";
  try {
    const tasks = await api("GET", userPath(`/tasks?${filterQuery()}`));
    if (load === state.listLoad) renderTasks(tasks);
  } catch (error) {
    if (load === state.listLoad) $("list-error").textContent = error.message;
  }
}

function scheduleReload() {
  clearTimeout(state.reload);
  state.reload = setTimeout(loadTasks, 100);
}

function renderTasks(tasks) {
  const list = $("task-list");
  const focused = focusedControl(list);
  list.replaceChildren(...tasks.map(taskItem));
  $("empty").hidden = tasks.length > 0;
  refocus(list, focused);
}

// Every live update re-renders the list; the keyboard stays on the same control of the same task.
const CONTROLS = "input, button, a[href], [tabindex]";

function focusedControl(list) {
  const active = document.activeElement;
  const item = active && list.contains(active) ? active.closest("li[data-task-id]") : null;
  if (!item) return null;
  return { task: item.dataset.taskId, index: [...item.querySelectorAll(CONTROLS)].indexOf(active) };
}

function refocus(list, focused) {
  if (!focused) return;
  const item = [...list.children].find((li) => li.dataset.taskId === focused.task);
  const controls = item ? [...item.querySelectorAll(CONTROLS)] : [];
  const target = controls[focused.index] || controls[0];
  if (target) target.focus();
}

function taskItem(task) {
  const done = task.status === "completed";
  const checkId = `done-${task.id}`;
  const meta = el("p", { class: "meta" },
    el("span", { class: `badge prio-${task.priority}` }, `priority ${task.priority}`),
    ...task.tags.map((t) => el("span", { class: "tag" }, `#${t}`)),
    task.due_at ? el("span", {}, `due ${formatDate(task.due_at)}`) : null,
    task.recurrence ? el("span", { class: "recur", title: task.recurrence }, `repeats ${task.recurrence}`) : null,
    task.reminders.length ? el("span", {}, `reminders ${task.reminders.join(", ")}`) : null,
  );
  const history = el("ol", { class: "history", id: `history-${task.id}`, hidden: true });
  const historyButton = el("button", {
    type: "button", class: "secondary", "aria-expanded": "false", "aria-controls": history.id,
    onclick: () => toggleHistory(task, historyButton, history),
  }, "History");
  if (state.openHistory.has(task.id)) toggleHistory(task, historyButton, history);
  const actions = el("div", { class: "row-actions" }, historyButton);
  if (state.skip && task.recurrence && !done) {
    actions.append(el("button", {
      type: "button", class: "secondary", onclick: () => act(() => skipTask(task)),
      "aria-label": `Skip this occurrence of ${task.title}`,
    }, "Skip"));
  }
  actions.append(el("button", {
    type: "button", class: "danger", onclick: () => act(() => deleteTask(task)),
    "aria-label": `Delete ${task.title}`,
  }, "Delete"));
  return el("li", { class: done ? "task done" : "task", "data-task-id": task.id },
    el("div", { class: "task-main" },
      el("input", {
        type: "checkbox", id: checkId, checked: done,
        onchange: (e) => act(() => completeTask(task, e.target.checked)),
      }),
      el("label", { for: checkId, class: "title" }, task.title),
    ),
    meta, actions, history);
}

async function act(action) {
  $("list-error").textContent = "";
  try {
    await action();
  } catch (error) {
    $("list-error").textContent = error.message;
  }
  await loadTasks();
}

function completeTask(task, completed) {
  return api("PATCH", userPath(`/tasks/${task.id}/complete`), { completed });
}

function deleteTask(task) {
  if (!window.confirm(`Delete "${task.title}"?`)) return Promise.resolve();
  return api("DELETE", userPath(`/tasks/${task.id}`));
}

function skipTask(task) {
  const path = state.skip.path.replace("{user_id}", encodeURIComponent(state.user)).replace("{task_id}", task.id);
  return api(state.skip.method, path, state.skip.method === "GET" ? undefined : {});
}

async function toggleHistory(task, button, list) {
  const open = button.getAttribute("aria-expanded") === "true";
  button.setAttribute("aria-expanded", String(!open));
  list.hidden = open;
  if (open) {
    state.openHistory.delete(task.id);
    return;
  }
  state.openHistory.add(task.id);
  try {
    const entries = await api("GET", userPath(`/tasks/${task.id}/history`));
    list.replaceChildren(...(entries.length ? entries.map((e) => el("li", {},
      `${formatDate(e.time)}: ${e.type.replace("com.tasktide.task.", "")}`,
      e.changed.length ? ` (${e.changed.join(", ")})` : "",
      e.actor ? ` by ${e.actor}` : ""))
      : [el("li", {}, "No history recorded yet.")]));
  } catch (error) {
    list.replaceChildren(el("li", { class: "error" }, error.message));
  }
}

function reminderOffsets(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(\d+)\s*([mhdw])$/i.exec(s);
    if (!m) return s.toUpperCase();
    const n = m[1];
    return { m: `PT${n}M`, h: `PT${n}H`, d: `P${n}D`, w: `P${n}W` }[m[2].toLowerCase()];
  });
}

async function createTask(event) {
  event.preventDefault();
  $("create-error").textContent = "";
  const form = event.target;
  const body = {
    title: $("new-title").value.trim(),
    priority: $("new-priority").value,
    tags: $("new-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    reminders: reminderOffsets($("new-reminders").value),
  };
  if ($("new-due").value) body.due_at = new Date($("new-due").value).toISOString();
  const recurrence = $("new-recurrence").value.trim();
  if (recurrence) {
    const rrule = /^(RRULE:)?FREQ=/i.test(recurrence);
    if (rrule || !state.recurrenceText) body.recurrence = recurrence;
    else body.recurrence_text = recurrence;
  }
  try {
    const task = await api("POST", userPath("/tasks"), body);
    form.reset();
    $("live").textContent = `Added "${task.title}".`;
    await loadTasks();
    $("new-title").focus();
  } catch (error) {
    $("create-error").textContent = error.message;
  }
}

// ---- notifications -------------------------------------------------------------------------------

async function loadInbox() {
  try {
    const items = await api("GET", userPath("/notifications?limit=50"));
    const unread = items.filter((n) => !n.read).length;
    $("unread-count").textContent = unread ? `${unread} unread` : "";
    $("inbox-empty").hidden = items.length > 0;
    $("inbox").replaceChildren(...items.map((n) => el("li", { class: n.read ? "note read" : "note" },
      el("strong", {}, n.title), " ", el("span", {}, n.body), " ",
      el("time", { datetime: n.created_at }, formatDate(n.created_at)), " ",
      n.read ? null : el("button", {
        type: "button", class: "secondary", "aria-label": `Mark "${n.title}" read`,
        onclick: async () => { await api("PATCH", userPath(`/notifications/${n.id}`), { read: true }); loadInbox(); },
      }, "Mark read"))));
  } catch (error) {
    $("inbox").replaceChildren(el("li", { class: "error" }, error.message));
  }
}

// ---- live updates --------------------------------------------------------------------------------

function connectStream() {
  if (state.source) state.source.close();
  const source = new EventSource(userPath(`/stream?access_token=${encodeURIComponent(state.token)}`));
  state.source = source;
  const onTask = (event) => {
    let title = "a task";
    try { title = `"${JSON.parse(event.data).task.title}"`; } catch (_) { /* keep the default */ }
    $("live").textContent = `Live: ${title} ${event.type.replace("com.tasktide.task.", "")}.`;
    scheduleReload();
  };
  for (const type of TASK_EVENTS) source.addEventListener(type, onTask);
  const onNotification = () => { $("live").textContent = "Live: a reminder is due."; loadInbox(); };
  source.addEventListener(REMINDER_EVENT, onNotification);
  source.addEventListener(NOTIFICATION_EVENT, onNotification);
  source.addEventListener("open", () => { document.body.dataset.stream = "open"; });
  source.addEventListener("error", () => { document.body.dataset.stream = "reconnecting"; });
}

// ---- chat ----------------------------------------------------------------------------------------

async function loadChat() {
  try {
    await api("GET", userPath("/chat"));
    $("chat-panel").hidden = false;
    $("chat-unavailable").hidden = true;
  } catch (error) {
    $("chat-panel").hidden = true;
    $("chat-unavailable").hidden = false;
    $("chat-unavailable").textContent = error.status === 404
      ? "Chat is not served by this deployment."
      : error.message;
  }
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message) return;
  $("chat-error").textContent = "";
  $("chat-log").append(el("li", { class: "me" }, message));
  input.value = "";
  try {
    const body = { message };
    const id = sessionStorage.getItem("tasktide-conversation");
    if (id) body.conversation_id = id;
    let reply;
    try {
      reply = await api("POST", userPath("/chat"), body);
    } catch (error) {
      if (error.status !== 404 || !body.conversation_id) throw error;
      delete body.conversation_id; // the conversation expired or belongs to another user: start anew
      reply = await api("POST", userPath("/chat"), body);
    }
    sessionStorage.setItem("tasktide-conversation", reply.conversation_id);
    $("chat-log").append(el("li", { class: "agent" }, reply.reply));
    scheduleReload();
  } catch (error) {
    $("chat-error").textContent = error.message;
  }
}

// ---- wiring --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("token").value.trim());
    } catch (error) {
      state.token = null;
      $("signin-error").textContent = error.message;
    }
  });
  $("sign-out").addEventListener("click", signOut);
  $("create-form").addEventListener("submit", createTask);
  $("filters").addEventListener("change", loadTasks);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadTasks(); });
  $("f-q").addEventListener("input", scheduleReload);
  $("chat-form").addEventListener("submit", sendChat);
  const saved = sessionStorage.getItem("tasktide-token");
  if (saved) signIn(saved).catch(() => signOut());
});
