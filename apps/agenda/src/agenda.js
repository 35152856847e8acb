// The agenda view: renders a task list tool's result grouped by day, and acts through the host (complete_task,
// update_task). Built with the ext-apps SDK's App; everything it needs is bundled into the one HTML file.
import { App, PostMessageTransport, applyDocumentTheme, applyHostFonts, applyHostStyleVariables } from "@modelcontextprotocol/ext-apps";
import { clock, dayName, groupTasks, localDate, snoozedDue } from "./days.js";

const days = document.getElementById("days");
const summary = document.getElementById("summary");
const fallback = document.getElementById("fallback");
const announce = document.getElementById("announce");

const LIST_TOOLS = new Set(["get_upcoming_tasks", "list_tasks"]);
const SNOOZABLE = new Set(["overdue", "today"]);

let toolName = null; // the tool whose result is shown: re-called after an action
let toolArguments = {};
let shown = null; // the structured content on screen
let busy = false;

const app = new App({ name: "mcp-todo agenda", version: "1.0.0" }, {}, { autoResize: true });

app.ontoolinput = (params) => {
  toolArguments = params.arguments ?? {};
};
app.ontoolresult = (result) => show(result);
app.onhostcontextchanged = (context) => applyContext(context);
app.onteardown = async () => ({});

function applyContext(context) {
  if (!context) return;
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
  const name = context.toolInfo?.tool?.name;
  if (name && LIST_TOOLS.has(name)) toolName = name;
}

function say(text) {
  // Cleared first, so the same words said twice are announced twice.
  announce.textContent = "";
  requestAnimationFrame(() => {
    announce.textContent = text;
  });
}

function textOf(result) {
  return (result.content ?? []).filter((block) => block.type === "text").map((block) => block.text).join("\n");
}

/** Show a tool result: the tasks by day, or its text when it has no tasks to show (an error, another shape). */
function show(result) {
  const content = result.structuredContent;
  // A task list has a total; a lean result leaves out an empty `tasks`.
  if (result.isError || typeof content?.total !== "number") {
    days.replaceChildren();
    summary.textContent = result.isError ? "The server refused the request." : "";
    fallback.textContent = textOf(result);
    fallback.hidden = false;
    return;
  }
  fallback.hidden = true;
  content.tasks ??= [];
  // list_tasks pages (limit/offset); get_upcoming_tasks does not: which one answered, when the host did not say.
  toolName ??= "limit" in content ? "list_tasks" : "get_upcoming_tasks";
  shown = content;
  render(content);
}

function render(content) {
  const now = content.now ?? new Date().toISOString();
  const groups = groupTasks(content.tasks, now);
  const open = content.tasks.filter((task) => (task.status ?? "pending") === "pending").length;
  summary.textContent =
    `${open} open task${open === 1 ? "" : "s"}` +
    (content.total > content.tasks.length ? ` (first ${content.tasks.length} of ${content.total})` : "") +
    ` · ${dayName(localDate(now))}`;
  const keepFocus = focusMemo !== null && (days.contains(document.activeElement) || document.activeElement === document.body);
  if (groups.length) {
    days.replaceChildren(...groups.map((group) => section(group, now)));
  } else {
    days.replaceChildren(el("p", { className: "empty", textContent: "Nothing due. Enjoy the quiet." }));
  }
  if (keepFocus) restoreFocus();
}

// A new result replaces the list (after an action, or when the host sends a change made elsewhere). Focus stays
// where it was: on the same control when its task is still shown, else on the control now at its place.
let focusMemo = null;

function controls(enabledOnly) {
  return [...days.querySelectorAll(enabledOnly ? "input:not(:disabled), button:not(:disabled)" : "input, button")];
}

days.addEventListener("focusin", (event) => {
  const node = event.target;
  focusMemo = { selector: `${node.tagName.toLowerCase()}[data-task-id="${node.dataset.taskId}"]`, index: controls(false).indexOf(node) };
});

function restoreFocus() {
  const same = days.querySelector(`${focusMemo.selector}:not(:disabled)`);
  const enabled = controls(true);
  const target = same ?? enabled[Math.min(focusMemo.index, enabled.length - 1)] ?? document.getElementById("agenda-title");
  target.focus();
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function srOnly(text) {
  return el("span", { className: "sr-only", textContent: text });
}

/** A mark a screen reader skips (the words beside it say the same). */
function hidden(text) {
  const node = el("span", { textContent: text });
  node.setAttribute("aria-hidden", "true");
  return node;
}

// A bell drawn inline: an emoji needs a font the host's system may not have.
const BELL = "M8 1.5a1 1 0 0 1 1 1v.6A4.5 4.5 0 0 1 12.5 7.5v2.8l1.3 1.9a.5.5 0 0 1-.4.8H2.6a.5.5 0 0 1-.4-.8l1.3-1.9V7.5A4.5 4.5 0 0 1 7 3.1v-.6a1 1 0 0 1 1-1ZM6.3 14h3.4a1.7 1.7 0 0 1-3.4 0Z";

function bell() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", BELL);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

function section(group, now) {
  const headingId = `day-${group.key}`;
  const heading = el("h2", { id: headingId, className: group.key }, group.title, " ", el("span", { className: "count", textContent: `(${group.tasks.length})` }));
  const list = el("ul");
  list.append(...group.tasks.map((task) => item(task, group.key, now)));
  const node = el("section", {}, heading, list);
  node.setAttribute("aria-labelledby", headingId);
  return node;
}

function item(task, groupKey, now) {
  const id = `task-${task.id}`;
  const done = (task.status ?? "pending") === "completed";
  const box = el("input", { type: "checkbox", id, checked: done, disabled: done });
  box.dataset.taskId = String(task.id);
  box.setAttribute("aria-describedby", `${id}-meta`);
  box.addEventListener("change", () => complete(task, box));
  const label = el("label", { htmlFor: id, className: "title", textContent: task.title });

  // Snoozing is for what is due now: a later task would move earlier, tomorrow's would not move.
  let snooze = null;
  if (!done && SNOOZABLE.has(groupKey)) {
    snooze = el("button", { type: "button" }, "Snooze", srOnly(` “${task.title}”`), " to tomorrow");
    snooze.dataset.taskId = String(task.id);
    snooze.addEventListener("click", () => snoozeTask(task, snooze));
  }

  const meta = el("p", { id: `${id}-meta`, className: "meta" }, ...marks(task, groupKey, now));
  const row = el("li", { className: done ? "done" : "" }, box, label, snooze, meta);
  row.dataset.taskId = String(task.id);
  return row;
}

/** The marks under a title: when it is due, priority, tags, category, repeat, reminder. Each reads as words. */
function marks(task, groupKey, now) {
  const parts = [];
  if (task.due_date) {
    const time = clock(task.due_date);
    const sameDay = localDate(task.due_date) === localDate(now);
    const when = groupKey === "today" || (groupKey === "overdue" && sameDay) ? time || "today" : `${dayName(localDate(task.due_date))}${time ? " " + time : ""}`;
    parts.push(el("span", { className: groupKey === "overdue" ? "due late" : "due" }, srOnly(groupKey === "overdue" ? "was due " : "due "), when));
  }
  const priority = task.priority ?? "medium";
  if (priority !== "medium") {
    parts.push(el("span", { className: `prio-${priority}` }, priority === "urgent" ? "‼ urgent" : priority === "high" ? "! high" : "↓ low", srOnly(" priority")));
  }
  for (const tag of task.tags ?? []) parts.push(el("span", { className: "tag" }, srOnly("tag "), `#${tag.name}`));
  if (task.category) parts.push(el("span", {}, srOnly("category "), `@${task.category.name}`));
  if (task.recurrence_rule || task.recurrence) {
    parts.push(el("span", {}, hidden("↻ "), srOnly("repeats "), task.recurrence?.text ?? "repeats"));
  }
  if (task.remind_at && !task.reminder_sent) {
    parts.push(el("span", {}, bell(), srOnly("reminder "), reminderWords(task.remind_at, now)));
  }
  return parts;
}

function reminderWords(iso, now) {
  const time = clock(iso) || "end of day";
  return localDate(iso) === localDate(now) ? time : `${dayName(localDate(iso))} ${time}`;
}

/** Call a server tool through the host; an error result or a refused call is said and shown, not thrown. */
async function callTool(name, args) {
  try {
    const result = await app.callServerTool({ name, arguments: args });
    if (result.isError) throw new Error(textOf(result) || `${name} failed`);
    return result;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    showError(message);
    say(message);
    return null;
  }
}

function showError(message) {
  let node = document.getElementById("error");
  if (!node) {
    node = el("p", { id: "error", className: "error" });
    node.setAttribute("role", "alert");
    days.before(node);
  }
  node.textContent = message;
}

function clearError() {
  document.getElementById("error")?.remove();
}

async function act(control, work) {
  if (busy) return;
  busy = true;
  control.disabled = true;
  clearError();
  try {
    const ok = await work();
    if (!ok) {
      control.disabled = false;
      if (control.type === "checkbox") control.checked = false;
      control.focus();
      return;
    }
    await refresh();
  } finally {
    busy = false;
  }
}

function complete(task, box) {
  return act(box, async () => {
    const done = await callTool("complete_task", { task_id: task.id });
    if (done) say(`Completed: ${task.title}`);
    return done;
  });
}

function snoozeTask(task, button) {
  return act(button, async () => {
    const due = snoozedDue(task, shown?.now ?? new Date().toISOString());
    const moved = await callTool("update_task", { task_id: task.id, due_date: due });
    if (moved) say(`Snoozed to tomorrow: ${task.title}`);
    return moved;
  });
}

/** The tool shown, called again with its arguments: the list after an action. */
async function refresh() {
  if (!toolName) return;
  const result = await callTool(toolName, toolArguments);
  if (result) show(result);
}

async function main() {
  document.getElementById("agenda-title").tabIndex = -1;
  await app.connect(new PostMessageTransport(window.parent, window.parent));
  applyContext(app.getHostContext());
}

main().catch((err) => showError(`Could not reach the host: ${err instanceof Error ? err.message : err}`));
