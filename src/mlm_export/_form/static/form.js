// The MLM Item form: renders the field tree the server generated from the JSON Schemas, keeps the Item in
// memory, asks the server to validate it as the user types, and saves it only when it is valid.
// Vanilla JavaScript, no dependency, nothing fetched from anywhere but this server.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const S = {
  item: null, spec: null, derived: [], opened: false, path: null, dirty: false,
  unlocked: new Set(), rows: new Map(), jsonErrors: new Set(), valid: false, seq: 0, timer: 0, uid: 0,
};

async function api(url, body) {
  const opts = { headers: { "X-MLM-Form-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const response = await fetch(url, opts);
  return { status: response.status, data: await response.json() };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const keyOf = (path) => JSON.stringify(path);
// Entries made only of these are laid out in one row each (classes, bands, value scalings).
const SCALAR = new Set(["text", "textarea", "integer", "number", "choice", "boolean", "color", "datetime", "license"]);
function getAt(obj, path) {
  for (const p of path) {
    if (obj === null || typeof obj !== "object" || !(p in obj)) return undefined;
    obj = obj[p];
  }
  return obj;
}
function setAt(path, value) {
  let obj = S.item;
  for (let i = 0; i < path.length - 1; i++) {
    if (obj[path[i]] === null || typeof obj[path[i]] !== "object") obj[path[i]] = typeof path[i + 1] === "number" ? [] : {};
    obj = obj[path[i]];
  }
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(obj)) obj[last] = null; else delete obj[last];
  } else obj[last] = value;
  changed();
}

function derivedSource(path) {
  if (!S.opened) return null;
  for (const d of S.derived) {
    if (d.path.length === path.length && d.path.every((p, i) => p === "*" || p === path[i])) return d.source;
  }
  return null;
}
function locked(path) {
  return derivedSource(path) !== null && !S.unlocked.has(keyOf(path)) && getAt(S.item, path) !== undefined;
}

function parseScalar(text, kind) {
  const t = text.trim();
  if (kind === "integer" && /^-?\d+$/.test(t)) return parseInt(t, 10);
  if (kind === "number" && t !== "" && !isNaN(Number(t))) return Number(t);
  return t; // left as typed: the validator says what is wrong with it
}

// ---- one control per kind ------------------------------------------------------------------------------
function control(spec, path, value, id) {
  const set = (v) => setAt(path, v);
  switch (spec.kind) {
    case "text": case "datetime": case "license": case "integer": case "number": {
      const attrs = { id, type: "text", value: value === undefined || value === null ? "" : String(value) };
      if (spec.kind === "license") attrs.list = "spdx";
      if (spec.kind === "datetime") attrs.placeholder = "2024-06-01T00:00:00Z";
      if (spec.kind === "integer" || spec.kind === "number") attrs.inputmode = "decimal";
      let list = null;
      if (spec.suggestions && spec.suggestions.length) {
        list = el("datalist", { id: id + "-list" }, ...spec.suggestions.map((s) => el("option", { value: s })));
        attrs.list = id + "-list";
      }
      const input = el("input", attrs);
      input.addEventListener("input", () => {
        const t = input.value;
        if (t.trim() === "") set(spec.nullable ? null : undefined);
        else set(spec.kind === "integer" || spec.kind === "number" ? parseScalar(t, spec.kind) : t);
      });
      return [input, list];
    }
    case "textarea": {
      const area = el("textarea", { id, rows: 3 });
      area.value = value === undefined || value === null ? "" : String(value);
      area.addEventListener("input", () => set(area.value === "" ? undefined : area.value));
      return [area];
    }
    case "boolean": case "choice": {
      const choices = spec.kind === "boolean" ? [true, false] : spec.choices;
      const select = el("select", { id }, el("option", { value: "", text: "—" }),
        ...choices.map((c, i) => el("option", { value: String(i), text: String(c), selected: c === value })));
      select.addEventListener("change", () => set(select.value === "" ? (spec.nullable ? null : undefined) : choices[+select.value]));
      return [select];
    }
    case "multichoice": {
      const box = el("div", { class: "choices", id, role: "group" });
      const chosen = new Set(Array.isArray(value) ? value : []);
      for (const c of spec.choices) {
        const cb = el("input", { type: "checkbox", value: c, checked: chosen.has(c) });
        cb.addEventListener("change", () => {
          const v = spec.choices.filter((x) => box.querySelector(`input[value="${CSS.escape(x)}"]`).checked);
          set(v.length ? v : undefined);
        });
        box.append(el("label", { class: "choice" }, cb, " " + c));
      }
      return [box];
    }
    case "list": {
      if (Array.isArray(value) && value.some((v) => v !== null && typeof v === "object")) return control({ ...spec, kind: "json" }, path, value, id);
      const input = el("input", { id, type: "text", value: Array.isArray(value) ? value.join(", ") : "", placeholder: "comma-separated" });
      input.addEventListener("input", () => {
        const parts = input.value.split(",").map((s) => s.trim()).filter((s) => s !== "");
        set(parts.length ? parts.map((p) => (spec.item === "text" ? p : parseScalar(p, spec.item))) : undefined);
      });
      const hint = spec.suggestions && spec.suggestions.length ? el("div", { class: "hint", text: "e.g. " + spec.suggestions.join(", ") }) : null;
      return [input, hint];
    }
    case "color": {
      const has = typeof value === "string" && /^[0-9A-Fa-f]{6}$/.test(value);
      const picker = el("input", { id, type: "color", value: has ? "#" + value.toLowerCase() : "#000000", class: has ? null : "unset" });
      const code = el("code", { class: "hex", text: has ? value : "not set" });
      picker.addEventListener("input", () => {
        const v = picker.value.slice(1).toUpperCase();
        code.textContent = v;
        picker.classList.remove("unset");
        set(v);
      });
      const clear = el("button", { type: "button", class: "small", text: "clear", onclick: () => {
        code.textContent = "not set";
        picker.classList.add("unset");
        set(undefined);
      } });
      return [el("span", { class: "color" }, picker, code, clear)];
    }
    default: { // json
      const area = el("textarea", { id, rows: value !== undefined && JSON.stringify(value).length > 60 ? 6 : 2, class: "json", spellcheck: "false" });
      area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
      area.addEventListener("input", () => {
        const k = keyOf(path);
        if (area.value.trim() === "") { S.jsonErrors.delete(k); set(undefined); return; }
        try { const v = JSON.parse(area.value); S.jsonErrors.delete(k); set(v); } catch (e) {
          S.jsonErrors.add(k); showLocal(path, "not JSON yet: " + e.message); updateSave();
        }
      });
      return [area];
    }
  }
}

// ---- fields, with derived values locked -----------------------------------------------------------------
function field(spec, path) {
  const value = getAt(S.item, path);
  const row = el("div", { class: "field kind-" + spec.kind, "data-path": keyOf(path) });
  S.rows.set(keyOf(path), row);
  const id = "f" + ++S.uid;
  const head = el("div", { class: "head" }, el("label", { class: "label", for: id, text: spec.label, title: spec.help || null }));
  if (spec.label !== spec.key) head.append(el("code", { class: "key", text: spec.key }));
  row.append(head);
  const source = derivedSource(path);
  const isLocked = locked(path);
  if (source && value !== undefined) {
    const note = el("div", { class: "derived", title: "derived from " + source },
      el("span", { text: isLocked ? "Locked" : "Unlocked" }), el("span", { class: "src", text: ": derived from " + source }));
    if (isLocked) note.append(el("button", { type: "button", class: "small unlock", text: "Unlock", onclick: () => { S.unlocked.add(keyOf(path)); render(); } }));
    else note.append(el("span", { class: "edited", text: " — unlocked: a change is recorded as a hand edit" }));
    row.append(note);
  }
  if (spec.kind === "object" || spec.kind === "objects" || spec.kind === "map") {
    const box = el("fieldset", { class: "group", disabled: isLocked });
    container(spec, path, value, box);
    row.append(box);
  } else {
    const parts = control(spec, path, value, id).filter(Boolean);
    if (isLocked) {
      for (const p of parts) for (const c of [p, ...p.querySelectorAll("input,select,textarea,button")]) if ("disabled" in c) c.disabled = true;
    }
    row.append(el("div", { class: "control" }, ...parts));
  }
  if (spec.help) row.append(el("div", { class: "help", text: spec.help }));
  row.append(el("ul", { class: "msg" }));
  return row;
}

function container(spec, path, value, box) {
  if (spec.kind === "object") {
    const known = new Set(spec.fields.map((f) => f.key));
    for (const f of spec.fields) box.append(field(f, [...path, f.key]));
    if (value && typeof value === "object") {
      for (const k of Object.keys(value)) if (!known.has(k)) box.append(field({ key: k, label: k, kind: "json" }, [...path, k]));
    }
    return;
  }
  if (spec.kind === "objects") {
    const items = Array.isArray(value) ? value : [];
    const compact = spec.item.kind === "object" && spec.item.fields.every((f) => SCALAR.has(f.kind));
    items.forEach((_, i) => {
      const sub = el("fieldset", { class: compact ? "entry compact" : "entry" }, el("legend", {}, el("span", { text: `${spec.key} #${i}` }),
        el("button", { type: "button", class: "small remove", text: "remove", onclick: () => { items.splice(i, 1); setAt(path, items.length ? items : undefined); render(); } })));
      container(spec.item, [...path, i], items[i], sub);
      box.append(sub);
    });
    box.append(el("button", { type: "button", class: "small add", text: "add " + spec.key, onclick: () => { setAt(path, [...items, {}]); render(); } }));
    return;
  }
  // map (assets): one object per key
  const entries = value && typeof value === "object" ? Object.keys(value) : [];
  for (const k of entries) {
    const sub = el("fieldset", { class: "entry" }, el("legend", {}, el("span", { text: k }),
      el("button", { type: "button", class: "small remove", text: "remove", onclick: () => { delete value[k]; changed(); render(); } })));
    container(spec.item, [...path, k], value[k], sub);
    box.append(sub);
  }
  const name = el("input", { type: "text", placeholder: "new asset key", class: "short", "aria-label": "new asset key" });
  box.append(el("div", { class: "add-row" }, name, el("button", { type: "button", class: "small add", text: "add asset", onclick: () => {
    const k = name.value.trim();
    if (!k || (value && k in value)) return;
    setAt([...path, k], { href: "", roles: [] }); render();
  } })));
}

// ---- page ------------------------------------------------------------------------------------------------
function render() {
  const form = document.getElementById("form");
  const scroll = window.scrollY;
  form.replaceChildren();
  S.rows.clear();
  const covered = new Set();
  for (const group of S.spec.groups) {
    const section = el("section", { id: "g-" + group.id, class: "card" }, el("h2", { text: group.title }));
    for (const f of group.fields) {
      section.append(field(f, f.path));
      if (f.path[0] === "properties") covered.add(f.path[1]);
    }
    form.append(section);
  }
  const others = Object.keys(S.item.properties || {}).filter((k) => !covered.has(k));
  if (others.length) {
    const section = el("section", { id: "g-other", class: "card" }, el("h2", { text: "Other properties" }));
    for (const k of others) section.append(field({ key: k, label: k, kind: "json" }, ["properties", k]));
    form.append(section);
  }
  window.scrollTo(0, scroll);
  validate();
}

function changed() {
  S.dirty = true;
  clearTimeout(S.timer);
  S.valid = false;
  updateSave();
  setStatus("checking…", "busy");
  S.timer = setTimeout(validate, 250);
}

function setStatus(text, kind) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = kind || "";
}

function updateSave() {
  const save = document.getElementById("save");
  save.disabled = !(S.valid && S.jsonErrors.size === 0 && S.path);
  document.getElementById("download").disabled = !(S.valid && S.jsonErrors.size === 0);
}

function rowFor(path) {
  for (let n = path.length; n >= 0; n--) {
    const row = S.rows.get(keyOf(path.slice(0, n)));
    if (row) return row;
  }
  return null;
}

function showLocal(path, message) {
  const row = S.rows.get(keyOf(path));
  if (!row) return;
  row.classList.add("invalid");
  row.querySelector(".msg").replaceChildren(el("li", { text: message }));
}

async function validate() {
  const seq = ++S.seq;
  let result;
  try { result = await api("/api/validate", { item: S.item }); } catch (e) { setStatus("the form server is not reachable", "bad"); return; }
  if (seq !== S.seq) return; // a newer check is under way
  const { problems, valid, item } = result.data;
  document.querySelectorAll(".field.invalid").forEach((r) => r.classList.remove("invalid"));
  document.querySelectorAll(".msg").forEach((m) => m.replaceChildren());
  const loose = [];
  for (const p of problems) {
    const row = rowFor(p.path);
    const text = p.message + (p.schema ? ` [${p.schema}]` : "");
    if (row && row.dataset.path !== "[]") {
      row.classList.add("invalid");
      row.querySelector(":scope > .msg").append(el("li", { text }));
    } else loose.push(`${p.json_path}: ${text}`);
  }
  for (const k of S.jsonErrors) showLocal(JSON.parse(k), "not JSON yet");
  const summary = document.getElementById("summary");
  summary.hidden = loose.length === 0;
  summary.replaceChildren(el("strong", { text: "Item problems not tied to one field:" }), el("ul", {}, ...loose.map((t) => el("li", { text: t }))));
  document.getElementById("json").textContent = JSON.stringify(item, null, 2);
  S.valid = valid;
  updateSave();
  if (valid && S.jsonErrors.size === 0) setStatus(S.path ? "valid — ready to save" : "valid", "ok");
  else setStatus(`${problems.length + S.jsonErrors.size} problem(s)`, "bad");
}

async function save() {
  clearTimeout(S.timer);
  document.getElementById("save").disabled = true;
  setStatus("saving…", "busy");
  const { status, data } = await api("/api/save", { item: S.item });
  if (status === 200) {
    S.item = data.item;
    S.dirty = false;
    const name = data.saved.split(/[\\/]/).pop();
    setStatus(`saved ${name} (previous version kept as ${name}.bak)`, "ok");
    S.valid = true;
    updateSave();
  } else if (status === 422) {
    setStatus(`not saved: ${data.problems.length} problem(s)`, "bad");
    const summary = document.getElementById("summary");
    summary.hidden = false;
    summary.replaceChildren(el("strong", { text: "Not saved:" }), el("ul", {}, ...data.problems.map((p) => el("li", { text: `${p.json_path}: ${p.message}` }))));
  } else {
    setStatus("not saved: " + (data.error || status), "bad");
  }
}

function download() {
  const blob = new Blob([JSON.stringify(S.item, null, 2) + "\n"], { type: "application/json" });
  const a = el("a", { href: URL.createObjectURL(blob), download: (S.item.id || "item") + ".json" });
  a.click();
  URL.revokeObjectURL(a.href);
}

async function start() {
  const [{ data: state }, { data: licenses }] = await Promise.all([
    api("/api/state"), api("/static/spdx-licenses.json?token=" + encodeURIComponent(TOKEN)),
  ]);
  Object.assign(S, { item: state.item, spec: state.spec, derived: state.derived, opened: state.opened, path: state.path });
  document.getElementById("file").textContent = state.path ? state.path + (state.opened ? "" : " (new)") : "not saved to a file: download the JSON";
  document.getElementById("spdx").replaceChildren(...licenses.licenses.map((l) => el("option", { value: l.id, label: `${l.id} — ${l.category}` })));
  document.getElementById("groups").replaceChildren(...S.spec.groups.map((g) => el("a", { href: "#g-" + g.id, text: g.title })));
  document.getElementById("save").addEventListener("click", save);
  const dl = document.getElementById("download");
  dl.hidden = Boolean(state.path);
  dl.addEventListener("click", download);
  window.addEventListener("beforeunload", (event) => { if (S.dirty) event.preventDefault(); });
  render();
}

start();
