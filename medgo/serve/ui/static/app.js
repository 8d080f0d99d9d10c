// MedGo doctors' workbench: sign in with an API key, chat, judge answers, review queue, versions.
// Talks only to this server's API.  Model output and user text are only ever set as text
// (textContent / text nodes), never as HTML.
"use strict";

const KEY_STORE = "medgo.apiKey";
const API = location.pathname.replace(/\/ui(\/.*)?$/, "");  // the app's route prefix ("" at /)
const VERDICTS = {acceptable: "可接受", unacceptable: "不可接受"};
const state = {me: null, versions: {}, history: [], controller: null, queue: [], index: 0};

const $ = (id) => document.getElementById(id);

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) if (child !== null && child !== undefined) node.append(child);  // strings become text nodes
  return node;
}

function button(label, className, onClick) {
  const node = el("button", className, label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = {"Authorization": "Bearer " + sessionStorage.getItem(KEY_STORE)};
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {...options, headers});
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (_) { /* not an error object */ }
    throw new ApiError(response.status, message);
  }
  return options.raw ? response : response.json();
}

const has = (scope) => Boolean(state.me && state.me.scopes.includes(scope));

// ------------------------------------------------------------------ sign-in
async function signIn(key) {
  sessionStorage.setItem(KEY_STORE, key);
  try {
    state.me = await api("/v1/me");
  } catch (err) {
    sessionStorage.removeItem(KEY_STORE);
    $("signin-error").textContent = err.status === 401 ? "密钥无效，请检查后重试。" : "登录失败：" + err.message;
    return;
  }
  $("signin-error").textContent = "";
  $("who-name").textContent = "密钥：" + state.me.name;
  $("who-scopes").textContent = "权限：" + state.me.scopes.join(", ");
  $("signin").hidden = true;
  for (const id of ["tabs", "who", "views"]) $(id).hidden = false;
  $("tab-chat").hidden = !has("chat");
  $("tab-queue").hidden = !has("review");
  $("tab-versions").hidden = !has("admin");
  const first = ["chat", "queue", "versions"].find((v) => !$("tab-" + v).hidden);
  if (first) show(first); else $("signin-error").textContent = "此密钥没有工作台可用的权限。";
}

function signOut() {
  sessionStorage.removeItem(KEY_STORE);
  location.reload();
}

function show(view) {
  for (const v of ["chat", "queue", "versions"]) {
    $("view-" + v).hidden = v !== view;
    $("tab-" + v).classList.toggle("active", v === view);
  }
  if (view === "chat") loadModels();
  if (view === "queue") loadQueue();
  if (view === "versions") loadVersions();
}

// ------------------------------------------------------------------ judging (chat and queue)
function judgePanel(responseId, onStored) {
  const correction = el("textarea", "correction");
  correction.rows = 2;
  correction.placeholder = "修正后的答案（可选）";
  const comment = el("input", "comment");
  comment.placeholder = "备注（可选）";
  const status = el("span", "judge-status");
  const panel = el("div", "judge", el("div", "judge-buttons"), correction, comment, status);
  panel.dataset.responseId = responseId;
  const submit = (verdict) => judge(panel, verdict, onStored);
  panel.firstChild.append(button("可接受", "acceptable", () => submit("acceptable")), button("不可接受", "unacceptable", () => submit("unacceptable")));
  correction.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); submit("unacceptable"); } });
  if (!has("feedback")) {
    for (const b of panel.querySelectorAll("button, textarea, input")) b.disabled = true;
    status.textContent = "此密钥没有 feedback 权限，不能提交评价。";
  }
  return panel;
}

async function judge(panel, verdict, onStored) {
  const status = panel.querySelector(".judge-status");
  const body = {response_id: panel.dataset.responseId, verdict};
  const correction = panel.querySelector(".correction").value.trim();
  const comment = panel.querySelector(".comment").value.trim();
  if (correction) body.corrected_answer = correction;
  if (comment) body.comment = comment;
  status.textContent = "正在保存…";
  try {
    const stored = await api("/v1/feedback", {method: "POST", body: JSON.stringify(body)});
    const replaced = stored.supersedes ? "，取代评价 #" + stored.supersedes : "";
    status.textContent = (stored.duplicate ? "与当前评价相同，未重复保存" : "已保存") + "（评价 #" + stored.id + replaced + "）· 当前评价：" + VERDICTS[verdict];
    panel.dataset.verdict = verdict;
    panel.dataset.feedbackId = stored.id;
    if (onStored) onStored(stored);
  } catch (err) {
    status.textContent = "保存失败：" + err.message;
  }
}

// ------------------------------------------------------------------ chat
async function loadModels() {
  if ($("model-select").options.length) return;
  try {
    const models = await api("/v1/models");
    for (const card of models.data) {
      state.versions[card.id] = card.version;
      const option = el("option", null, card.parent ? card.id + "（适配器）" : card.id);
      option.value = card.id;
      $("model-select").append(option);
    }
  } catch (err) {
    $("chat-error").textContent = "无法读取模型列表：" + err.message;
  }
}

function bubble(role, text) {
  const body = el("div", "text", text);
  const node = el("div", "turn " + role, el("div", "role", role === "user" ? "医生" : "模型"), body);
  $("conversation").append(node);
  return node;
}

async function send(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || state.controller) return;
  $("prompt").value = "";
  $("chat-error").textContent = "";
  bubble("user", prompt);
  state.history.push({role: "user", content: prompt});
  const turn = bubble("assistant", "");
  const request = {model: $("model-select").value, messages: state.history, stream: true};
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) request.max_tokens = maxTokens;
  state.controller = new AbortController();
  setBusy(true);
  try {
    const done = await streamAnswer(request, turn.querySelector(".text"), state.controller.signal);
    finishTurn(turn, done);
  } catch (err) {
    if (err.name === "AbortError") finishTurn(turn, null);
    else { turn.classList.add("failed"); $("chat-error").textContent = "请求失败：" + err.message; state.history.pop(); }
  } finally {
    state.controller = null;
    setBusy(false);
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

async function streamAnswer(request, target, signal) {
  const response = await api("/v1/chat/completions", {method: "POST", body: JSON.stringify(request), signal, raw: true});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const text = document.createTextNode("");
  target.append(text);
  const routed = response.headers.get("X-MedGo-Version");
  let buffer = "", meta = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error.message);
      meta = {id: chunk.id, model: chunk.model, fingerprint: chunk.system_fingerprint, routed};
      const choice = chunk.choices[0];
      if (choice && choice.delta && choice.delta.content) text.appendData(choice.delta.content);
      if (choice && choice.finish_reason) meta.finish = choice.finish_reason;
    }
  }
  return {...meta, text: text.data};
}

function finishTurn(turn, done) {
  const text = turn.querySelector(".text").textContent;
  state.history.push({role: "assistant", content: text});
  if (!done || !done.finish) {
    turn.append(el("div", "meta", "已停止：未完成的回答不会被记录，也不能评价。"));
    return;
  }
  const adapterVersion = state.versions[done.model];
  const versions = (done.routed ? "版本 " + done.routed + " · " : "") + "基座版本 " + done.fingerprint +
    (adapterVersion && adapterVersion !== done.fingerprint ? " · 适配器版本 " + adapterVersion : "");
  turn.dataset.responseId = done.id;
  turn.append(el("div", "meta", "模型 " + done.model + " · " + versions + " · " + done.id), judgePanel(done.id));
}

function stop() {
  if (state.controller) state.controller.abort();
}

function newChat() {
  stop();
  state.history = [];
  $("conversation").replaceChildren();
}

// ------------------------------------------------------------------ review queue
async function loadQueue() {
  const model = $("queue-model").value;
  const query = "?limit=50" + (model ? "&model=" + encodeURIComponent(model) : "");
  $("queue-status").textContent = "";
  try {
    const page = await api("/v1/review/queue" + query);
    state.queue = page.data;
    state.index = 0;
    fillModelFilter(page.models, model);
    showQueueItem();
  } catch (err) {
    $("queue-item").replaceChildren();
    $("queue-status").textContent = "无法读取审阅队列：" + err.message;
  }
}

function fillModelFilter(models, selected) {
  const options = [el("option", null, "全部")];
  options[0].value = "";
  for (const name of new Set([...models, ...(selected ? [selected] : [])])) {
    const option = el("option", null, name);
    option.value = name;
    options.push(option);
  }
  $("queue-model").replaceChildren(...options);
  $("queue-model").value = selected;
}

function showQueueItem() {
  const item = state.queue[state.index];
  $("queue-position").textContent = state.queue.length ? "第 " + (state.index + 1) + " / " + state.queue.length + " 条" : "";
  if (!item) {
    $("queue-item").replaceChildren(el("p", "empty", "队列中没有待评价的回答。"));
    return;
  }
  const turns = (item.messages || [{role: "user", content: item.prompt}]).map((m) =>
    el("div", "turn " + m.role, el("div", "role", {system: "系统", user: "医生", assistant: "模型"}[m.role] || m.role), el("div", "text", m.content)));
  const answer = el("div", "turn assistant judged-answer", el("div", "role", "待评价的回答"), el("div", "text", item.answer));
  const version = item.adapter ? "适配器 " + item.adapter + " " + (item.adapter_version || "") : "基座 " + (item.base_version || "");
  const meta = el("div", "meta", "模型 " + item.model + " · " + version + " · " + item.created + " · " + item.response_id);
  const card = el("article", "queue-card", ...turns, answer, meta, judgePanel(item.response_id, nextAfterJudgement));
  card.dataset.responseId = item.response_id;
  $("queue-item").replaceChildren(card);
}

function nextAfterJudgement(stored) {
  $("queue-status").textContent = "已保存评价 #" + stored.id + "（" + VERDICTS[stored.verdict] + "）";
  nextQueueItem();
}

function nextQueueItem() {
  if (state.index + 1 < state.queue.length) {
    state.index += 1;
    showQueueItem();
  } else {
    loadQueue();
  }
}

function queueKeys(event) {
  if ($("view-queue").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(event.target.tagName);
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const panel = document.querySelector("#queue-item .judge");
  if (!panel) return;
  const actions = {
    a: () => judge(panel, "acceptable", nextAfterJudgement),
    u: () => judge(panel, "unacceptable", nextAfterJudgement),
    c: () => panel.querySelector(".correction").focus(),
    n: () => nextQueueItem(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

// ------------------------------------------------------------------ versions
const STATUS_NAMES = {candidate: "候选", canary: "灰度", production: "生产", rejected: "已拒绝", retired: "已退役"};
const percent = (x) => (x === null ? "—" : (100 * x).toFixed(1) + "%");

async function loadVersions() {
  $("versions-error").textContent = "";
  try {
    const stats = await api("/v1/versions/stats");
    const rows = stats.data.map((v) => {
      const row = el("tr");
      const interval = v.interval_95 ? percent(v.interval_95[0]) + " – " + percent(v.interval_95[1]) : "—";
      const version = v.status ? v.adapter + "（" + (STATUS_NAMES[v.status] || v.status) + "）" : "—";
      for (const cell of [v.model, v.base_version, v.adapter_version || "—", version, v.answers, v.judgements, v.acceptable, percent(v.acceptance_rate), interval, v.last_served]) {
        row.append(el("td", null, String(cell)));
      }
      return row;
    });
    document.querySelector("#versions-table tbody").replaceChildren(...rows);
  } catch (err) {
    $("versions-error").textContent = "无法读取版本统计：" + err.message;
  }
}

// ------------------------------------------------------------------ wiring
document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("key-input").value.trim()); });
  $("signout").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  $("chat-form").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) send(e); });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  $("queue-model").addEventListener("change", () => { $("queue-model").blur(); loadQueue(); });  // shortcuts work at once
  $("queue-reload").addEventListener("click", loadQueue);
  $("versions-reload").addEventListener("click", loadVersions);
  document.addEventListener("keydown", queueKeys);
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved);
});
